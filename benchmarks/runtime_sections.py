"""Benchmark sections on the device side: batched evaluation, the runtime's footprint, latency parity
with litert-benchmark. Each takes the Context and returns JSON-able figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .context import Context
from .latency_matrix import import_time, throughput
from .measure import run_job


def validation_throughput(ctx: Context) -> dict:
    """Batched vs one-at-a-time evaluation: mobilenet_v2 96 float32 (compute-bound; its >= 10x target is
    retired, see targets.THROUGHPUT_RETIRED) and digits_cnn int8, where the per-call interpreter overhead
    that batching amortises is a large share of each call. Batching is for that overhead, not for compute."""

    def path(model: str, artifact: str) -> str:
        run = ctx.runs[(model, "int8")]
        return next(
            a["path"] for a in run["result"]["artifacts"] if a["artifact"] == artifact and a["format"] == "tflite"
        )

    samples = 2_000 if ctx.quick else 10_000
    return {
        **throughput(path("mobilenet_v2_96", "float32"), samples=samples),
        "digits_cnn_int8": throughput(path("digits_cnn", "int8"), samples=samples),
    }


def footprint(ctx: Context) -> dict:
    """Device side: start-up of `compressor-runtime validate bundle.zip`, and the installed size of
    the stand-alone runtime distribution in a fresh venv (numpy + ai-edge-litert, no TensorFlow)."""
    import shutil
    import subprocess
    import sys
    import time

    run_dir = ctx.work / "runs" / "digits_cnn" / "int8"
    bundle = ctx.work / "bundle.zip"
    run_job("benchmarks.ours:package_job", run_dir=str(run_dir), out=str(bundle))
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "compressor.runtime.cli", "validate", str(bundle), "--quiet"],
            check=True,
            capture_output=True,
        )
        times.append(time.perf_counter() - t0)
    venv = ctx.work / "device-venv"
    source = ctx.work / "runtime-src"
    shutil.copytree(Path(__file__).resolve().parent.parent / "runtime", source)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(source)], check=True, capture_output=True
    )
    site = next((venv / "lib").glob("python*/site-packages"))
    size = sum(f.stat().st_size for f in site.rglob("*") if f.is_file())
    has_tf = (
        subprocess.run([str(venv / "bin" / "python"), "-c", "import tensorflow"], capture_output=True).returncode == 0
    )
    return {
        "validate_bundle_s": round(sorted(times)[1], 3),
        "import_runtime_s": import_time("compressor.runtime.interpreters"),
        "import_tensorflow_s": import_time("compressor.keras_shim"),
        "device_install_mb": round(size / 2**20, 1),
        "device_install_has_tensorflow": has_tf,
    }


def latency_parity(ctx: Context) -> dict:
    """Our median vs litert-benchmark's for the same file and thread count, run back to back."""
    from compressor.runtime.interpreters import open_model
    from compressor.runtime.latency import measure_latency
    from compressor.runtime.reference_bench import agrees, run_litert_benchmark

    def path(model: str, recipe: str, artifact: str) -> str:
        job = ctx.runs[(model, recipe)]
        return next(
            a["path"] for a in job["result"]["artifacts"] if a["artifact"] == artifact and a["format"] == "tflite"
        )

    cases = {
        "digits_cnn int8": path("digits_cnn", "int8", "int8"),
        "mobilenet_v2_96 float32": path("mobilenet_v2_96", "int8", "float32"),
        "mobilenet_v2_96 int8": path("mobilenet_v2_96", "int8", "int8"),
    }
    out = {}
    for name, file in cases.items():
        runner = open_model(file, threads=1)
        shape = tuple(max(d, 1) for d in runner.inputs[0].shape[1:])
        sample = np.random.default_rng(0).random((1, *shape), dtype=np.float32)
        ours = measure_latency(runner, sample, warmup=20, runs=200, max_seconds=30.0)
        theirs = run_litert_benchmark(file, threads=1, runs=200, warmup=20)
        out[name] = {
            "ours_median_ms": round(ours["median_ms"], 4),
            "litert_benchmark_median_ms": theirs["median_ms"],
            "litert_benchmark_mean_ms_precise": theirs["mean_ms_from_throughput"],
            # litert-benchmark rounds to 0.01 ms: a model faster than 0.005 ms reads 0 there (no ratio)
            "relative_diff": round(ours["median_ms"] / theirs["median_ms"] - 1, 4) if theirs["median_ms"] else None,
            "agrees_within_10pct": agrees(ours["median_ms"], theirs["median_ms"], 0.10),
        }
    return out
