"""A multilayer perceptron: the smallest baseline, and a distillation student."""

from __future__ import annotations

from collections.abc import Sequence

from compressor.keras_shim import keras
from compressor.models import _checks
from compressor.runtime.errors import UserError


def mlp(
    input_shape: tuple[int, ...] = (8, 8, 1),
    num_classes: int = 10,
    units: Sequence[int] = (128, 64),
    dropout: float = 0.0,
    width: float = 1.0,
    kernel_initializer: str = "glorot_uniform",
) -> keras.Model:
    """Flatten -> [Dense(ReLU) -> optional Dropout] per entry of ``units`` -> Dense(softmax).

    Args:
        input_shape: any shape; it is flattened.
        num_classes: size of the softmax output.
        units: hidden layer sizes (before ``width``); empty gives a linear softmax classifier.
        dropout: rate of the dropout after each hidden layer; 0 leaves them out.
        width: multiplier on every hidden size (rounded, minimum 1); 0.5 gives about a
            quarter of the hidden-to-hidden parameters.
        kernel_initializer: Keras initializer name for every dense kernel.
    """
    shape = _checks.input_shape("mlp", input_shape)
    classes = _checks.class_count(num_classes)
    width = _checks.positive_float("width", width)
    if isinstance(units, (str, bytes)) or not isinstance(units, Sequence):
        raise UserError(f"units must be a list of positive integers, e.g. (128, 64); got {units!r}")
    sizes = [_checks.scaled(_checks.positive_int("units", u), width) for u in units]
    rate = _checks.dropout_rate(dropout)
    init = _checks.kernel_initializer(kernel_initializer)

    inputs = keras.Input(shape=shape, name="input")
    x = keras.layers.Flatten(name="flatten")(inputs)
    for i, size in enumerate(sizes, start=1):
        x = keras.layers.Dense(size, activation="relu", kernel_initializer=init, name=f"dense{i}")(x)
        if rate > 0:
            x = keras.layers.Dropout(rate, name=f"dropout{i}")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", kernel_initializer=init, name="probs")(x)
    return keras.Model(inputs, outputs, name="mlp")
