"""`compressor train`: fit a reference architecture on a dataset and save a SavedModel + its card.

The card (compressor-model.json) records the dataset spec, preprocessing and labels, so later
commands (compress, package) reproduce the exact inputs without being told again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from compressor.datasets import load_dataset
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
) -> dict:
    """Train ``model_name`` on ``data``, test it once, save it with its card; returns the card."""
    out = out_path(out)
    _check_arguments(epochs, batch_size, learning_rate, optimizer)
    check_output(out, [data, data_dir], overwrite)  # before the data is loaded
    training = {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate, "optimizer": optimizer}
    data_options = {"preprocess": preprocess, "image_fit": image_fit}
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
    dataset = load_dataset(data, data_dir=data_dir, seed=training["seed"], **(data_options or {}))
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
        history = _fit(model, dataset, training["epochs"], training["batch_size"], progress)
    if distribute.active():
        training["distribute"] = {"mode": distribute.mode(), "replicas": distribute.replicas()}
    training["seconds"] = round(time.time() - t0, 2)
    _, test_accuracy = model.evaluate(dataset.x_test, dataset.y_test, verbose=0)
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


def _fit(model: Any, dataset: Any, epochs: int, batch_size: int, progress: Callable[[str], None]) -> dict:
    """Fit on train, validating on val, one progress line per epoch; returns the curves."""

    def on_epoch(epoch: int, logs: dict) -> None:
        progress(epoch_line(epoch, epochs, logs, skip=("lr",)))

    history = model.fit(
        dataset.x_train,
        dataset.y_train,
        validation_data=(dataset.x_val, dataset.y_val),
        epochs=epochs,
        batch_size=batch_size,
        verbose=0,
        shuffle=True,
        callbacks=[*distribute.backup_callbacks(), epoch_callback(on_epoch)],
    )
    return {k: [float(v) for v in vals] for k, vals in history.history.items()}
