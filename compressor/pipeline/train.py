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
from compressor.pipeline.model_io import write_trained_model
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
) -> dict:
    """Train ``model_name`` on ``data``, test it once, save it with its card; returns the card."""
    out = Path(out)
    _check_arguments(out, epochs, batch_size, learning_rate, optimizer, overwrite)
    dataset = load_dataset(data, data_dir=data_dir, seed=seed)
    from compressor.keras_shim import set_seed
    from compressor.models import build_model

    set_seed(seed)
    model = build_model(
        model_name, input_shape=dataset.input_shape, num_classes=dataset.num_classes, **(model_params or {})
    )
    model.compile(
        optimizer=make_optimizer(optimizer, learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    t0 = time.time()
    history = _fit(model, dataset, epochs, batch_size, progress)
    seconds = time.time() - t0
    _, test_accuracy = model.evaluate(dataset.x_test, dataset.y_test, verbose=0)
    training = {
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "optimizer": optimizer,
        "seed": seed,
        "seconds": round(seconds, 2),
    }
    card = write_trained_model(
        out,
        model,
        name=model_name,
        params=model_params or {},
        data=data,
        dataset=dataset,
        training=training,
        test_accuracy=test_accuracy,
        history=history,
        overwrite=overwrite,
    )
    return {**card, "model_path": str(out / "model")}


def _check_arguments(
    out: Path, epochs: int, batch_size: int, learning_rate: float, optimizer: str, overwrite: bool
) -> None:
    if epochs < 1 or batch_size < 1 or not learning_rate > 0:
        raise UserError("epochs and batch size must be >= 1 and the learning rate > 0")
    check_optimizer(optimizer)
    if out.exists() and not overwrite:
        raise UserError(f"output folder {out} already exists; choose another --out or pass --overwrite")


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
        callbacks=[epoch_callback(on_epoch)],
    )
    return {k: [float(v) for v in vals] for k, vals in history.history.items()}
