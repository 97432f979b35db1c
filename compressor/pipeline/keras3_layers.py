"""One Keras 3 layer config -> the tf_keras config of the same layer (the bridge's layer table).

Differences handled (Keras 3.15 -> tf_keras 2.21): ``batch_shape`` -> ``batch_input_shape``;
``dtype`` as a DTypePolicy dict -> its name; initializers, regularizers and constraints as
``{"module": "keras.initializers", ...}`` -> tf_keras' class with only the arguments it takes
(Keras 3 adds e.g. ``input_axes: null``); LeakyReLU ``negative_slope`` -> ``alpha``; the ``silu``
activation -> ``swish``. An option tf_keras does not have is dropped only while it is unset
(None/False/empty); set, it is an error naming the layer, its class and the option. Activations
tf_keras lacks or defines differently (Keras 3's hard_sigmoid is relu6(x + 3) / 6, tf_keras' is
0.2x + 0.5) are left to keras3_graph, which rewrites them as standard layers. BatchNormalization
is built unfused: tf_keras' fused kernel rounds differently from Keras 3's tf.nn.batch_normalization,
by 1.3e-5 on a MobileNetV2's softmax outputs (0.0 unfused).
"""

from __future__ import annotations

import inspect
from typing import Any

from compressor.runtime.errors import UserError

# Keras 3 layer classes the bridge translates (same class name in tf_keras).
SUPPORTED = frozenset(
    [
        "InputLayer",
        "Dense",
        "Conv1D",
        "Conv2D",
        "DepthwiseConv2D",
        "SeparableConv2D",
        "Conv2DTranspose",
        "BatchNormalization",
        "LayerNormalization",
        "Activation",
        "ReLU",
        "LeakyReLU",
        "Softmax",
        "ELU",
        "Add",
        "Subtract",
        "Multiply",
        "Average",
        "Maximum",
        "Minimum",
        "Concatenate",
        "MaxPooling1D",
        "MaxPooling2D",
        "AveragePooling1D",
        "AveragePooling2D",
        "GlobalAveragePooling1D",
        "GlobalAveragePooling2D",
        "GlobalMaxPooling1D",
        "GlobalMaxPooling2D",
        "Flatten",
        "Dropout",
        "SpatialDropout1D",
        "SpatialDropout2D",
        "GaussianNoise",
        "Rescaling",
        "Reshape",
        "Permute",
        "ZeroPadding1D",
        "ZeroPadding2D",
        "UpSampling1D",
        "UpSampling2D",
        "Cropping1D",
        "Cropping2D",
        "Identity",
        "Normalization",
    ]
)
# Same name and same function in both: passed through.
NATIVE_ACTIVATIONS = frozenset(
    [
        "linear",
        "relu",
        "sigmoid",
        "softmax",
        "tanh",
        "elu",
        "selu",
        "softplus",
        "softsign",
        "exponential",
        "gelu",
        "mish",
        "swish",
    ]
)
ACTIVATION_RENAMES = {"silu": "swish"}
# Rewritten by keras3_graph as a chain of standard layers.
REWRITTEN_ACTIVATIONS = frozenset({"relu6", "hard_sigmoid", "hard_silu", "hard_swish", "leaky_relu"})
_KEY_RENAMES = {"InputLayer": {"batch_shape": "batch_input_shape"}, "LeakyReLU": {"negative_slope": "alpha"}}
_BASE_KWARGS = frozenset(
    [
        "name",
        "trainable",
        "dtype",
        "input_dim",
        "input_shape",
        "batch_input_shape",
        "batch_size",
        "weights",
        "activity_regularizer",
        "autocast",
        "dynamic",
    ]
)
_FAMILIES = {"_initializer": "initializers", "_regularizer": "regularizers", "_constraint": "constraints"}


class BridgeError(UserError):
    """The Keras 3 model cannot be rebuilt in tf_keras: one line naming the layer and its class."""


def unsupported(name: str, class_name: str, why: str) -> BridgeError:
    return BridgeError(
        f"Keras 3 layer {name!r} ({class_name}) cannot be rebuilt in tf_keras: {why}; training recipes need "
        "a tf_keras model (post-training recipes run from the Keras 3 file or its model.export() SavedModel)"
    )


def activation_name(value: Any, name: str, class_name: str) -> str:
    """The activation's Keras 3 name ('relu', 'hard_silu'...): a string or a serialized built-in."""
    if value is None:
        return "linear"
    if isinstance(value, dict) and str(value.get("module", "")).startswith("keras"):
        value = value.get("config") if isinstance(value.get("config"), str) else value.get("class_name")
    if not isinstance(value, str):
        raise unsupported(name, class_name, f"activation {value!r} is not a built-in Keras activation")
    act = value.rsplit(">", 1)[-1]
    if act in NATIVE_ACTIVATIONS or act in ACTIVATION_RENAMES or act in REWRITTEN_ACTIVATIONS:
        return act
    raise unsupported(name, class_name, f"activation {act!r} has no tf_keras equivalent")


def dtype_name(value: Any, name: str = "?", class_name: str = "?") -> str:
    if value is None:
        return "float32"
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "DTypePolicy" in str(value.get("class_name")):
        policy = (value.get("config") or {}).get("name")
        if isinstance(policy, str) and policy in ("float32", "float16", "bfloat16", "mixed_float16", "mixed_bfloat16"):
            return policy
        raise unsupported(name, class_name, f"dtype policy {policy!r} (quantized Keras 3 layers are not bridged)")
    raise unsupported(name, class_name, f"dtype {value!r}")


def translate_layer(class_name: str, config: dict) -> tuple[dict, str]:
    """(tf_keras config, activation still to apply). The activation is 'linear' unless the layer's
    own one must be rewritten as extra layers (keras3_graph places them after it)."""
    name = str(config.get("name"))
    if class_name == "Lambda":
        raise unsupported(name, class_name, "a Lambda's Python code is not translated (write it as standard layers)")
    if class_name not in SUPPORTED:
        raise unsupported(name, class_name, "the bridge has no translation for this layer class")
    renames = _KEY_RENAMES.get(class_name, {})
    allowed = _allowed_keys(class_name)
    out: dict = {}
    for key, value in config.items():
        key = renames.get(key, key)
        if key == "dtype":
            value = dtype_name(value, name, class_name)
        elif any(key.endswith(suffix) for suffix in _FAMILIES) or key == "activity_regularizer":
            value = _serialized(value, key, name, class_name)
        if key in allowed:
            out[key] = value
        elif not _unset(value):
            raise unsupported(name, class_name, f"option {key}={value!r} has no tf_keras equivalent")
    if class_name == "BatchNormalization":
        out["fused"] = False  # Keras 3 (TF backend) runs tf.nn.batch_normalization: the same arithmetic, bit for bit
    pending = "linear"
    if "activation" in out and class_name != "Activation":
        act = activation_name(out["activation"], name, class_name)
        if act in REWRITTEN_ACTIVATIONS:
            out["activation"], pending = "linear", act
        else:
            out["activation"] = ACTIVATION_RENAMES.get(act, act)
    return out, pending


def _unset(value: Any) -> bool:
    return value is None or value is False or (isinstance(value, (dict, list, tuple, str)) and not value)


def _allowed_keys(class_name: str) -> set[str]:
    from compressor.keras_shim import keras

    return _init_parameters(getattr(keras.layers, class_name)) | _BASE_KWARGS


def _init_parameters(cls: type) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            names |= set(inspect.signature(klass.__init__).parameters)
    return names - {"self", "args", "kwargs"}


def _serialized(value: Any, key: str, name: str, class_name: str) -> Any:
    """An initializer/regularizer/constraint in tf_keras' {"class_name", "config"} form."""
    if value is None or isinstance(value, str):
        return value
    family = next((f for suffix, f in _FAMILIES.items() if key.endswith(suffix)), "regularizers")
    if not isinstance(value, dict) or not isinstance(value.get("class_name"), str):
        raise unsupported(name, class_name, f"{key}={value!r}")
    from compressor.keras_shim import keras

    target = getattr(getattr(keras, family), value["class_name"], None)
    if not isinstance(target, type):
        raise unsupported(name, class_name, f"{key} {value['class_name']} has no tf_keras equivalent")
    allowed = _init_parameters(target)
    config = {}
    for k, v in (value.get("config") or {}).items():
        if k in allowed:
            config[k] = v
        elif not _unset(v):
            raise unsupported(name, class_name, f"{key} {value['class_name']} option {k}={v!r}")
    return {"class_name": value["class_name"], "config": config}
