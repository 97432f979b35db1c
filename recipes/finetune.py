"""Fine-tuning options shared by every training step, and the one fit loop they all use.

A training step's params class inherits FineTuneParams, so a recipe file writes them flat:
``{type: prune, params: {sparsity: 0.5, epochs: 4, lr_schedule: cosine}}``.
Each fit records its loss/accuracy curve and timings in the step folder (history.json).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from compressor.datasets.splits import split_of
from compressor.recipes import distribute
from compressor.recipes.accumulate import accumulating
from compressor.recipes.base import StepParams, epoch_hook, progress
from compressor.recipes.epoch_log import epoch_callback, epoch_line, without_seconds
from compressor.recipes.optimizers import make_optimizer
from compressor.runtime.atomic import write_json
from compressor.runtime.errors import UserError


class FineTuneParams(StepParams):
    epochs: int = Field(3, ge=1, le=10_000, description="fine-tuning epochs")
    batch_size: int = Field(32, ge=1, le=65_536, description="samples per forward/backward pass (micro-batch)")
    accumulate_steps: int = Field(
        1,
        ge=1,
        le=1024,
        description="micro-batches whose mean gradient makes one optimizer update (effective batch "
        "accumulate_steps * batch_size; schedule steps count updates); 1 = off",
    )
    optimizer: Literal["adam", "sgd", "rmsprop"] = "adam"
    learning_rate: float = Field(1e-4, gt=0, le=10, description="peak learning rate")
    lr_schedule: Literal["constant", "exponential", "cosine", "cyclical", "constant_then_exponential"] = Field(
        "constant",
        description="constant | exponential | cosine (with warm-up) | cyclical (triangular) | "
        "constant_then_exponential (hold_epochs, then decay)",
    )
    decay_rate: float = Field(0.9, gt=0, le=1, description="per-epoch factor of the exponential schedules")
    warmup_epochs: int = Field(0, ge=0, description="linear warm-up epochs (cosine)")
    hold_epochs: int = Field(1, ge=0, description="epochs at the peak before decay (constant_then_exponential)")
    min_learning_rate: float = Field(0.0, ge=0, description="floor of cosine / bottom of cyclical")
    cycle_epochs: int = Field(2, ge=1, description="epochs per half cycle (cyclical)")
    early_stopping: int = Field(0, ge=0, description="patience in epochs on val_loss; 0 = off")
    mixed_precision: Literal["float32", "mixed_float16", "mixed_bfloat16"] = Field(
        "float32", description="compute dtype policy while fine-tuning; weights stay float32"
    )
    seed: int = 0

    @model_validator(mode="after")
    def _consistent(self) -> FineTuneParams:
        if self.lr_schedule == "cosine" and self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) must be < epochs ({self.epochs})")
        if self.min_learning_rate >= self.learning_rate:
            raise ValueError("min_learning_rate must be < learning_rate")
        return self


def learning_rate_at(params: FineTuneParams, epoch: int) -> float:
    """The schedule as a pure function of the epoch (0-based); easy to test and to plot."""
    lr, low = params.learning_rate, params.min_learning_rate
    s = params.lr_schedule
    if s == "constant":
        return lr
    if s == "exponential":
        return lr * params.decay_rate**epoch
    if s == "constant_then_exponential":
        return lr if epoch < params.hold_epochs else lr * params.decay_rate ** (epoch - params.hold_epochs)
    if s == "cosine":  # Loshchilov & Hutter 2017 (arXiv:1608.03983), one cycle, linear warm-up
        if epoch < params.warmup_epochs:
            return lr * (epoch + 1) / (params.warmup_epochs + 1)
        span = max(params.epochs - params.warmup_epochs, 1)
        t = min((epoch - params.warmup_epochs) / span, 1.0)
        return low + 0.5 * (lr - low) * (1 + math.cos(math.pi * t))
    # cyclical: triangular (Smith 2017, arXiv:1506.01186)
    phase = (epoch / params.cycle_epochs) % 2
    return low + (lr - low) * (1 - abs(phase - 1))


def callbacks(params: FineTuneParams, extra: list | None = None) -> list:
    """Early stopping when asked, one progress line per epoch, the epoch hook if one is set
    (base.set_epoch_hook), plus the step's own callbacks."""
    from compressor.keras_shim import keras

    out = [*distribute.backup_callbacks(), *(extra or [])]  # restored first: the others see the resumed state
    if params.lr_schedule != "constant":
        # Per-epoch schedule: the value at epoch e is learning_rate_at(params, e).
        out.append(keras.callbacks.LearningRateScheduler(lambda epoch: learning_rate_at(params, epoch)))
    if params.early_stopping:
        out.append(keras.callbacks.EarlyStopping("val_loss", patience=params.early_stopping, restore_best_weights=True))
    hook = epoch_hook()

    def on_epoch(epoch: int, logs: dict) -> None:
        progress(epoch_line(epoch, params.epochs, logs, indent="    "))
        if hook is not None:
            hook(epoch, params.epochs, without_seconds(logs))

    out.append(epoch_callback(on_epoch))  # last: it sees the epoch after early stopping
    return out


def fit(
    model: Any,
    data: Any,
    params: FineTuneParams,
    workdir: Path,
    loss: Any = "sparse_categorical_crossentropy",
    extra_callbacks: list | None = None,
    metrics: list | None = None,
) -> dict:
    """Compile and fit ``model`` on the training split, validating on val; write history.json.

    ``data`` is a Dataset or a StreamingDataset: both splits are read as tf.data pipelines
    (datasets/splits.py), reshuffled each epoch from ``params.seed``, so nothing needs a split in memory.

    With a mixed-precision policy the model is rebuilt with that compute dtype (softmax output
    kept float32 for numerical stability), trained, and its weights copied back: the model that
    leaves the step is float32, as the converters expect. With ``accumulate_steps`` N > 1 Keras
    sees batches of N * batch_size, each one optimizer update made of N micro-batches
    (recipes/accumulate.py); validation runs in micro-batches too, to stay within their memory.
    """
    from compressor.keras_shim import keras, set_seed

    set_seed(params.seed)
    trained = _with_policy(model, params.mixed_precision)
    optimizer = make_optimizer(params.optimizer, params.learning_rate)
    if params.mixed_precision == "mixed_float16":
        # compile() adds loss scaling only when the model's own policy is float16, but _with_policy
        # sets it per layer: without scaling, small float16 gradients underflow to zero.
        optimizer = keras.mixed_precision.LossScaleOptimizer(optimizer)
    steps = params.accumulate_steps
    if steps > 1 and distribute.active():  # its micro-batch loop is not written for replica contexts
        raise UserError("accumulate_steps > 1 does not combine with --distribute: each replica adds its batch already")
    fitted = accumulating(trained, params.batch_size) if steps > 1 else trained  # shares trained's weights
    fitted.compile(optimizer=optimizer, loss=loss, metrics=metrics or ["accuracy"])
    t0 = time.time()
    # tf.data from the splits, loaded or streamed alike: the same seed gives the same batches.
    train = split_of(data, "train").to_tf(params.batch_size * steps, shuffle=True, seed=params.seed)
    history = fitted.fit(
        train,
        validation_data=split_of(data, "val").to_tf(params.batch_size),
        epochs=params.epochs,
        verbose=0,
        callbacks=callbacks(params, extra_callbacks),
    )
    if trained is not model:
        model.set_weights(trained.get_weights())
    record: dict = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    if not all(math.isfinite(v) for v in record.get("loss", [])):
        raise UserError(
            f"training diverged (loss {record['loss'][-1]} after {len(record['loss'])} epoch(s)): "
            "lower the step's learning_rate (--set steps.N.params.learning_rate=...)"
        )
    record["seconds"] = round(time.time() - t0, 3)
    record["epochs_run"] = len(history.epoch)
    record["mixed_precision"] = params.mixed_precision
    record["accumulate_steps"] = steps
    record["optimizer_updates"] = int(optimizer.iterations.numpy())
    write_json(workdir / "history.json", record)
    return record


def accuracy_on(model: Any, split: Any, batch_size: int = 128) -> float:
    """Top-1 accuracy of a Keras model on a split, loaded or streamed, a batch at a time."""
    hits = sum(int(np.sum(model.predict_on_batch(x).argmax(axis=-1) == y)) for x, y in split.batches(batch_size))
    return hits / max(len(split), 1)


def _with_policy(model: Any, policy: str) -> Any:
    if policy == "float32":
        return model
    from compressor.keras_shim import keras

    config = model.get_config()
    layers = config.get("layers")
    if not isinstance(layers, list):
        raise UserError(f"mixed_precision={policy} needs a functional or sequential model")
    # A Sequential config lists no output_layers: its last layer is the output.
    output_names = {out[0] for out in config.get("output_layers", [])} or {layers[-1]["config"].get("name")}
    for layer in layers:
        # An InputLayer's dtype is its tensor's dtype, not a policy: it rejects "mixed_float16".
        if layer["class_name"] != "InputLayer" and layer["config"].get("name") not in output_names:
            layer["config"]["dtype"] = policy
    try:
        clone = model.__class__.from_config(config)
        clone.set_weights(model.get_weights())
    except Exception as e:
        raise UserError(
            f"mixed_precision={policy} is not possible for this model "
            f"({type(e).__name__}: {str(e).splitlines()[0][:200]}); use float32"
        ) from None
    if clone.layers[-1].compute_dtype != "float32" or not isinstance(clone, keras.Model):
        raise UserError(f"mixed_precision={policy}: the output layer must stay float32")
    return clone
