"""Post-training quantization steps: float16, dynamic-range int8, full-integer int8, int16x8.

Each converts the incoming model with TensorFlow Lite's converter and ends the chain.
Full-integer modes calibrate activation ranges on a representative sample of the training
split (Jacob et al. 2018, arXiv:1712.05877): x_q = round(x / scale) + zero_point.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from compressor.recipes.base import StepParams, register
from compressor.runtime.errors import UserError


class Float16Params(StepParams):
    """No parameters: weights are stored as float16 and computed in float32."""


class DynamicParams(StepParams):
    """No parameters: weights are int8, activations are quantized on the fly at run time."""


CalibrationSource = Literal["train", "val"]


class Int8Params(StepParams):
    calibration_samples: int = Field(
        200, ge=1, le=100_000, description="training samples used to calibrate activation ranges"
    )
    io_dtype: Literal["int8", "float32"] = Field("int8", description="dtype of the model's input and output tensors")
    calibration_source: CalibrationSource = Field("train", description="split the calibration samples are drawn from")
    float_layers: list[str] = Field(
        default_factory=list,
        description="layers kept in float (Keras layer or tensor names, see --debug-quant); the rest stays int8",
    )
    auto_float_layers: int = Field(
        0,
        ge=0,
        le=50,
        description="when the accuracy gate fails, keep up to this many "
        "of the layers with the largest quantization error in float (0: off)",
    )
    allow_float_ops: bool = Field(False, description="accept ops that have no int8 kernel and so run in float")


class Int16x8Params(StepParams):
    calibration_samples: int = Field(
        200, ge=1, le=100_000, description="training samples used to calibrate activation ranges"
    )
    io_dtype: Literal["int16", "float32"] = Field(
        "float32", description="dtype of the model's input and output tensors"
    )
    calibration_source: CalibrationSource = Field("train", description="split the calibration samples are drawn from")


def convert(model: Any, mode: str, calibration: np.ndarray | None = None, io_dtype: str = "float32") -> bytes:
    """Convert a LoadedModel to TFLite flatbuffer bytes. mode: float32|float16|dynamic|int8|int16x8."""
    return run_converter(make_converter(model, mode, calibration, io_dtype), mode)


def make_converter(model: Any, mode: str, calibration: np.ndarray | None = None, io_dtype: str = "float32") -> Any:
    """The configured tf.lite.TFLiteConverter (the quantization debugger reuses it)."""
    from compressor.keras_shim import tf

    if model.keras is not None:
        converter = tf.lite.TFLiteConverter.from_keras_model(model.keras)
    else:
        converter = tf.lite.TFLiteConverter.from_saved_model(str(model.saved_model_dir))
    if mode != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif mode in ("int8", "int16x8"):
        sample = check_calibration(calibration, model.input_shape)
        converter.representative_dataset = lambda: ([row[None, ...]] for row in sample)
        if mode == "int8":
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        else:
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
            ]
        io = {"int8": tf.int8, "int16": tf.int16, "float32": tf.float32}[io_dtype]
        converter.inference_input_type = io
        converter.inference_output_type = io
    return converter


def run_converter(converter: Any, mode: str) -> bytes:
    from compressor.runtime.quiet import native_stderr_silenced

    try:
        # The converter warns about its own deprecated tf.lite.Interpreter and unset input
        # statistics during calibration: nothing the user can act on.
        with native_stderr_silenced(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return converter.convert()
    except Exception as e:
        raise UserError(f"TFLite conversion ({mode}) failed: {conversion_error(str(e))}") from None


def conversion_error(text: str) -> str:
    """The converter's MLIR diagnostics as one line; ops without any TFLite kernel named plainly."""
    import re

    missing = sorted(set(re.findall(r"'tf\.(\w+)' op is neither a custom op nor a flex op", text)))
    if missing:
        return (
            f"ops without a TFLite builtin kernel: {', '.join(missing)}; they would need Flex (SELECT_TF_OPS), "
            "which most devices lack: replace them in the model"
        )
    lines = [ln for ln in text.splitlines() if "error" in ln.lower()] or text.splitlines() or ["unknown error"]
    return lines[0].strip()[:300]


def check_calibration(sample: np.ndarray | None, input_shape: tuple) -> np.ndarray:
    """The calibration set must be non-empty, finite and shaped like the model input."""
    if sample is None or len(sample) == 0:
        raise UserError("calibration set is empty; full-integer quantization needs representative data (--data)")
    expected = tuple(input_shape)
    if sample.shape[1:] != expected and not _shape_fits(sample.shape[1:], expected):
        raise UserError(f"calibration data shape {sample.shape[1:]} does not match the model input {expected}")
    if not np.isfinite(sample).all():
        raise UserError("calibration data contains NaN or inf values; clean the data before quantizing")
    return sample.astype(np.float32, copy=False)


def _shape_fits(actual: tuple, expected: tuple) -> bool:
    return len(actual) == len(expected) and all(e is None or a == e for a, e in zip(actual, expected))


def calibration_sample(data: Any, n: int, seed: int = 0, source: str = "train") -> np.ndarray:
    """A seeded random sample of the ``source`` split (a fixed first-n slice can be class-skewed)."""
    pool = data.x_val if source == "val" else data.x_train
    if len(pool) == 0:
        raise UserError(
            f"calibration set is empty: the {source} split has no samples; choose another calibration_source"
        )
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(pool))[: min(n, len(pool))]
    return pool[np.sort(idx)]


def _write(workdir: Path, flatbuffer: bytes) -> Path:
    from compressor.runtime.atomic import write_bytes

    return write_bytes(workdir / "model.tflite", flatbuffer)


@register("float16", "float16 weights (half the size, float compute on CPU)", Float16Params, "convert")
def float16(model: Any, data: Any, params: Float16Params, workdir: Path) -> Path:
    return _write(workdir, convert(model, "float16"))


@register("dynamic", "dynamic-range int8: int8 weights, float activations, no calibration", DynamicParams, "convert")
def dynamic(model: Any, data: Any, params: DynamicParams, workdir: Path) -> Path:
    return _write(workdir, convert(model, "dynamic"))


@register("int8", "full-integer int8 weights and activations, calibrated on training data", Int8Params, "convert")
def int8(model: Any, data: Any, params: Int8Params, workdir: Path) -> Path:
    from compressor.inspection.tflite import float_ops
    from compressor.recipes.stepio import write_info

    sample = calibration_sample(data, params.calibration_samples, source=params.calibration_source)
    info: dict = {"calibration": {"source": params.calibration_source, "samples": int(len(sample))}}
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
    write_info(workdir, info)  # chain.py copies it into the step's meta.json
    return _write(workdir, flatbuffer)


@register("int16x8", "int16 activations with int8 weights: closer to float than int8", Int16x8Params, "convert")
def int16x8(model: Any, data: Any, params: Int16x8Params, workdir: Path) -> Path:
    sample = calibration_sample(data, params.calibration_samples, source=params.calibration_source)
    return _write(workdir, convert(model, "int16x8", sample, params.io_dtype))
