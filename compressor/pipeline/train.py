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
from compressor.pipeline.model_io import MODEL_CARD
from compressor.runtime.atomic import output_dir, write_json
from compressor.runtime.errors import UserError

OPTIMIZERS = ("adam", "sgd", "rmsprop")


def make_optimizer(keras: Any, name: str, learning_rate: float) -> Any:
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.9)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate)
    raise UserError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")


def epoch_logger(keras: Any, epochs: int, progress: Callable[[str], None]) -> Any:
    """One plain line per epoch (no carriage-return bars: logs and CI stay readable)."""

    class EpochLines(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = time.time()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            figures = "  ".join(f"{k} {v:.4f}" for k, v in logs.items() if k != "lr")
            progress(f"epoch {epoch + 1}/{epochs}  {figures}  ({time.time() - self._t0:.1f} s)")

    return EpochLines()


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
    if epochs < 1 or batch_size < 1 or not learning_rate > 0:
        raise UserError("epochs and batch size must be >= 1 and the learning rate > 0")
    if optimizer not in OPTIMIZERS:
        raise UserError(f"unknown optimizer {optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise UserError(f"output folder {out} already exists; choose another --out or pass --overwrite")
    dataset = load_dataset(data, data_dir=data_dir, seed=seed)
    from compressor.keras_shim import keras, set_seed
    from compressor.models import build_model

    set_seed(seed)
    model = build_model(
        model_name, input_shape=dataset.input_shape, num_classes=dataset.num_classes, **(model_params or {})
    )
    model.compile(
        optimizer=make_optimizer(keras, optimizer, learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    t0 = time.time()
    history = model.fit(
        dataset.x_train,
        dataset.y_train,
        validation_data=(dataset.x_val, dataset.y_val),
        epochs=epochs,
        batch_size=batch_size,
        verbose=0,
        shuffle=True,
        callbacks=[epoch_logger(keras, epochs, progress)],
    )
    seconds = time.time() - t0
    _, test_accuracy = model.evaluate(dataset.x_test, dataset.y_test, verbose=0)
    card = {
        "schema": "compressor.model-card/1",
        "model": model_name,
        "model_params": model_params or {},
        "parameters": int(model.count_params()),
        "data": data,
        "dataset": dataset.summary(),
        "labels": list(dataset.labels),
        "preprocessing": dataset.preprocessing.to_dict(),
        "training": {
            "epochs": epochs,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "optimizer": optimizer,
            "seed": seed,
            "seconds": round(seconds, 2),
        },
        "test_accuracy": float(test_accuracy),
    }
    with output_dir(out, overwrite=overwrite) as tmp:
        from compressor.runtime.quiet import native_stderr_silenced

        with native_stderr_silenced():
            model.save(tmp / "model", save_format="tf")
        write_json(tmp / MODEL_CARD, card)
        write_json(tmp / "history.json", {k: [float(v) for v in vals] for k, vals in history.history.items()})
    return {**card, "model_path": str(out / "model")}
