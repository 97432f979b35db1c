"""Train one candidate configuration of a reference architecture (a tuning trial, or the final refit).

Names a training space may use (``model.*`` go to the architecture builder):

    learning_rate   peak learning rate
    batch_size      mini-batch size
    optimizer       adam | sgd | rmsprop
    momentum        Adam's beta_1, SGD's momentum, RMSprop's momentum (search it as 1 - beta, log scale)
    l2              L2 penalty on every conv/dense kernel: loss += l2 * sum(w^2)
    model.ARG       an argument of the architecture: dropout, width, filters, dense_units, units, ...
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from compressor.datasets.splits import JoinedSplit, split_of
from compressor.recipes import distribute
from compressor.recipes.optimizers import make_optimizer
from compressor.runtime.errors import UserError

TRAIN_KEYS = ("learning_rate", "batch_size", "optimizer", "momentum", "l2")
DEFAULTS = {"learning_rate": 1e-3, "batch_size": 32, "optimizer": "adam", "momentum": None, "l2": 0.0}


def check_names(names: list[str], model_name: str) -> None:
    from compressor.models import get_spec

    spec = get_spec(model_name)
    for name in names:
        if name in TRAIN_KEYS:
            continue
        if name.startswith("model.") and name[6:] in spec.params:
            continue
        valid = list(TRAIN_KEYS) + [f"model.{k}" for k in spec.params]
        raise UserError(f"search space: params.{name}: unknown parameter for {model_name}; valid: {', '.join(valid)}")


def build(model_name: str, values: dict, data: Any, model_params: dict | None = None) -> Any:
    from compressor.models import build_model

    arch = {**(model_params or {}), **{k[6:]: v for k, v in values.items() if k.startswith("model.")}}
    model = build_model(model_name, input_shape=data.input_shape, num_classes=data.num_classes, **arch)
    l2 = float(values.get("l2") or 0.0)
    if l2 > 0:
        model = with_l2(model, l2)
    settings = {**DEFAULTS, **{k: v for k, v in values.items() if k in TRAIN_KEYS}}
    model.compile(
        optimizer=make_optimizer(settings["optimizer"], settings["learning_rate"], settings["momentum"]),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def with_l2(model: Any, l2: float) -> Any:
    """The same untrained model with an L2 regularizer on every conv/dense kernel.

    Set through the layer config, not with add_loss closures: closures over variables cannot be
    saved in a SavedModel, a config entry can (and the refit model is saved).
    """
    from compressor.keras_shim import keras

    config = model.get_config()
    for layer in config["layers"]:
        if "kernel_regularizer" in layer["config"]:
            layer["config"]["kernel_regularizer"] = keras.regularizers.serialize(keras.regularizers.L2(l2))
    clone = model.__class__.from_config(config)
    clone.set_weights(model.get_weights())  # keep the seeded initial weights
    return clone


def fit(
    model_name: str,
    values: dict,
    data: Any,
    epochs: int,
    seed: int,
    model_params: dict | None = None,
    on_epoch: Callable[[int, dict], None] | None = None,
    validate: bool = True,
) -> tuple[Any, dict]:
    """Fit from scratch; ``on_epoch(epoch, logs)`` may raise (optuna.TrialPruned) to stop early.

    ``validate=False`` is the final refit on train+val: there is no validation split left.
    """
    from compressor.keras_shim import set_seed
    from compressor.recipes.epoch_log import epoch_callback

    set_seed(seed)
    with distribute.scope():  # --distribute mirrored: the trial's model and optimizer are replicated
        model = build(model_name, values, data, model_params)

    batch_size = int(values.get("batch_size", DEFAULTS["batch_size"]))
    every = {"epochs": epochs, "verbose": 0, "callbacks": [epoch_callback(on_epoch or (lambda epoch, logs: None))]}
    if hasattr(data, "x_train"):  # in memory: Keras' own batching and shuffle, as before streaming existed
        held = (data.x_val, data.y_val) if validate else None
        arrays = (data.x_train, data.y_train)
        history = model.fit(*arrays, validation_data=held, batch_size=batch_size, shuffle=True, **every)
    else:  # streamed: tf.data pipelines read a batch at a time, reshuffled each epoch from the seed
        train = split_of(data, "train").to_tf(batch_size, shuffle=True, seed=seed)
        val = split_of(data, "val").to_tf(batch_size) if validate else None
        history = model.fit(train, validation_data=val, **every)
    curves = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    if any(not np.isfinite(v) for v in curves.get("loss", [])):
        raise UserError("training diverged (loss is NaN/inf)")
    return model, curves


def merged_train_val(data: Any) -> Any:
    """The dataset with val folded into train: the winner's final refit uses every labelled sample.
    Streamed data gets a train split that reads train, then val (splits.JoinedSplit): nothing is copied."""
    import dataclasses

    if not hasattr(data, "x_train"):
        return data.with_split("train", JoinedSplit("train", [split_of(data, "train"), split_of(data, "val")]))
    return dataclasses.replace(
        data, x_train=np.concatenate([data.x_train, data.x_val]), y_train=np.concatenate([data.y_train, data.y_val])
    )
