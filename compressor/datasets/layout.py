"""How arrays are read: the model's input shape decides, not the rank of the arrays alone.

A sample of shape (40, 1) is a 40-step, 1-channel sequence when the model takes (40, 1), and an
8x8 array is a grayscale image when the model takes (8, 8, 1). Without a model (``compressor
train`` builds one from the data) rank decides: (N, F) vectors, (N, H, W) grayscale images,
(N, T, C) or (N, H, W, C) as they are.
"""

from __future__ import annotations

import math

import numpy as np

from compressor.runtime.errors import UserError

NUMERIC_KINDS = "biuf"  # bool, signed int, unsigned int, float
LAYOUT_BY_RANK = {1: "NC", 2: "NTC", 3: "NHWC"}
Shape = tuple[int | None, ...]


def arrange(name: str, x: np.ndarray, model_shape: Shape | None) -> np.ndarray:
    """``x`` (N, ...) as the model reads it: as-is, with a trailing channel axis, or flattened.

    ``model_shape`` is one sample's shape (None for unknown dimensions), or None when there is
    no model yet. Arrays that fit no rule are returned unchanged: the shape check that follows
    (pipeline/preflight.py) names both shapes.
    """
    if x.dtype.kind not in NUMERIC_KINDS:
        raise UserError(f"{name} has dtype {x.dtype}; inputs must be numeric (uint8 or float)")
    if x.ndim < 2:
        raise UserError(f"{name} has shape {x.shape}; expected (N, features), (N, steps, channels) or (N, H, W, C)")
    sample = tuple(x.shape[1:])
    if model_shape is None:
        return _by_rank(name, x)
    model_shape = tuple(model_shape)
    if _fits(sample, model_shape):
        return x
    if len(model_shape) == len(sample) + 1 and model_shape[-1] == 1:
        # (N, H, W) for an (H, W, 1) model, (N, T) for (T, 1): the channel axis is missing. Added even
        # when H, W differ from the model's, so the shape error names comparable shapes.
        return x[..., np.newaxis]
    known = None not in model_shape
    if len(model_shape) == 1 and known and math.prod(sample) == model_shape[0]:
        return x.reshape(len(x), -1)
    if len(sample) == 3 and len(model_shape) == 3 and _fits(sample[1:] + sample[:1], model_shape):
        raise UserError(
            f"{name} has samples of shape {sample}, channels-first, but the model takes {model_shape} "
            "(channels-last); save it with x.transpose(0, 2, 3, 1)"
        )
    return x


def _fits(sample: tuple[int, ...], model_shape: Shape) -> bool:
    return len(sample) == len(model_shape) and all(m is None or m == s for s, m in zip(sample, model_shape))


def _by_rank(name: str, x: np.ndarray) -> np.ndarray:
    """No model to ask: (N, F) vectors, (N, H, W) grayscale images, (N, H, W, C) images."""
    if x.ndim == 3:
        return x[..., np.newaxis]
    if x.ndim == 4 and x.shape[1] in (1, 3, 4) and x.shape[-1] > 4:
        raise UserError(
            f"{name} has shape {x.shape}, which looks channels-first; save it as NHWC with x.transpose(0, 2, 3, 1)"
        )
    if x.ndim > 4:
        raise UserError(f"{name} has shape {x.shape}; expected (N, features), (N, H, W) or (N, H, W, C)")
    return x


def layout_of(sample_shape: tuple[int, ...]) -> str:
    """NC, NTC or NHWC for one sample's shape; other ranks are refused."""
    layout = LAYOUT_BY_RANK.get(len(sample_shape))
    if layout is None:
        raise UserError(
            f"samples of shape {tuple(sample_shape)} have {len(sample_shape)} dimensions; supported are "
            "(features,), (steps, channels) and (height, width, channels)"
        )
    return layout


def channel_order_of(layout: str, channels: int, told: str) -> str:
    """The reader's own channel order if it knows one that fits, else what the channel count says.

    Vectors stay "gray" (the formula is per feature; runs recorded so far say so).
    """
    if told in ("RGB", "RGBA") and channels == len(told):
        return told
    if layout == "NC" or channels == 1:
        return "gray"
    if layout == "NHWC" and channels == 3:
        return "RGB"
    return "channels"
