"""The Keras 3 -> tf_keras bridge: rebuild a Keras 3 ``.keras``/``.h5`` model in tf_keras.

tfmot wraps tf_keras models only, and Keras 3 cannot be imported in this process (the shim has
set TF_USE_LEGACY_KERAS), so the model is rebuilt from its files alone: the config JSON is
translated (keras3_graph, keras3_layers), tf_keras builds the graph from it (standard layer
classes only: nothing in the file is executed), and every layer's arrays are copied from the
weights file (keras3_files), count and shapes checked per layer. Before any recipe step the
rebuilt model's outputs are compared with the Keras 3 model's own (keras3_reference) on the
run's data; the record returned here goes into the report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from compressor.pipeline.keras3_files import keras_version, read_config, read_weights
from compressor.pipeline.keras3_graph import tf_keras_config
from compressor.pipeline.keras3_layers import BridgeError, unsupported

NAME = "keras3-to-tf_keras"
ATOL = RTOL = 1e-5  # |tf_keras - keras3| <= ATOL + RTOL * |keras3|, elementwise
MAX_CHECK_SAMPLES = 2048


def rebuild(path: Path) -> tuple[Any, dict]:
    """(tf_keras model, bridge record) for a Keras 3 .keras or .h5 file; BridgeError names the
    first layer that cannot be translated."""
    config = read_config(path)
    translated, rewrites = tf_keras_config(config)
    weights = read_weights(path, config)
    model = _build(translated)
    copied = copy_weights(model, weights)
    record = {
        "name": NAME,
        "source": str(path),
        "keras_version": keras_version(path),
        "source_class": config.get("class_name"),
        "layers": len(model.layers),
        "layers_with_weights": copied,
        "rewrites": rewrites,
        "check": None,
    }
    return model, record


def _build(config: dict) -> Any:
    from compressor.keras_shim import keras, safe_mode_scope

    try:
        with safe_mode_scope(True):  # only standard layer classes are named; nothing may deserialise code
            return keras.Model.from_config(config)
    except BridgeError:
        raise
    except Exception as e:  # a translated config tf_keras still rejects: name the layer when it says which
        text = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise BridgeError(f"the tf_keras rebuild of this Keras 3 model failed: {text}") from None


def copy_weights(model: Any, weights: dict[str, list[np.ndarray]]) -> int:
    """Set every layer's arrays from the Keras 3 file; returns how many layers had some."""
    remaining = dict(weights)
    copied = 0
    for layer in model.layers:
        arrays = remaining.pop(layer.name, None)
        if not layer.weights:
            if arrays:
                raise unsupported(
                    layer.name, type(layer).__name__, f"the file has {len(arrays)} arrays for it, tf_keras none"
                )
            continue
        if arrays is None:
            raise unsupported(layer.name, type(layer).__name__, "the file holds no weights for it")
        expected = [tuple(w.shape) for w in layer.weights]
        got = [tuple(a.shape) for a in arrays]
        if expected != got:
            raise unsupported(
                layer.name, type(layer).__name__, f"weights of shapes {got} where tf_keras has {expected}"
            )
        layer.set_weights(arrays)
        layer.finalize_state()  # Normalization derives its mean/variance tensors from the set arrays here
        copied += 1
    left = sorted(name for name, arrays in remaining.items() if arrays)
    if left:
        raise BridgeError(f"the Keras 3 file has weights for layers the rebuild lacks: {', '.join(left[:5])}")
    return copied


def compare(rebuilt: np.ndarray, reference: np.ndarray) -> dict:
    """The check's figures: max and mean |diff|, the worst excess over the tolerance, top-1 agreement."""
    diff = np.abs(rebuilt.astype(np.float64) - reference.astype(np.float64))
    excess = diff - (ATOL + RTOL * np.abs(reference))
    return {
        "samples": int(len(reference)),
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
        "top1_agreement": float(np.mean(rebuilt.argmax(-1) == reference.argmax(-1))) if diff.size else 1.0,
        "tolerance": f"|diff| <= {ATOL:g} + {RTOL:g} * |keras3|",
        "passed": bool(diff.size == 0 or excess.max() <= 0),
    }


def verify(model: Any, x: np.ndarray, trust_code: bool = False) -> dict | None:
    """Before any step: a bridged model's outputs on ``x`` equal the Keras 3 model's (computed by
    Keras 3 in a child). Stores and returns the check (None for a model not bridged); a model
    that differs is refused with the figures."""
    if getattr(model, "bridge", None) is None:
        return None
    if model.bridge.get("check"):
        return model.bridge["check"]
    from compressor.pipeline.keras3_reference import keras3_outputs
    from compressor.runtime.errors import UserError
    from compressor.runtime.quiet import native_stderr_silenced

    sample = np.asarray(x[:MAX_CHECK_SAMPLES], dtype=np.float32)
    reference = keras3_outputs(model.path, sample, trust_code)
    with native_stderr_silenced():
        rebuilt = np.asarray(model.keras.predict(sample, batch_size=256, verbose=0), dtype=np.float32)
    check = model.bridge["check"] = compare(rebuilt, reference.reshape(rebuilt.shape))
    if not check["passed"]:
        raise UserError(
            f"the tf_keras rebuild of Keras 3 model {model.path} differs from Keras 3 on the data (max |diff| "
            f"{check['max_abs_diff']:.3g}, allowed {check['tolerance']}); training recipes cannot use it: "
            "run post-training recipes on its model.export() SavedModel"
        )
    return check
