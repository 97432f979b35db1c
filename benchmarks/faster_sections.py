"""Faster, not only smaller (issue #18): the channel-pruning figures of benchmarks/faster_bench.py. Stand-alone."""

from __future__ import annotations

from .context import Context
from .measure import run_job


def faster(ctx: Context) -> dict:
    job = run_job("benchmarks.faster_bench:channel_pruning", timeout=3600, work=str(ctx.work / "faster"))
    return {"wall_s": round(job["wall_s"], 1), **job["result"]}
