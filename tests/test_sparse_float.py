"""XNNPACK's sparse path: prune policy xnnpack, the sparse_float conversion (sparse weights, SAME
depthwise padding made explicit) and the eligibility check that names what blocks the path."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from compressor.inspection.xnnpack_sparse import cpu_runs_sparse, sparse_eligibility
from compressor.runtime.errors import UserError


def _mobilenet_style(same_depthwise: bool):
    """Stem 3x3 stride 2 on 3 channels padded 1, depthwise/pointwise blocks, global average pooling:
    the shape XNNPACK's sparse path accepts (with ``same_depthwise`` the converter folds the depthwise
    padding into SAME, which the path refuses until export makes it explicit again)."""
    from compressor.keras_shim import keras, set_seed

    set_seed(0)
    inp = keras.Input((16, 16, 3))
    x = keras.layers.ZeroPadding2D(1)(inp)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu6", name="stem")(x)
    for i, width in enumerate((24, 24)):
        if not same_depthwise:
            x = keras.layers.ZeroPadding2D(1)(x)
        x = keras.layers.DepthwiseConv2D(3, padding="same" if same_depthwise else "valid", activation="relu")(x)
        x = keras.layers.Conv2D(width, 1, activation="relu", name=f"pointwise{i}")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(4, activation="softmax")(x))


def _convert(model, sparse: bool) -> bytes:
    from compressor.keras_shim import tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if sparse:
        converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    return converter.convert()


def _run(content: bytes, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=content)
    it.allocate_tensors()
    out = []
    for row in x:
        it.set_tensor(it.get_input_details()[0]["index"], row[None])
        it.invoke()
        out.append(it.get_tensor(it.get_output_details()[0]["index"])[0])
    return np.array(out)


def test_explicit_padding_computes_the_same_and_unblocks_the_sparse_path():
    from compressor.export.sparse_float import explicit_depthwise_padding

    model = _mobilenet_style(same_depthwise=True)
    for layer in model.layers:  # 80% zeros in the 1x1 convolutions, as policy xnnpack leaves them
        if layer.__class__.__name__ == "Conv2D" and layer.kernel_size == (1, 1):
            k = layer.kernel.numpy()
            k[np.abs(k) < np.quantile(np.abs(k), 0.8)] = 0
            layer.kernel.assign(k)
    content = _convert(model, sparse=True)
    before = sparse_eligibility(content)
    assert any("DEPTHWISE_CONV_2D" in r and "padded 1" in r for r in before["reasons"])
    rewritten, n = explicit_depthwise_padding(content)
    assert n == 2
    after = sparse_eligibility(rewritten)
    assert after["eligible"], after["reasons"]
    assert after["densify_ops"] >= 2 and after["zero_share_1x1"] >= 0.79
    assert after["runs_sparse_here"] == cpu_runs_sparse()[0]
    x = np.random.default_rng(0).random((8, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(_run(rewritten, x), _run(content, x), atol=1e-6)
    np.testing.assert_allclose(_run(rewritten, x), model.predict(x, verbose=0), atol=1e-5)


def test_dense_weights_and_foreign_shapes_are_named():
    from compressor.keras_shim import keras

    report = sparse_eligibility(_convert(_mobilenet_style(same_depthwise=False), sparse=False))
    assert not report["eligible"] and report["reasons"][0].startswith("weights are stored dense")
    inp = keras.Input((8, 8, 1))
    plain = keras.Model(inp, keras.layers.Dense(3)(keras.layers.Flatten()(keras.layers.Conv2D(4, 3)(inp))))
    reasons = sparse_eligibility(_convert(plain, sparse=False))["reasons"]
    assert any("the first CONV_2D is not 3x3 stride 2 on 3 channels" in r for r in reasons)
    assert any("no MEAN" in r for r in reasons)


@pytest.fixture(scope="module")
def sparse_run(tmp_path_factory):
    from compressor.pipeline.compress import compress

    folder = tmp_path_factory.mktemp("sparse")
    model = _mobilenet_style(same_depthwise=True)
    model.save(folder / "model.keras")
    rng = np.random.default_rng(0)
    x = rng.random((240, 16, 16, 3)).astype("float32")
    y = (x[:, :8].mean(axis=(1, 2, 3)) > x[:, 8:].mean(axis=(1, 2, 3))).astype("int64") + 2 * (
        x[..., 0].mean(axis=(1, 2)) > 0.5
    )
    np.savez(folder / "data.npz", x_train=x[:200], y_train=y[:200], x_test=x[200:], y_test=y[200:])
    recipe = {
        "name": "xnnpack",
        "steps": [
            {"type": "prune", "params": {"policy": "xnnpack", "sparsity": 0.8, "schedule": "constant", "epochs": 1}},
            {"type": "sparse_float"},
        ],
    }
    (folder / "xnnpack.yaml").write_text(yaml.safe_dump(recipe))
    out = folder / "run"
    compress(
        str(folder / "model.keras"),
        [str(folder / "xnnpack.yaml")],
        out,
        data=str(folder / "data.npz"),
        latency_runs=5,
        preprocess="none",
    )
    return out


def test_compress_prunes_for_xnnpack_and_exports_sparse(sparse_run):
    report = json.loads((sparse_run / "report.json").read_text())
    row = next(r for r in report["artifacts"] if r["artifact"] == "xnnpack")
    assert not row["export_mismatches"]  # the float check against the Keras model holds
    prune_meta, convert_meta = report["steps"]["xnnpack"]
    assert prune_meta["info"]["policy"] == "xnnpack"
    assert "policy xnnpack" in prune_meta["info"]["left_dense"]["stem"]
    assert all(v >= 0.79 for v in prune_meta["info"]["sparsity_per_layer"].values())
    assert set(prune_meta["info"]["sparsity_per_layer"]) == {"pointwise0", "pointwise1"}  # 1x1 only
    info = convert_meta["info"]["xnnpack_sparse"]
    assert info["eligible"] and info["densify_ops"] == 2, info
    assert convert_meta["info"]["explicit_padding"] == 2
    assert "tf2onnx cannot read sparse" in report["onnx_skipped"]["xnnpack"]


def test_policy_xnnpack_refuses_a_model_it_cannot_serve(tiny_model_path, tmp_path):
    from compressor.pipeline.compress import compress

    with pytest.raises(UserError, match="prune policy xnnpack: .*; use policy: all"):
        compress(
            tiny_model_path,
            ["prune-int8"],
            tmp_path / "o",
            overrides=["steps.0.params.policy=xnnpack", "steps.0.params.sparsity=0.8"],
        )
    with pytest.raises(UserError, match="sparsity must be >= 0.67"):
        compress(tiny_model_path, ["prune-int8"], tmp_path / "o", overrides=["steps.0.params.policy=xnnpack"])


def test_inspect_names_the_sparse_path(sparse_run):
    from compressor.inspection.inspect import format_inspection, inspect_file

    info = inspect_file(sparse_run / "xnnpack" / "model.tflite")
    assert info["operators"]["DENSIFY"] == 2 and info["xnnpack_sparse"]["eligible"]
    assert "XNNPACK sparse path eligible" in format_inspection(info)
