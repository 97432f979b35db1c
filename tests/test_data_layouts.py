"""Issue 17: the model's input shape decides the layout, its own preprocessing decides the scaling.

Each failure the issue lists is a test here: 1-D signals (N, 40, 1) loaded as they are, 2 and 4
channel inputs, and a Rescaling(1/255) model fed uint8 data scored at its true accuracy (the old
default divided by 255 twice and scored it at chance, status ok).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from compressor.commands.cli import cli
from compressor.datasets import load_dataset
from compressor.datasets.choice import parse_mode
from compressor.datasets.model_input import ModelInput, model_input
from compressor.runtime.errors import UserError


def save_npz(path: Path, x_train, y_train, x_test, y_test) -> str:
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return str(path)


@pytest.fixture
def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.fixture(scope="module")
def keras():
    from compressor.keras_shim import keras

    return keras


def signals(rng: np.random.Generator, n: int, steps: int = 40, channels: int = 1):
    """Two classes of noisy signals: a rising or a falling ramp on every channel."""
    y = np.arange(n) % 2
    ramp = np.linspace(-1, 1, steps, dtype=np.float32)[None, :, None]
    x = np.where(y[:, None, None] == 0, ramp, -ramp) + rng.normal(0, 0.3, (n, steps, channels)).astype(np.float32)
    return x.astype(np.float32), y


# ---------------------------------------------------------------- layouts


def test_signals_n_40_1_load_as_they_are_for_a_conv1d_model(tmp_path: Path, rng: np.random.Generator):
    x, y = signals(rng, 60)
    spec = save_npz(tmp_path / "sig.npz", x[:40], y[:40], x[40:], y[40:])
    ds = load_dataset(spec, model=ModelInput(shape=(40, 1)))
    assert ds.input_shape == (40, 1) and ds.preprocessing.layout == "NTC"
    np.testing.assert_array_equal(ds.x_test, x[40:])  # floats are read as they are
    assert ds.raw_test.shape == (20, 40, 1)
    # Without a model to ask, (N, 40, 1) still reads as 40x1 grayscale images, as before.
    assert load_dataset(spec).input_shape == (40, 1, 1)


@pytest.mark.parametrize("shape", [(16, 2), (8, 8, 2), (8, 8, 4), (6, 6, 5)])
def test_two_and_four_plus_channels_are_accepted(tmp_path: Path, rng: np.random.Generator, shape):
    x = rng.integers(0, 256, size=(30, *shape), dtype=np.uint8)
    y = np.arange(30) % 3
    ds = load_dataset(save_npz(tmp_path / "c.npz", x, y, x[:9], y[:9]), model=ModelInput(shape=shape))
    assert ds.input_shape == shape and ds.preprocessing.channel_order == "channels"
    assert ds.preprocessing.layout == {2: "NTC", 3: "NHWC"}[len(shape)]
    np.testing.assert_allclose(ds.x_test, x[:9] / np.float32(255), rtol=1e-6)


def test_model_shape_adds_a_channel_axis_or_flattens(tmp_path: Path, rng: np.random.Generator):
    x = rng.integers(0, 256, size=(20, 8, 8), dtype=np.uint8)
    y = np.arange(20) % 2
    spec = save_npz(tmp_path / "g.npz", x, y, x, y)
    assert load_dataset(spec, model=ModelInput(shape=(8, 8, 1))).input_shape == (8, 8, 1)
    flat = load_dataset(spec, model=ModelInput(shape=(64,)))
    assert flat.input_shape == (64,) and flat.preprocessing.layout == "NC"
    np.testing.assert_array_equal(flat.raw_test[0], flat.raw_test[0].reshape(8, 8).reshape(-1))
    # Variable-length sequences: a None dimension matches anything.
    assert load_dataset(spec, model=ModelInput(shape=(None, 8))).input_shape == (8, 8)


def test_channels_first_against_the_model_is_named(tmp_path: Path):
    x = np.zeros((10, 3, 8, 8), np.uint8)
    y = np.arange(10) % 2
    with pytest.raises(UserError, match=r"channels-first, but the model takes \(8, 8, 3\).*transpose"):
        load_dataset(save_npz(tmp_path / "cf.npz", x, y, x, y), model=ModelInput(shape=(8, 8, 3)))


# ---------------------------------------------------------------- preprocessing detection


def test_detects_rescaling_normalization_ops_and_nested_blocks(keras):
    inp = keras.Input((8, 8, 1))
    plain = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Flatten()(inp)))
    assert model_input(_Loaded(plain)).in_model == ()
    ops = keras.Input((8, 8, 3))
    x = keras.applications.mobilenet_v2.preprocess_input(ops)  # x / 127.5 - 1 as TFOpLambda layers
    found = model_input(_Loaded(keras.Model(ops, keras.layers.Flatten()(x)))).in_model
    assert found == ("x / 127.5", "x - 1")
    norm = keras.layers.Normalization()
    norm.adapt(np.array([[0.0, 10.0], [2.0, 30.0]], np.float32))
    block = keras.Sequential([keras.layers.RandomFlip(), keras.layers.Rescaling(1 / 255.0, offset=-1)])
    nested = keras.Sequential([keras.Input((4, 4, 3)), block, keras.layers.Flatten(), keras.layers.Dense(2)])
    assert model_input(_Loaded(nested)).in_model == ("Rescaling(scale=1/255, offset=-1)",)
    seq = keras.Sequential([keras.Input((2,)), norm, keras.layers.Dense(2)])
    assert model_input(_Loaded(seq)).in_model == ("Normalization(mean=[1, 20], variance=[1, 100])",)


class _Loaded:
    def __init__(self, keras_model):
        self.keras, self.card = keras_model, {}
        self.input_shape = tuple(keras_model.input_shape[1:])


def test_preprocess_modes(tmp_path: Path, rng: np.random.Generator):
    x = rng.integers(0, 256, size=(40, 4, 4, 3), dtype=np.uint8)
    y = np.arange(40) % 2
    spec = save_npz(tmp_path / "m.npz", x, y, x[:10], y[:10])
    raw = x[:10].astype(np.float32)
    assert load_dataset(spec).preprocessing.mode == "scale"
    np.testing.assert_array_equal(load_dataset(spec, preprocess="none").x_test, raw)
    half = load_dataset(spec, preprocess="scale:1/2")
    assert half.preprocessing.mode == "scale:1/2" and half.preprocessing.scale == 0.5
    std = load_dataset(spec, preprocess="mean-std")
    assert len(std.preprocessing.mean) == 3 and abs(float(std.x_train.mean())) < 1e-5
    rescaled = ModelInput(shape=(4, 4, 3), in_model=("Rescaling(scale=1/255, offset=0)",), inspected=True)
    auto = load_dataset(spec, model=rescaled)
    assert auto.preprocessing.mode == "none" and "Rescaling(scale=1/255" in auto.preprocess_reason
    np.testing.assert_array_equal(auto.x_test, raw)
    forced = load_dataset(spec, model=rescaled, preprocess="scale")
    assert forced.preprocessing.scale == 1 / 255 and "the model also preprocesses" in forced.preprocess_reason
    opaque = load_dataset(spec, model=ModelInput(shape=(4, 4, 3)))
    assert "pass --preprocess none if it scales its own inputs" in opaque.preprocess_reason
    assert parse_mode(" Scale:0.25 ") == "scale:1/4" and parse_mode("scale:2.5") == "scale:2.5"
    for bad in ("standard", "scale:zero", "scale:0"):
        with pytest.raises(UserError, match="--preprocess"):
            parse_mode(bad)


@pytest.mark.parametrize("command", ["train", "compress", "validate", "tune", "search"])
def test_preprocess_option_is_checked_before_anything_loads(command, tiny_model_path, tmp_path):
    args = {
        "train": ["train"],
        "compress": ["compress", tiny_model_path],
        "validate": ["validate", str(tmp_path / "missing.tflite")],
        "tune": ["tune"],
        "search": ["search", tiny_model_path],
    }[command]
    out = [] if command == "validate" else ["--out", str(tmp_path / "o")]
    result = CliRunner().invoke(cli, [*args, *out, "--preprocess", "stdnorm"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: --preprocess 'stdnorm' is not a mode; valid: auto, none, scale, scale:F, mean-std (e.g. scale:1/255)"
    ]
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- the Rescaling(1/255) model end to end


@pytest.fixture(scope="module")
def rescaling_model(keras, tmp_path_factory):
    """The Keras tutorial pattern: Rescaling(1/255) inside the model, trained on uint8 digits."""
    from sklearn.datasets import load_digits

    from compressor.keras_shim import set_seed

    bunch = load_digits()
    x = (bunch.images * 15).astype(np.uint8)  # 0..240, like 8-bit pixels
    y = bunch.target
    folder = tmp_path_factory.mktemp("rescaling")
    spec = save_npz(folder / "digits8.npz", x[:1400], y[:1400], x[1400:], y[1400:])
    set_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Rescaling(1 / 255.0),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[:1400, ..., None].astype(np.float32), y[:1400], epochs=3, batch_size=64, verbose=0)
    outputs = model.predict(x[1400:, ..., None].astype(np.float32), verbose=0)
    true_accuracy = float(np.mean(outputs.argmax(axis=1) == y[1400:]))
    path = folder / "rescaling.keras"
    model.save(path)
    return str(path), spec, float(true_accuracy), x[1400:], y[1400:]


def test_rescaling_model_scores_its_true_accuracy(rescaling_model, tmp_path: Path):
    from compressor.bundle.package import package
    from compressor.pipeline.compress import compress
    from compressor.runtime.commands import validate

    path, spec, true_accuracy, x_test, y_test = rescaling_model
    assert 0.5 < true_accuracy < 1.0  # trained a little, far from chance: a double /255 would show
    lines: list[str] = []
    out = tmp_path / "run"
    report = compress(
        path, ["int8"], out, data=spec, latency_runs=5, overrides=["export.formats=[tflite]"], progress=lines.append
    )
    assert report["reference_accuracy"] == pytest.approx(true_accuracy, abs=1e-9)
    int8 = next(r for r in report["artifacts"] if r["artifact"] == "int8")
    assert abs(int8["accuracy"] - true_accuracy) < 0.03  # calibrated on the range the model really sees
    assert any(line.startswith("preprocess: none (raw values: the model preprocesses") for line in lines)
    recorded = json.loads((out / "run.json").read_text())["data"]
    assert recorded["preprocessing"]["mode"] == "none" and recorded["preprocessing"]["scale"] == 1.0
    assert "Rescaling(scale=1/255, offset=0)" in recorded["preprocess_reason"]
    # The bundle replays it: the manifest says so, and the device scores raw uint8 the same.
    built = package(out, tmp_path / "b.zip")
    assert built["manifest"]["preprocessing"]["mode"] == "none"
    np.savez(tmp_path / "raw.npz", x_test=x_test[..., None], y_test=y_test)
    device = validate(tmp_path / "b.zip", data=str(tmp_path / "raw.npz"), runs=5, warmup=1)
    assert device["self_test"]["passed"]
    assert device["accuracy"]["top1"] == pytest.approx(built["manifest"]["models"][0]["host"]["accuracy"], abs=1e-9)


def test_forcing_scale_on_the_rescaling_model_shows_the_double_division(rescaling_model, tmp_path: Path):
    from compressor.pipeline.compress import compress

    path, spec, true_accuracy, _, _ = rescaling_model
    report = compress(
        path,
        ["float16"],
        tmp_path / "r",
        data=spec,
        latency_runs=5,
        overrides=["export.formats=[tflite]"],
        preprocess="scale",
    )
    assert report["reference_accuracy"] < true_accuracy - 0.2
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    assert "the model also preprocesses its input itself" in run["data"]["preprocess_reason"]


def test_signal_model_compresses_packages_and_validates_on_the_device(keras, tmp_path: Path, rng: np.random.Generator):
    """(N, 40, 1) signals, a Conv1D model: the run, the bundle (layout NTC) and the device agree."""
    from compressor.bundle.package import package
    from compressor.keras_shim import set_seed
    from compressor.pipeline.compress import compress
    from compressor.runtime.commands import validate

    x, y = signals(rng, 120)
    spec = save_npz(tmp_path / "sig.npz", x[:80], y[:80], x[80:], y[80:])
    set_seed(0)
    model = keras.Sequential(
        [
            keras.Input((40, 1)),
            keras.layers.Conv1D(4, 5, activation="relu"),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    model.save(tmp_path / "sig.keras")
    out = tmp_path / "run"
    report = compress(
        str(tmp_path / "sig.keras"), ["int8"], out, data=spec, latency_runs=5, overrides=["export.formats=[tflite]"]
    )
    assert report["data"]["preprocessing"]["layout"] == "NTC" and report["data"]["preprocessing"]["mode"] == "scale"
    built = package(out, tmp_path / "sig.zip")
    assert built["manifest"]["raw_input"] == {"shape": [40, 1], "dtype": "float32"}
    np.savez(tmp_path / "raw.npz", x_test=x[80:], y_test=y[80:])
    device = validate(tmp_path / "sig.zip", data=str(tmp_path / "raw.npz"), runs=5, warmup=1)
    assert device["self_test"]["passed"] and device["accuracy"]["samples"] == 40
