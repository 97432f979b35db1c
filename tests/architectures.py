"""Small functional models with the layer kinds real architectures ship (issue 16), for the
training-recipe tests: residual SeparableConv2D with a first layer keeping Keras' default name,
hard-swish written with TF ops, Conv1D, standalone BatchNormalization, Concatenate; plus the
tf_keras.applications families at 32x32. Data: the embedded digits, as they are (8x8x1), as
sequences (64x1), or enlarged to 32x32x3 for the applications."""

from __future__ import annotations

import dataclasses

import numpy as np

from compressor.keras_shim import keras


def residual_separable(classes: int = 10, shape: tuple = (8, 8, 1)):
    """First Conv2D named ``conv2d``: tfmot's SeparableConv2D split creates a Conv2D of that name."""
    inputs = keras.Input(shape, name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2d")(inputs)
    y = keras.layers.SeparableConv2D(16, 3, padding="same", name="separable_conv2d")(x)
    y = keras.layers.BatchNormalization(momentum=0.9, name="batch_normalization")(y)
    y = keras.layers.ReLU(name="re_lu")(y)
    x = keras.layers.Add(name="add")([x, y])
    z = keras.layers.DepthwiseConv2D(3, padding="same", name="depthwise")(x)
    x = keras.layers.Concatenate(name="concat")([x, z])
    x = keras.layers.BatchNormalization(momentum=0.9, name="bn_after_concat")(x)  # standalone: no conv before it
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(32, activation="relu", name="dense")(x)
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax", name="probs")(x))


def hard_swish_net(classes: int = 10, shape: tuple = (8, 8, 1)):
    """MobileNetV3's hard-swish as tf_keras.applications writes it: TF ops (TFOpLambda) and Multiply."""
    inputs = keras.Input(shape, name="image")
    x = keras.layers.Rescaling(2.0, offset=-1.0, name="rescale")(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", name="conv")(x)
    gate = keras.layers.ReLU(6.0, name="relu6")(x + 3.0) * (1.0 / 6.0)
    x = keras.layers.Multiply(name="hard_swish")([x, gate])
    squeeze = keras.layers.GlobalAveragePooling2D(keepdims=True, name="se_pool")(x)
    squeeze = keras.layers.Conv2D(16, 1, activation="sigmoid", name="se_conv")(squeeze)
    x = keras.layers.Multiply(name="se_scale")([x, squeeze])
    x = keras.layers.PReLU(shared_axes=[1, 2], name="prelu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax", name="probs")(x))


def conv1d_net(classes: int = 10, shape: tuple = (64, 1)):
    inputs = keras.Input(shape, name="sequence")
    x = keras.layers.Conv1D(16, 5, padding="same", activation="relu", name="conv1d")(inputs)
    x = keras.layers.BatchNormalization(momentum=0.9, name="bn")(x)
    x = keras.layers.MaxPooling1D(2, name="pool")(x)
    x = keras.layers.Conv1D(32, 3, activation="relu", name="conv1d_1")(x)
    x = keras.layers.GlobalAveragePooling1D(name="gap")(x)
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax", name="probs")(x))


def application(name: str, classes: int = 10, shape: tuple = (32, 32, 3)):
    apps = keras.applications
    if name == "MobileNetV2":
        return apps.MobileNetV2(input_shape=shape, alpha=0.35, weights=None, classes=classes)
    if name == "MobileNetV3Small":
        return apps.MobileNetV3Small(input_shape=shape, alpha=0.75, weights=None, classes=classes)
    if name == "EfficientNetB0":
        return apps.EfficientNetB0(input_shape=shape, weights=None, classes=classes)
    raise ValueError(name)


def as_sequences(data):
    return dataclasses.replace(data, **{f"x_{s}": getattr(data, f"x_{s}").reshape(-1, 64, 1) for s in _SPLITS})


def as_rgb32(data, limit: int | None = None):
    """Digits enlarged 4x (nearest) to 32x32, grey in all 3 channels; ``limit`` samples per split."""

    def grow(x):
        return np.repeat(np.kron(x[:limit], np.ones((1, 4, 4, 1), np.float32)), 3, axis=-1)

    ys = {f"y_{s}": getattr(data, f"y_{s}")[:limit] for s in _SPLITS}
    return dataclasses.replace(data, **{f"x_{s}": grow(getattr(data, f"x_{s}")) for s in _SPLITS}, **ys)


_SPLITS = ("train", "val", "test")


def trained(model, data, epochs: int = 10, learning_rate: float = 3e-3):
    model.compile(keras.optimizers.Adam(learning_rate), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(data.x_train, data.y_train, epochs=epochs, batch_size=32, verbose=0)
    return model
