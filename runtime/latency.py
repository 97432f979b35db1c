"""Latency, memory and size of a model on this machine, timed the way ``litert-benchmark`` does.

Only the interpreter call is timed: the input is set once, so data conversion and copying stay
out of the figures, and warm-up runs let caches, the allocator and lazy kernel setup settle first.
"""

from __future__ import annotations

import gc
import gzip
import sys
import time
from pathlib import Path

import numpy as np

from .errors import UserError
from .interpreters import Runner
from .quantization import quantize_input

_MIN_RUNS = 5  # fewest timed runs that still give a usable median when max_seconds cuts in


def measure_latency(
    runner: Runner, sample: np.ndarray, warmup: int = 10, runs: int = 100, max_seconds: float | None = None
) -> dict:
    """Time ``runner.invoke_only()`` on one sample; figures in milliseconds.

    ``sample`` is one float sample (with or without a batch axis of 1). ``max_seconds`` bounds
    warm-up plus timing for slow models: warm-up stops after at least one run, timing after at
    least five; the returned ``warmup`` and ``runs`` are the counts actually done.
    """
    if runs < 1 or warmup < 0:
        raise UserError(f"need runs >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    info = runner.inputs[0]
    x = np.asarray(sample, dtype=np.float32)
    if x.ndim == len(info.shape) - 1:
        x = x[None]
    runner.set_batch(quantize_input(x[:1], info))
    deadline = None if max_seconds is None else time.perf_counter() + max_seconds
    warmed = 0
    while warmed < warmup and (warmed == 0 or not _past(deadline)):
        runner.invoke_only()
        warmed += 1
    times_ns = []
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside a timed run would show up as a latency outlier
    try:
        while len(times_ns) < runs and (len(times_ns) < _MIN_RUNS or not _past(deadline)):
            start = time.perf_counter_ns()
            runner.invoke_only()
            times_ns.append(time.perf_counter_ns() - start)
    finally:
        if gc_was_enabled:
            gc.enable()
    ms = np.asarray(times_ns, dtype=np.float64) / 1e6
    return {
        "runs": len(ms),
        "warmup": warmed,
        "min_ms": float(ms.min()),
        "median_ms": float(np.median(ms)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "std_ms": float(ms.std()),
        "init_ms": float(runner.init_ms),
        "threads": runner.threads,
        "backend": runner.backend,
        "peak_rss_mb": peak_rss_mb(),
    }


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process so far, in MB (None where the OS does not report it)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def file_size(path: str | Path) -> dict:
    """Size on disk and gzip -9 size: the latter is what an app download (or OTA update) costs."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"model file {path} does not exist")
    data = path.read_bytes()
    return {"bytes": len(data), "gzip_bytes": len(gzip.compress(data, compresslevel=9, mtime=0))}


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.perf_counter() > deadline
