"""`make demo`: the main job end to end on the embedded digits data.

Trains digits_cnn, then compresses it with the post-training presets in one run so the table
compares float32, float16, dynamic-range and full-integer int8, each as TFLite and ONNX.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from compressor.pipeline.layout import DemoLayout
from compressor.runtime.errors import UserError

DEMO_RECIPES = ["float16", "dynamic", "int8"]


def run_demo(
    out: str | Path, epochs: int = 20, overwrite: bool = False, progress: Callable[[str], None] = lambda msg: None
) -> dict:
    from compressor.pipeline.compress import compress
    from compressor.pipeline.train import train

    out = Path(out)
    if out.exists() and not overwrite:
        raise UserError(f"output folder {out} already exists; choose another --out or pass --overwrite")
    progress(f"training digits_cnn on digits for {epochs} epochs")
    runs = DemoLayout(out)
    card = train("digits_cnn", runs.train.root, data="digits", epochs=epochs, overwrite=overwrite, progress=progress)
    progress(f"trained: test accuracy {card['test_accuracy']:.2%}; compressing")
    return compress(card["model_path"], DEMO_RECIPES, runs.compress.root, overwrite=overwrite, progress=progress)
