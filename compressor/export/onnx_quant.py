"""int8 ONNX two ways, and keeping the better one.

- ``tflite``: tf2onnx converts the int8 .tflite into QDQ ONNX with the very scales TFLite chose
  (onnx.py), so it should agree with the .tflite almost exactly;
- ``ort``: ONNX Runtime's own static quantization of the float ONNX, calibrated on the same
  samples as the TFLite int8 step: QDQ format, int8 activations (asymmetric, min/max) and
  per-channel symmetric int8 weights, which is what TFLite does too. Its I/O stays float.

With both, each is measured; the one that passes the recipe's gates with the better accuracy
(then latency) becomes ``model.onnx``; the other stays as ``model.tf2onnx.onnx`` / ``model.ort.onnx``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from compressor.runtime.atomic import write_bytes
from compressor.runtime.errors import UserError
from compressor.runtime.quiet import native_stderr_silenced

VARIANTS = {"tflite": ["tflite"], "ort": ["ort"], "both": ["tflite", "ort"]}
# A variant's file is model.<tag>.onnx until keep_better names the kept one model.onnx.
FILE_TAGS = {"tflite": "tf2onnx", "ort": "ort"}


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over a numpy sample, in small batches."""

    def __init__(self, input_name: str, sample: np.ndarray, batch: int = 16):
        self._batches = iter([{input_name: sample[i : i + batch]} for i in range(0, len(sample), batch)])

    def get_next(self) -> dict | None:
        return next(self._batches, None)


def ort_static_quantize(float_onnx: Path, sample: np.ndarray, out: Path, float_layers: list[str] = ()) -> Path:
    """Quantize ``float_onnx`` to QDQ int8 with ONNX Runtime, calibrated on ``sample``.

    ``float_layers`` (Keras layer names, as selective quantization reports them) stay float.
    """
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from compressor.recipes.ptq import check_calibration

    session = ort.InferenceSession(str(float_onnx), providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    shape = tuple(d if isinstance(d, int) else None for d in feed.shape[1:])
    sample = check_calibration(sample, shape)
    with tempfile.TemporaryDirectory(prefix="compressor-ortq-") as tmp, native_stderr_silenced(), _quiet_root_logger():
        prepared, quantized = os.path.join(tmp, "prepared.onnx"), os.path.join(tmp, "quantized.onnx")
        try:
            # Shape inference + graph fusions first, as ORT's quantization guide recommends.
            quant_pre_process(str(float_onnx), prepared, skip_symbolic_shape=True)
        except Exception:  # pre-processing is an optimisation; quantize the original if it fails
            prepared = str(float_onnx)
        excluded = _nodes_of_layers(onnx.load(prepared), float_layers)
        try:
            quantize_static(
                prepared,
                quantized,
                _Reader(feed.name, sample),
                quant_format=QuantFormat.QDQ,
                nodes_to_exclude=excluded,
                per_channel=True,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={
                    "ActivationSymmetric": False,
                    "WeightSymmetric": True,
                    "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},
                },
            )
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise UserError(f"ONNX Runtime static quantization of {float_onnx} failed: {first[:300]}") from None
        proto = onnx.load(quantized)
    guard_float_layers(proto)
    onnx.checker.check_model(proto)
    return write_bytes(out, proto.SerializeToString())


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """ORT's quantization tools log advice through the root logger: keep it off the terminal."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)


def _nodes_of_layers(proto: Any, layers: list[str]) -> list[str]:
    # tf2onnx names nodes after the TF ops: "<model>/<layer>/MatMul"
    parts = {p for layer in layers for p in layer.split("+")}
    return [n.name for n in proto.graph.node if parts & set(n.name.split("/"))]


def guard_float_layers(proto: Any) -> int:
    """Keep ONNX Runtime from quantizing layers that are meant to run in float.

    ORT's WeightBiasQuantization graph transformer (on by default) sees a Conv/Gemm/MatMul fed
    by a DequantizeLinear and, if its weight is a float initializer, quantizes that weight to
    int8 at session start: exactly the layers selective quantization kept float (measured: the
    outlier MLP fell from 95.8% to 94.7%, 96% agreement with its .tflite). An exact identity it
    cannot fuse away, Max(x, lowest float), between them keeps the pattern from matching
    (Mul by 1 and Add 0 are removed by its NoopElimination first).
    """
    from onnx import helper, numpy_helper

    graph = proto.graph
    inits = {i.name for i in graph.initializer}
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    guarded, nodes = 0, list(graph.node)
    for node in list(nodes):
        if (
            node.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul")
            and len(node.input) > 1
            and node.input[1] in inits
            and node.input[0] in dequantized
            and node.input[1] not in dequantized
        ):
            if not guarded:
                graph.initializer.append(
                    numpy_helper.from_array(np.array(np.finfo(np.float32).min, np.float32), "compressor_float_guard")
                )
            source = node.input[0]
            guard = helper.make_node(
                "Max",
                [source, "compressor_float_guard"],
                [f"{source}_float_guard{guarded}"],
                name=f"compressor_float_guard_{guarded}",
            )
            node.input[0] = guard.output[0]
            nodes.insert(nodes.index(node), guard)
            guarded += 1
    if guarded:
        del graph.node[:]
        graph.node.extend(nodes)
    return guarded


def export_variant(
    variant: str,
    tflite: Path,
    model: Any,
    data: Any,
    recipe: Any,
    layout: Any,
    float_layers: list[str] = (),
    trust_code: bool = False,
) -> Path:
    """Write the recipe's ONNX the ``variant`` way into the run ``layout`` (a RunLayout)."""
    import onnx

    from compressor.export.onnx import keras_to_onnx, tflite_to_onnx

    path = layout.artifact(recipe.name, "onnx", FILE_TAGS[variant])
    opset = recipe.export.opset
    if variant == "tflite":
        tflite_to_onnx(tflite, path, opset=opset)
        proto = onnx.load(str(path))
        if guard_float_layers(proto):
            write_bytes(path, proto.SerializeToString())
        return path
    from compressor.export.quant_debug import conversion_input

    float_onnx = layout.reference("onnx")
    source = conversion_input(model, recipe, layout.steps(recipe.name), trust_code)
    if len(recipe.steps) > 1 and source.keras is not None:  # training steps changed the float model
        float_onnx = keras_to_onnx(source.keras, layout.recipe_dir(recipe.name) / "float-input.onnx", opset=opset)
    return ort_static_quantize(float_onnx, recipe.steps[-1].params.calibration(data), path, float_layers)


def keep_better(
    candidates: list[tuple[str, Any]],
    gates: dict,
    reference_accuracy: float,
    layout: Any,
    final: Any,
    recipe_name: str,
) -> tuple[list, dict]:
    """Rename the better (variant, ArtifactResult) to model.onnx; the other keeps ``model.<tag>.onnx``.

    ``layout`` is the RunLayout being written, ``final`` the one the results' paths must name."""
    from compressor.pipeline.validation import gate_failures

    def rank(item: tuple[str, Any]) -> tuple:
        row = item[1].row(reference_accuracy)
        return (not gate_failures(row, gates), row["accuracy"], -row["latency"]["median_ms"])

    chosen = max(candidates, key=rank)[0] if len(candidates) > 1 else candidates[0][0]
    info: dict = {"kept": chosen, "variants": {}}
    for variant, result in candidates:
        row = result.row(reference_accuracy)
        info["variants"][variant] = {
            "accuracy": row["accuracy"],
            "size_bytes": row["size_bytes"],
            "latency_ms": row["latency"]["median_ms"],
            "gates_failed": gate_failures(row, gates),
        }
        current = layout.artifact(recipe_name, "onnx", FILE_TAGS[variant])
        if variant == chosen:
            os.replace(current, layout.artifact(recipe_name, "onnx"))
            result.path = final.artifact(recipe_name, "onnx")
        else:
            result.name = f"{recipe_name}.{FILE_TAGS[variant]}"  # own row: not what the gates judge
            result.path = layout.relocate(current, final)
        info["variants"][variant]["file"] = result.path.name
    return [r for _, r in candidates], info
