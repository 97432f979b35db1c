"""Run a full-int8 .tflite on the TFLite Micro interpreter (the `tflite-micro` package) in a child process.

The interpreter is TFLM's own C++ (its reference kernels, as a microcontroller build without an
optimized kernel library runs them), wrapped for Python; the child (tflm_child.py) measures the
smallest arena that allocates and runs every input. A crash there is a one-line error here.

The arena is measured on this 64-bit host: TFLM's bookkeeping structs hold pointers, so a 32-bit
Cortex-M or ESP32 needs the same tensor memory and somewhat less bookkeeping: the figure is an upper
bound for such targets, and the recommended size adds ARENA_MARGIN on top.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compressor.runtime.errors import UserError

ARENA_MARGIN = 0.10  # headroom over the measured arena: allocator version drift, a few more scratch bytes
TIMEOUT_S = 600.0
_MISSING_OP = re.compile(r"Didn't find op for builtin opcode '([A-Z0-9_]+)'")


@dataclass
class MicroRun:
    outputs: np.ndarray  # (samples, outputs) int8, as the interpreter returned them
    arena_bytes: int  # the smallest arena that allocates and invokes
    version: str  # tflite-micro's version

    @property
    def recommended_arena_bytes(self) -> int:
        return recommended(self.arena_bytes)


def recommended(arena_bytes: int) -> int:
    """A measured arena plus ARENA_MARGIN, rounded up to a KiB."""
    return -(-int(arena_bytes * (1 + ARENA_MARGIN)) // 1024) * 1024


def available() -> str | None:
    """Why the TFLite Micro interpreter cannot run here (None when it can)."""
    try:
        import tflite_micro  # noqa: F401
    except ImportError:
        return "the TFLite Micro interpreter is not installed: pip install 'compressor[mcu]' (tflite-micro)"
    return None


def run_micro(model: Path, inputs: np.ndarray) -> MicroRun:
    """Every row of ``inputs`` (already int8, shaped like the model input without its batch dim) through TFLM."""
    with tempfile.TemporaryDirectory(prefix="compressor-tflm-") as tmp:
        result = _child(model, inputs, Path(tmp))
        return MicroRun(np.load(Path(tmp) / "outputs.npy"), result["arena_bytes"], result["tflite_micro"])


def trace_micro(model: Path, sample: np.ndarray, tensors: list[int]) -> dict[int, np.ndarray]:
    """The listed tensors after TFLM runs ``sample`` (one int8 input, no batch dim), every tensor kept."""
    with tempfile.TemporaryDirectory(prefix="compressor-tflm-") as tmp:
        np.save(Path(tmp) / "tensors.npy", np.asarray(tensors, dtype=np.int64))
        _child(model, sample[None, ...], Path(tmp), Path(tmp) / "tensors.npy")
        with np.load(Path(tmp) / "trace.npz", allow_pickle=False) as traced:
            return {int(k): traced[k] for k in traced.files}


def _child(model: Path, inputs: np.ndarray, tmp: Path, tensors: Path | None = None) -> dict:
    """Run tflm_child on ``inputs`` in ``tmp``; its result.json, or a one-line error."""
    missing = available()
    if missing:
        raise UserError(missing)
    np.save(tmp / "inputs.npy", np.ascontiguousarray(inputs))
    command = [sys.executable, "-m", "compressor.mcu.tflm_child", str(model), str(tmp / "inputs.npy"), str(tmp)]
    command += [str(tensors)] if tensors is not None else []
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise UserError(f"TFLite Micro did not finish {model.name} within {TIMEOUT_S:.0f} s") from None
    log = done.stdout + done.stderr
    if done.returncode < 0:
        raise UserError(
            f"TFLite Micro crashed on {model.name} (signal {-done.returncode}); the model is not one it can run"
        )
    result_file = tmp / "result.json"
    if done.returncode != 0 or not result_file.is_file():
        last = (log.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the TFLite Micro child failed (exit {done.returncode}): {last[:300]}")
    result = json.loads(result_file.read_text())
    if "error" in result:
        raise UserError(f"{model.name}: {_reason(result['error'], log)}")
    return result


def _reason(error: str, log: str) -> str:
    """TFLM's own diagnostics say more than its exception: name the ops it has no kernel for."""
    missing = sorted(set(_MISSING_OP.findall(log)))
    if missing:
        return f"TFLite Micro has no kernel for {', '.join(missing)}; replace {'it' if len(missing) == 1 else 'them'}"
    lines = [ln.strip() for ln in log.splitlines() if ln.strip() and not ln.startswith("[RecordingMicroAllocator]")]
    detail = f" ({lines[0][:200]})" if lines else ""
    return f"{error}{detail}"
