"""Scale-out figures (issue #13): search throughput by storage and process count, mixed-precision epochs,
epoch time by replica count (benchmarks/replicas_bench.py).

Both stand-alone. The storage figures come from benchmarks/storage_bench.py (a throwaway loopback
PostgreSQL server started and stopped by it), the epoch times from benchmarks/mixed_precision.py,
run once with TensorFlow's oneDNN off (the shim's default: bit-stable float results) and once on,
since TensorFlow's CPU bfloat16 kernels are fast only through oneDNN.
"""

from __future__ import annotations

import os

from .context import Context
from .measure import run_job


def storage(ctx: Context) -> dict:
    job = run_job("benchmarks.storage_bench:search_throughput", timeout=3600, work=str(ctx.work / "storage"))
    return {"wall_s": round(job["wall_s"], 1), **job["result"]}


def mixed_precision(ctx: Context) -> dict:
    out = {}
    saved = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    try:
        for onednn in ("0", "1"):  # read by TensorFlow at import: each setting in its own job process
            os.environ["TF_ENABLE_ONEDNN_OPTS"] = onednn
            job = run_job("benchmarks.mixed_precision:epoch_times", work=str(ctx.work / f"mp-onednn{onednn}"))
            out[f"onednn_{'on' if onednn == '1' else 'off'}"] = job["result"]
    finally:
        if saved is None:
            os.environ.pop("TF_ENABLE_ONEDNN_OPTS", None)
        else:
            os.environ["TF_ENABLE_ONEDNN_OPTS"] = saved
    return out


def replicas(ctx: Context) -> dict:
    """One epoch of the same fit with 1 and 2 MirroredStrategy replicas, each in its own process."""
    out = {}
    for n in (1, 2):
        job = run_job("benchmarks.replicas_bench:epoch_times", work=str(ctx.work / "replicas"), replicas=n)
        out[f"replicas_{n}"] = job["result"]
    out["ratio_2_to_1"] = round(out["replicas_2"]["epoch_s"] / out["replicas_1"]["epoch_s"], 3)
    out["devices"] = "2 logical CPU devices of one 2-core CPU (no GPU here)"
    return out


def memory(ctx: Context) -> dict:
    """Peak RSS of compress (qat-int8) on 2,000 and 20,000 generated images (benchmarks/memory_bench.py)."""
    job = run_job("benchmarks.memory_bench:peak_rss", timeout=5400, work=str(ctx.work / "memory"))
    return {"wall_s": round(job["wall_s"], 1), **job["result"]}
