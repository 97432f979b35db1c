"""TensorFlow Lite conversion: the float32 reference and every post-training quantization mode.

Full-integer modes calibrate activation ranges on a representative sample (Jacob et al. 2018,
arXiv:1712.05877): x_q = round(x / scale) + zero_point.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from compressor.pipeline.model_io import LoadedModel
from compressor.recipes.ptq import check_calibration
from compressor.runtime.atomic import write_bytes
from compressor.runtime.errors import UserError
from compressor.runtime.quiet import native_stderr_silenced
from compressor.runtime.sandbox import vouch


def export_float32(model: LoadedModel, out: Path) -> Path:
    return write_tflite(out, convert(model, "float32"))


def write_tflite(out: Path, flatbuffer: bytes) -> Path:
    """Write a flatbuffer this process converted (atomically) and vouch for it: no trial run when opened."""
    path = write_bytes(out, flatbuffer)
    vouch(path)
    return path


def convert(model: Any, mode: str, calibration: np.ndarray | None = None, io_dtype: str = "float32") -> bytes:
    """Convert a LoadedModel to TFLite flatbuffer bytes. mode: float32|float16|dynamic|int8|int16x8."""
    return run_converter(make_converter(model, mode, calibration, io_dtype), mode)


def make_converter(model: Any, mode: str, calibration: np.ndarray | None = None, io_dtype: str = "float32") -> Any:
    """The configured tf.lite.TFLiteConverter (the quantization debugger reuses it)."""
    from compressor.keras_shim import tf

    if model.keras is not None:
        converter = tf.lite.TFLiteConverter.from_keras_model(model.keras)
    else:
        converter = tf.lite.TFLiteConverter.from_saved_model(str(model.saved_model_dir))
    if mode != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif mode in ("int8", "int16x8"):
        sample = check_calibration(calibration, model.input_shape)
        converter.representative_dataset = lambda: ([row[None, ...]] for row in sample)
        if mode == "int8":
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        else:
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
            ]
        io = {"int8": tf.int8, "int16": tf.int16, "float32": tf.float32}[io_dtype]
        converter.inference_input_type = io
        converter.inference_output_type = io
    return converter


def run_converter(converter: Any, mode: str) -> bytes:
    try:
        # The converter warns about its own deprecated tf.lite.Interpreter and unset input
        # statistics during calibration: nothing the user can act on.
        with native_stderr_silenced(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return converter.convert()
    except Exception as e:
        raise UserError(f"TFLite conversion ({mode}) failed: {conversion_error(str(e))}") from None


def conversion_error(text: str) -> str:
    """The converter's MLIR diagnostics as one line; ops without any TFLite kernel named plainly."""
    missing = sorted(set(re.findall(r"'tf\.(\w+)' op is neither a custom op nor a flex op", text)))
    if missing:
        return (
            f"ops without a TFLite builtin kernel: {', '.join(missing)}; they would need Flex (SELECT_TF_OPS), "
            "which most devices lack: replace them in the model"
        )
    lines = [ln for ln in text.splitlines() if "error" in ln.lower()] or text.splitlines() or ["unknown error"]
    return lines[0].strip()[:300]
