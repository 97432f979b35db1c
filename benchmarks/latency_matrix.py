"""Latency of every artifact on LiteRT and ONNX Runtime at 1 and 2 threads, and batched vs one-at-a-time."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from compressor.runtime import accuracy, latency
from compressor.runtime.interpreters import open_model


def artifact_latency(path: str, sample: np.ndarray, threads: tuple[int, ...] = (1, 2), runs: int = 50) -> dict:
    out = {}
    for n in threads:
        runner = open_model(path, threads=n)
        figures = latency.measure_latency(runner, sample, warmup=10, runs=runs, max_seconds=20.0)
        out[str(n)] = {"median_ms": figures["median_ms"], "p90_ms": figures["p90_ms"], "runs": figures["runs"]}
    return out


def throughput(path: str, samples: int = 10_000, threads: int = 1, seed: int = 0) -> dict:
    """Batched evaluation vs the one-sample-at-a-time loop on the same inputs; results must be equal."""
    runner = open_model(path, threads=threads)
    shape = tuple(d if d > 0 else 1 for d in runner.inputs[0].shape[1:])
    x = np.random.default_rng(seed).random((samples, *shape), dtype=np.float32)
    t0 = time.perf_counter()
    batched = accuracy.predict(runner, x, batch_size=256)
    t_batched = time.perf_counter() - t0
    single_runner = open_model(path, threads=threads)
    t0 = time.perf_counter()
    single = accuracy.predict(single_runner, x, batch_size=1)
    t_single = time.perf_counter() - t0
    return {
        "samples": samples,
        "threads": threads,
        "batched_s": round(t_batched, 3),
        "one_at_a_time_s": round(t_single, 3),
        "speedup": round(t_single / t_batched, 2),
        "max_abs_diff": float(np.max(np.abs(batched - single))),
        "same_top1": bool(np.array_equal(batched.argmax(1), single.argmax(1))),
    }


def import_time(module: str, repeats: int = 3) -> float:
    """Median wall time of ``python -c 'import MODULE'`` in a fresh process (seconds)."""
    import subprocess
    import sys

    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", f"import {module}"],
            check=True,
            capture_output=True,
            env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"},
            cwd=Path(__file__).resolve().parent.parent,
        )
        times.append(time.perf_counter() - t0)
    return round(sorted(times)[len(times) // 2], 3)
