"""Sections of issues #18 (channel pruning: benchmarks/faster_bench.py) and #15 (int8 on hard
architectures: benchmarks/hard_arch_bench.py). Both stand-alone."""

from __future__ import annotations

from .context import Context
from .measure import run_job


def faster(ctx: Context) -> dict:
    job = run_job("benchmarks.faster_bench:channel_pruning", timeout=3600, work=str(ctx.work / "faster"))
    return {"wall_s": round(job["wall_s"], 1), **job["result"]}


def hard_architectures(ctx: Context) -> dict:
    job = run_job("benchmarks.hard_arch_bench:hard_architectures", timeout=5400, work=str(ctx.work / "hard"))
    return {"wall_s": round(job["wall_s"], 1), **job["result"]}
