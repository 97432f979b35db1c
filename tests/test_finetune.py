"""The fine-tuning options every training step shares: LR schedules, early stopping, mixed precision, history."""

from __future__ import annotations

import dataclasses
import json
import math
import re

import numpy as np
import pytest

from compressor.recipes.finetune import FineTuneParams, fit, learning_rate_at
from compressor.runtime.errors import UserError


@pytest.fixture(scope="module")
def digits():
    from compressor.datasets import load_dataset

    return load_dataset("digits", seed=0)


def _small_model():
    from compressor.keras_shim import keras
    from compressor.models import build_model

    keras.utils.set_random_seed(0)  # the same initial weights whatever ran before in this process
    return build_model("digits_cnn", filters=4, dense_units=16)


@pytest.mark.parametrize(
    "options, expected",
    [
        ({"lr_schedule": "constant", "learning_rate": 0.01}, [0.01, 0.01, 0.01, 0.01]),
        ({"lr_schedule": "exponential", "learning_rate": 0.1, "decay_rate": 0.5}, [0.1, 0.05, 0.025, 0.0125]),
        (
            {"lr_schedule": "constant_then_exponential", "learning_rate": 0.1, "decay_rate": 0.5, "hold_epochs": 2},
            [0.1, 0.1, 0.1, 0.05, 0.025],
        ),
        # 0.5 * lr * (1 + cos(pi * e / epochs)): cos(pi/4) = 0.70711
        ({"lr_schedule": "cosine", "learning_rate": 0.1, "epochs": 4}, [0.1, 0.0853553, 0.05, 0.0146447]),
        # warm-up epoch 0: lr * 1/2; then min + 0.5 * (lr - min) * (1 + cos(pi * (e - 1) / 4))
        (
            {"lr_schedule": "cosine", "learning_rate": 0.1, "min_learning_rate": 0.02, "epochs": 5, "warmup_epochs": 1},
            [0.05, 0.1, 0.02 + 0.04 * (1 + math.cos(math.pi / 4)), 0.06, 0.02 + 0.04 * (1 - math.cos(math.pi / 4))],
        ),
        # triangle from the floor: 0.02 at epoch 0, peak 0.1 after cycle_epochs=2, floor again at 4
        (
            {"lr_schedule": "cyclical", "learning_rate": 0.1, "min_learning_rate": 0.02, "cycle_epochs": 2},
            [0.02, 0.06, 0.1, 0.06, 0.02],
        ),
    ],
)
def test_schedule_values(options, expected):
    params = FineTuneParams(**options)
    got = [learning_rate_at(params, e) for e in range(len(expected))]
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_schedule_is_applied_and_history_written(digits, tmp_path):
    params = FineTuneParams(epochs=3, lr_schedule="exponential", learning_rate=1e-2, decay_rate=0.5, batch_size=64)
    model = _small_model()
    record = fit(model, digits, params, tmp_path)
    history = json.loads((tmp_path / "history.json").read_text())
    assert history == json.loads(json.dumps(record))
    np.testing.assert_allclose(history["lr"], [1e-2, 5e-3, 2.5e-3], rtol=1e-6)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert len(history[key]) == 3 and all(np.isfinite(history[key])), key
    assert history["loss"][-1] < history["loss"][0] and history["val_accuracy"][-1] > 0.5
    assert history["epochs_run"] == 3 and history["mixed_precision"] == "float32" and history["seconds"] > 0


def test_a_diverging_fit_is_one_line_not_a_nan_history(digits, tmp_path):
    params = FineTuneParams(epochs=1, optimizer="sgd", learning_rate=10.0, batch_size=64)
    x = digits.x_train.copy()
    x[0, 0, 0, 0] = np.inf  # one overflowed input: BatchNorm spreads it, the loss turns NaN
    data = dataclasses.replace(digits, x_train=x)
    with pytest.raises(UserError, match=r"training diverged \(loss (nan|inf) after 1 epoch\(s\)\): lower"):
        fit(_small_model(), data, params, tmp_path)
    assert not (tmp_path / "history.json").exists()


def test_early_stopping_stops(digits, tmp_path):
    # Validation labels shifted by one class: the better the fit, the worse val_loss gets.
    wrong = dataclasses.replace(digits, y_val=(digits.y_val + 1) % 10)
    params = FineTuneParams(epochs=30, early_stopping=2, learning_rate=1e-2, batch_size=64)
    record = fit(_small_model(), wrong, params, tmp_path)
    assert record["epochs_run"] < 30 and len(record["loss"]) == record["epochs_run"]
    assert int(np.argmin(record["val_loss"])) == record["epochs_run"] - 3  # patience 2 after the best epoch


@pytest.mark.parametrize("policy, compute", [("mixed_float16", "float16"), ("mixed_bfloat16", "bfloat16")])
def test_mixed_precision_trains_and_returns_float32(policy, compute, digits, tmp_path):
    from compressor.keras_shim import keras

    seen = {}

    class Spy(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen["compute"] = {layer.compute_dtype for layer in self.model.layers[1:-1]}
            seen["output"] = self.model.layers[-1].compute_dtype
            seen["optimizer"] = isinstance(self.model.optimizer, keras.mixed_precision.LossScaleOptimizer)

    model = _small_model()
    before = [w.copy() for w in model.get_weights()]
    params = FineTuneParams(
        epochs=2, learning_rate=1e-2, batch_size=64, mixed_precision=policy, lr_schedule="exponential"
    )
    record = fit(model, digits, params, tmp_path, extra_callbacks=[Spy()])
    assert seen["compute"] == {compute} and seen["output"] == "float32"
    if policy == "mixed_float16":
        assert seen["optimizer"]  # or small float16 gradients underflow
    assert all(layer.compute_dtype == "float32" and layer.dtype == "float32" for layer in model.layers)
    assert all(w.dtype == np.float32 for w in model.get_weights())
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights())), "weights not copied back"
    accuracy = float(np.mean(model.predict(digits.x_val, verbose=0).argmax(axis=1) == digits.y_val))
    assert abs(accuracy - record["val_accuracy"][-1]) <= 0.03  # same weights, float32 compute
    assert json.loads((tmp_path / "history.json").read_text())["mixed_precision"] == policy


def test_mixed_precision_on_a_sequential_model(digits, tmp_path):
    from compressor.keras_shim import keras

    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    record = fit(model, digits, FineTuneParams(epochs=1, mixed_precision="mixed_float16"), tmp_path)
    assert record["epochs_run"] == 1 and model.layers[-1].dtype == "float32"


@pytest.mark.parametrize(
    "options, fragment",
    [
        ({"lr_schedule": "cosine", "epochs": 3, "warmup_epochs": 3}, "warmup_epochs (3) must be < epochs (3)"),
        ({"learning_rate": 1e-3, "min_learning_rate": 1e-2}, "min_learning_rate must be < learning_rate"),
        ({"mixed_precision": "float16"}, "mixed_precision"),
    ],
)
def test_inconsistent_options_rejected(options, fragment):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=re.escape(fragment)):
        FineTuneParams(**options)


@pytest.fixture
def hook():
    from compressor.recipes.base import set_epoch_hook

    calls = []
    yield calls, set_epoch_hook
    set_epoch_hook(None)


def test_epoch_hook_sees_every_epoch_and_its_exception_stops_fit(digits, tmp_path, hook):
    from compressor.recipes.finetune import callbacks

    calls, set_epoch_hook = hook
    params = FineTuneParams(epochs=4, learning_rate=1e-2, batch_size=64)
    assert [type(c).__name__ for c in callbacks(params)] == ["EpochLog"]  # one callback, whether a hook is set or not

    class Stop(Exception):
        """Stands for optuna.TrialPruned: any exception the hook raises."""

    def stop_at_second(epoch, epochs, logs):
        calls.append((epoch, epochs, logs))
        if epoch == 1:
            raise Stop("stop here")

    set_epoch_hook(stop_at_second)
    with pytest.raises(Stop, match="stop here"):
        fit(_small_model(), digits, params, tmp_path / "stopped")
    assert [(e, n) for e, n, _ in calls] == [(0, 4), (1, 4)]  # epochs 2 and 3 never ran
    assert set(calls[0][2]) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(type(v) is float for v in calls[0][2].values())
    assert not (tmp_path / "stopped" / "history.json").exists()

    set_epoch_hook(None)
    calls.clear()
    record = fit(_small_model(), digits, params, tmp_path / "free")
    assert record["epochs_run"] == 4 and calls == []


def test_epoch_line_wording():
    from compressor.recipes.epoch_log import epoch_line

    logs = {"loss": 0.12345, "accuracy": 0.5, "lr": 0.001, "seconds": 1.26}
    assert epoch_line(2, 10, logs, skip=("lr",)) == "epoch 3/10  loss 0.1235  accuracy 0.5000  (1.3 s)"
    assert epoch_line(0, 1, logs, indent="    ") == "    epoch 1/1  loss 0.1235  accuracy 0.5000  lr 0.0010  (1.3 s)"
