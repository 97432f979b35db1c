"""The CIFAR ResNet of He et al. 2016 (https://arxiv.org/abs/1512.03385, section 4.2).

Three stages of 16, 32 and 64 filters on 32x32, 16x16 and 8x8 maps, ``n`` basic residual
blocks each, so depth = 6n + 2 (ResNet-8, -14, -20, -32, ...). Where a stage halves the map
and doubles the filters, the shortcut is a strided 1x1 convolution (the paper's option B)
so the sum stays shape-consistent.
"""

from __future__ import annotations

from compressor.keras_shim import keras
from compressor.models import _checks
from compressor.runtime.errors import UserError

_STAGE_FILTERS = (16, 32, 64)


def cifar_resnet(
    input_shape: tuple[int, ...] = (32, 32, 3),
    num_classes: int = 10,
    depth: int = 8,
    width: float = 1.0,
    kernel_initializer: str = "he_normal",
) -> keras.Model:
    """Conv3x3 stem -> 3 stages of ``(depth - 2) / 6`` basic blocks -> global average pool
    -> Dense(softmax).

    Args:
        input_shape: (height, width, channels); 32x32 is the paper's size, any size works.
        num_classes: size of the softmax output.
        depth: 6n + 2 with n >= 1 (8, 14, 20, 32, 44, 56, 110).
        width: multiplier on the stage filters 16/32/64 (rounded, minimum 1).
        kernel_initializer: Keras initializer name for every conv/dense kernel; the paper
            uses He initialisation ("he_normal").
    """
    shape = _checks.input_shape("cifar_resnet", input_shape, rank=3)
    classes = _checks.class_count(num_classes)
    depth = _checks.positive_int("depth", depth)
    if depth < 8 or (depth - 2) % 6:
        raise UserError(f"cifar_resnet depth must be 6n+2 with n >= 1 (8, 14, 20, ...), got {depth}")
    width = _checks.positive_float("width", width)
    init = _checks.kernel_initializer(kernel_initializer)
    blocks = (depth - 2) // 6

    inputs = keras.Input(shape=shape, name="input")
    x = _conv_bn(inputs, _checks.scaled(_STAGE_FILTERS[0], width), 3, 1, init, "stem")
    x = keras.layers.ReLU(name="stem_relu")(x)
    for stage, base_filters in enumerate(_STAGE_FILTERS, start=1):
        filters = _checks.scaled(base_filters, width)
        for block in range(1, blocks + 1):
            stride = 2 if stage > 1 and block == 1 else 1
            x = _basic_block(x, filters, stride, init, f"stage{stage}_block{block}")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", kernel_initializer=init, name="probs")(x)
    return keras.Model(inputs, outputs, name=f"cifar_resnet{depth}")


def _conv_bn(x, filters: int, kernel: int, stride: int, init: str, name: str):
    # No conv bias: the following BatchNorm's beta plays that role.
    x = keras.layers.Conv2D(
        filters,
        kernel,
        strides=stride,
        padding="same",
        use_bias=False,
        kernel_initializer=init,
        name=f"{name}_conv",
    )(x)
    return keras.layers.BatchNormalization(name=f"{name}_bn")(x)


def _basic_block(x, filters: int, stride: int, init: str, name: str):
    """Two 3x3 conv+BN with a ReLU between; the sum with the shortcut goes through a ReLU."""
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(x, filters, 1, stride, init, f"{name}_proj")
    y = _conv_bn(x, filters, 3, stride, init, f"{name}_a")
    y = keras.layers.ReLU(name=f"{name}_a_relu")(y)
    y = _conv_bn(y, filters, 3, 1, init, f"{name}_b")
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_out")(y)
