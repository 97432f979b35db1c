"""A float16 .tflite's ONNX stores its weights in float16: half the float32 ONNX, same outputs as the .tflite."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compressor.export.onnx import (
    _fingerprint,
    float16_weights,
    record_io_quantization,
    store_float16_weights,
    tflite_to_onnx,
)
from compressor.runtime.interpreters import open_model


def _model():
    """Conv, depthwise Conv, Add, BatchNorm, Resize, both poolings, Concat, Dense: ~160 KB of float32 weights."""
    from compressor.keras_shim import keras

    keras.utils.set_random_seed(0)
    layers = keras.layers
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = layers.Add()([x, layers.DepthwiseConv2D(3, padding="same")(x)])
    x = layers.BatchNormalization()(x)
    x = layers.UpSampling2D(2, interpolation="bilinear")(x)
    x = layers.Concatenate()([layers.AveragePooling2D()(x), layers.MaxPooling2D()(x)])
    x = layers.Conv2D(16, 3, strides=2, padding="same")(x)
    x = layers.Dense(128, activation="relu")(layers.Flatten()(x))
    model = keras.Model(inputs, layers.Dense(10, activation="softmax")(x))
    rng = np.random.default_rng(0)  # non-zero biases and BatchNorm statistics: every constant is a real weight
    model.set_weights([w if w.ndim > 1 else rng.uniform(0.5, 1.0, w.shape) for w in model.get_weights()])
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(float32 .tflite, float16 .tflite, their ONNX files, test inputs)."""
    from compressor.export.tflite import convert, write_tflite

    folder = tmp_path_factory.mktemp("f16")
    model = SimpleNamespace(keras=_model())
    paths = {}
    for mode in ("float32", "float16"):
        tflite = write_tflite(folder / f"{mode}.tflite", convert(model, mode))
        paths[mode] = (tflite, tflite_to_onnx(tflite, folder / f"{mode}.onnx"))
    x = np.random.default_rng(1).normal(0, 1, (64, 8, 8, 3)).astype(np.float32)
    return paths, x


def _initializers(path: Path) -> dict[str, int]:
    return {i.name: i.data_type for i in onnx.load(str(path)).graph.initializer}


def test_float16_weights_are_float16_initializers_widened_by_a_cast(exported):
    paths, _ = exported
    proto = onnx.load(str(paths["float16"][1]))
    onnx.checker.check_model(proto)
    types = {i.name: i.data_type for i in proto.graph.initializer}
    halves = [name for name, t in types.items() if t == TensorProto.FLOAT16]
    # Every float weight of this .tflite is float16. tf2onnx's own float32 constants (Resize's roi and
    # scales, which the .tflite does not have) and the int64 shapes are left as they are.
    floats = {name for name, t in types.items() if t == TensorProto.FLOAT}
    resize = next(node for node in proto.graph.node if node.op_type == "Resize")
    assert len(halves) >= 8 and floats == set(resize.input[1:3])
    assert TensorProto.INT64 in types.values()
    assert len(float16_weights(paths["float16"][0].read_bytes())) == len(halves)
    readers = {n: [node for node in proto.graph.node if n in node.input] for n in halves}
    for name, nodes in readers.items():
        assert [(node.op_type, node.attribute[0].i) for node in nodes] == [("Cast", TensorProto.FLOAT)], name
    half_bytes = sum(len(i.raw_data) for i in proto.graph.initializer if i.data_type == TensorProto.FLOAT16)
    assert half_bytes > 75_000  # the ~40k weights, two bytes each


def test_float16_onnx_is_half_the_float32_onnx_and_matches_its_tflite(exported):
    paths, x = exported
    f32_onnx, f16_onnx = paths["float32"][1].stat().st_size, paths["float16"][1].stat().st_size
    assert f32_onnx > 150_000 and f16_onnx <= 0.55 * f32_onnx, (f16_onnx, f32_onnx)
    runner = open_model(paths["float16"][1])  # the device runtime, unchanged: it feeds float32
    assert runner.inputs[0].dtype == "float32" and runner.outputs[0].dtype == "float32"
    got, want = runner.run(x), open_model(paths["float16"][0]).run(x)
    assert np.abs(got - want).max() < 1e-5
    assert (got.argmax(1) == want.argmax(1)).all()
    # The float16 weights really are rounded: the float32 model differs by more than summation order.
    assert np.abs(open_model(paths["float32"][1]).run(x) - got).max() > 1e-6


def test_a_float32_tflite_gives_float32_initializers_and_no_casts(exported):
    tflite, path = exported[0]["float32"]
    assert float16_weights(tflite.read_bytes()) == set()
    assert TensorProto.FLOAT16 not in _initializers(path).values()
    assert "Cast" not in {node.op_type for node in onnx.load(str(path)).graph.node}


def test_only_weights_that_were_float16_are_narrowed_and_scales_stay_initializers():
    """int8 x -> DQ (scale 0.5) -> MatMul(W) -> Add(B) -> Q -> int8 y: W was float16 (stored transposed), B was not."""
    w = np.arange(12, dtype=np.float32).reshape(4, 3) / 8
    b = np.full(3, 0.25, np.float32)  # float16-exact, yet not one of the .tflite's float16 weights
    inits = [numpy_helper.from_array(a, n) for a, n in ((w, "W"), (b, "B"), (np.float32(0.5), "s"), (np.int8(0), "z"))]
    nodes = [
        helper.make_node("DequantizeLinear", ["x", "s", "z"], ["d"]),
        helper.make_node("MatMul", ["d", "W"], ["m"]),
        helper.make_node("Add", ["m", "B"], ["a"]),
        helper.make_node("QuantizeLinear", ["a", "s", "z"], ["y"]),
    ]
    io = [helper.make_tensor_value_info(n, TensorProto.INT8, s) for n, s in (("x", [1, 4]), ("y", [1, 3]))]
    graph = helper.make_graph(nodes, "g", io[:1], io[1:], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    store_float16_weights(proto, {_fingerprint(w.T.astype(np.float16)), _fingerprint(np.float16([0.5]))})
    onnx.checker.check_model(proto)
    record_io_quantization(proto)
    types = {i.name: i.data_type for i in proto.graph.initializer}
    assert types == {
        "W_float16": TensorProto.FLOAT16,
        "B": TensorProto.FLOAT,
        "s": TensorProto.FLOAT,
        "z": TensorProto.INT8,
    }
    quantization = {e.key: json.loads(e.value) for e in proto.metadata_props}
    assert quantization == {
        f"compressor.{k}_quantization": {"scale": 0.5, "zero_point": 0} for k in ("input", "output")
    }

    import onnxruntime as ort

    x = np.int8([[1, 2, 3, 4]])
    y = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_array_equal(y, np.round((x * 0.5 @ w + b) / 0.5).astype(np.int8))


def test_compress_float16_writes_a_half_size_onnx_that_passes_the_export_checks(tmp_path: Path):
    """End to end on digits_cnn with a 128-unit dense layer (~37k parameters, ~145 KB in float32)."""
    from compressor.pipeline.compress import compress
    from compressor.pipeline.train import train

    params = {"filters": 16, "dense_units": 128}
    card = train("digits_cnn", tmp_path / "base", data="digits", epochs=2, model_params=params, seed=0)
    report = compress(card["model_path"], ["float16"], tmp_path / "run", latency_runs=5)
    rows = {(r["artifact"], r["format"]): r for r in report["artifacts"]}
    f32, f16 = rows[("float32", "onnx")], rows[("float16", "onnx")]
    assert f32["size_bytes"] > 140_000 and f16["size_bytes"] <= 0.55 * f32["size_bytes"], (f16, f32)
    assert f16["export_mismatches"] == [] and report["passed"]
    pair = next(p for p in report["parity"] if (p["a"], p["b"]) == ("float16 tflite", "float16 onnx"))
    assert pair["status"] == "ok" and pair["top1_agreement"] == 1.0 and pair["max_abs_diff"] < 1e-5
    halves = [t for t in _initializers(Path(f16["path"])).values() if t == TensorProto.FLOAT16]
    assert len(halves) >= 4
