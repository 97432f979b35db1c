"""`compressor inspect` on real converted models: op counts, quantization, parameters, sparsity, clusters."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from compressor.commands.cli import cli
from compressor.inspection.inspect import inspect_file
from compressor.runtime.errors import UserError


@pytest.fixture(scope="module")
def digits():
    from compressor.datasets import load_dataset

    return load_dataset("digits", seed=0)


def _tflite(keras_model, path, mode="float32", sample=None):
    from compressor.export.tflite import convert
    from compressor.pipeline.model_io import LoadedModel
    from compressor.runtime.atomic import write_bytes

    model = LoadedModel(
        path, "keras-savedmodel", keras_model, tuple(keras_model.input_shape[1:]), tuple(keras_model.output_shape[1:])
    )
    return write_bytes(path, convert(model, mode, sample, "int8" if mode == "int8" else "float32"))


def _mlp(seed, units=(32,)):
    from compressor.keras_shim import set_seed
    from compressor.models import build_model

    set_seed(seed)
    model = build_model("mlp", units=units)
    # Non-zero biases, as after training: converters drop an all-zero bias altogether.
    rng = np.random.default_rng(seed)
    model.set_weights([w if w.ndim > 1 else rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    return model


def test_int8_digits_cnn(tiny_model_path, digits, tmp_path):
    from compressor.pipeline.model_io import load_model

    keras_model = load_model(tiny_model_path).keras
    path = _tflite(keras_model, tmp_path / "int8.tflite", "int8", digits.x_train[:50])
    info = inspect_file(path)
    assert info["operators"] == {"CONV_2D": 2, "FULLY_CONNECTED": 2, "MAX_POOL_2D": 1, "RESHAPE": 1, "SOFTMAX": 1}
    (inp,), (out,) = info["inputs"], info["outputs"]
    assert inp["dtype"] == "int8" and inp["shape"] == [-1, 8, 8, 1]
    # digits are scaled to [0, 1]: 256 int8 steps of 1/255 starting at -128
    assert inp["quantization"]["scale"] == pytest.approx(1 / 255) and inp["quantization"]["zero_point"] == -128
    assert out["quantization"]["scale"] == pytest.approx(1 / 256)  # softmax output: TFLite's fixed grid
    # conv kernels carry the folded BatchNorm as a bias: 8*9+8 + 8*9*8+8 + 128*32+32 + 32*10+10
    assert info["parameters"] == 72 + 8 + 576 + 8 + 4096 + 32 + 320 + 10
    assert [k["dtype"] for k in info["kernels"]] == ["int8"] * 4
    assert all(k["unique_values"] <= 255 for k in info["kernels"])
    assert info["float_ops"] == {}
    assert {"min_runtime_version", "CONVERSION_METADATA"} <= set(info["metadata"])
    assert info["largest_tensors"][0]["bytes"] == 4096 and info["largest_tensors"][0]["dtype"] == "int8"


@pytest.mark.parametrize(
    "mode, weights, activations",
    [
        ("float32", "float32", "float32"),
        ("dynamic", "int8", "float32"),
        ("int8", "int8", "int8"),
        ("int16x8", "int8", "int16"),
    ],
)
def test_weight_and_activation_types(mode, weights, activations, digits, tmp_path):
    """Read from the tensors the ops compute on, not the file name: int16x8 keeps float I/O here."""
    path = _tflite(_mlp(4, units=(16,)), tmp_path / "model.tflite", mode, digits.x_train[:50])
    info = inspect_file(path)
    assert (info["weight_dtype"], info["activation_dtype"]) == (weights, activations)
    text = CliRunner().invoke(cli, ["inspect", str(path)]).output
    assert f"types: weights {weights}, activations {activations}" in text
    as_json = json.loads(CliRunner().invoke(cli, ["inspect", str(path), "--json"]).output)
    assert (as_json["weight_dtype"], as_json["activation_dtype"]) == (weights, activations)


def test_sparsity_of_a_pruned_model(digits, tmp_path):
    from compressor.keras_shim import tfmot

    mot = tfmot()
    schedule = mot.sparsity.keras.ConstantSparsity(0.75, begin_step=0, frequency=1)
    pruned = mot.sparsity.keras.prune_low_magnitude(_mlp(0), pruning_schedule=schedule)
    pruned.compile("adam", "sparse_categorical_crossentropy")
    pruned.fit(
        digits.x_train[:128],
        digits.y_train[:128],
        epochs=1,
        batch_size=64,
        verbose=0,
        callbacks=[mot.sparsity.keras.UpdatePruningStep()],
    )
    stripped = mot.sparsity.keras.strip_pruning(pruned)
    for mode in ("float32", "int8"):
        info = inspect_file(_tflite(stripped, tmp_path / f"{mode}.tflite", mode, digits.x_train[:50]))
        by_layer = {k["name"]: k for k in info["kernels"]}
        assert set(by_layer) == {"dense1", "probs"}
        for k in by_layer.values():  # ConstantSparsity prunes exactly 75% of every kernel
            assert k["sparsity"] == pytest.approx(0.75, abs=1 / k["elements"]), (mode, k)
        assert info["kernel_summary"]["sparsity"] == pytest.approx(0.75, abs=0.002)


def test_unique_values_of_a_clustered_model(digits, tmp_path):
    from compressor.keras_shim import tfmot

    mot = tfmot()
    model = _mlp(1)
    plain = inspect_file(_tflite(model, tmp_path / "plain.tflite"))
    assert min(k["unique_values"] for k in plain["kernels"]) > 100
    clustered = mot.clustering.keras.cluster_weights(
        model, number_of_clusters=8, cluster_centroids_init=mot.clustering.keras.CentroidInitialization.LINEAR
    )
    info = inspect_file(_tflite(mot.clustering.keras.strip_clustering(clustered), tmp_path / "clustered.tflite"))
    assert [k["unique_values"] for k in info["kernels"]] == [8, 8]
    assert info["kernel_summary"]["max_unique_values"] == 8


def test_onnx_inspection(tmp_path):
    from compressor.export.onnx import keras_to_onnx

    model = _mlp(2, units=(16, 8))
    info = inspect_file(keras_to_onnx(model, tmp_path / "m.onnx", opset=15))
    assert info["opset"] == 15 and info["producer"].startswith("tf2onnx")
    assert info["operators"] == {"Add": 3, "MatMul": 3, "Relu": 2, "Reshape": 1, "Softmax": 1}
    assert info["parameters"] == model.count_params() == 64 * 16 + 16 + 16 * 8 + 8 + 8 * 10 + 10
    assert info["inputs"][0]["dtype"] == "float32" and info["inputs"][0]["shape"][1:] == [8, 8, 1]
    assert isinstance(info["inputs"][0]["shape"][0], str)  # dynamic batch: a symbolic dim
    assert [k["shape"] for k in info["kernels"]] == [[64, 16], [16, 8], [8, 10]]


def test_cli_inspect_json_and_errors(tmp_path):
    path = _tflite(_mlp(3, units=()), tmp_path / "linear.tflite")
    result = CliRunner().invoke(cli, ["inspect", str(path), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["operators"] == {"FULLY_CONNECTED": 1, "RESHAPE": 1, "SOFTMAX": 1}
    assert info["parameters"] == 64 * 10 + 10
    text = CliRunner().invoke(cli, ["inspect", str(path)]).output
    assert "operators (3)" in text and "parameters: 650" in text
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    result = CliRunner().invoke(cli, ["inspect", str(bad)])
    assert result.exit_code == 2 and "not a TFLite model" in result.output and "Traceback" not in result.output
    with pytest.raises(UserError, match="is not a file; pass a .tflite or .onnx"):
        inspect_file(tmp_path)  # a folder
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(UserError, match="x.txt is not a .tflite or .onnx file"):
        inspect_file(tmp_path / "x.txt")
    truncated = tmp_path / "cut.tflite"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(UserError, match="cut.tflite"):
        inspect_file(truncated)
    assert np.isfinite(info["largest_tensors"][0]["share"])
