"""Reference architectures for the demo, the tests and the benchmarks.

Each model is registered here as a :class:`ModelSpec`; its builder lives in its own submodule
and is imported only by :func:`build_model`, so importing this package and listing the
registry never imports TensorFlow (``compressor models`` stays instant).

Every builder returns an uncompiled functional ``tf_keras`` model with an ``Input`` layer named
``"input"`` and a final softmax layer named ``"probs"``, so exporters and validators can find
the graph's ends by name whatever the architecture.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from compressor.runtime.errors import UserError
from compressor.runtime.suggest import did_you_mean, unknown_name_message

if TYPE_CHECKING:
    from compressor.keras_shim import keras


@dataclass(frozen=True)
class ModelSpec:
    """A registered architecture.

    ``params`` documents the builder's own arguments; ``input_shape`` and ``num_classes`` are
    common to every builder and passed explicitly to :func:`build_model`.
    """

    name: str
    summary: str
    default_input_shape: tuple[int, ...]
    builder: str  # "module:function"; a leading dot means relative to this package
    params: dict[str, str]


_INIT_DOC = 'Keras initializer name for conv/dense kernels, e.g. "he_normal", "glorot_uniform"'
_WIDTH_DOC = "width multiplier on filters/units (rounded, min 1); 0.5 makes a distillation student"
_DROPOUT_DOC = "dropout rate before the classifier, in [0, 1)"

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="cifar_resnet",
            summary="ResNet-(6n+2) for 32x32 images (He et al. 2016, CIFAR variant)",
            default_input_shape=(32, 32, 3),
            builder=".cifar_resnet:cifar_resnet",
            params={
                "depth": "total layers, 6n+2 (8, 14, 20, 32, ...): n residual blocks per stage",
                "width": "width multiplier on the 16/32/64 stage filters (rounded, minimum 1)",
                "kernel_initializer": _INIT_DOC,
            },
        ),
        ModelSpec(
            name="digits_cnn",
            summary="two conv+BN+ReLU layers, max-pool, dense: the 8x8 digits demo model",
            default_input_shape=(8, 8, 1),
            builder=".digits_cnn:digits_cnn",
            params={
                "filters": "filters of both 3x3 conv layers",
                "dense_units": "units of the hidden dense layer",
                "dropout": _DROPOUT_DOC,
                "width": _WIDTH_DOC,
                "kernel_initializer": _INIT_DOC,
            },
        ),
        ModelSpec(
            name="mlp",
            summary="flatten + fully connected ReLU layers",
            default_input_shape=(8, 8, 1),
            builder=".mlp:mlp",
            params={
                "units": "hidden layer sizes, e.g. (128, 64); () gives a linear classifier",
                "dropout": "dropout rate after each hidden layer, in [0, 1)",
                "width": _WIDTH_DOC,
                "kernel_initializer": _INIT_DOC,
            },
        ),
        ModelSpec(
            name="mobilenet_v2",
            summary="Keras MobileNetV2 with random weights (Sandler et al. 2018), inputs >= 32x32",
            default_input_shape=(96, 96, 3),
            builder=".mobilenet_v2:mobilenet_v2",
            params={
                "alpha": "width multiplier of every layer (0.35, 0.5, 0.75, 1.0, 1.3, 1.4, ...)",
                "kernel_initializer": _INIT_DOC + "; default keeps Keras' own initialisers",
            },
        ),
    )
}


def model_names() -> list[str]:
    """Registered model names, sorted."""
    return sorted(MODELS)


def get_spec(name: str) -> ModelSpec:
    """The spec registered as ``name``; UserError naming the closest valid name otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        names = model_names()
        raise UserError(unknown_name_message("model", name, names)) from None


def build_model(
    name: str,
    input_shape: tuple[int, ...] | None = None,
    num_classes: int = 10,
    **kwargs: Any,
) -> keras.Model:
    """Build the registered model ``name`` (uncompiled, random weights).

    ``input_shape`` excludes the batch dimension and defaults to the spec's
    ``default_input_shape``; ``kwargs`` are the builder arguments listed in ``spec.params``.
    Unknown names, unknown arguments and bad values raise :class:`UserError`.
    """
    spec = get_spec(name)
    valid = sorted(spec.params)
    for arg in kwargs:
        if arg not in spec.params:
            raise UserError(
                f"model {name!r} has no argument {arg!r}{did_you_mean(arg, valid) or ';'} Valid: {', '.join(valid)}"
            )
    module, function = spec.builder.split(":")
    builder = getattr(importlib.import_module(module, package=__name__), function)
    # The builder checks input_shape itself, so a bad one becomes a UserError, not a TypeError.
    shape = spec.default_input_shape if input_shape is None else input_shape
    return builder(input_shape=shape, num_classes=num_classes, **kwargs)


__all__ = ["MODELS", "ModelSpec", "build_model", "get_spec", "model_names"]
