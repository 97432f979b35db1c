"""Helpers of the harness: run a job in a subprocess, time repeated runs, compare ratios."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def run_job(target: str, timeout: float = 1800, **kwargs) -> dict:
    """Run ``benchmarks.job`` for MODULE:FUNCTION with keyword args; returns wall_s, peak_rss_mb, result."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.job", target, json.dumps(kwargs, default=str)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"benchmark job {target} failed (exit {proc.returncode}): " + " | ".join(tail))
    return json.loads(lines[-1].removeprefix("BENCH_RESULT "))


def ratio(ours: float, theirs: float) -> float | None:
    return round(ours / theirs, 3) if theirs else None
