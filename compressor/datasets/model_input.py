"""What the model tells data loading: its input shape, the preprocessing it applies itself, and
the preprocessing recorded with it (a `compressor train` card).

Read from the Keras model by duck typing (layer class names, configs, call arguments), so this
package still never imports TensorFlow. Layers that only reshape or augment (active in training
only) are walked through; the walk stops at the first layer that computes features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from compressor.datasets.layout import Shape

# Layers that are inactive at inference or only move values around: preprocessing may follow them.
PASS_THROUGH = {
    "InputLayer",
    "RandomFlip",
    "RandomRotation",
    "RandomZoom",
    "RandomTranslation",
    "RandomContrast",
    "RandomBrightness",
    "RandomCrop",
    "RandomHeight",
    "RandomWidth",
    "Resizing",
    "CenterCrop",
    "Reshape",
    "Permute",
    "Cast",
}
# Element-wise arithmetic with a constant, as `inputs / 255.0` or keras.applications'
# preprocess_input leave it in a tf_keras model (TFOpLambda layers).
ARITHMETIC = {
    "math.truediv": "/",
    "math.divide": "/",
    "math.multiply": "*",
    "math.subtract": "-",
    "math.add": "+",
    "__operators__.add": "+",
    "__operators__.truediv": "/",
    "__operators__.mul": "*",
    "__operators__.sub": "-",
}


@dataclass(frozen=True)
class ModelInput:
    """``shape``: one sample (None for a free dimension); ``in_model``: the preprocessing the model
    applies to its input itself, in order; ``inspected``: False when the model has no Keras layers
    to look at (a plain SavedModel, a .tflite); ``recorded``: the --preprocess mode its card holds."""

    shape: Shape | None = None
    in_model: tuple[str, ...] = ()
    inspected: bool = False
    recorded: str = ""


def model_input(model: Any) -> ModelInput:
    """A ModelInput for compressor's LoadedModel (``input_shape``, ``keras``, ``card``)."""
    keras_model = getattr(model, "keras", None)
    card = getattr(model, "card", None) or {}
    recorded = ((card.get("dataset") or {}).get("preprocessing") or {}).get("mode", "")
    shape = tuple(model.input_shape) if getattr(model, "input_shape", None) is not None else None
    if keras_model is None:
        return ModelInput(shape=shape, recorded=recorded)
    found: list[str] = []
    _walk(keras_model, found)
    return ModelInput(shape=shape, in_model=tuple(found), inspected=True, recorded=recorded)


def _walk(model: Any, found: list[str]) -> bool:
    """Append the input preprocessing of ``model`` to ``found``; True when the walk reached the
    end of ``model`` without meeting a feature layer (a nested preprocessing block)."""
    for layer in getattr(model, "layers", []):
        kind = type(layer).__name__
        if kind in PASS_THROUGH:
            continue
        if hasattr(layer, "layers") and kind in ("Sequential", "Functional", "Model"):
            if _walk(layer, found):
                continue
            return False
        described = describe(layer)
        if described is None:
            return False
        found.append(described)
    return True


def describe(layer: Any) -> str | None:
    """A short text for a preprocessing layer (``Rescaling(scale=1/255, offset=0)``), else None."""
    kind = type(layer).__name__
    config = _config(layer)
    if kind == "Rescaling":
        return f"Rescaling(scale={number_text(config.get('scale'))}, offset={number_text(config.get('offset', 0))})"
    if kind == "Normalization":
        mean, variance = _weights(layer, "mean"), _weights(layer, "variance")
        return f"Normalization(mean={mean}, variance={variance})"
    if kind == "TFOpLambda":
        op = ARITHMETIC.get(str(config.get("function", "")))
        constant = _constant(layer)
        if op is not None and constant is not None:
            return f"x {op} {number_text(constant)}"
    return None


def _config(layer: Any) -> dict:
    try:
        return layer.get_config()
    except Exception:  # a layer whose get_config is broken is simply not preprocessing we know
        return {}


def _constant(layer: Any) -> float | None:
    """The scalar operand of a TFOpLambda's first call (``x / 255.0`` -> 255.0)."""
    try:
        args = layer.inbound_nodes[0].call_args
        kwargs = layer.inbound_nodes[0].call_kwargs
    except (AttributeError, IndexError):
        return None
    operands = list(args[1:]) + [v for k, v in kwargs.items() if k in ("y", "other")]
    scalars = [float(v) for v in operands if isinstance(v, int | float) and not isinstance(v, bool)]
    return scalars[0] if len(scalars) == 1 else None


def _weights(layer: Any, name: str) -> str:
    value = getattr(layer, name, None)
    try:
        flat = [float(v) for v in value.numpy().reshape(-1)]
    except AttributeError:
        return "?"
    shown = ", ".join(number_text(v) for v in flat[:3]) + (", ..." if len(flat) > 3 else "")
    return f"[{shown}]"


def number_text(value: Any) -> str:
    """1/255 for 0.00392..., else a short decimal."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if 0 < abs(v) < 1 and abs(1 / v - round(1 / v)) < 1e-6 * abs(1 / v):
        return f"{'-' if v < 0 else ''}1/{abs(round(1 / v))}"
    return f"{v:g}"
