"""`compressor train`: fit a reference architecture on a dataset and save a SavedModel + its card.

The card (compressor-model.json) records the dataset spec, preprocessing and labels, so later
commands (compress, package) reproduce the exact inputs without being told again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from compressor.datasets.source import load_or_stream
from compressor.datasets.splits import split_of
from compressor.pipeline.layout import TrainLayout
from compressor.pipeline.model_io import write_trained_model
from compressor.pipeline.output_guard import check_output, out_path
from compressor.pipeline.run_lock import RunLock
from compressor.recipes import distribute
from compressor.recipes.epoch_log import epoch_callback, epoch_line
from compressor.recipes.optimizers import check_optimizer, make_optimizer
from compressor.runtime.errors import UserError


def train(
    model_name: str,
    out: str | Path,
    data: str = "digits",
    data_dir: str | None = None,
    epochs: int = 20,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    optimizer: str = "adam",
    seed: int = 0,
    model_params: dict | None = None,
    overwrite: bool = False,
    progress: Callable[[str], None] = lambda msg: None,
    preprocess: str = "auto",
    image_fit: str = "resize",
    stream: bool | None = None,
) -> dict:
    """Train ``model_name`` on ``data``, test it once, save it with its card; returns the card.

    ``stream``: read the data batch by batch (datasets/source.py): True, False, or None (auto: shard
    and image folders above 64 MiB of model inputs)."""
    out = out_path(out)
    _check_arguments(epochs, batch_size, learning_rate, optimizer)
    check_output(out, [data, data_dir], overwrite)  # before the data is loaded
    training = {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate, "optimizer": optimizer}
    data_options = {"preprocess": preprocess, "image_fit": image_fit, "stream": stream}
    with RunLock(out):
        card = _train(
            model_name, out, data, data_dir, {**training, "seed": seed}, model_params or {}, progress, data_options
        )
    return {**card, "model_path": str(TrainLayout(out).model)}


def _train(
    model_name: str,
    out: Path,
    data: str,
    data_dir: str | None,
    training: dict,
    model_params: dict,
    progress,
    data_options: dict | None = None,
) -> dict:
    """Load the data, build, fit and test the model, save it with its card (replacing ``out``)."""
    dataset = load_or_stream(data, data_dir=data_dir, seed=training["seed"], progress=progress, **(data_options or {}))
    from compressor.keras_shim import set_seed
    from compressor.models import build_model

    set_seed(training["seed"])
    with distribute.scope():  # replicated variables and optimizer under --distribute
        model = build_model(
            model_name, input_shape=dataset.input_shape, num_classes=dataset.num_classes, **model_params
        )
        model.compile(
            optimizer=make_optimizer(training["optimizer"], training["learning_rate"]),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
    progress(f"preprocess: {dataset.preprocessing.mode} ({dataset.preprocess_reason})")
    distribute.begin_step("train")
    t0 = time.time()
    with distribute.worker_failures_explained():
        history = _fit(model, dataset, training["epochs"], training["batch_size"], training["seed"], progress)
    if distribute.active():
        training["distribute"] = {"mode": distribute.mode(), "replicas": distribute.replicas()}
    training["seconds"] = round(time.time() - t0, 2)
    test_accuracy = evaluated_on_test(model, dataset)
    return write_trained_model(
        out,
        model,
        name=model_name,
        params=model_params,
        data=data,
        dataset=dataset,
        training=training,
        test_accuracy=test_accuracy,
        history=history,
        overwrite=True,  # check_output allowed it: an existing out is a marked (or empty) folder and --overwrite
    )


def _check_arguments(epochs: int, batch_size: int, learning_rate: float, optimizer: str) -> None:
    if epochs < 1 or batch_size < 1 or not learning_rate > 0:
        raise UserError("epochs and batch size must be >= 1 and the learning rate > 0")
    check_optimizer(optimizer)


def _fit(model: Any, dataset: Any, epochs: int, batch_size: int, seed: int, progress: Callable[[str], None]) -> dict:
    """Fit on train, validating on val, one progress line per epoch; returns the curves."""

    def on_epoch(epoch: int, logs: dict) -> None:
        progress(epoch_line(epoch, epochs, logs, skip=("lr",)))

    every = {"epochs": epochs, "verbose": 0, "callbacks": [*distribute.backup_callbacks(), epoch_callback(on_epoch)]}
    if hasattr(dataset, "x_train"):  # in memory: Keras' own batching and shuffle, as before streaming existed
        arrays = (dataset.x_train, dataset.y_train)
        history = model.fit(
            *arrays, validation_data=(dataset.x_val, dataset.y_val), batch_size=batch_size, shuffle=True, **every
        )
    else:  # streamed: tf.data pipelines read a batch at a time, reshuffled each epoch from the seed
        train = split_of(dataset, "train").to_tf(batch_size, shuffle=True, seed=seed)
        history = model.fit(train, validation_data=split_of(dataset, "val").to_tf(batch_size), **every)
    return {k: [float(v) for v in vals] for k, vals in history.history.items()}


def evaluated_on_test(model: Any, dataset: Any) -> float:
    """A compiled model's accuracy on the test split, evaluated once (a batch at a time when streamed)."""
    if hasattr(dataset, "x_test"):
        return float(model.evaluate(dataset.x_test, dataset.y_test, verbose=0)[1])
    return float(model.evaluate(split_of(dataset, "test").to_tf(256), verbose=0)[1])
