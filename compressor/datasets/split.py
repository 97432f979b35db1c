"""Seeded, stratified train/holdout splitting (numpy only: no sklearn.model_selection import)."""

from __future__ import annotations

import numpy as np

from compressor.runtime.errors import UserError


def stratified_split(
    y: np.ndarray, fraction: float, rng: np.random.Generator, holdout: str
) -> tuple[np.ndarray, np.ndarray]:
    """Return sorted index arrays (keep, take) with ``take`` holding ~``fraction`` of every class.

    The holdout size is round(fraction * n), clamped to [1, n - 1] so that neither side is empty
    on tiny data sets. ``holdout`` names the split being made ("test", "val") for error messages.
    """
    n = len(y)
    if n < 2:
        raise UserError(
            f"cannot split a {holdout} set off {n} sample(s); provide at least 2 samples or an explicit {holdout} split"
        )
    n_take = min(max(1, round(fraction * n)), n - 1)
    classes, counts = np.unique(y, return_counts=True)
    ideal = counts * (n_take / n)
    per_class = np.floor(ideal).astype(np.int64)
    # Largest-remainder rounding keeps the total exactly n_take while each class stays within
    # one sample of its proportional share; the stable sort makes ties deterministic.
    leftover = n_take - int(per_class.sum())
    per_class[np.argsort(-(ideal - per_class), kind="stable")[:leftover]] += 1
    take = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, per_class)])
    is_taken = np.zeros(n, dtype=bool)
    is_taken[take] = True
    return np.flatnonzero(~is_taken), np.flatnonzero(is_taken)


def holdout_indices(
    y: np.ndarray, missing: list[str], seed: int, fractions: tuple[tuple[str, float], ...]
) -> dict[str, np.ndarray]:
    """Indices into a pool of labels ``y`` for each ``missing`` holdout split and for what stays train.

    The holdouts are taken in the order of ``fractions`` (test first, so the test set does not depend
    on the validation fraction), each from what the earlier ones left, with one seeded generator:
    the same seed always gives the same splits, whether the data is in memory or streamed.
    """
    rng = np.random.default_rng(seed)
    keep_idx = np.arange(len(y))
    out = {}
    for holdout, fraction in fractions:
        if holdout in missing:
            keep, take = stratified_split(y[keep_idx], fraction, rng, holdout)
            out[holdout], keep_idx = keep_idx[take], keep_idx[keep]
    out["train"] = keep_idx
    return out
