"""The ONE place that imports TensorFlow, tf_keras and tensorflow-model-optimization.

tfmot wraps tf_keras (Keras 2), not Keras 3, so TF_USE_LEGACY_KERAS=1 must be set before
TensorFlow is first imported; and TensorFlow's C++ logging must be switched off before that
import too. Everything else in the project does ``from compressor.keras_shim import tf, keras``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from typing import Any

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if os.environ.get("COMPRESSOR_VERBOSE") == "1" else "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # bit-stable float results across runs

from compressor.runtime.quiet import native_stderr_silenced  # noqa: E402

with native_stderr_silenced(), warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import tensorflow as tf  # noqa: E402
    import tf_keras as keras  # noqa: E402

if os.environ.get("COMPRESSOR_VERBOSE") != "1":
    tf.get_logger().setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"tensorflow.*")
    warnings.filterwarnings("ignore", module=r"tf_keras.*")


def tfmot():
    """tensorflow_model_optimization, imported on first use (it adds ~1 s)."""
    with native_stderr_silenced(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import tensorflow_model_optimization as mot
    return mot


def safe_mode_scope(safe: bool) -> Any:
    """tf_keras' safe-mode context: with ``safe`` no Lambda bytecode is deserialised, in any format
    (``load_model(safe_mode=...)`` alone covers only the .keras format)."""
    from tf_keras.src.saving import serialization_lib

    return serialization_lib.SafeModeScope(safe)


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow, and make TF ops deterministic."""
    keras.utils.set_random_seed(seed)
    with contextlib.suppress(Exception):  # already initialised devices: determinism is best effort
        tf.config.experimental.enable_op_determinism()


__all__ = ["tf", "keras", "tfmot", "safe_mode_scope", "set_seed"]
