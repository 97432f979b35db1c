"""channel_prune: MACs, channel groups, kept counts, exact slicing, refusals, and the int8 chain end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from compressor.commands.cli import cli
from compressor.recipes import get_step, load_recipe
from compressor.recipes.channel_prune import ChannelPruneParams
from compressor.recipes.channel_prune_build import pruned_model
from compressor.recipes.channel_prune_graph import analyse
from compressor.recipes.channel_prune_macs import layer_macs, total_macs
from compressor.recipes.channel_prune_plan import make_plan, rounded
from compressor.runtime.errors import UserError


def _mixed(classes: int = 10):
    """Residual Add, DepthwiseConv2D + BatchNorm, Concatenate, SeparableConv2D, GlobalPooling and
    Flatten heads concatenated into a Dense: every coupling channel_prune knows, on 8x8x1 inputs."""
    from compressor.keras_shim import keras

    layers = keras.layers
    x = keras.Input((8, 8, 1), name="input")
    stem = layers.ReLU(name="stem_relu")(
        layers.BatchNormalization(name="stem_bn")(layers.Conv2D(8, 3, padding="same", name="stem")(x))
    )
    res = layers.Add(name="add")([stem, layers.Conv2D(8, 3, padding="same", name="res")(stem)])
    dw = layers.BatchNormalization(name="dw_bn")(layers.DepthwiseConv2D(3, padding="same", name="dw")(res))
    cat = layers.Concatenate(name="cat")([dw, layers.Conv2D(8, 1, name="side")(res)])
    sep = layers.ReLU(name="sep_relu")(layers.SeparableConv2D(8, 3, padding="same", name="sep")(cat))
    pooled = layers.Flatten(name="flat")(layers.MaxPooling2D(4, name="pool")(sep))
    head = layers.Concatenate(name="heads")([layers.GlobalAveragePooling2D(name="gap")(sep), pooled])
    hidden = layers.Dense(8, activation="relu", name="hidden")(head)
    return keras.Model(x, layers.Dense(classes, activation="softmax", name="probs")(hidden), name="mixed")


def _filters(model, name):
    layer = model.get_layer(name)
    return getattr(layer, "filters", None) or layer.units


def _plan_and_prune(model, **params):
    graph = analyse(model, params.get("skip_layers", []))
    plan = make_plan(model, graph, ChannelPruneParams(**params))
    return graph, plan, pruned_model(model, graph, plan.keep)[0]


def test_macs_by_hand():
    from compressor.keras_shim import keras

    layers = keras.layers
    x = keras.Input((8, 8, 2))
    y = layers.Conv2D(4, 3, strides=2, padding="same", name="conv")(x)  # 4x4 out
    y = layers.DepthwiseConv2D(3, padding="same", name="dw")(y)
    y = layers.SeparableConv2D(6, 3, padding="valid", depth_multiplier=2, name="sep")(y)  # 2x2 out
    y = layers.Dense(5, name="dense")(layers.Flatten()(y))
    macs = layer_macs(keras.Model(x, y))
    assert macs == {
        "conv": (0, 16 * 9 * 2 * 4),
        "dw": (16 * 9 * 4, 0),
        "sep": (4 * 9 * 4 * 2, 4 * 8 * 6),
        "dense": (0, 24 * 5),
    }
    assert total_macs(keras.Model(x, y)) == 1152 + 576 + 288 + 192 + 120


@pytest.mark.parametrize("n", [1, 3, 8, 10, 16, 37])
@pytest.mark.parametrize("round_to", [1, 4, 8])
@pytest.mark.parametrize("min_channels", [1, 6])
def test_rounded_counts_keep_their_promises(n, round_to, min_channels):
    for k in range(0, n + 1):
        got = rounded(k, n, min_channels, round_to)
        assert min(min_channels, n) <= got <= n
        assert got == n or got % round_to == 0, (k, n, got)
        assert abs(got - max(k, min_channels)) <= round_to or got == n


def test_zero_fraction_is_the_identity(seed):
    model = _mixed()
    graph, plan, pruned = _plan_and_prune(model, filter_fraction=0.0)
    x = np.random.default_rng(seed).normal(size=(16, 8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(pruned(x, training=False).numpy(), model(x, training=False).numpy(), rtol=0, atol=1e-6)
    assert plan.macs_estimate == plan.macs_before == total_macs(pruned)
    # stem/res share the residual group; dw and the Concatenate carry it on; probs is never pruned.
    groups = sorted(sorted(graph.sources[r]) for r in graph.prunable())
    assert groups == [["hidden"], ["res", "stem"], ["sep"], ["side"]]
    assert graph.not_pruned() == {"probs": "model output (its units are never pruned)"}


def test_removed_channels_are_exactly_the_zero_filters(seed):
    """Zero the filters of every other channel: l1 ranks them last, and with zero biases and fresh
    BatchNorms they contribute nothing, so the pruned model must compute the same outputs.
    This checks every slice: residual group, depthwise, Concatenate, separable, Flatten rows."""
    model = _mixed()
    graph = analyse(model)
    for root in graph.prunable():
        for name in graph.sources[root]:
            layer = model.get_layer(name)
            weights = layer.get_weights()
            kernel = 1 if name == "sep" else 0
            weights[kernel][..., ::2] = 0.0
            layer.set_weights(weights)
    graph, plan, pruned = _plan_and_prune(model, filter_fraction=0.5)
    for r in graph.prunable():
        np.testing.assert_array_equal(plan.keep[r], np.arange(1, graph.size[r], 2))
    assert [_filters(pruned, n) for n in ("stem", "res", "side", "sep", "hidden", "probs")] == [4, 4, 4, 4, 4, 10]
    assert pruned.get_layer("dw").depthwise_kernel.shape[-2] == 4 and pruned.get_layer("dw_bn").gamma.shape == (4,)
    assert pruned.get_layer("hidden").kernel.shape[0] == 4 + 4 * 2 * 2  # gap + flattened 2x2 pooled map
    x = np.random.default_rng(seed).normal(size=(16, 8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(pruned(x, training=False).numpy(), model(x, training=False).numpy(), atol=1e-5)


def test_counts_respect_round_to_min_channels_and_groups():
    from compressor.models import build_model

    model = build_model("cifar_resnet", input_shape=(8, 8, 3), depth=14)  # 16/32/64 filters, 2 blocks a stage
    _, _, pruned = _plan_and_prune(model, filter_fraction=0.7, round_to=8, min_channels=12)
    filters = {layer.name: layer.filters for layer in pruned.layers if type(layer).__name__ == "Conv2D"}
    # kept of 16: 5 -> at least 12 -> a multiple of 8: 16 (whole); of 32: 10 -> 12 -> 16; of 64: 19 -> 16.
    assert filters["stem_conv"] == filters["stage1_block1_b_conv"] == filters["stage1_block2_b_conv"] == 16
    assert (
        filters["stage2_block1_proj_conv"] == filters["stage2_block2_b_conv"] == filters["stage2_block1_a_conv"] == 16
    )
    assert filters["stage3_block1_proj_conv"] == filters["stage3_block2_b_conv"] == 16
    assert all(f % 8 == 0 and f >= 12 for f in filters.values()), filters


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_macs_reach_about_the_target(scope):
    from compressor.models import build_model

    model = build_model("cifar_resnet", input_shape=(16, 16, 3))
    _, plan, pruned = _plan_and_prune(model, target=0.5, scope=scope)
    ratio = total_macs(pruned) / total_macs(model)
    assert 0.4 <= ratio <= 0.5, ratio
    assert plan.macs_estimate == total_macs(pruned) and pruned.output_shape == (None, 10)


def test_bn_importance_prunes_small_gammas_and_names_the_fallback(tiny_model_path, digits, tmp_path):
    from compressor.pipeline.model_io import load_model

    model = load_model(tiny_model_path).keras
    bn = model.get_layer("bn1")
    gamma, *rest = bn.get_weights()
    gamma[:] = np.array([1, 0.01, 1, 0.02, 1, 0.03, 1, 0.04])
    bn.set_weights([gamma, *rest])
    params = ChannelPruneParams(filter_fraction=0.5, importance="bn", epochs=1)
    graph = analyse(model)
    conv1 = next(r for r in graph.prunable() if graph.sources[r] == ["conv1"])
    np.testing.assert_array_equal(make_plan(model, graph, params).keep[conv1], [0, 2, 4, 6])
    pruned = get_step("channel_prune").apply(model, digits, params, tmp_path)
    info = json.loads((tmp_path / "info.json").read_text())
    group = next(g for g in info["groups"] if g["layers"] == ["conv1"])
    assert group["channels"] == [8, 4] and info["importance"] == "bn"
    assert pruned.get_layer("bn1").beta.shape == (4,)
    assert info["importance_fallback"] == {"dense": "l1 (no BatchNormalization with a scale right after it)"}
    assert bn.get_weights()[0][1] == np.float32(0.01)  # the input model is untouched


def test_mixed_model_builds_trains_and_distils(digits, tmp_path):
    params = ChannelPruneParams(target=0.5, round_to=2, distill_weight=0.5, epochs=1)
    pruned = get_step("channel_prune").apply(_mixed(), digits, params, tmp_path)
    info = json.loads((tmp_path / "info.json").read_text())
    history = json.loads((tmp_path / "history.json").read_text())
    assert info["macs_ratio"] <= 0.5 and info["target_reached"] and info["distill_weight"] == 0.5
    assert _filters(pruned, "stem") == _filters(pruned, "res") and all(n % 2 == 0 for _, n in info["narrowed"].values())
    assert len(history["val_accuracy"]) == 1 and np.isfinite(history["loss"][0])
    probs = pruned.predict(digits.x_test[:8], verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def _shared_and_lambda():
    from compressor.keras_shim import keras

    layers = keras.layers
    x = keras.Input((8, 8, 1), name="input")
    a = layers.Conv2D(8, 3, padding="same", activation="relu", name="a")(x)
    b = layers.Conv2D(8, 3, padding="same", activation="relu", name="b")(x)
    shared = layers.Conv2D(8, 1, name="shared")
    lam = layers.Lambda(lambda t: t * 2.0, name="double")(layers.Conv2D(4, 1, name="to_lambda")(a))
    y = layers.Concatenate(name="cat")([shared(a), shared(b), lam])
    y = layers.Dense(16, activation="relu", name="hidden")(layers.GlobalAveragePooling2D(name="gap")(y))
    return keras.Model(x, layers.Dense(10, activation="softmax", name="probs")(y))


def test_shared_layer_and_lambda_are_skipped_with_the_reason(digits, tmp_path):
    params = ChannelPruneParams(filter_fraction=0.5, epochs=1)
    pruned = get_step("channel_prune").apply(_shared_and_lambda(), digits, params, tmp_path)
    info = json.loads((tmp_path / "info.json").read_text())
    shared = "Conv2D 'shared' is called 2 times (shared weights across branches)"
    assert info["not_pruned"] == {
        "a": shared,
        "b": shared,
        "to_lambda": "Lambda 'double': channels are not traced through this layer type",
        "probs": "model output (its units are never pruned)",
    }
    assert info["skipped_layers"]["shared"] == shared and info["narrowed"] == {"hidden": [16, 8]}
    assert pruned.get_layer("shared").filters == 8 and pruned.predict(digits.x_test[:2], verbose=0).shape == (2, 10)


def test_nothing_prunable_is_refused_with_the_reasons(digits, tmp_path):
    from compressor.keras_shim import keras

    x = keras.Input((8, 8, 1))
    y = keras.layers.Reshape((64, 4))(keras.layers.Conv2D(4, 3, padding="same", name="conv")(x))
    model = keras.Model(x, keras.layers.Dense(10, name="probs")(keras.layers.Flatten()(y)))
    with pytest.raises(UserError, match=r"no channels can be removed consistently \(conv: Reshape 'reshape.*'"):
        get_step("channel_prune").apply(model, digits, ChannelPruneParams(epochs=1), tmp_path)


def test_params_take_one_amount():
    assert ChannelPruneParams(filter_fraction=0.3).target is None
    with pytest.raises(ValueError, match="not both"):
        ChannelPruneParams(target=0.5, filter_fraction=0.3)
    with pytest.raises(ValueError, match="give target"):
        ChannelPruneParams(target=None)
    recipe = load_recipe("channel-prune-int8", ["steps.0.params.target=null", "steps.0.params.filter_fraction=0.25"])
    assert recipe.steps[0].params.filter_fraction == 0.25
    assert load_recipe("channel-prune-int8").steps[0].params.round_to == 16


def test_channel_prune_int8_end_to_end(tiny_model_path, tmp_path):
    from compressor.pipeline.compress import compress
    from compressor.runtime.interpreters import open_model

    result = CliRunner().invoke(cli, ["recipes"])
    assert result.exit_code == 0 and "channel-prune-int8" in result.output
    out = tmp_path / "run"
    # The tiny model's convs have 8 filters: the preset's round_to 16 would leave them whole.
    overrides = ["steps.0.params.epochs=2", "steps.0.params.round_to=4"]
    report = compress(tiny_model_path, ["channel-prune-int8"], out, latency_runs=5, overrides=overrides)
    rows = [r for r in report["artifacts"] if r["artifact"] == "channel-prune-int8"]
    assert {r["format"] for r in rows} == {"tflite", "onnx"}
    assert all(not r["export_mismatches"] for r in rows) and all(r["accuracy"] > 0.3 for r in rows), rows
    pairs = [p for p in report["parity"] if "channel-prune-int8" in p["a"]]
    assert pairs and all(p["status"] == "ok" for p in pairs), report["parity"]
    info = json.loads((out / "channel-prune-int8" / "steps" / "00-channel_prune" / "meta.json").read_text())["info"]
    assert info["macs_ratio"] <= 0.5 and info["importance"] == "l1" and info["round_to"] == 4
    assert all(after % 4 == 0 for _, after in info["narrowed"].values())
    assert open_model(out / "channel-prune-int8" / "model.tflite").inputs[0].dtype == "int8"


@pytest.mark.parametrize("nested", ["sequential", "functional"])
def test_sequential_and_nested_models(nested, seed):
    from compressor.keras_shim import keras

    layers = keras.layers
    plain = keras.Sequential(
        [layers.Conv2D(8, 3, activation="relu", input_shape=(8, 8, 1), name="c1"), layers.Flatten(name="f")]
        + [layers.Dense(16, name="d"), layers.Dense(10, activation="softmax", name="probs")]
    )
    _, _, pruned = _plan_and_prune(plain, filter_fraction=0.5)
    assert type(pruned).__name__ == "Sequential" and (_filters(pruned, "c1"), _filters(pruned, "d")) == (4, 8)
    inner_in = keras.Input((8, 8, 4))
    inner = (
        keras.Sequential([inner_in, layers.Conv2D(4, 1)], name="inner")
        if nested == "sequential"
        else keras.Model(inner_in, layers.Conv2D(4, 1)(inner_in), name="inner")
    )
    x = keras.Input((8, 8, 1))
    y = layers.Conv2D(6, 1, name="after")(inner(layers.Conv2D(4, 3, padding="same", name="outer")(x)))
    model = keras.Model(x, layers.Dense(10, name="probs")(layers.GlobalAveragePooling2D()(y)))
    graph, _, pruned = _plan_and_prune(model, filter_fraction=0.5)
    kind = "Sequential" if nested == "sequential" else "Functional"
    assert graph.not_pruned()["outer"] == f"{kind} 'inner': channels are not traced through this layer type"
    assert _filters(pruned, "after") == 3 and _filters(pruned, "outer") == 4
    data = np.random.default_rng(seed).normal(size=(2, 8, 8, 1)).astype(np.float32)
    assert pruned(data).shape == (2, 10)


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("steps.0.params.filter_fraction=0.3", "steps[0].params: give target (MACs) or filter_fraction, not both"),
        ("steps.0.params.importance=l3", "steps[0].params.importance: must be 'l1', 'l2' or 'bn'"),
        ("steps.0.params.round_to=0", "steps[0].params.round_to: must be greater than or equal to 1"),
    ],
)
def test_schema_errors_exit_2_in_one_line(override, fragment, tiny_model_path, tmp_path):
    args = ["compress", tiny_model_path, "--recipe", "channel-prune-int8", "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(cli, [*args, "--set", override])
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and fragment in lines[0], result.output
    assert not (tmp_path / "o").exists()


def test_tf_ops_in_the_functional_api_pass_channels_on(seed):
    """Hard-swish written with TF ops (TFOpLambda layers) and a TF-op residual sum: channels flow
    through them; zero filters are the removed ones and the outputs stay the same."""
    from compressor.keras_shim import keras, tf

    layers = keras.layers
    x = keras.Input((8, 8, 1))
    a = layers.Conv2D(8, 3, padding="same", name="a")(x)
    b = layers.Conv2D(8, 3, padding="same", name="b")(x)
    s = a + b
    y = layers.Conv2D(8, 1, name="c")(s * tf.nn.relu6(s + 3.0) / 6.0)
    y = layers.Dense(10, activation="softmax", name="probs")(layers.GlobalAveragePooling2D()(y))
    model = keras.Model(x, y)
    for name in ("a", "b", "c"):
        kernel, bias = model.get_layer(name).get_weights()
        kernel[..., ::2] = 0.0
        model.get_layer(name).set_weights([kernel, bias])
    graph, _, pruned = _plan_and_prune(model, filter_fraction=0.5)
    assert sorted(sorted(graph.sources[r]) for r in graph.prunable()) == [["a", "b"], ["c"]]
    assert graph.not_pruned() == {"probs": "model output (its units are never pruned)"}
    assert [_filters(pruned, n) for n in ("a", "b", "c")] == [4, 4, 4]
    data = np.random.default_rng(seed).normal(size=(8, 8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(pruned(data).numpy(), model(data).numpy(), atol=1e-5)
    # A constant vector is not a scalar: the channels around it stay whole.
    z = layers.Conv2D(4, 1, name="d")(x) * tf.constant([1.0, 2.0, 3.0, 4.0])
    vector = keras.Model(x, layers.Dense(10, name="probs")(layers.Flatten()(z)))
    assert "channels are not traced" in analyse(vector).not_pruned()["d"]
