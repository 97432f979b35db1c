"""Cross-layer equalization: the float function is kept, per-channel ranges meet across each pair."""

from __future__ import annotations

import json

import numpy as np
import pytest

from compressor.recipes import channel_weights as cw
from compressor.recipes.equalize import EqualizeParams, apply, find_pairs, imbalance


def _model(seed: int):
    """conv -> BN -> ReLU -> depthwise -> BN -> ReLU6 -> 1x1 conv -> GAP -> dense, channel ranges 1e-2..1e2."""
    from compressor.keras_shim import keras

    keras.utils.set_random_seed(seed)
    x = inputs = keras.Input((8, 8, 3), name="x")
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv1")(x)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.ReLU(6.0, name="relu6")(x)
    x = keras.layers.Conv2D(6, 1, name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(10, name="logits")(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(seed)
    kernel = model.get_layer("conv1").get_weights()[0]
    model.get_layer("conv1").set_weights([kernel * np.logspace(-2, 2, 8, dtype=np.float32)])
    for name in ("bn1", "bn2"):
        bn = model.get_layer(name)
        gamma, beta, mean, var = bn.get_weights()
        bn.set_weights([rng.uniform(0.5, 2, gamma.shape), rng.normal(0, 0.1, beta.shape), mean, var])
    return model


def _spread(ranges: np.ndarray) -> float:
    return float(ranges.max() / ranges.min())


def test_equalize_keeps_outputs_and_equalizes_ranges(tmp_path, seed):
    model = _model(seed)
    x = np.random.default_rng(1).normal(size=(16, 8, 8, 3)).astype(np.float32)
    before = model.predict(x, verbose=0)
    pairs, skipped = find_pairs(model)
    assert [(p.first, p.bn, p.second) for p in pairs] == [
        ("conv1", "bn1", "dw"),
        ("dw", "bn2", "conv2"),
        ("conv2", None, "logits"),
    ]
    first = pairs[0]
    assert imbalance(model, first) > 5  # log2: conv1 channel ranges span 1e-2..1e2, the depthwise ~1
    spread_before = _spread(cw.output_ranges(model.get_layer("conv1"), model.get_layer("bn1")))

    out = apply(model, None, EqualizeParams(), tmp_path)

    np.testing.assert_allclose(out.predict(x, verbose=0), before, atol=1e-5)
    np.testing.assert_array_equal(model.predict(x, verbose=0), before)  # the caller's model is not touched
    assert imbalance(out, first) < 1e-3  # r1_c == r2_c for every channel of conv1 -> dw
    assert imbalance(out, pairs[2]) < 1e-3
    spread_after = _spread(cw.output_ranges(out.get_layer("conv1"), out.get_layer("bn1")))
    assert spread_before > 1e3 and spread_after < spread_before / 30
    info = json.loads((tmp_path / "info.json").read_text())
    assert [p["pair"] for p in info["pairs"]] == ["conv1->dw", "conv2->logits"]
    assert info["skipped"] == [{"first": "dw", "second": "conv2", "reason": "ReLU6 between (relu6)"}]


def test_relu6_replaced_by_relu_when_asked(tmp_path, seed):
    model = _model(seed)
    out = apply(model, None, EqualizeParams(relu6="relu"), tmp_path)
    info = json.loads((tmp_path / "info.json").read_text())
    assert info["relu6_replaced"] == ["relu6"] and not info["skipped"]
    assert out.get_layer("relu6").get_config()["max_value"] is None
    assert all(p["log2_range_ratio_after"] < 1e-3 for p in info["pairs"])


def test_swish_between_is_skipped_with_its_reason(seed):
    from compressor.keras_shim import keras

    x = inputs = keras.Input((4,))
    x = keras.layers.Dense(4, activation="swish", name="a")(x)
    outputs = keras.layers.Dense(2, name="b")(x)
    pairs, skipped = find_pairs(keras.Model(inputs, outputs))
    assert pairs == [] and skipped == [{"second": "b", "reason": "a's activation swish is not positively homogeneous"}]


@pytest.mark.parametrize("bad", [{"iterations": 0}, {"relu6": "clip"}, {"iterationz": 3}])
def test_bad_params_are_refused(bad):
    from compressor.recipes import validate_recipe
    from compressor.runtime.errors import UserError

    raw = {"name": "r", "steps": [{"type": "equalize", "params": bad}, {"type": "int8"}]}
    with pytest.raises(UserError, match=r"steps\[0\]\.params"):
        validate_recipe(raw)


def test_chain_equalize_bias_correct_int8_with_ranges(tiny_model_path, digits, tmp_path):
    """The three techniques as a recipe: each step's model is saved and handed on, meta.json names them."""
    import json as _json

    from compressor.pipeline.chain import run_chain
    from compressor.pipeline.model_io import load_model
    from compressor.recipes import validate_recipe
    from compressor.runtime.accuracy import predict
    from compressor.runtime.interpreters import open_model

    recipe = validate_recipe(
        {
            "name": "dfq",
            "steps": [
                {"type": "equalize"},
                {"type": "bias_correct"},
                {"type": "int8", "params": {"activation_ranges": "mse"}},
            ],
        }
    )
    tflite, metas = run_chain(load_model(tiny_model_path), digits, recipe, tmp_path / "steps")
    assert [m["step"] for m in metas] == ["equalize", "bias_correct", "int8"]
    assert [p["pair"] for p in metas[0]["info"]["pairs"]] == ["conv1->conv2", "dense->probs"]
    assert set(metas[1]["info"]["layers"]) == {"conv1", "conv2", "dense", "probs"}
    assert metas[2]["info"]["activation_ranges"]["method"] == "mse"
    accuracy = float(np.mean(predict(open_model(tflite), digits.x_test).argmax(1) == digits.y_test))
    assert accuracy > 0.5  # the tiny model's float accuracy is ~0.64
    assert _json.loads((tmp_path / "steps" / "02-int8" / "meta.json").read_text())["complete"]
