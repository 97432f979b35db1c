"""The post-training conversion steps, carried out by the exporter: float16, dynamic, int8, int16x8
by the TFLite converter; aeq_int8, aeq_a16w8, aeq_int4 by the LiteRT Quantizer (export/aeq.py).

recipes/ptq.py and recipes/aeq.py declare each step's parameters; here each step type gets its
conversion and what belongs to it after conversion: the tolerance its artifact must keep against
the Keras model, whether ONNX Runtime's own quantizer and the int8 diagnostics apply to it, which
tool produced it (recorded in meta.json as ``backend``) and why it has no ONNX, if it has none.
The pipeline asks ``CONVERSIONS[step type]`` instead of branching on the type.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compressor.export import aeq
from compressor.export.sparse_float import convert_sparse_float
from compressor.export.tflite import convert, write_tflite
from compressor.pipeline.validation import FLOAT16_ATOL, FLOAT32_ATOL, ArtifactResult, ExportMismatch
from compressor.recipes.aeq import AeqInt4Params, AeqInt8Params, AeqStaticParams
from compressor.recipes.ptq import CalibratedParams, Int8Params
from compressor.recipes.stepio import write_info
from compressor.runtime.errors import UserError
from compressor.runtime.latency import file_size

CONVERTER = "converter"  # tf.lite.TFLiteConverter (compressor/export/tflite.py)


@dataclass(frozen=True)
class Conversion:
    """A conversion step type: ``convert(model, data, params) -> (flatbuffer, info for meta.json)``."""

    convert: Callable[[Any, Any, Any], tuple[bytes, dict]]
    keras_atol: float | None = None  # the artifact must stay this close to the Keras model's outputs
    onnx_quantizers: bool = False  # int8 only: --onnx-quant may add ONNX Runtime's own quantization
    int8_diagnostics: bool = False  # int8 only: --debug-quant and the automatic float-layer fallback
    backend: str = CONVERTER  # or aeq.DISTRIBUTION; meta.json records it with AEQ's version
    # params -> why this step makes no ONNX (None: it does); a recipe's ONNX export is then skipped
    no_onnx: Callable[[Any], str | None] | None = None

    def onnx_reason(self, params: Any) -> str | None:
        return self.no_onnx(params) if self.no_onnx is not None else None


def _float16(model: Any, data: Any, params: Any) -> tuple[bytes, dict]:
    return convert(model, "float16"), {}


def _dynamic(model: Any, data: Any, params: Any) -> tuple[bytes, dict]:
    return convert(model, "dynamic"), {}


def _int16x8(model: Any, data: Any, params: CalibratedParams) -> tuple[bytes, dict]:
    sample = params.calibration(data)
    return convert(model, "int16x8", sample, params.io_dtype), _calibration_info(params, sample)


def _int8(model: Any, data: Any, params: Int8Params) -> tuple[bytes, dict]:
    from compressor.inspection.tflite import float_ops

    sample = params.calibration(data)
    info = _calibration_info(params, sample)
    if params.activation_ranges != "minmax":
        flatbuffer, info["activation_ranges"], float_layers = _int8_with_ranges(model, sample, params)
        if float_layers:
            info["float_layers"] = float_layers
    elif params.float_layers:
        from compressor.export.selective import convert_with_float_layers

        flatbuffer, info["float_layers"] = convert_with_float_layers(
            model, sample, params.io_dtype, params.float_layers
        )
    else:
        flatbuffer = convert(model, "int8", sample, params.io_dtype)
    info["float_ops"] = float_ops(flatbuffer)
    if info["float_ops"] and not params.float_layers and not params.allow_float_ops:
        ops = ", ".join(f"{op} (x{n})" for op, n in info["float_ops"].items())
        raise UserError(
            f"int8: {ops} ha{'s' if len(info['float_ops']) == 1 else 've'} no int8 kernel and would run "
            "in float32 between Dequantize/Quantize, so the model is not full-integer (integer-only "
            "accelerators reject it); set allow_float_ops: true in the int8 step's params to keep "
            "them in float, or use the int16x8 or dynamic recipe"
        )
    return flatbuffer, info


def _int8_with_ranges(model: Any, sample: np.ndarray, params: Int8Params) -> tuple[bytes, dict, list[str]]:
    """int8 through the debugger's calibrated model, whose min/max ranges export/ranges.py replaced
    (the converter itself quantizes straight after calibrating); float_layers stay float as usual."""
    from compressor.export.quant_debug import QuantDebugger, layer_label
    from compressor.export.selective import resolve_layers

    debugger = QuantDebugger(model, sample, params.io_dtype, params.activation_ranges)
    nodes = resolve_layers(params.float_layers, debugger.nodes)
    return debugger.quantized_model(nodes), debugger.ranges or {}, [layer_label(n, "") for n in nodes]


def _calibration_info(params: CalibratedParams, sample: Any) -> dict:
    return {"calibration": {"source": params.calibration_source, "samples": int(len(sample))}}


def _aeq_int8(model: Any, data: Any, params: AeqInt8Params) -> tuple[bytes, dict]:
    return _aeq_static(model, data, params, "aeq_int8", 8, params.int16_layers)


def _aeq_a16w8(model: Any, data: Any, params: AeqStaticParams) -> tuple[bytes, dict]:
    return _aeq_static(model, data, params, "aeq_a16w8", 16, [])


def _aeq_static(model: Any, data: Any, params: AeqStaticParams, step: str, bits: int, int16: list) -> tuple:
    from compressor.inspection.tflite import float_ops

    sample = params.calibration(data)
    flatbuffer, info = aeq.quantize_static(model, sample, step, bits, params.float_layers, int16)
    # Unlike the converter's int8 step, ops AEQ cannot quantize stay float without an error: listed here.
    return flatbuffer, {**_calibration_info(params, sample), **info, "float_ops": float_ops(flatbuffer)}


def _aeq_int4(model: Any, data: Any, params: AeqInt4Params) -> tuple[bytes, dict]:
    return aeq.quantize_int4(model, "aeq_int4", params.block_size)


# Measured with tf2onnx 1.17 on AEQ's outputs: an int4 .tflite stops it at once (KeyError on tensor
# type 17, INT4); an a16w8 one becomes a graph ONNX Runtime refuses (DequantizeLinear fed int64); a
# float op between int8 ones gives "Graph has cycles", an int16 op one that fails onnx.checker.
def _no_int4_onnx(params: Any) -> str:
    return "tf2onnx cannot read int4 tensors"


def _no_a16w8_onnx(params: Any) -> str:
    return "tf2onnx writes an invalid graph for int16 activations (ONNX Runtime has no int16 QDQ below opset 21)"


def _no_sparse_onnx(params: Any) -> str:
    return "tf2onnx cannot read sparse (DENSIFY) tensors, and ONNX Runtime has no sparse convolutions"


def _no_mixed_onnx(params: AeqInt8Params) -> str | None:
    if params.float_layers or params.int16_layers:
        return "tf2onnx cannot convert AEQ's mixed graphs (float_layers, int16_layers)"
    return None


CONVERSIONS: dict[str, Conversion] = {
    "float16": Conversion(_float16, keras_atol=FLOAT16_ATOL),
    "sparse_float": Conversion(convert_sparse_float, keras_atol=FLOAT32_ATOL, no_onnx=_no_sparse_onnx),
    "dynamic": Conversion(_dynamic),
    "int8": Conversion(_int8, onnx_quantizers=True, int8_diagnostics=True),
    "int16x8": Conversion(_int16x8),
    "aeq_int8": Conversion(_aeq_int8, backend=aeq.DISTRIBUTION, no_onnx=_no_mixed_onnx),
    "aeq_a16w8": Conversion(_aeq_a16w8, backend=aeq.DISTRIBUTION, no_onnx=_no_a16w8_onnx),
    "aeq_int4": Conversion(_aeq_int4, backend=aeq.DISTRIBUTION, no_onnx=_no_int4_onnx),
}


def run_conversion(step_type: str, model: Any, data: Any, params: Any, workdir: Path) -> Path:
    """Carry out a recipe's conversion step: ``workdir``/model.tflite, its figures in info.json."""
    conversion = CONVERSIONS[step_type]
    flatbuffer, info = conversion.convert(model, data, params)
    info = {"backend": aeq.backend() if conversion.backend == aeq.DISTRIBUTION else CONVERTER, **info}
    if conversion.onnx_reason(params):
        info["onnx"] = f"not exported: {conversion.onnx_reason(params)}"
    write_info(workdir, info)  # the chain copies it into the step's meta.json
    return write_tflite(workdir / "model.tflite", flatbuffer)


def measure_conversion(ctx: Any, path: Path, name: str, conversion: Conversion) -> ArtifactResult:
    """``ctx.measure`` of a recipe's .tflite, where an AEQ output that LiteRT cannot load or run (a
    weight type or op without a kernel in this ai-edge-litert) fails its check instead of the run.

    Our own converter's outputs have always run: a failure there still ends the run, as before.
    """
    try:
        return ctx.measure(path, name, "tflite")
    except UserError as e:
        if conversion.backend == CONVERTER:
            raise
        reason = f"LiteRT cannot run it: {e}"
    ctx.progress(f"  {name}: {reason}")
    metrics = {  # zeros in place of figures that do not exist; the mismatch marks the row as failed
        "accuracy": {"samples": int(len(ctx.data.y_test)), "top1": 0.0, "agreement": {"top1_agreement": 0.0}},
        "size": file_size(path),
        "latency": {"runs": 0, "median_ms": 0.0, "p90_ms": 0.0, "threads": ctx.threads, "error": reason},
    }
    result = ArtifactResult(name, "tflite", ctx.layout.relocate(path, ctx.final), metrics, np.zeros((0,)))
    result.mismatches.append(ExportMismatch(name, "LiteRT", reason))
    return result
