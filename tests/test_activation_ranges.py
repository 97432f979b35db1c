"""Activation ranges by percentile / MSE: an outlier no longer stretches the int8 grid of its tensor."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from compressor.export.ranges import HIST_BINS, clip_range


def _hist(values: np.ndarray) -> tuple[np.ndarray, float, float]:
    lo, hi = float(values.min()), float(values.max())
    counts, _ = np.histogram(values, bins=HIST_BINS, range=(lo, hi))
    return counts, lo, hi


def test_clip_range_on_a_tensor_with_an_outlier(seed):
    values = np.concatenate([np.random.default_rng(0).normal(size=100_000), [1000.0]])
    counts, lo, hi = _hist(values)
    assert clip_range(counts, lo, hi, "minmax") == (lo, hi)
    p_lo, p_hi = clip_range(counts, lo, hi, "percentile:99.99")
    assert 3.0 < p_hi < 4.5 and -4.5 < p_lo < -3.0  # the normal's 99.99th percentile is 3.72
    # MSE weighs the outlier's clipping error against every other value's rounding error: a
    # value at 1000 among 1e5 is kept (clipping it costs more), one at 30 among 1e6 is clipped.
    assert clip_range(counts, lo, hi, "mse")[1] > 0.9 * hi
    values = np.concatenate([np.random.default_rng(0).normal(size=1_000_000), [30.0]])
    counts, lo, hi = _hist(values)
    m_lo, m_hi = clip_range(counts, lo, hi, "mse")
    assert m_hi < 0.5 * hi and lo < m_lo <= 0  # measured: 30 -> 11.1, -4.68 -> -3.74
    relu = np.maximum(values[:100_000], 0)  # a ReLU output: the low end stays at 0
    counts, lo, hi = _hist(relu)
    assert clip_range(counts, lo, hi, "percentile:99.9")[0] == lo


def _tiny(seed):
    from compressor.keras_shim import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((32, 32, 1), name="x")
    hidden = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="hidden")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(hidden)
    outputs = keras.layers.Dense(3, name="out")(pooled)
    return keras.Model(inputs, outputs, name="m")


def _hidden_scale(flatbuffer: bytes) -> float:
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(model_content=flatbuffer).get_tensor_details()
    return next(
        d["quantization"][0] for d in details if d["name"].startswith("m/hidden/Relu") and d["dtype"] == np.int8
    )


@pytest.mark.parametrize("method, kept, error", [("percentile:99.99", 0.3, 0.9), ("mse", 0.9, 1.0)])
def test_int8_step_uses_the_clipped_range(method, kept, error, seed):
    """One pixel of one calibration image is 30 (the rest N(0, 1)): min/max stretches the conv
    output's grid over it; both methods clip it, and the int8 model is closer to float on typical inputs."""
    from compressor.export.conversions import CONVERSIONS
    from compressor.recipes.ptq import Int8Params

    model = SimpleNamespace(keras=_tiny(seed), input_shape=(32, 32, 1), saved_model_dir=None)
    rng = np.random.default_rng(0)
    train = rng.normal(size=(200, 32, 32, 1)).astype(np.float32)
    train[7, 16, 16, 0] = 30.0
    data = SimpleNamespace(x_train=train, x_val=train[:0])
    convert = CONVERSIONS["int8"].convert
    plain, _ = convert(model, data, Int8Params(io_dtype="float32", calibration_samples=200))
    clipped, info = convert(
        model, data, Int8Params(io_dtype="float32", calibration_samples=200, activation_ranges=method)
    )
    assert _hidden_scale(clipped) < kept * _hidden_scale(plain)
    assert info["activation_ranges"]["method"] == method and info["activation_ranges"]["tensors"] >= 1
    assert info["activation_ranges"]["narrowest"][0]["kept"] < kept
    # On typical inputs the hidden activations land on a finer grid: closer to float (the input's own
    # grid, stretched by the pixel too, is kept). Measured scales: percentile 0.0318 -> 0.0076,
    # mse 0.0318 -> 0.0264 (error -3.6%).
    x = rng.normal(size=(20, 32, 32, 1)).astype(np.float32)
    errors = {name: _hidden_error(fb, model.keras, x) for name, fb in (("plain", plain), ("clipped", clipped))}
    assert errors["clipped"] < error * errors["plain"], errors


def _hidden_error(flatbuffer: bytes, model, x: np.ndarray) -> float:
    """Mean |int8 hidden activation (dequantized) - float hidden activation| over ``x``."""
    import warnings

    from ai_edge_litert.interpreter import Interpreter

    from compressor.keras_shim import keras

    reference = keras.Model(model.inputs, model.get_layer("hidden").output).predict(x, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interpreter = Interpreter(model_content=flatbuffer, experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    hidden = next(
        d for d in interpreter.get_tensor_details() if d["name"].startswith("m/hidden/Relu") and d["dtype"] == np.int8
    )
    scale, zero = hidden["quantization"]
    errors = []
    for row, ref in zip(x, reference):
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], row[None])
        interpreter.invoke()
        values = (interpreter.get_tensor(hidden["index"]).astype(np.float32) - zero) * scale
        errors.append(np.abs(values[0] - ref).mean())
    return float(np.mean(errors))


def _write(flatbuffer: bytes, name: str):
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp()) / f"{name}.tflite"
    path.write_bytes(flatbuffer)
    return path


@pytest.mark.parametrize("bad", ["percentile:40", "percentile:101", "max", "percentile"])
def test_bad_range_methods_are_refused(bad):
    from compressor.recipes import validate_recipe
    from compressor.runtime.errors import UserError

    raw = {"name": "r", "steps": [{"type": "int8", "params": {"activation_ranges": bad}}]}
    with pytest.raises(
        UserError, match=r"steps\[0\]\.params\.activation_ranges: .*expected minmax, mse or percentile:P"
    ):
        validate_recipe(raw)
