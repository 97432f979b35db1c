"""--preprocess: which formula turns raw values into model inputs, and why.

Modes: ``none`` (raw values as float32), ``scale`` (the format's default: x/255 for 8-bit data,
x/16 for digits, floats as read), ``scale:F`` (x * F, e.g. ``scale:1/255``), ``mean-std``
(the default scale, then per-channel standardisation with the training split's statistics) and
``auto`` (the default): the mode recorded with the model if any, else ``none`` when the model
preprocesses its own input (Rescaling, Normalization, ``x / c`` at the input), else ``scale``.
Nothing is ever applied twice silently: the chosen mode and its reason are recorded with the data.
"""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

import numpy as np

from compressor.datasets.model_input import ModelInput, number_text
from compressor.datasets.preprocessing import Preprocessing
from compressor.runtime.errors import UserError

MODES = ("auto", "none", "scale", "scale:F", "mean-std")


def parse_mode(text: str) -> str:
    """The canonical spelling of a --preprocess value; a one-line error naming the valid ones."""
    mode = text.strip().lower()
    if mode in ("auto", "none", "scale", "mean-std"):
        return mode
    if mode.startswith("scale:"):
        return f"scale:{number_text(scale_factor(mode))}"
    raise UserError(f"--preprocess {text!r} is not a mode; valid: {', '.join(MODES)} (e.g. scale:1/255)")


def scale_factor(mode: str) -> float:
    text = mode.split(":", 1)[1]
    try:
        value = float(Fraction(text.replace(" ", "")))
    except (ValueError, ZeroDivisionError):
        raise UserError(f"--preprocess {mode}: {text!r} is not a number; write e.g. scale:0.5 or scale:1/255") from None
    if not 0 < abs(value) < 1e9:
        raise UserError(f"--preprocess {mode}: the factor must be non-zero and below 1e9 in size")
    return value


def choose(
    mode: str, base: Preprocessing, model: ModelInput | None, raw_train: np.ndarray
) -> tuple[Preprocessing, str]:
    """The formula for ``mode`` on data whose format reads as ``base``, and a line saying why."""
    mode = parse_mode(mode)
    given = mode != "auto"
    if not given:
        mode, source = _auto(base, model)
    else:
        source = "given with --preprocess"
        if model is not None and model.in_model and mode != "none":
            source += f"; note: the model also preprocesses its input itself ({', '.join(model.in_model)})"
    if mode == "none":
        prep = replace(base, scale=1.0, mean=(0.0,), std=(1.0,))
    elif mode.startswith("scale:"):
        prep = replace(base, scale=scale_factor(mode), mean=(0.0,), std=(1.0,))
    elif mode == "mean-std":
        prep = _standardised(base, raw_train)
    else:
        prep = base
    if model is not None and model.in_model and mode == "none" and _unit_range(raw_train):
        source += "; the data already lies in [0, 1]: if it was scaled before, the model scales it again"
    return replace(prep, mode=mode), f"{describe(prep)}: {source}"


def _auto(base: Preprocessing, model: ModelInput | None) -> tuple[str, str]:
    if model is not None and model.recorded:
        return model.recorded, "recorded with the model (compressor-model.json)"
    if model is not None and model.in_model:
        return "none", f"the model preprocesses its input itself ({', '.join(model.in_model)})"
    if model is not None and not model.inspected and model.shape is not None:
        return "scale", (
            "the format's default; the model has no Keras layers to inspect, pass --preprocess none if it "
            "scales its own inputs"
        )
    if model is None:
        return "scale", "the format's default"
    return "scale", "the format's default, the model has no preprocessing layer"


def describe(prep: Preprocessing) -> str:
    """``x/255``, ``x * 0.5``, ``(x/255 - mean) / std``, ``raw values``."""
    if prep.scale == 1.0:
        scaled = "x"
    elif 0 < prep.scale < 1 and number_text(prep.scale).startswith("1/"):
        scaled = f"x/{number_text(prep.scale)[2:]}"
    else:
        scaled = f"x * {number_text(prep.scale)}"
    if any(m != 0 for m in prep.mean) or any(s != 1 for s in prep.std):
        return f"({scaled} - mean) / std per channel"
    return "raw values" if scaled == "x" else scaled


def _standardised(base: Preprocessing, raw_train: np.ndarray) -> Preprocessing:
    """Per-channel mean/std of the scaled training split, recorded in the formula."""
    scaled = base.apply(raw_train)
    axes = tuple(range(scaled.ndim - 1))
    mean = scaled.mean(axis=axes, dtype=np.float64)
    std = scaled.std(axis=axes, dtype=np.float64)
    # A constant channel (e.g. an always-black border pixel in flat vectors) would divide by zero.
    std = np.where(std > 0, std, 1.0)
    return replace(base, mean=tuple(np.atleast_1d(mean)), std=tuple(np.atleast_1d(std)))


def _unit_range(raw: np.ndarray) -> bool:
    return raw.dtype.kind == "f" and raw.size > 0 and float(raw.min()) >= 0.0 and float(raw.max()) <= 1.0
