"""Coarse-to-fine: a narrower space around the best trials of a finished study.

A first study explores wide ranges cheaply; the second spends its budget where the good
trials are. For each searched range we take the span of the top-k trials' values, widen it
by a margin (measured on the parameter's own scale, so a log range is widened in decades)
and clip it to the old range. Categorical choices keep only those the top trials used.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from compressor.pipeline.layout import StudyLayout
from compressor.runtime.atomic import write_text
from compressor.tuning.hparam_space import Param, Space, space_to_dict


def narrow(space: Space, rows: list[dict], top_k: int = 5, margin: float = 0.25, maximize: bool = True) -> Space:
    """``rows``: trial rows (report_data.trial_rows); only COMPLETE ones with a value count."""
    done = [r for r in rows if r["state"] == "COMPLETE" and r.get("value") is not None]
    ranked = sorted(done, key=lambda r: r["value"], reverse=maximize)[:top_k]
    if not ranked:
        return space
    best_values = [r["values"] for r in ranked]
    params: dict[str, Any] = dict(space.params)
    for name, p in space.searched().items():
        seen = [v[name] for v in best_values if name in v]
        if not seen:
            continue
        params[name] = _narrow_param(p, seen, margin)
    note = f"narrowed around the top {len(ranked)} trials"
    return space.model_copy(update={"params": params, "description": f"{space.description} ({note})".strip()})


def _narrow_param(p: Param, seen: list, margin: float) -> Param:
    if p.type == "categorical":
        kept = [c for c in p.choices if c in seen]
        return p.model_copy(update={"choices": kept or list(p.choices)})
    fwd, back = _scale(p)
    lo, hi = fwd(min(seen)), fwd(max(seen))
    old_lo, old_hi = sorted((fwd(p.low), fwd(p.high)))
    if lo > hi:
        lo, hi = hi, lo
    # A single best value (or identical ones) still gets a neighbourhood: 5% of the old range.
    pad = max((hi - lo) * margin, (old_hi - old_lo) * 0.05)
    lo, hi = max(old_lo, lo - pad), min(old_hi, hi + pad)
    new_lo, new_hi = sorted((back(lo), back(hi)))
    if p.type == "int":
        new_lo, new_hi = math.floor(new_lo), math.ceil(new_hi)
        if new_lo == new_hi:
            new_lo, new_hi = max(int(p.low), new_lo - 1), min(int(p.high), new_hi + 1)
    new_lo, new_hi = max(p.low, new_lo), min(p.high, new_hi)
    if not new_lo < new_hi:
        return p
    return p.model_copy(update={"low": new_lo, "high": new_hi})


def _scale(p: Param):
    """Forward/backward maps to the space in which the parameter is sampled uniformly."""
    if p.scale == "log":
        return math.log, math.exp
    if p.scale == "one_minus_log":
        return (lambda v: math.log(1.0 - v)), (lambda u: 1.0 - math.exp(u))
    return (lambda v: v), (lambda u: u)


def write_narrowed(space: Space, rows: list[dict], out: Path, top_k: int = 5) -> str | None:
    """Write OUT/narrowed-space.yaml for a second, finer study; None when nothing finished."""
    if not space.searched() or not any(r["state"] == "COMPLETE" for r in rows):
        return None
    path = StudyLayout(Path(out), "tune").narrowed_space
    write_text(path, yaml.safe_dump(space_to_dict(narrow(space, rows, top_k)), sort_keys=False))
    return str(path)
