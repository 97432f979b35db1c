"""The search's accuracy constraint: paired counts and the upper confidence bound of the drop."""

from __future__ import annotations

import numpy as np
import pytest

from compressor.tuning.constraint import drop_upper_bound, paired_counts, smallest_certifiable_drop


def test_paired_counts():
    labels = np.array([0, 1, 2, 0, 1])
    ref = np.eye(3)[[0, 1, 0, 1, 1]]  # right, right, wrong, wrong, right
    cand = np.eye(3)[[0, 2, 2, 0, 1]]  # right, wrong, right, right, right
    assert paired_counts(cand, ref, labels) == (1, 2)


def test_bound_values():
    assert drop_upper_bound(3, 1, 100, 0.5) == pytest.approx(0.02)  # 0.5: the plain point estimate
    # agrees everywhere on 144 samples: (0.5+0.5)/146^2 variance, z(0.9) = 1.2816
    assert drop_upper_bound(0, 0, 144, 0.9) == pytest.approx(1.2816 / 146, rel=1e-4)
    assert smallest_certifiable_drop(144, 0.8) == pytest.approx(0.8416 / 146, rel=1e-4)
    b = drop_upper_bound(2, 2, 144, 0.8)
    assert b > drop_upper_bound(1, 1, 144, 0.8) > drop_upper_bound(0, 0, 144, 0.8)  # more flips, more doubt
    assert drop_upper_bound(2, 2, 144, 0.95) > b
    assert drop_upper_bound(20, 20, 1440, 0.8) < b  # same rates, 10x the samples: tighter
    assert drop_upper_bound(0, 5, 144, 0.8) < 0  # a clear gain stays a gain


def test_bound_covers_the_true_drop_at_its_confidence():
    """Simulated validation splits of a candidate whose true drop is 1 pt (3% losses, 2% gains)."""
    rng = np.random.default_rng(0)
    n, trials = 300, 4000
    cells = rng.multinomial(n, [0.03, 0.02, 0.95], size=trials)
    for confidence in (0.8, 0.95):
        covered = np.mean([drop_upper_bound(b, c, n, confidence) >= 0.01 for b, c, _ in cells])
        assert confidence - 0.04 <= covered <= confidence + 0.06
    point = np.mean([drop_upper_bound(b, c, n, 0.5) >= 0.01 for b, c, _ in cells])
    assert point < 0.65  # the point estimate lets the candidate in about half of the time
