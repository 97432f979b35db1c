"""Gradient accumulation (accumulate_steps): N micro-batches of b make the update of one batch of N*b."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from compressor.pipeline.compress import compress
from compressor.pipeline.layout import RunLayout
from compressor.recipes import load_recipe
from compressor.recipes.accumulate import accumulating, updates_per_epoch
from compressor.recipes.finetune import FineTuneParams, fit
from compressor.runtime.errors import UserError
from compressor.runtime.interpreters import open_model


def _dense(n_in: int = 64, regularized: bool = False):
    from compressor.keras_shim import keras

    keras.utils.set_random_seed(0)  # the same initial weights for every run compared
    l2 = keras.regularizers.l2(1e-3) if regularized else None
    return keras.Sequential(
        [
            keras.Input((n_in,)),
            keras.layers.Dense(12, activation="relu", kernel_regularizer=l2),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )


def _max_difference(a, b) -> float:
    return max(float(np.abs(u - v).max()) for u, v in zip(a.get_weights(), b.get_weights()))


def test_four_micro_batches_of_8_update_like_one_batch_of_32(digits):
    """Plain SGD (no momentum): an update is lr * gradient, so equal weights mean equal gradients.
    204 samples: the last group of each epoch is partial (12 samples = 8 + 4) and still exact."""
    from compressor.keras_shim import keras

    x, y = digits.x_train[:204].reshape(204, -1), digits.y_train[:204]
    trained = []
    for micro, steps in [(32, 1), (8, 4)]:
        model = _dense(regularized=True)
        fitted = accumulating(model, micro) if steps > 1 else model
        fitted.compile(keras.optimizers.SGD(0.05, momentum=0.0), "sparse_categorical_crossentropy", ["accuracy"])
        history = fitted.fit(x, y, batch_size=micro * steps, epochs=2, shuffle=False, verbose=0)
        assert int(fitted.optimizer.iterations) == 2 * math.ceil(204 / 32)  # 14 updates, not 52 micro-batches
        trained.append((model, history.history))
    (plain, plain_log), (accumulated, accumulated_log) = trained
    assert _max_difference(plain, accumulated) < 1e-5
    np.testing.assert_allclose(accumulated_log["loss"], plain_log["loss"], rtol=1e-5)  # sample-weighted means
    assert accumulated_log["accuracy"] == plain_log["accuracy"]


def test_shared_fit_accumulates_with_shuffle_and_schedule(digits, tmp_path):
    """The recipes' own fit: shuffled, cosine schedule, SGD with momentum; batch 16 x 2 == batch 32."""
    n = len(digits.x_train)
    flat = dataclasses.replace(
        digits, x_train=digits.x_train.reshape(n, -1), x_val=digits.x_val.reshape(len(digits.x_val), -1)
    )
    models, records = [], []
    for batch_size, steps in [(32, 1), (16, 2)]:
        params = FineTuneParams(
            epochs=2,
            batch_size=batch_size,
            accumulate_steps=steps,
            optimizer="sgd",
            learning_rate=0.05,
            lr_schedule="cosine",
        )
        models.append(_dense())
        records.append(fit(models[-1], flat, params, tmp_path / str(steps)))
    assert _max_difference(*models) < 1e-5
    assert records[1]["optimizer_updates"] == records[0]["optimizer_updates"] == 2 * math.ceil(n / 32)
    assert records[1]["accumulate_steps"] == 2


@pytest.fixture(scope="module")
def prune_qat_run(tiny_model_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("accumulate") / "run"
    report = compress(
        tiny_model_path,
        ["prune-qat-int8"],
        out,
        latency_runs=2,
        overrides=[
            "steps.0.params.accumulate_steps=2",
            "steps.0.params.epochs=2",
            "steps.1.params.accumulate_steps=2",
            "steps.1.params.epochs=1",
            "export.formats=[tflite]",
        ],
    )
    return RunLayout(out), report


def test_prune_and_qat_accumulate_through_the_pipeline(prune_qat_run, digits):
    layout, report = prune_qat_run
    params = load_recipe("prune-qat-int8").steps[0].params
    updates = updates_per_epoch(len(digits.x_train), params.batch_size, 2)
    assert updates == math.ceil(math.ceil(len(digits.x_train) / params.batch_size) / 2)  # N times fewer
    for index, step, epochs in [(0, "prune", 2), (1, "qat", 1)]:
        history = json.loads((layout.step("prune-qat-int8", index, step) / "history.json").read_text())
        assert history["accumulate_steps"] == 2 and history["optimizer_updates"] == epochs * updates
    info = report["steps"]["prune-qat-int8"][0]["info"]
    assert info["overall_sparsity"] >= 0.49  # the schedule, counted in updates, still reaches its target
    assert info["schedule"]["end_step"] < 2 * updates  # ... within the updates that happen
    runner = open_model(layout.artifact("prune-qat-int8", "tflite"))
    assert runner.inputs[0].dtype == "int8" and runner.outputs[0].dtype == "int8"


@pytest.mark.parametrize("value", [0, 1025, -3])
def test_accumulate_steps_out_of_range_is_a_one_line_error(value):
    with pytest.raises(UserError) as err:
        load_recipe("prune-qat-int8", [f"steps.1.params.accumulate_steps={value}"])
    message = str(err.value)
    assert "\n" not in message and "steps[1].params.accumulate_steps" in message, message
