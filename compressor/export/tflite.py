"""Float32 TFLite export: the reference every quantized artifact is compared against."""

from __future__ import annotations

from pathlib import Path

from compressor.pipeline.model_io import LoadedModel
from compressor.recipes.ptq import convert
from compressor.runtime.atomic import write_bytes


def export_float32(model: LoadedModel, out: Path) -> Path:
    return write_bytes(out, convert(model, "float32"))
