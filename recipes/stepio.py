"""Saving and re-loading the Keras model a training step hands on (for inspection and --resume)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compressor.runtime.atomic import write_json

STEP_MODEL = "model"


def save_step_model(model: Any, workdir: Path) -> Path:
    from compressor.runtime.quiet import native_stderr_silenced

    path = workdir / STEP_MODEL
    with native_stderr_silenced():
        model.save(path, save_format="tf", include_optimizer=False)
    return path


def load_step_model(workdir: Path) -> Any:
    """QAT models keep their fake-quant wrappers until conversion, so load inside quantize_scope."""
    from compressor.keras_shim import keras, tfmot
    from compressor.runtime.quiet import native_stderr_silenced

    with native_stderr_silenced(), tfmot().quantization.keras.quantize_scope():
        return keras.models.load_model(workdir / STEP_MODEL, compile=False)


def write_info(workdir: Path, info: dict) -> None:
    """Step-specific figures (sparsity per layer, clusters per kernel...) merged into meta.json."""
    write_json(workdir / "info.json", info)
