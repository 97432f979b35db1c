"""The optimizers training and fine-tuning offer, built in one place (train, tune and every step)."""

from __future__ import annotations

from typing import Any

from compressor.runtime.errors import UserError

OPTIMIZERS = ("adam", "sgd", "rmsprop")


def check_optimizer(name: str) -> None:
    if name not in OPTIMIZERS:
        raise UserError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")


def make_optimizer(name: str, learning_rate: float, momentum: float | None = None) -> Any:
    """A tf_keras optimizer. ``momentum``: Adam's beta_1, SGD's momentum (default 0.9) or RMSprop's
    momentum (default 0); None keeps each optimizer's default."""
    from compressor.keras_shim import keras

    check_optimizer(name)
    lr = float(learning_rate)
    if name == "adam":
        return keras.optimizers.Adam(lr) if momentum is None else keras.optimizers.Adam(lr, beta_1=float(momentum))
    if name == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9 if momentum is None else float(momentum))
    return keras.optimizers.RMSprop(lr, momentum=0.0 if momentum is None else float(momentum))
