"""Post-training quantization steps: float16, dynamic-range int8, full-integer int8, int16x8.

Each ends a recipe's chain. This module declares their parameters and how a calibration sample
is drawn; the conversion itself is the exporter's (compressor.export.conversions).
"""

from __future__ import annotations

import re
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from compressor.datasets.splits import split_of
from compressor.recipes.base import StepParams, register_conversion
from compressor.runtime.errors import UserError


class Float16Params(StepParams):
    """No parameters: weights are stored as float16 and computed in float32."""


class DynamicParams(StepParams):
    """No parameters: weights are int8, activations are quantized on the fly at run time."""


class CalibratedParams(StepParams):
    """What every full-integer mode shares: how activation ranges are calibrated."""

    calibration_samples: int = Field(
        200, ge=1, le=100_000, description="training samples used to calibrate activation ranges"
    )
    calibration_source: Literal["train", "val"] = Field(
        "train", description="split the calibration samples are drawn from"
    )

    def calibration(self, data: Any, seed: int = 0) -> np.ndarray:
        """The sample this step calibrates on (the debugger and ONNX Runtime reuse it exactly)."""
        return calibration_sample(data, self.calibration_samples, seed=seed, source=self.calibration_source)


class Int8Params(CalibratedParams):
    io_dtype: Literal["int8", "float32"] = Field("int8", description="dtype of the model's input and output tensors")
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
    activation_ranges: str = Field(
        "minmax",
        description="how each activation tensor's int8 range is chosen on the calibration sample: minmax "
        "(the converter's), percentile:P (e.g. percentile:99.99) or mse (least squared error, clipping included)",
    )

    @field_validator("activation_ranges")
    @classmethod
    def _range_method(cls, v: str) -> str:
        return check_range_method(v)


RANGE_METHOD = re.compile(r"^(minmax|mse|percentile:(\d+(\.\d+)?))$")


def check_range_method(text: str) -> str:
    """minmax | mse | percentile:P with 50 < P <= 100; a ValueError names the accepted forms."""
    match = RANGE_METHOD.match(text)
    if not match or (match.group(2) and not 50 < float(match.group(2)) <= 100):
        raise ValueError(f"{text!r}: expected minmax, mse or percentile:P with 50 < P <= 100 (e.g. percentile:99.99)")
    return text


class Int16x8Params(CalibratedParams):
    io_dtype: Literal["int16", "float32"] = Field(
        "float32", description="dtype of the model's input and output tensors"
    )


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
    """A seeded random sample of the ``source`` split (a fixed first-n slice can be class-skewed);
    only these ``n`` samples are read into memory when the data is streamed (datasets/splits.py)."""
    pool = split_of(data, source)
    if len(pool) == 0:
        raise UserError(
            f"calibration set is empty: the {source} split has no samples; choose another calibration_source"
        )
    return pool.take(n, seed)[0]


register_conversion("float16", "float16 weights (half the size, float compute on CPU)", Float16Params)
register_conversion("dynamic", "dynamic-range int8: int8 weights, float activations, no calibration", DynamicParams)
register_conversion("int8", "full-integer int8 weights and activations, calibrated on training data", Int8Params)
register_conversion("int16x8", "int16 activations with int8 weights: closer to float than int8", Int16x8Params)
