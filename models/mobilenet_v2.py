"""MobileNetV2 (Sandler et al. 2018, https://arxiv.org/abs/1801.04381), randomly initialised.

The reference edge architecture: depthwise-separable inverted residuals with linear
bottlenecks. Built from ``keras.applications`` with ``weights=None``: this machine is
offline, and the benchmarks need the architecture, not ImageNet accuracy.
"""

from __future__ import annotations

from compressor.keras_shim import keras
from compressor.models import _checks

_MIN_SIDE = 32  # Keras' lower bound: five stride-2 stages must leave at least 1x1


def mobilenet_v2(
    input_shape: tuple[int, ...] = (96, 96, 3),
    num_classes: int = 10,
    alpha: float = 1.0,
    kernel_initializer: str | None = None,
) -> keras.Model:
    """``keras.applications.MobileNetV2`` with its softmax classifier over ``num_classes``.

    Args:
        input_shape: (height, width, channels), at least 32x32. Keras' ImageNet sizes are
            96, 128, 160, 192 and 224, but any size works without pretrained weights.
        num_classes: size of the softmax output.
        alpha: width multiplier of every layer (the paper's 0.35 ... 1.4).
        kernel_initializer: None keeps Keras' own initialisers; a Keras initializer name
            re-initialises every conv, depthwise and dense kernel with it.
    """
    shape = _checks.input_shape("mobilenet_v2", input_shape, rank=3, min_side=_MIN_SIDE)
    classes = _checks.class_count(num_classes)
    alpha = _checks.positive_float("alpha", alpha)
    init = None if kernel_initializer is None else _checks.kernel_initializer(kernel_initializer)

    # Passing our own Input names the graph's entry "input" like every other builder.
    base = keras.applications.MobileNetV2(
        input_tensor=keras.Input(shape=shape, name="input"),
        alpha=alpha,
        weights=None,
        classes=classes,
        include_top=True,
        classifier_activation="softmax",
    )
    if init is not None:
        for layer in base.layers:
            _reinitialise(layer, init)
    # Keras names the classifier "predictions" and offers no public rename; a new Model over
    # the same layers picks up the new name in its output_names and saved config.
    base.layers[-1]._name = "probs"
    return keras.Model(base.inputs, base.outputs, name=base.name)


def _reinitialise(layer: keras.layers.Layer, init: str) -> None:
    """Draw ``layer``'s kernel anew from ``init`` and record it in the layer's config."""
    # DepthwiseConv2D keeps its kernel under other names than Conv2D and Dense.
    for kernel_attr, init_attr in (
        ("kernel", "kernel_initializer"),
        ("depthwise_kernel", "depthwise_initializer"),
    ):
        kernel = getattr(layer, kernel_attr, None)
        if kernel is None:
            continue
        initializer = keras.initializers.get(init)  # a fresh instance per layer
        kernel.assign(initializer(kernel.shape, dtype=kernel.dtype))
        setattr(layer, init_attr, initializer)
