"""Preprocessing: the one formula that turns raw input values into model inputs.

It is recorded next to every compressed model so that the device applies exactly the same
transform as training did: x = (raw * scale - mean) / std, broadcast over the last (channel) axis.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from compressor.runtime.errors import UserError

# (N, H, W, C) images or stacked 2-D signals, (N, T, C) sequences, (N, F) vectors.
LAYOUTS = ("NHWC", "NTC", "NC")
# "channels": C values that are not colours (sensor axes, spectrogram stacks, 2 or 5+ planes).
CHANNEL_ORDERS = ("gray", "RGB", "RGBA", "channels")
# Fields recorded only when set, so runs recorded before they existed compare equal.
OPTIONAL = ("mode", "image")


@dataclass(frozen=True)
class Preprocessing:
    """How raw input values become model inputs: x = (raw * scale - mean) / std, per channel.

    ``mean`` and ``std`` hold one value (shared by all channels) or one per channel; for the
    flat "NC" layout a "channel" is a feature. ``input_range`` is the range of the RAW values,
    which int8 calibration and on-device input checks rely on. ``mode`` is the --preprocess
    choice that produced this formula (why it was chosen is the Dataset's ``preprocess_reason``);
    ``image`` how image files were fitted to the model input (runtime/image_fit.py).
    """

    scale: float = 1.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    layout: str = "NHWC"
    channel_order: str = "gray"
    input_range: tuple[float, float] = (0.0, 255.0)
    mode: str = ""
    image: dict | None = None

    def __post_init__(self) -> None:
        # Normalise to plain Python floats in tuples: the instance stays hashable and to_dict()
        # round-trips through JSON no matter whether lists or numpy scalars were passed in.
        for name in ("mean", "std", "input_range"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        object.__setattr__(self, "scale", float(self.scale))
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {self.channel_order!r}")
        if not self.mean or not self.std:
            raise ValueError("mean and std need at least one value")
        if any(s == 0.0 or not math.isfinite(s) for s in self.std):
            raise ValueError(f"std values must be finite and non-zero, got {self.std}")
        if len(self.input_range) != 2 or self.input_range[0] > self.input_range[1]:
            raise ValueError(f"input_range must be (low, high) with low <= high, got {self.input_range}")

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Return the model input for ``raw`` (a batch or a single sample) as float32."""
        x = np.asarray(raw, dtype=np.float32)
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        channels = max(mean.size, std.size)
        if channels > 1 and (x.ndim == 0 or x.shape[-1] != channels):
            got = x.shape[-1] if x.ndim else 0
            raise UserError(
                f"input has {got} channels on its last axis but the preprocessing has "
                f"{channels} per-channel values; pass inputs in {self.layout} layout"
            )
        return (x * np.float32(self.scale) - mean) / std

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (tuples become lists; unset optional fields left out)."""
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        return {k: v for k, v in d.items() if k not in OPTIONAL or v}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessing:
        """Inverse of :meth:`to_dict`; a bad dict (e.g. an edited meta.json) is a UserError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(f"unknown preprocessing field(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        try:
            return cls(**d)
        except (TypeError, ValueError) as e:
            raise UserError(f"invalid preprocessing settings: {e}") from None
