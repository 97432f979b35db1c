"""Selective quantization: keep the layers int8 handles worst in float, the rest int8.

By hand: the int8 step's ``float_layers`` (Keras layer names such as ``dense1``, or the tensor
names ``--debug-quant`` lists). Automatically: when an int8 artifact misses its accuracy gate
and the step has ``auto_float_layers: N``, the layers are taken in the debugger's order (worst
RMSE/scale first), one more at a time, until the gate holds or N layers are float.

The search decides on the validation split, never on the test split the gate is finally
checked on (choosing on test would overstate the result); its accuracy drop is measured
against the float32 TFLite model on the same samples.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from compressor.export.quant_debug import QuantDebugger, layer_label
from compressor.export.tflite import write_tflite
from compressor.pipeline.validation import gate_failures
from compressor.runtime.errors import UserError


def resolve_layers(requested: list[str], nodes: list[str]) -> list[str]:
    """Map names a user gives (layer or tensor names) to the converter's node names."""
    found: list[str] = []
    for name in requested:
        matches = [n for n in nodes if n == name or name in layer_label(n, "").split("+")]
        if not matches:
            valid = sorted({part for n in nodes for part in layer_label(n, "").split("+") if " (" not in part})
            raise UserError(f"float_layers: no layer named {name!r} in the converted model; layers: {', '.join(valid)}")
        found += [m for m in matches if m not in found]
    return found


def convert_with_float_layers(
    model: Any, sample: np.ndarray, io_dtype: str, float_layers: list[str]
) -> tuple[bytes, list[str]]:
    """int8 conversion with the named layers in float; returns the flatbuffer and the layers kept float."""
    debugger = QuantDebugger(model, sample, io_dtype)
    nodes = resolve_layers(float_layers, debugger.nodes)
    return debugger.quantized_model(nodes), [layer_label(n, "") for n in nodes]


def apply_float_layers_option(recipes: list[Any], option: str | None) -> list[Any]:
    """``--float-layers a,b`` (by hand) or ``auto`` / ``auto:N`` (search) on every int8 recipe."""
    if not option:
        return recipes
    from compressor.recipes import validate_recipe

    text = option.strip()
    if text == "auto" or text.startswith("auto:"):
        count = text.partition(":")[2] or "3"
        if not count.isdigit() or int(count) < 1:
            raise UserError(f"--float-layers {option}: expected auto or auto:N with N >= 1, e.g. auto:3")
        update = {"auto_float_layers": int(count)}
    else:
        update = {"float_layers": [name.strip() for name in text.split(",") if name.strip()]}
    if not any(r.steps[-1].type == "int8" for r in recipes):
        raise UserError(f"--float-layers applies to int8 recipes; none of {', '.join(r.name for r in recipes)} is")
    changed = []
    for recipe in recipes:
        if recipe.steps[-1].type == "int8":
            raw = recipe.model_dump()
            raw["steps"][-1]["params"].update(update)  # model_dump: a plain mapping again
            recipe = validate_recipe(raw, "--float-layers")
        changed.append(recipe)
    return changed


def should_fall_back(recipe: Any, row: dict) -> bool:
    last = recipe.steps[-1]
    return (
        last.type == "int8"
        and last.params.auto_float_layers > 0
        and bool(gate_failures(row, recipe.gates.to_runtime().accuracy_only()))
    )


def fall_back(
    debugger: QuantDebugger,
    data: Any,
    recipe: Any,
    f32_tflite: Path,
    folder: Path,
    progress: Callable[[str], None] = lambda msg: None,
) -> tuple[bytes | None, dict]:
    """Search float layers on the validation split; returns the chosen flatbuffer (None: keep plain) and a log."""
    from compressor.runtime.accuracy import predict
    from compressor.runtime.interpreters import open_model

    gates = recipe.gates.to_runtime().accuracy_only()
    limit = recipe.steps[-1].params.auto_float_layers
    split = "val" if len(data.y_val) else "test"  # the test split only when a data set has no val split
    x, y = (data.x_val, data.y_val) if split == "val" else (data.x_test, data.y_test)
    ref_accuracy = float(np.mean(predict(open_model(f32_tflite), x).argmax(1) == y))

    def evaluate(content: bytes, name: str) -> float:
        path = write_tflite(folder / "selective" / f"{name}.tflite", content)
        return float(np.mean(predict(open_model(path), x).argmax(1) == y))

    def holds(accuracy: float) -> bool:
        return not gates.check(accuracy, ref_accuracy)

    # Tensors already at rounding-noise level are not where accuracy is lost; layout ops share
    # their input's scale and are never worth a float copy.
    ranking = [r for r in debugger.statistics() if r["node"] and r["op"] not in ("RESHAPE", "SQUEEZE")]
    plain = evaluate(debugger.quantized_model(), "plain")
    log = {
        "split": split,
        "float32_accuracy": ref_accuracy,
        "limit": limit,
        "attempts": [{"float_layers": [], "accuracy": plain}],
        "gate_held": holds(plain),
    }
    best: tuple[float, bytes | None, list[str]] = (plain, None, [])
    nodes: list[str] = []
    for row in ranking[:limit]:
        if log["gate_held"]:
            break
        nodes.append(row["node"])
        labels = [layer_label(n, "") for n in nodes]
        progress(f"  selective quantization: float {', '.join(labels)}")
        content = debugger.quantized_model(nodes)
        accuracy = evaluate(content, f"float-{len(nodes)}")
        log["attempts"].append(
            {"float_layers": labels, "accuracy": accuracy, "rmse_over_scale": row["rmse_over_scale"]}
        )
        log["gate_held"] = holds(accuracy)
        if accuracy > best[0] or log["gate_held"]:
            best = (accuracy, content, labels)
    log["float_layers"] = best[2]
    log["ops"] = op_precision(best[1] if best[1] is not None else debugger.quantized_model())
    return best[1], log


def op_precision(content: bytes) -> dict:
    """How many compute ops run integer vs float (Quantize/Dequantize not counted)."""
    from compressor.inspection.tflite import TFLiteFile

    f = TFLiteFile(content)
    compute = sum(1 for op, _, _ in f.ops if op not in ("QUANTIZE", "DEQUANTIZE"))
    floats = sum(f.float_ops().values())
    return {"integer": compute - floats, "float": floats}


def cost(plain: dict, selected: dict) -> dict:
    """What keeping layers in float cost, from the two artifacts' report rows (test split)."""
    return {
        "size_bytes": selected["size_bytes"] - plain["size_bytes"],
        "latency_ms": selected["latency"]["median_ms"] - plain["latency"]["median_ms"],
        "accuracy": selected["accuracy"] - plain["accuracy"],
        "plain": {k: plain[k] for k in ("accuracy", "size_bytes")} | {"latency_ms": plain["latency"]["median_ms"]},
        "selective": {k: selected[k] for k in ("accuracy", "size_bytes")}
        | {"latency_ms": selected["latency"]["median_ms"]},
    }
