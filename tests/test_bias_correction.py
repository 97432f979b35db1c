"""Bias correction: the mean output shift int8 weights cause shrinks, and int8 accuracy does not drop."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from compressor.recipes import channel_weights as cw
from compressor.recipes.bias_correction import BiasCorrectionParams, apply, output_shifts, targets


@pytest.fixture(scope="module")
def loaded(tiny_model_path):
    from compressor.pipeline.model_io import load_model

    return load_model(tiny_model_path)


def _int8_weights(model):
    """A copy of ``model`` whose kernels are rounded exactly as TFLite's int8 rounds them."""
    from compressor.keras_shim import keras

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    for layer, _ in targets(clone):
        weights = layer.get_weights()
        weights[0] = cw.int8_per_channel(weights[0], type(layer).__name__ == "DepthwiseConv2D")
        layer.set_weights(weights)
    return clone


def _mean_shift(reference, model, x, name: str) -> np.ndarray:
    """Per channel: mean over the sample of (``model`` with int8 kernels - the float ``reference``) at
    layer ``name``'s output."""
    from compressor.keras_shim import keras

    quantized = _int8_weights(model)
    out = [keras.Model(m.inputs, m.get_layer(name).output).predict(x, verbose=0) for m in (quantized, reference)]
    diff = out[0] - out[1]
    return diff.reshape(-1, diff.shape[-1]).mean(axis=0)


def test_shift_is_measured_and_removed(loaded, digits, tmp_path):
    model = loaded.keras
    params = BiasCorrectionParams(calibration_samples=300)
    x = params.calibration(digits)
    found = {layer.name: (bn.name if bn is not None else None) for layer, bn in targets(model)}
    assert found == {"conv1": "bn1", "conv2": "bn2", "dense": None, "probs": None}

    corrected = apply(model, digits, params, tmp_path)

    # The shift each layer's own int8 kernel causes, measured on the float model's inputs to it, went into its bias.
    shifts = dict(zip(("dense", "probs"), output_shifts(model, [model.get_layer(n) for n in ("dense", "probs")], x)))
    for name, shift in shifts.items():
        assert np.abs(shift).max() > 1e-4
        np.testing.assert_allclose(
            corrected.get_layer(name).get_weights()[1], model.get_layer(name).get_weights()[1] - shift, atol=1e-7
        )
    # End to end, every kernel int8: the mean output shift per channel shrinks. bn1 sees only conv1's
    # error on the float input, so there it is gone; later layers also inherit their inputs' errors.
    shrink = {}
    for name in ("bn1", "bn2", "dense"):
        before, after = (
            np.abs(_mean_shift(model, model, x, name)).mean(),
            np.abs(_mean_shift(model, corrected, x, name)).mean(),
        )
        shrink[name] = (float(before), float(after))
    assert shrink["bn1"][1] < 1e-3 * shrink["bn1"][0], shrink
    # Measured: bn1 1.3e-3 -> 6e-9, bn2 2.5e-3 -> 6.2e-4, dense (after its ReLU) 2.8e-3 -> 2.2e-3.
    assert shrink["bn2"][1] < 0.5 * shrink["bn2"][0] and shrink["dense"][1] < shrink["dense"][0], shrink
    info = json.loads((tmp_path / "info.json").read_text())
    assert info["layers"]["conv1"]["into"] == "bn1" and info["layers"]["probs"]["into"] == "bias"
    assert info["calibration"] == {"source": "train", "samples": 300}


def test_int8_model_moves_toward_float(loaded, digits, tmp_path):
    """The real int8 artifacts: the corrected one's outputs shift less from the float model's, agree
    with it at least as often, and its accuracy is at least as close to float. Measured on the test
    split: mean |shift| 6.2e-4 -> 4.1e-4; accuracy float 0.641, plain int8 0.649, corrected 0.643."""
    from compressor.export.tflite import convert
    from compressor.runtime.accuracy import predict
    from compressor.runtime.interpreters import open_model

    params = BiasCorrectionParams()
    sample = params.calibration(digits)
    corrected = apply(loaded.keras, digits, params, tmp_path)
    reference = loaded.keras.predict(digits.x_test, verbose=0)
    float_accuracy = float(np.mean(reference.argmax(1) == digits.y_test))
    figures = {}
    for name, keras_model in (("plain", loaded.keras), ("corrected", corrected)):
        flatbuffer = convert(dataclasses.replace(loaded, keras=keras_model), "int8", sample, "int8")
        (tmp_path / f"{name}.tflite").write_bytes(flatbuffer)
        scores = predict(open_model(tmp_path / f"{name}.tflite"), digits.x_test)
        figures[name] = {
            "shift": float(np.abs((scores - reference).mean(axis=0)).mean()),
            "agreement": float(np.mean(scores.argmax(1) == reference.argmax(1))),
            "drop": abs(float(np.mean(scores.argmax(1) == digits.y_test)) - float_accuracy),
        }
    plain, fixed = figures["plain"], figures["corrected"]
    assert fixed["shift"] < 0.8 * plain["shift"], figures
    assert fixed["agreement"] >= plain["agreement"] and fixed["drop"] <= plain["drop"], figures
