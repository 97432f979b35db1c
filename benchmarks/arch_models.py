"""The families of the architectures section (issue 16) and the data each is trained on.

The tf_keras.applications builders are hard_arch_bench's (MobileNetV2 alpha 0.35, MobileNetV3Small
without its built-in preprocessing, EfficientNetB0; weights=None, 32x32x3); the residual
SeparableConv2D and Conv1D models are the training-preset tests' (tests/architectures.py). The
dense-block model is the one kind neither has: DenseNet-BC's pre-activation order, where every
BatchNormalization follows a Concatenate, not a convolution, so nothing can fold it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# family -> (input kind, float training epochs, epochs of each training step: None = the preset's own).
# The small models train an epoch in about a second, so they run the presets as shipped; on the
# applications every training step is cut to 1 epoch (their fixed costs, tfmot's wrapping and the
# int8 conversion of a QAT graph, already take minutes per preset on 2 shared cores).
FAMILIES = {  # the small ones first: their rows are in before the applications' long runs
    "residual_separable": ("digits8", 20, None),
    "dense_block": ("digits8", 20, None),
    "conv1d": ("seq64", 20, None),
    "MobileNetV2": ("rgb32", 10, 1),
    "MobileNetV3Small": ("rgb32", 10, 1),
    "EfficientNetB0": ("rgb32", 10, 1),
}
# Presets a family does not run in the section, and why (measured 2026-12-03, 2 shared cores).
SKIPPED = {
    "EfficientNetB0": dict.fromkeys(
        ("qat-int8", "prune-qat-int8", "cluster-qat-int8"),
        "section budget: each QAT preset on EfficientNetB0 costs 3-14 min even at 1 epoch (qat-int8 166 s on a "
        "quiet machine; cluster-qat-int8 855 s under load, the job then at 17 GB RSS); qat-int8 and "
        "cluster-qat-int8 ran ok when measured",
    ),
}
INPUTS = {
    "rgb32": "the digits upsampled to 32x32x3 (each pixel a 4x4 block, grey in 3 channels)",
    "digits8": "the digits as they are (8x8x1)",
    "seq64": "the digits as sequences (the 8x8 image read row by row: 64x1)",
}


def build(family: str):
    """A fresh, untrained model of the family (10 classes)."""
    from compressor.keras_shim import keras
    from tests.architectures import conv1d_net, residual_separable

    from .hard_arch_bench import _architectures

    apps = _architectures(keras)
    if family in apps:
        return apps[family]()
    small = {"residual_separable": residual_separable, "conv1d": conv1d_net, "dense_block": dense_block}
    return small[family]()


def family_data(kind: str):
    """The digits' own split (seed 0) in the input form ``kind`` names."""
    from compressor.datasets import load_dataset

    from .mixed_precision import digits_32x32

    if kind == "rgb32":
        return digits_32x32()
    digits = load_dataset("digits", seed=0)
    if kind == "digits8":
        return digits
    rows = {f"x_{s}": getattr(digits, f"x_{s}").reshape(-1, 64, 1) for s in ("train", "val", "test")}
    return dataclasses.replace(digits, **{k: v.astype(np.float32) for k, v in rows.items()})


def dense_block(classes: int = 10, shape: tuple = (8, 8, 1), growth: int = 12):
    """Two DenseNet-BC layers (BN -> ReLU -> 1x1 conv -> BN -> ReLU -> 3x3 conv, output concatenated
    to the input), a DepthwiseConv2D transition, and a standalone BN before the head."""
    from compressor.keras_shim import keras

    layers = keras.layers
    inputs = keras.Input(shape, name="image")
    x = layers.Conv2D(2 * growth, 3, padding="same", use_bias=False, name="stem")(inputs)
    for i in range(2):
        y = layers.BatchNormalization(momentum=0.9, name=f"block{i}_bn1")(x)
        y = layers.ReLU(name=f"block{i}_relu1")(y)
        y = layers.Conv2D(4 * growth, 1, use_bias=False, name=f"block{i}_conv1")(y)
        y = layers.BatchNormalization(momentum=0.9, name=f"block{i}_bn2")(y)
        y = layers.ReLU(name=f"block{i}_relu2")(y)
        y = layers.Conv2D(growth, 3, padding="same", use_bias=False, name=f"block{i}_conv2")(y)
        x = layers.Concatenate(name=f"block{i}_concat")([x, y])
    x = layers.DepthwiseConv2D(3, strides=2, padding="same", name="transition_dw")(x)
    x = layers.BatchNormalization(momentum=0.9, name="final_bn")(x)
    x = layers.ReLU(name="final_relu")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, layers.Dense(classes, activation="softmax", name="probs")(x))
