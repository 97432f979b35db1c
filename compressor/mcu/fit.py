"""Does an artifact fit a microcontroller? Its arena on TFLite Micro and its flash, for search limits.

`compressor search --max-arena-kb / --max-flash-kb` judge every trial with this: the recommended
arena (measured on the TFLM interpreter + margin, tflm.py) and the flatbuffer's size. An artifact
that is not full-int8 cannot run on an integer-only MCU build and does not fit at all.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from compressor.mcu import tflm
from compressor.runtime.interpreters import open_model
from compressor.runtime.quantization import quantize_input


def mcu_fit(model: Path, sample: np.ndarray) -> dict:
    """``sample``: one float input (preprocessed, without the batch dimension)."""
    runner = open_model(model)
    flash = Path(model).stat().st_size
    if runner.inputs[0].dtype != "int8" or runner.outputs[0].dtype != "int8":
        return {"full_int8": False, "flash_bytes": flash, "arena_bytes": None, "recommended_arena_bytes": None}
    run = tflm.run_micro(Path(model), quantize_input(sample[None, ...], runner.inputs[0]))
    return {
        "full_int8": True,
        "flash_bytes": flash,
        "arena_bytes": run.arena_bytes,
        "recommended_arena_bytes": run.recommended_arena_bytes,
    }


def excess_kb(fit: dict, max_arena_kb: float | None, max_flash_kb: float | None) -> dict[str, float]:
    """Per limit, how far over it the artifact is in KB (<= 0: within); not full-int8 is infinitely over."""
    out = {}
    if max_arena_kb is not None:
        arena = fit["recommended_arena_bytes"]
        out["arena_kb"] = float("inf") if arena is None else arena / 1024 - max_arena_kb
    if max_flash_kb is not None:
        out["flash_kb"] = fit["flash_bytes"] / 1024 - max_flash_kb
    return out
