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

from compressor.runtime.errors import UserError

from .base import StepParams, register


class Float16Params(StepParams):
    pass


class DynamicParams(StepParams):
    pass


class Int8Params(StepParams):
    calibration_samples: int = Field(200, ge=1, le=100_000, description="training samples used to calibrate activation ranges")
    io_dtype: Literal["int8", "float32"] = Field("int8", description="dtype of the model's input and output tensors")


class Int16x8Params(StepParams):
    calibration_samples: int = Field(200, ge=1, le=100_000, description="training samples used to calibrate activation ranges")
    io_dtype: Literal["int16", "float32"] = Field("float32", description="dtype of the model's input and output tensors")


def convert(model: Any, mode: str, calibration: np.ndarray | None = None, io_dtype: str = "float32") -> bytes:
    """Convert a LoadedModel to TFLite flatbuffer bytes. mode: float32|float16|dynamic|int8|int16x8."""
    from compressor.keras_shim import tf
    from compressor.runtime.quiet import native_stderr_silenced

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
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        io = {"int8": tf.int8, "int16": tf.int16, "float32": tf.float32}[io_dtype]
        converter.inference_input_type = io
        converter.inference_output_type = io
    try:
        # The converter warns about its own deprecated tf.lite.Interpreter and unset input
        # statistics during calibration: nothing the user can act on.
        with native_stderr_silenced(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return converter.convert()
    except Exception as e:
        lines = [ln for ln in str(e).splitlines() if "error" in ln.lower()] or str(e).splitlines() or [type(e).__name__]
        raise UserError(f"TFLite conversion ({mode}) failed: {lines[0].strip()[:300]}") from None


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


def calibration_sample(data: Any, n: int, seed: int = 0) -> np.ndarray:
    """A seeded random sample of the training split (a fixed first-n slice can be class-skewed)."""
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(data.x_train))[: min(n, len(data.x_train))]
    return data.x_train[np.sort(idx)]


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
    sample = calibration_sample(data, params.calibration_samples)
    return _write(workdir, convert(model, "int8", sample, params.io_dtype))


@register("int16x8", "int16 activations with int8 weights: closer to float than int8", Int16x8Params, "convert")
def int16x8(model: Any, data: Any, params: Int16x8Params, workdir: Path) -> Path:
    sample = calibration_sample(data, params.calibration_samples)
    return _write(workdir, convert(model, "int16x8", sample, params.io_dtype))
