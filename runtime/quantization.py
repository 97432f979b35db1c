"""Convert between float data and a model's quantized input/output tensors.

Affine quantization as TFLite defines it: ``real = (q - zero_point) * scale``.
"""

from __future__ import annotations

import numpy as np

from .interpreters import TensorInfo

_QUANTIZED = ("int8", "uint8", "int16")


def quantize_input(x_float: np.ndarray, info: TensorInfo) -> np.ndarray:
    """Float data -> the input tensor's dtype: ``q = round(x / scale) + zero_point``, clipped.

    Float inputs (and integer inputs without quantization parameters, e.g. token ids) are cast.
    """
    x = np.asarray(x_float)
    if info.dtype not in _QUANTIZED or info.scale == 0.0:
        return x.astype(info.dtype)
    limits = np.iinfo(info.dtype)
    scaled = x.astype(np.float64) / info.scale
    # Round half away from zero like TFLite's Quantize kernel (std::round), not numpy's half-to-even.
    q = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5) + info.zero_point
    return np.clip(q, limits.min, limits.max).astype(info.dtype)


def dequantize_output(y: np.ndarray, info: TensorInfo) -> np.ndarray:
    """Raw output -> float32: ``(y - zero_point) * scale`` when quantized, a plain cast otherwise."""
    y = np.asarray(y)
    if info.dtype not in _QUANTIZED or info.scale == 0.0:
        return y.astype(np.float32)
    return (y.astype(np.float32) - np.float32(info.zero_point)) * np.float32(info.scale)
