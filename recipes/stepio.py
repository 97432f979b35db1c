"""Saving and re-loading the Keras model a training step hands on (for inspection and --resume)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from compressor.runtime.atomic import write_json

# HDF5 (config + weights) is ~50x faster to write than a SavedModel, which retraces every
# function. But a QAT model's config does not record its collaborative scheme (PQAT/CQAT), so
# rebuilt from config it has other variables: QAT models are saved as SavedModels, which
# restore the objects themselves. (.keras v3 cannot restore QAT wrappers' variables at all.)
H5_MODEL, SAVED_MODEL = "model.h5", "model"


def save_step_model(model: Any, workdir: Path) -> Path:
    import warnings

    from compressor.runtime.quiet import native_stderr_silenced

    quantize_aware = any("Quantize" in type(layer).__name__ for layer in model.layers)
    path = workdir / (SAVED_MODEL if quantize_aware else H5_MODEL)
    with native_stderr_silenced(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "HDF5 is legacy": deliberate, see above
        model.save(path, save_format="tf" if quantize_aware else "h5", include_optimizer=False)
    return path


def step_model_path(workdir: Path) -> Path:
    """The model a training step saved in ``workdir`` (HDF5, or a SavedModel for QAT models)."""
    return workdir / H5_MODEL if (workdir / H5_MODEL).is_file() else workdir / SAVED_MODEL


@contextmanager
def step_load_scope() -> Iterator[None]:
    """Where a step model is deserialised: QAT models keep their fake-quant wrappers until conversion."""
    from compressor.keras_shim import tfmot
    from compressor.runtime.quiet import native_stderr_silenced

    with native_stderr_silenced(), tfmot().quantization.keras.quantize_scope():
        yield


def load_step_model(workdir: Path, trust_code: bool = False) -> Any:
    """Load a step's model in safe mode: a step folder is files on disk, as untrusted as any model."""
    from compressor.keras_shim import keras, safe_mode_scope

    with step_load_scope(), safe_mode_scope(not trust_code):
        return keras.models.load_model(step_model_path(workdir), compile=False, safe_mode=not trust_code)


def write_info(workdir: Path, info: dict) -> None:
    """Step-specific figures (sparsity per layer, clusters per kernel...) merged into meta.json."""
    write_json(workdir / "info.json", info)
