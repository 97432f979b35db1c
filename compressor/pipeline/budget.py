"""`compress --accuracy-budget B`: the cheapest int8 artifact whose accuracy drop stays within B.

An accuracy-control loop (NNCF's ``max_drop``, Intel Neural Compressor's ``tolerable_loss``): the
ladder below is climbed from the cheapest fix to the most expensive, each rung a recipe chained in
its own folder and measured on the VALIDATION split against the float model; the first rung whose
drop is within the budget is kept. Only that recipe is then run by ``compress`` (its finished steps
reused), which measures the test split once, with the budget as its accuracy gate.

    1. int8                plain min/max calibration
    2. int8-percentile     activation ranges at the 99.99th percentile (export/ranges.py)
    3. int8-equalized      cross-layer equalization + bias correction, then 2.
    4. int8-float-layers   2. with the 3 layers int8 quantizes worst kept in float (the debugger's ranking)
    5. qat-int8            a short quantization-aware fine-tuning (the qat-int8 preset)

When no rung meets the budget, the most accurate attempt is exported, its gate fails (exit 1) and
the report names every attempt with its drop: which step could not.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from compressor.runtime.atomic import write_json, write_text
from compressor.runtime.errors import UserError

FLOAT_LAYERS = 3
PERCENTILE = "percentile:99.99"


def ladder(budget: float) -> list[tuple[str, str, list[dict]]]:
    """(name, what it tries, steps) from the cheapest rung to the most expensive."""
    from compressor.recipes import load_recipe

    def int8(**params: Any) -> dict:
        return {"type": "int8", "params": {"calibration_samples": 200, "io_dtype": "int8", **params}}

    qat = load_recipe("qat-int8").model_dump()["steps"]
    return [
        ("int8", "plain int8, min/max calibration", [int8()]),
        ("int8-percentile", f"int8, {PERCENTILE} activation ranges", [int8(activation_ranges=PERCENTILE)]),
        (
            "int8-equalized",
            "cross-layer equalization + bias correction, percentile int8",
            [{"type": "equalize"}, {"type": "bias_correct"}, int8(activation_ranges=PERCENTILE)],
        ),
        ("int8-float-layers", f"percentile int8, the {FLOAT_LAYERS} worst layers in float", [int8()]),
        ("qat-int8", "short quantization-aware training", qat),
    ]


def compress_to_budget(
    model_path: str | Path,
    out: str | Path,
    budget: float,
    progress: Callable[[str], None] = lambda msg: None,
    **options: Any,
) -> dict:
    """Climb the ladder on the validation split, then ``compress`` the chosen rung; returns its report
    with a ``budget`` section (every attempt). ``options``: compress's (data, seed, overwrite, ...)."""
    from compressor.pipeline.compress import compress
    from compressor.pipeline.output_guard import check_output, out_path

    if not 0 < budget < 1:
        raise UserError(f"--accuracy-budget is a fraction of accuracy (0.01 = 1 point), got {budget}")
    final = out_path(out)
    check_output(final, [model_path, options.get("data"), options.get("data_dir")], options.get("overwrite", False))
    work = final.parent / f".{final.name}.budget"
    shutil.rmtree(work, ignore_errors=True)
    attempts, chosen = _climb(model_path, work, budget, progress, options)
    recipe_path = write_text(work / f"{chosen['name']}.yaml", yaml.safe_dump(chosen["recipe"], sort_keys=False))
    progress(f"budget: exporting {chosen['name']} (validated, evaluated on test once)")
    report = compress(
        model_path,
        [str(recipe_path)],
        final,
        progress=progress,
        reuse_steps={chosen["name"]: chosen["steps"]},
        **options,
    )
    section = {"budget": budget, "split": "val", "attempts": attempts, "chosen": chosen["name"], "met": chosen["met"]}
    report["budget"] = section
    write_json(final / "report.json", report)
    from compressor.reports.html import write_html

    write_html(final, name=final.name)
    shutil.rmtree(work, ignore_errors=True)
    return report


def _climb(model_path: Any, work: Path, budget: float, progress: Callable, options: dict) -> tuple[list, dict]:
    from compressor.recipes import validate_recipe
    from compressor.recipes.base import set_progress
    from compressor.tuning.recipe_eval import run_recipe

    model, data, reference, base = _reference(model_path, options, progress)
    set_progress(progress)
    attempts, best = [], None
    for name, what, steps in ladder(budget):
        raw = {"name": name, "description": what, "steps": copy.deepcopy(steps)}
        raw["gates"] = {"max_accuracy_drop": budget}
        if name == "int8-float-layers":
            raw["steps"][-1]["params"].update(activation_ranges=PERCENTILE, float_layers=_worst(model, data))
        progress(f"budget: trying {name} ({what})")
        try:
            result = run_recipe(model, data, validate_recipe(raw, f"budget rung {name}"), work / name, reference)
        except UserError as e:  # this rung cannot run on this model (e.g. an op without an int8 kernel)
            attempts.append({"name": name, "what": what, "met": False, "error": str(e)})
            progress(f"budget: {name} could not run: {e}")
            continue
        drop = base - result["val_accuracy"]
        row = {
            "name": name,
            "what": what,
            "val_accuracy": result["val_accuracy"],
            "drop": round(drop, 6),
            "met": drop <= budget + 1e-9,
            "size_bytes": result["size_bytes"],
            "latency_ms": result["latency_ms"],
        }
        attempts.append(row)
        progress(f"budget: {name}: val accuracy {row['val_accuracy']:.2%}, drop {drop * 100:+.2f} pt")
        candidate = {**row, "recipe": raw, "steps": work / name / "steps"}
        if best is None or row["val_accuracy"] > best["val_accuracy"]:
            best = candidate
        if row["met"]:
            return attempts, candidate
    if best is None:
        raise UserError(
            "--accuracy-budget: no rung could run on this model: " + "; ".join(a["error"] for a in attempts)
        )
    return attempts, best


def _reference(model_path: Any, options: dict, progress: Callable) -> tuple[Any, Any, np.ndarray, float]:
    """The model, its data, the float outputs on val and the float val accuracy everything is held to."""
    from compressor.datasets.source import load_or_stream
    from compressor.pipeline.model_io import load_model, read_card, resolve_model_path
    from compressor.pipeline.validation import reference_outputs

    model = load_model(model_path, trust_code=options.get("trust_code", False))
    spec = options.get("data") or read_card(resolve_model_path(model_path)).get("data", "digits")
    data = load_or_stream(  # every rung's steps read streamed data: a large folder is streamed
        spec,
        data_dir=options.get("data_dir"),
        seed=options.get("seed", 0),
        model=model,
        preprocess=options.get("preprocess", "auto"),
        image_fit=options.get("image_fit", "resize"),
        stream=options.get("stream"),
        progress=progress,
    )
    val = data.split("val")
    if not len(val):
        raise UserError("--accuracy-budget chooses on the validation split, and this data set has none")
    reference = reference_outputs(model, val)
    if reference is None:
        reference = _float_tflite_outputs(model, val)
    return model, data, reference, float(np.mean(reference.argmax(1) == val.y))


def _float_tflite_outputs(model: Any, val: Any) -> np.ndarray:
    """A plain SavedModel has no Keras object to predict with: its float32 TFLite stands in."""
    import tempfile

    from compressor.export.tflite import convert, write_tflite
    from compressor.pipeline.validation import runner_outputs
    from compressor.runtime.interpreters import open_model

    with tempfile.TemporaryDirectory(prefix="compressor-budget-") as tmp:
        path = write_tflite(Path(tmp) / "float32.tflite", convert(model, "float32"))
        return runner_outputs(open_model(path), val)


def _worst(model: Any, data: Any) -> list[str]:
    from compressor.tuning.search_objective import worst_layers

    return worst_layers(model, data)[:FLOAT_LAYERS]
