"""Exporter depth: PTQ variants, quantization debugger, selective float fallback, both int8 ONNX
paths, the ORT float-layer guard, parity flags, calibration checks, ops without int8 kernels.

The "outlier" model is the digits MLP after training, with the weights of input pixel (0, 0) set
to 100x the largest trained weight. That pixel is 0 in every digit, so the float model is
unchanged, but per-channel int8 weight scales are now set by those weights and crush every
other weight of dense1 to a handful of levels: plain int8 loses ~7 points.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from compressor.inspection.inspect import inspect_file
from compressor.runtime.errors import UserError


@pytest.fixture(scope="module")
def outlier_model(digits, tmp_path_factory):
    from compressor.keras_shim import set_seed
    from compressor.models import build_model

    set_seed(0)
    model = build_model("mlp", units=(64, 32))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(digits.x_train, digits.y_train, epochs=30, batch_size=32, verbose=0)
    kernel, bias = model.get_layer("dense1").get_weights()
    assert np.abs(digits.x_train.reshape(len(digits.x_train), -1)[:, 0]).max() == 0  # pixel (0, 0) is always 0
    kernel[0, :] = 100 * np.abs(kernel).max()
    model.get_layer("dense1").set_weights([kernel, bias])
    path = tmp_path_factory.mktemp("outlier") / "model"
    model.save(path, save_format="tf")
    return path


@pytest.fixture(scope="module")
def depth_run(outlier_model, tmp_path_factory):
    from compressor.pipeline.compress import compress

    out = tmp_path_factory.mktemp("depth") / "run"
    report = compress(
        outlier_model, ["int8"], out, latency_runs=5, debug_quant=True, float_layers="auto:3", onnx_quant="both"
    )
    return out, report


def _row(report, name, fmt):
    return next(r for r in report["artifacts"] if r["artifact"] == name and r["format"] == fmt)


def test_debugger_ranks_the_outlier_layer_first(depth_run):
    out, report = depth_run
    worst = report["quant_debug"]["int8"]["worst"]
    assert worst[0]["layer"] == "dense1" and worst[0]["op"] == "FULLY_CONNECTED"
    assert worst[0]["rmse_over_scale"] > 10  # rounding alone gives 0.29
    assert all(w["rmse_over_scale"] < 1 for w in worst[1:])
    rows = json.loads((out / "int8" / "quant_debug.json").read_text())["tensors"]
    assert [r["rmse_over_scale"] for r in rows] == sorted((r["rmse_over_scale"] for r in rows), reverse=True)
    assert {r["layer"] for r in rows} >= {"dense1", "dense2", "probs", "flatten"}
    r = rows[0]
    assert r["rmse"] == pytest.approx(np.sqrt(r["rmse"] ** 2)) and r["rmse"] / r["scale"] == pytest.approx(
        r["rmse_over_scale"]
    )
    csv_lines = (out / "int8" / "quant_debug.csv").read_text().splitlines()
    assert csv_lines[0].startswith("layer,op,rmse,rmse_over_scale,scale") and csv_lines[1].startswith("dense1,")


def test_selective_fallback_restores_accuracy_within_the_gate(depth_run):
    out, report = depth_run
    log = report["selective"]["int8"]
    plain, kept = log["cost"]["plain"], log["cost"]["selective"]
    assert report["reference_accuracy"] - plain["accuracy"] > 0.03  # plain int8 misses the 1-point gate
    assert log["float_layers"] == ["dense1"] and log["gate_held"] and log["split"] == "val"
    assert [a["float_layers"] for a in log["attempts"]] == [[], ["dense1"]]
    row = _row(report, "int8", "tflite")
    assert row["gates_failed"] == [] and row["accuracy_delta"] >= -0.01 and row["accuracy"] == kept["accuracy"]
    assert log["ops"] == {"integer": 4, "float": 1}  # reshape, dense2, probs, softmax stay int8
    assert log["cost"]["size_bytes"] == kept["size_bytes"] - plain["size_bytes"] > 0  # dense1's kernel is float32
    info = inspect_file(out / "int8" / "model.tflite")
    assert info["float_ops"] == {"FULLY_CONNECTED": 1} and info["inputs"][0]["dtype"] == "int8"
    assert {k["name"]: k["dtype"] for k in info["kernels"]} == {"dense1": "float32", "dense2": "int8", "probs": "int8"}
    # the plain int8 copy keeps dense1's kernel at a few levels: the damage, visible to inspect
    plain_info = inspect_file(out / "int8" / "selective" / "plain.tflite")
    assert next(k for k in plain_info["kernels"] if k["name"] == "dense1")["unique_values"] <= 8
    assert report["passed"]


def test_both_onnx_paths_measured_and_the_better_kept(depth_run):
    out, report = depth_run
    info = report["onnx_quant"]["int8"]
    assert set(info["variants"]) == {"tflite", "ort"}
    kept = info["kept"]
    other = "ort" if kept == "tflite" else "tflite"
    assert info["variants"][kept]["file"] == "model.onnx" and (out / "int8" / "model.onnx").is_file()
    alt = {"ort": "model.ort.onnx", "tflite": "model.tf2onnx.onnx"}[other]
    assert info["variants"][other]["file"] == alt and (out / "int8" / alt).is_file()
    assert {r["artifact"] for r in report["artifacts"] if r["format"] == "onnx"} == {
        "float32",
        "int8",
        f"int8.{alt.split('.')[1]}",
    }
    ort_file = out / "int8" / ("model.onnx" if kept == "ort" else "model.ort.onnx")
    ort_info = inspect_file(ort_file)
    assert ort_info["operators"]["QuantizeLinear"] >= 3 and ort_info["inputs"][0]["dtype"] == "float32"
    # the same float layer as the .tflite: ORT's static quantization excluded dense1
    assert {k["dtype"] for k in ort_info["kernels"]} == {"float32", "int8"}
    assert all(v["accuracy"] >= report["reference_accuracy"] - 0.01 for v in info["variants"].values())


def test_parity_pairs_pass_and_the_float_layer_guard_is_needed(depth_run, digits):
    import onnx
    import onnxruntime as ort

    from compressor.runtime.accuracy import predict
    from compressor.runtime.interpreters import open_model
    from compressor.runtime.quantization import dequantize_output, quantize_input

    out, report = depth_run
    pairs = {(p["a"], p["b"]): p for p in report["parity"]}
    assert set(pairs) == {
        ("keras", "float32 tflite"),
        ("keras", "float32 onnx"),
        ("float32 tflite", "float32 onnx"),
        ("int8 tflite", next(b for a, b in pairs if a == "int8 tflite")),
    }
    assert all(p["status"] == "ok" for p in pairs.values())
    assert pairs[("keras", "float32 onnx")]["max_abs_diff"] < 1e-5
    tf2onnx_file = (
        out / "int8" / ("model.onnx" if report["onnx_quant"]["int8"]["kept"] == "tflite" else "model.tf2onnx.onnx")
    )
    proto = onnx.load(str(tf2onnx_file))
    assert [n.op_type for n in proto.graph.node].count("Max") == 1
    # Without the guard, ONNX Runtime's WeightBiasQuantization quantizes dense1 at session start.
    guard = next(n for n in proto.graph.node if n.op_type == "Max")
    for node in proto.graph.node:
        node.input[:] = [guard.input[0] if i == guard.output[0] else i for i in node.input]
    proto.graph.node.remove(guard)
    tflite = predict(open_model(out / "int8" / "model.tflite"), digits.x_test).argmax(1)
    runner = open_model(tf2onnx_file)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    raw = session.run(None, {runner.inputs[0].name: quantize_input(digits.x_test, runner.inputs[0])})[0]
    unguarded = dequantize_output(raw, runner.outputs[0]).argmax(1)
    assert np.mean(predict(runner, digits.x_test).argmax(1) == tflite) == 1.0
    assert np.mean(unguarded == tflite) < 0.99


def test_parity_flags_a_pair_that_differs(depth_run, digits):
    from compressor.export.parity import compare, errors
    from compressor.runtime.accuracy import predict
    from compressor.runtime.interpreters import open_model

    out, _ = depth_run
    float_out = predict(open_model(out / "float32" / "model.tflite"), digits.x_test)
    plain = predict(open_model(out / "int8" / "selective" / "plain.tflite"), digits.x_test)
    row = compare("float32 tflite", float_out, "plain int8", plain, "float")
    assert row["status"] == "error" and row["top1_agreement"] < 0.95 and row["min_agreement"] == 0.99
    assert errors([row])[0].startswith("parity float32 tflite vs plain int8: top-1 agreement")
    same = compare("a", float_out, "b", float_out.copy(), "float")
    assert same["status"] == "ok" and same["max_abs_diff"] == 0.0


def test_manual_float_layers_and_unknown_names(outlier_model, digits, tmp_path):
    from compressor.export.conversions import run_conversion
    from compressor.pipeline.model_io import load_model
    from compressor.recipes.ptq import Int8Params

    model = load_model(outlier_model)
    params = Int8Params(float_layers=["dense1"], io_dtype="float32", calibration_source="val", calibration_samples=50)
    path = run_conversion("int8", model, digits, params, tmp_path)
    meta = json.loads((tmp_path / "info.json").read_text())
    assert meta["float_layers"] == ["dense1"] and meta["calibration"] == {"source": "val", "samples": 50}
    info = inspect_file(path)
    assert info["inputs"][0]["dtype"] == "float32" and info["float_ops"] == {"FULLY_CONNECTED": 1}
    with pytest.raises(UserError, match=r"no layer named 'dense9'.*layers: dense1, dense2, flatten, probs"):
        run_conversion("int8", model, digits, Int8Params(float_layers=["dense9"]), tmp_path / "bad")


def test_ptq_variants_have_the_promised_dtypes(outlier_model, digits, tmp_path):
    from compressor.export.tflite import convert
    from compressor.pipeline.model_io import load_model

    model, sample = load_model(outlier_model), digits.x_train[:64]
    seen = {}
    for mode, io in (
        ("float16", "float32"),
        ("dynamic", "float32"),
        ("int8", "int8"),
        ("int8", "float32"),
        ("int16x8", "float32"),
    ):
        path = tmp_path / f"{mode}-{io}.tflite"
        path.write_bytes(convert(model, mode, sample, io))
        seen[(mode, io)] = info = inspect_file(path)
        assert info["inputs"][0]["dtype"] == ("int8" if io == "int8" else "float32"), (mode, io)
    assert {k["dtype"] for k in seen[("float16", "float32")]["kernels"]} == {"float16"}
    # dynamic range leaves kernels under 1024 weights in float (TFLite's size threshold)
    assert {k["name"]: k["dtype"] for k in seen[("dynamic", "float32")]["kernels"]} == {
        "dense1": "int8",
        "dense2": "int8",
        "probs": "float32",
    }
    assert "QUANTIZE" not in seen[("dynamic", "float32")]["operators"]  # activations stay float
    assert "QUANTIZE" not in seen[("int8", "int8")]["operators"]
    assert (
        seen[("int8", "float32")]["operators"]["QUANTIZE"] == 1
        and seen[("int8", "float32")]["operators"]["DEQUANTIZE"] == 1
    )
    int16 = seen[("int16x8", "float32")]
    assert {k["dtype"] for k in int16["kernels"]} == {"int8"} and int16["operators"]["QUANTIZE"] == 1


def test_calibration_set_is_checked(digits):
    from compressor.recipes.ptq import calibration_sample, check_calibration

    with pytest.raises(UserError, match="calibration set is empty"):
        check_calibration(np.zeros((0, 8, 8, 1), np.float32), (8, 8, 1))
    bad = digits.x_train[:4].copy()
    bad[1, 0, 0, 0] = np.nan
    with pytest.raises(UserError, match="NaN or inf"):
        check_calibration(bad, (8, 8, 1))
    with pytest.raises(UserError, match=r"shape \(8, 8\) does not match the model input \(8, 8, 1\)"):
        check_calibration(digits.x_train[:4, :, :, 0], (8, 8, 1))
    sample = calibration_sample(digits, 30, source="val")
    assert len(sample) == 30 and all((row == digits.x_val).all(axis=(1, 2, 3)).any() for row in sample)
    assert len(calibration_sample(digits, 10_000)) == len(digits.x_train)


def test_ops_without_int8_kernel_are_named_and_can_be_allowed(digits, tmp_path):
    from compressor.datasets import Dataset
    from compressor.export.conversions import run_conversion
    from compressor.keras_shim import keras, tf
    from compressor.pipeline.model_io import LoadedModel
    from compressor.recipes.ptq import Int8Params

    class Sine(keras.layers.Layer):
        def call(self, x):
            return tf.math.sin(x)

    inputs = keras.Input((8,), name="input")
    outputs = keras.layers.Dense(4, activation="softmax", name="probs")(
        Sine(name="sine")(keras.layers.Dense(8)(inputs))
    )
    keras_model = keras.Model(inputs, outputs)
    model = LoadedModel(tmp_path / "m", "keras-savedmodel", keras_model, (8,), (4,))
    rng = np.random.default_rng(0)
    x = rng.random((40, 8), dtype=np.float32)
    data = Dataset(
        "toy",
        x,
        np.arange(40) % 4,
        x[:8],
        np.arange(8) % 4,
        x[:8],
        np.arange(8) % 4,
        ["a", "b", "c", "d"],
        digits.preprocessing,
    )
    with pytest.raises(UserError, match=r"SIN \(x1\) has no int8 kernel.*allow_float_ops: true"):
        run_conversion("int8", model, data, Int8Params(calibration_samples=20), tmp_path / "strict")
    path = run_conversion(
        "int8", model, data, Int8Params(calibration_samples=20, allow_float_ops=True), tmp_path / "allowed"
    )
    assert inspect_file(path)["float_ops"] == {"SIN": 1}
    assert json.loads((tmp_path / "allowed" / "info.json").read_text())["float_ops"] == {"SIN": 1}


def test_float_layers_option_compiles_into_the_int8_recipes():
    from compressor.export.selective import apply_float_layers_option
    from compressor.recipes import load_recipe

    recipes = [load_recipe("int8"), load_recipe("float16")]
    auto = apply_float_layers_option(recipes, "auto:2")
    assert auto[0].steps[-1].params.auto_float_layers == 2 and auto[1] is recipes[1]
    manual = apply_float_layers_option(recipes, "dense1, probs")
    assert manual[0].steps[-1].params.float_layers == ["dense1", "probs"]
    assert apply_float_layers_option(recipes, "auto")[0].steps[-1].params.auto_float_layers == 3
    with pytest.raises(UserError, match="auto or auto:N"):
        apply_float_layers_option(recipes, "auto:x")
    with pytest.raises(UserError, match="applies to int8 recipes; none of float16 is"):
        apply_float_layers_option([recipes[1]], "dense1")


# ResNet-8's variants in `make test`: the quantized ones, where BatchNorm folding and the residual Adds meet
# int8/int16 ranges. float16 and dynamic (the converter's float-weight paths, which test_pipeline runs on every
# artifact of the digits CNN) join with COMPRESSOR_FULL_MATRIX=1: ~8 s of conversions.
RESNET_VARIANTS = ["int8", "int16x8"] + (["float16", "dynamic"] if os.environ.get("COMPRESSOR_FULL_MATRIX") else [])


def test_cifar_resnet_exports_every_variant_with_parity(tmp_path):
    """ResNet-8 (BatchNorm, residual Adds, global pooling): the TFLite variants, ONNX f32 and QDQ."""
    from compressor.datasets import load_dataset
    from compressor.keras_shim import keras, set_seed
    from compressor.models import build_model
    from compressor.pipeline.compress import compress

    rng = np.random.default_rng(0)
    templates = rng.integers(0, 256, (10, 4, 4, 3)).repeat(8, 1).repeat(8, 2)

    def images(n):  # a colour-block template per class under heavy noise: learnable, not trivial
        y = rng.integers(0, 10, n)
        return np.clip(templates[y] + rng.normal(0, 120, (n, 32, 32, 3)), 0, 255).astype(np.uint8), y

    (x_train, y_train), (x_test, y_test) = images(400), images(120)
    data_path = tmp_path / "blocks.npz"
    np.savez(data_path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    data = load_dataset(str(data_path), seed=0)
    set_seed(0)
    model = build_model("cifar_resnet", input_shape=(32, 32, 3), depth=8, width=0.5)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(data.x_train, data.y_train, epochs=2, batch_size=32, verbose=0)
    # Two dozen steps leave BatchNorm's moving averages (momentum 0.99) near their initial values; one
    # pass in training mode with momentum 0 sets them to the data's statistics.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    model(data.x_train[:256], training=True)
    model.save(tmp_path / "base", save_format="tf")
    report = compress(tmp_path / "base", RESNET_VARIANTS, tmp_path / "run", data=str(data_path), latency_runs=5)
    got = {(r["artifact"], r["format"]) for r in report["artifacts"]}
    with_onnx = ["float32", *(n for n in RESNET_VARIANTS if n != "int16x8")]  # int16x8 has no ONNX
    assert got == {(n, "tflite") for n in ["float32", *RESNET_VARIANTS]} | {(n, "onnx") for n in with_onnx}
    pairs = {(p["a"], p["b"]): p for p in report["parity"]}
    # keras vs float32 tflite and onnx, float32 tflite vs onnx, then each converted .tflite vs its ONNX
    assert len(pairs) == 3 + len(with_onnx) - 1 and all(p["status"] == "ok" for p in pairs.values()), report["parity"]
    assert pairs[("keras", "float32 onnx")]["max_abs_diff"] < 1e-4
    assert pairs[("int8 tflite", "int8 onnx")]["top1_agreement"] >= 0.98
    assert report["passed"] and report["reference_accuracy"] > 0.3  # it learnt something: outputs not uniform
    assert inspect_file(tmp_path / "run" / "int8" / "model.onnx")["operators"]["QuantizeLinear"] > 10
