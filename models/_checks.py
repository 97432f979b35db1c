"""Argument checks shared by the builders: bad values become one-line UserErrors.

Keras reports most of these late and obscurely (a negative width surfaces as a shape error
deep inside ``Conv2D.build``), so builders check their arguments before creating any layer.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

from compressor.runtime.errors import UserError


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def positive_int(name: str, value: Any) -> int:
    if not _is_int(value) or value < 1:
        raise UserError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def class_count(value: Any) -> int:
    # A softmax over one class is constantly 1: nothing to learn, so refuse it early.
    if not _is_int(value) or value < 2:
        raise UserError(f"num_classes must be an integer >= 2, got {value!r}")
    return int(value)


def positive_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not value > 0:
        raise UserError(f"{name} must be a number > 0, got {value!r}")
    return float(value)


def dropout_rate(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not 0 <= value < 1:
        raise UserError(f"dropout must be in [0, 1), got {value!r}")
    return float(value)


def scaled(count: int, width: float) -> int:
    """``count * width`` rounded, at least 1: a layer never disappears at small widths."""
    return max(1, round(count * width))


def input_shape(model: str, shape: Any, rank: int | None = None, min_side: int = 1) -> tuple[int, ...]:
    """``shape`` (without batch axis) as a tuple of positive ints, with ``rank`` axes if given
    and, for images, height and width of at least ``min_side``."""
    try:
        dims = tuple(shape)
    except TypeError:
        dims = None
    if not dims or not all(_is_int(d) and d >= 1 for d in dims):
        raise UserError(f"{model}: input_shape must be positive integers, e.g. (8, 8, 1); got {shape!r}")
    if rank is not None and len(dims) != rank:
        raise UserError(f"{model}: input_shape must have {rank} axes (height, width, channels); got {dims}")
    if rank == 3 and min(dims[:2]) < min_side:
        raise UserError(f"{model}: input must be at least {min_side}x{min_side}; got {dims}")
    return tuple(int(d) for d in dims)


def kernel_initializer(spec: Any) -> Any:
    """Check that Keras knows the initializer ``spec``; return it unchanged.

    The spec (a name, not an instance) is what layers receive, so each layer instantiates its
    own initializer rather than sharing one object.
    """
    from compressor.keras_shim import keras

    try:
        keras.initializers.get(spec)
    except (ValueError, TypeError):
        raise UserError(
            f"unknown kernel_initializer {spec!r}; use a Keras initializer name such as "
            "'he_normal', 'glorot_uniform', 'lecun_normal'"
        ) from None
    return spec
