"""Pareto fronts and the pick under a constraint, on plain numbers (no Optuna needed).

A point dominates another when it is at least as good on every objective and strictly better
on one. The front is the set of non-dominated points: no objective can improve without
another getting worse, so every shipped choice should come from it.
"""

from __future__ import annotations

from collections.abc import Sequence


def dominates(a: Sequence[float], b: Sequence[float], maximize: Sequence[bool]) -> bool:
    better = False
    for x, y, up in zip(a, b, maximize):
        if (x < y) if up else (x > y):
            return False
        if x != y:
            better = True
    return better


def front_mask(points: Sequence[Sequence[float]], maximize: Sequence[bool]) -> list[bool]:
    """True for each point no other point dominates (O(n^2): n is a few hundred trials at most)."""
    return [not any(dominates(q, p, maximize) for j, q in enumerate(points) if j != i) for i, p in enumerate(points)]


def pick(
    rows: list[dict], size_key: str = "gzip_bytes", latency_key: str = "latency_ms", accuracy_key: str = "val_accuracy"
) -> dict | None:
    """The feasible row to ship: smallest, then fastest, then most accurate. None if none is feasible.

    Size first because it is the hard limit on a device (flash, app download); among equal sizes
    the faster, then the more accurate, artifact wins.
    """
    feasible = [r for r in rows if r.get("feasible")]
    if not feasible:
        return None
    return min(feasible, key=lambda r: (r[size_key], r[latency_key], -r[accuracy_key]))


def closest(rows: list[dict], drop_key: str = "accuracy_drop") -> dict | None:
    """When nothing meets the accuracy constraint: the row that misses it by the least."""
    return min(rows, key=lambda r: r[drop_key]) if rows else None
