"""Run ``litert-benchmark`` (shipped with ai-edge-litert), the reference our latency must agree with.

It is an external tool, so it runs in a subprocess: ``--model``, ``--num_threads``, ``--num_runs``,
``--warmup_runs`` and ``--result_json`` are its real flags (``litert-benchmark --help``, 2.3.0).
It times ``CompiledModel.run_by_name`` on random inputs; we time ``Interpreter.invoke``.

Its JSON rounds every latency to 0.01 ms, too coarse for models that run in tens of
microseconds. Its throughput (input MB / mean seconds) keeps four significant digits, so we also
derive a precise mean from it; ``resolution_ms`` tells comparisons how much rounding to allow.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .errors import UserError
from .tflite_check import check_tflite_file

RESOLUTION_MS = 0.01


def command() -> list[str]:
    """How to start litert-benchmark here: the console script next to this Python, on PATH, or the module."""
    beside = Path(sys.executable).with_name("litert-benchmark")
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("litert-benchmark")
    if found:
        return [found]
    if importlib.util.find_spec("ai_edge_litert") is not None:
        return [sys.executable, "-m", "ai_edge_litert.tools.benchmark_litert_model"]
    raise UserError("litert-benchmark is not installed; pip install ai-edge-litert")


def run_litert_benchmark(
    model: str | Path, threads: int = 1, runs: int = 100, warmup: int = 10, timeout: float = 600.0
) -> dict:
    """Benchmark ``model`` with litert-benchmark; returns its figures in ms (see module docstring)."""
    model = Path(model)
    if model.suffix.lower() != ".tflite" or not model.is_file():
        raise UserError(f"litert-benchmark needs an existing .tflite file, got {model}")
    check_tflite_file(model)  # a crafted file is refused with its reason before the external tool runs it
    with tempfile.TemporaryDirectory(prefix="litert-benchmark-") as tmp:
        result_json = Path(tmp) / "result.json"
        cmd = command() + [
            "--model",
            str(model),
            "--num_threads",
            str(threads),
            "--num_runs",
            str(runs),
            "--warmup_runs",
            str(warmup),
            "--result_json",
            str(result_json),
        ]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise UserError(f"litert-benchmark did not finish within {timeout:g} s on {model.name}") from None
        if done.returncode != 0 or not result_json.is_file():
            lines = [ln for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
            raise UserError(
                f"litert-benchmark failed on {model.name} (exit {done.returncode}): "
                f"{lines[-1] if lines else 'no output'}"
            )
        raw = json.loads(result_json.read_text())
    lat = raw["latency"]
    result = {
        "tool": "litert-benchmark",
        "command": cmd[:-2],
        "threads": raw.get("num_threads", threads),
        "runs": lat["num_runs"],
        "warmup": lat["num_warmup_runs"],
        "median_ms": lat["median_ms"],
        "mean_ms": lat["avg_ms"],
        "min_ms": lat["min_ms"],
        "p95_ms": lat["p95_ms"],
        "init_ms": lat["init_ms"],
        "resolution_ms": RESOLUTION_MS,
        "accelerators": raw.get("accelerators"),
    }
    result["mean_ms_from_throughput"] = _mean_from_throughput(model, raw)
    return result


def _mean_from_throughput(model: Path, raw: dict) -> float | None:
    """mean_ms = input MB / throughput MB/s * 1000, with the input size taken from the model itself."""
    throughput = raw.get("throughput_mb_s") or 0.0
    if throughput <= 0:
        return None
    try:
        from .interpreters import open_model

        runner = open_model(model, threads=1)
    except UserError:
        return None
    import numpy as np

    # litert-benchmark sizes inputs from their signature shapes (batch 1 for dynamic dims).
    total = sum(int(np.prod([max(d, 1) for d in t.shape])) * np.dtype(t.dtype).itemsize for t in runner.inputs)
    return total / (1024 * 1024) / throughput * 1000.0


def agrees(ours_ms: float, theirs_ms: float, rel: float, resolution_ms: float = RESOLUTION_MS) -> bool:
    """True when ``ours_ms`` is within ``rel`` of ``theirs_ms``, allowing for their rounding."""
    return abs(ours_ms - theirs_ms) <= rel * theirs_ms + resolution_ms / 2
