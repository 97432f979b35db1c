"""The accuracy constraint of `compressor search`, with the noise of a small validation split.

A search compares tens of candidates and ships the smallest feasible one. Judged on the point
estimate (reference accuracy - candidate accuracy on n validation samples) the winner is biased:
the candidate that *just* passes is the one most likely to have been lucky (winner's curse), and
on 144 samples one sample is 0.69 pt. So a candidate is feasible when an upper confidence bound
of its drop is within the limit.

Both models are scored on the same samples, so the drop is a *paired* difference. With
``losses`` b = samples the reference gets right and the candidate wrong, and ``gains`` c = the
reverse, the drop is (b - c) / n. Its variance (McNemar's setting) is
    var = (b + c - (b - c)^2 / n) / n^2,
and we use Agresti & Min's adjustment (2005, "Simple improved confidence intervals for comparing
matched proportions", Stat. Med. 24:729): add 0.5 to each of the four cells (n -> n + 2), so a
candidate that agrees everywhere still carries the uncertainty of n samples. The one-sided upper
bound at confidence q is  drop' + z_q * sqrt(var'),  z_q the standard normal quantile.
confidence 0.5 gives z = 0: the plain point estimate, without the adjustment.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np


def paired_counts(outputs: np.ndarray, reference: np.ndarray, labels: np.ndarray) -> tuple[int, int]:
    """(losses, gains): samples only the reference gets right, and samples only the candidate does."""
    ref_ok = np.asarray(reference).argmax(1) == labels
    cand_ok = np.asarray(outputs).argmax(1) == labels
    return int(np.sum(ref_ok & ~cand_ok)), int(np.sum(~ref_ok & cand_ok))


def drop_upper_bound(losses: int, gains: int, n: int, confidence: float) -> float:
    """One-sided upper confidence bound of the accuracy drop (a fraction; negative = a gain)."""
    if n <= 0:
        raise ValueError("no validation samples")
    if confidence <= 0.5:
        return (losses - gains) / n
    b, c, m = losses + 0.5, gains + 0.5, n + 2
    var = max(b + c - (b - c) ** 2 / m, 0.0) / m**2
    return (b - c) / m + NormalDist().inv_cdf(confidence) * math.sqrt(var)


def smallest_certifiable_drop(n: int, confidence: float) -> float:
    """The bound of a candidate that agrees with the reference on every sample: no limit below it can be met."""
    return drop_upper_bound(0, 0, n, confidence)
