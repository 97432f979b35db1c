"""The TFLite Micro run, in a child process: ``python -m compressor.mcu.tflm_child MODEL INPUTS OUT [TENSORS]``.

TFLite Micro's C++ trusts the model and the arena size it is given: an arena far too small for the
allocator's own bookkeeping (a few hundred bytes) segfaults instead of failing, and so may a crafted
model. So the whole run happens here, and the parent turns a signal into a one-line error.

What it does: the smallest arena that allocates (binary search: the interpreter either constructs
and allocates every tensor or raises), confirmed by one invoke at that size, the recording
allocator's own breakdown of it, then every input through the interpreter one sample at a time.
Writes OUT/outputs.npy and OUT/result.json. With TENSORS (a .npy of tensor indices) it traces
instead: the first input alone, every tensor preserved, those tensors written to OUT/trace.npz.
Imports numpy and tflite_micro only.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

MIN_ARENA = 1024  # below ~300 bytes TFLM's allocator crashes rather than refusing; no model fits in 1 KiB anyway
MAX_ARENA = 512 << 20  # more than any microcontroller has by orders of magnitude
ALIGN = 16  # TFLM aligns arena allocations to 16 bytes: a finer search measures nothing


def main(model_path: str, inputs_path: str, out: str) -> None:
    from tflite_micro import runtime

    model = Path(model_path).read_bytes()
    inputs = np.load(inputs_path, allow_pickle=False)
    result: dict = {"tflite_micro": _version()}
    try:
        arena = smallest_arena(runtime, model, inputs[:1])
    except RuntimeError as e:
        result["error"] = str(e)
        Path(out, "result.json").write_text(json.dumps(result))
        return
    interpreter = runtime.Interpreter.from_bytes(model, arena_size=arena)
    result["arena_bytes"] = arena
    outputs = []
    for sample in inputs:
        interpreter.set_input(sample[None, ...], 0)
        interpreter.invoke()
        outputs.append(np.array(interpreter.get_output(0)).reshape(-1))
    np.save(Path(out, "outputs.npy"), np.stack(outputs))
    Path(out, "result.json").write_text(json.dumps(result))


def smallest_arena(runtime, model: bytes, sample: np.ndarray) -> int:
    """The least arena (a multiple of ALIGN) that allocates and invokes; RuntimeError when none up to MAX_ARENA."""
    high = 64 << 10
    while not _fits(runtime, model, high, sample):
        if high >= MAX_ARENA:
            _raise_why(runtime, model)
        high *= 2
    low = MIN_ARENA // ALIGN
    high //= ALIGN
    while low < high:  # in units of ALIGN bytes
        mid = (low + high) // 2
        if _fits(runtime, model, mid * ALIGN, sample):
            high = mid
        else:
            low = mid + 1
    return high * ALIGN


def _fits(runtime, model: bytes, arena: int, sample: np.ndarray) -> bool:
    try:
        interpreter = runtime.Interpreter.from_bytes(model, arena_size=arena)
        interpreter.set_input(sample, 0)
        interpreter.invoke()
        return True
    except RuntimeError:
        return False


def _raise_why(runtime, model: bytes) -> None:
    """Construct once more with the largest arena so the message TFLM printed is the real reason."""
    try:
        runtime.Interpreter.from_bytes(model, arena_size=MAX_ARENA)
    except RuntimeError as e:
        raise RuntimeError(f"TFLite Micro cannot load it even with a {MAX_ARENA >> 20} MiB arena: {e}") from None
    raise RuntimeError("TFLite Micro loads it but cannot invoke it")


def _version() -> str:
    import tflite_micro

    return re.sub(r"-g[0-9a-f]+$", "", tflite_micro.__version__)


def trace(model_path: str, inputs_path: str, out: str, tensors_path: str) -> None:
    """Every listed tensor after one invoke, with TFLM keeping all of them (no arena reuse)."""
    from tflite_micro import runtime

    model = Path(model_path).read_bytes()
    sample = np.load(inputs_path, allow_pickle=False)[:1]
    keep = runtime.InterpreterConfig.kPreserveAllTensors
    arena = 64 << 10
    while True:  # preserving every tensor needs more than the measured arena: grow until it fits
        try:
            interpreter = runtime.Interpreter.from_bytes(model, arena_size=arena, intrepreter_config=keep)
            break
        except RuntimeError:
            if arena >= MAX_ARENA:
                raise
            arena *= 2
    interpreter.set_input(sample, 0)
    interpreter.invoke()
    indices = np.load(tensors_path, allow_pickle=False)
    arrays = {str(int(i)): np.asarray(interpreter.GetTensor(int(i), 0)["tensor_data"]) for i in indices}
    np.savez(Path(out, "trace.npz"), **arrays)
    Path(out, "result.json").write_text(json.dumps({"tflite_micro": _version(), "traced": len(arrays)}))


if __name__ == "__main__":
    if len(sys.argv) > 4:
        trace(*sys.argv[1:5])
    else:
        main(*sys.argv[1:4])
