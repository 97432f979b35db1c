"""The small CNN of the demo: sized for scikit-learn's 8x8 handwritten digits."""

from __future__ import annotations

from compressor.keras_shim import keras
from compressor.models import _checks


def digits_cnn(
    input_shape: tuple[int, ...] = (8, 8, 1),
    num_classes: int = 10,
    filters: int = 32,
    dense_units: int = 64,
    dropout: float = 0.0,
    width: float = 1.0,
    kernel_initializer: str = "he_normal",
) -> keras.Model:
    """[Conv3x3 -> BatchNorm -> ReLU] x 2 -> MaxPool 2x2 -> Flatten -> Dense(ReLU)
    -> optional Dropout -> Dense(softmax).

    Args:
        input_shape: (height, width, channels), at least 2x2 for the pooling.
        num_classes: size of the softmax output.
        filters: filters of both conv layers (before ``width``).
        dense_units: units of the hidden dense layer (before ``width``).
        dropout: rate of the dropout before the classifier; 0 leaves it out.
        width: multiplier on ``filters`` and ``dense_units`` (rounded, minimum 1). The conv
            parameters grow with its square, so 0.5 gives about a quarter of them.
        kernel_initializer: Keras initializer name for every conv/dense kernel.

    At the defaults the model has ~43k parameters, most in the first dense layer.
    """
    shape = _checks.input_shape("digits_cnn", input_shape, rank=3, min_side=2)
    classes = _checks.class_count(num_classes)
    width = _checks.positive_float("width", width)
    n_filters = _checks.scaled(_checks.positive_int("filters", filters), width)
    n_units = _checks.scaled(_checks.positive_int("dense_units", dense_units), width)
    rate = _checks.dropout_rate(dropout)
    init = _checks.kernel_initializer(kernel_initializer)

    inputs = keras.Input(shape=shape, name="input")
    x = inputs
    for i in (1, 2):
        # No conv bias: the following BatchNorm's beta plays that role.
        x = keras.layers.Conv2D(n_filters, 3, padding="same", use_bias=False, kernel_initializer=init, name=f"conv{i}")(
            x
        )
        x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(n_units, activation="relu", kernel_initializer=init, name="dense")(x)
    if rate > 0:
        x = keras.layers.Dropout(rate, name="dropout")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", kernel_initializer=init, name="probs")(x)
    return keras.Model(inputs, outputs, name="digits_cnn")
