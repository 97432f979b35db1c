"""The post-training conversion steps (float16, dynamic, int8, int16x8), carried out by the exporter.

recipes/ptq.py declares each step's parameters; here each step type gets its conversion and
what belongs to it after conversion: the tolerance its artifact must keep against the Keras
model, and whether ONNX Runtime's own quantizer and the int8 diagnostics apply to it. The
pipeline asks ``CONVERSIONS[step type]`` instead of branching on the type.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compressor.export.tflite import convert, write_tflite
from compressor.pipeline.validation import FLOAT16_ATOL
from compressor.recipes.ptq import CalibratedParams, Int8Params
from compressor.recipes.stepio import write_info
from compressor.runtime.errors import UserError


@dataclass(frozen=True)
class Conversion:
    """A conversion step type: ``convert(model, data, params) -> (flatbuffer, info for meta.json)``."""

    convert: Callable[[Any, Any, Any], tuple[bytes, dict]]
    keras_atol: float | None = None  # the artifact must stay this close to the Keras model's outputs
    onnx_quantizers: bool = False  # int8 only: --onnx-quant may add ONNX Runtime's own quantization
    int8_diagnostics: bool = False  # int8 only: --debug-quant and the automatic float-layer fallback


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
    if params.float_layers:
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


def _calibration_info(params: CalibratedParams, sample: Any) -> dict:
    return {"calibration": {"source": params.calibration_source, "samples": int(len(sample))}}


CONVERSIONS: dict[str, Conversion] = {
    "float16": Conversion(_float16, keras_atol=FLOAT16_ATOL),
    "dynamic": Conversion(_dynamic),
    "int8": Conversion(_int8, onnx_quantizers=True, int8_diagnostics=True),
    "int16x8": Conversion(_int16x8),
}


def run_conversion(step_type: str, model: Any, data: Any, params: Any, workdir: Path) -> Path:
    """Carry out a recipe's conversion step: ``workdir``/model.tflite, its figures in info.json."""
    flatbuffer, info = CONVERSIONS[step_type].convert(model, data, params)
    if info:
        write_info(workdir, info)  # the chain copies it into the step's meta.json
    return write_tflite(workdir / "model.tflite", flatbuffer)
