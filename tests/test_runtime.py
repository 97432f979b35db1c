"""compressor.runtime on real .tflite/.onnx files: outputs, batching, quantization, metrics, latency, errors."""

from __future__ import annotations

import gzip
import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest

from compressor.runtime import accuracy, latency
from compressor.runtime.errors import UserError
from compressor.runtime.interpreters import TensorInfo, open_model
from compressor.runtime.quantization import dequantize_output, quantize_input


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    """A tiny CNN as Keras outputs, float32 / int8 .tflite, .onnx, plus odd-batch TFLite graphs."""
    from compressor.keras_shim import keras, tf
    from compressor.runtime.quiet import native_stderr_silenced

    keras.utils.set_random_seed(0)
    d = tmp_path_factory.mktemp("runtime")
    model = keras.Sequential(
        [
            keras.layers.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    x = np.random.RandomState(0).rand(40, 8, 8, 1).astype(np.float32)
    w = np.random.RandomState(1).rand(64, 10).astype(np.float32)

    class Odd(tf.Module):
        """Graphs whose batch dim resists resizing, for the fallback paths."""

        @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 1], tf.float32)])
        def hard(self, v):  # Reshape to a literal [1, 64]: resizing the input fails at allocation
            return tf.matmul(tf.reshape(v, [1, 64]), w)

        @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 1], tf.float32)])
        def fold(self, v):  # Reshape to [1, -1]: resizing "works" but folds the batch into one row
            return tf.reshape(v, [1, -1]) * 2.0

        @tf.function(input_signature=[tf.TensorSpec([4, 8, 8, 1], tf.float32)])
        def four(self, v):  # batch fixed at 4
            return tf.matmul(tf.reshape(v, [4, 64]), w)

    def write(name, converter):
        (d / name).write_bytes(converter.convert())
        return d / name

    with native_stderr_silenced():
        paths = {"f32": write("f32.tflite", tf.lite.TFLiteConverter.from_keras_model(model))}
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([s[None]] for s in x)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = conv.inference_output_type = tf.int8
        paths["int8"] = write("int8.tflite", conv)
        odd = Odd()
        for name in ("hard", "fold", "four"):
            fn = getattr(odd, name).get_concrete_function()
            paths[name] = write(f"{name}.tflite", tf.lite.TFLiteConverter.from_concrete_functions([fn], odd))
        import tf2onnx

        for name, batch in (("onnx", None), ("onnx_b1", 1)):
            paths[name] = d / f"{name}.onnx"
            tf2onnx.convert.from_keras(
                model,
                input_signature=[tf.TensorSpec([batch, 8, 8, 1], tf.float32, name="input")],
                opset=17,
                output_path=str(paths[name]),
            )
    return types.SimpleNamespace(dir=d, x=x, w=w, ref=model.predict(x, verbose=0), **paths)


def test_float_tflite_matches_keras(art):
    runner = open_model(art.f32)
    assert runner.backend == "litert" and runner.batchable
    assert runner.inputs[0] == TensorInfo(runner.inputs[0].name, (-1, 8, 8, 1), "float32", 0.0, 0)
    assert runner.outputs[0].shape == (-1, 10)
    np.testing.assert_allclose(accuracy.predict(runner, art.x), art.ref, atol=1e-5)
    np.testing.assert_allclose(accuracy.predict(open_model(art.f32, xnnpack=False), art.x), art.ref, atol=1e-5)


def test_int8_tflite_within_a_few_steps_of_float(art):
    runner = open_model(art.int8)
    info, out = runner.inputs[0], runner.outputs[0]
    assert info.dtype == "int8" and info.scale > 0 and out.dtype == "int8" and out.scale > 0
    raw = runner.run(quantize_input(art.x, info))
    assert raw.dtype == np.int8 and raw.shape == (40, 10)
    probs = accuracy.predict(runner, art.x)
    np.testing.assert_array_equal(probs, dequantize_output(raw, out))
    assert np.abs(probs - art.ref).max() <= 4 * out.scale


def test_onnx_matches_keras(art):
    runner = open_model(art.onnx, threads=2)
    assert runner.backend == "onnxruntime" and runner.batchable and runner.threads == 2
    assert runner.inputs[0].to_dict() == {
        "name": "input",
        "shape": [-1, 8, 8, 1],
        "dtype": "float32",
        "scale": 0.0,
        "zero_point": 0,
    }
    np.testing.assert_allclose(accuracy.predict(runner, art.x), art.ref, atol=1e-5)


def test_onnx_fixed_batch_of_one_runs_sample_by_sample(art):
    runner = open_model(art.onnx_b1)
    assert runner.inputs[0].shape == (1, 8, 8, 1) and not runner.batchable
    np.testing.assert_allclose(runner.run(art.x[:5]), art.ref[:5], atol=1e-5)


@pytest.mark.parametrize("name", ["f32", "int8", "onnx", "onnx_b1"])
def test_batched_equals_one_at_a_time(art, name):
    runner = open_model(getattr(art, name))
    one = accuracy.predict(runner, art.x, batch_size=1)
    np.testing.assert_array_equal(accuracy.predict(runner, art.x, batch_size=256), one)
    np.testing.assert_array_equal(accuracy.predict(runner, art.x, batch_size=7), one)


def test_tflite_falls_back_when_resize_fails(art):
    runner = open_model(art.hard)
    assert runner.batchable  # batch dim 1: worth trying
    np.testing.assert_allclose(runner.run(art.x[:5]), art.x[:5].reshape(5, 64) @ art.w, rtol=1e-5)
    assert not runner.batchable
    np.testing.assert_allclose(runner.run(art.x[5:8]), art.x[5:8].reshape(3, 64) @ art.w, rtol=1e-5)


def test_tflite_falls_back_when_resize_folds_the_batch(art):
    runner = open_model(art.fold)
    np.testing.assert_array_equal(runner.run(art.x[:3]), art.x[:3].reshape(3, 64) * 2.0)
    assert not runner.batchable


def test_tflite_fixed_batch_of_four_is_chunked_and_padded(art):
    runner = open_model(art.four)
    assert runner.inputs[0].shape == (4, 8, 8, 1) and not runner.batchable
    np.testing.assert_allclose(runner.run(art.x[:6]), art.x[:6].reshape(6, 64) @ art.w, rtol=1e-5)
    assert latency.measure_latency(runner, art.x[0], warmup=1, runs=5)["runs"] == 5


def test_tflite_runtime_fallback_and_missing_interpreters(art, monkeypatch):
    import ai_edge_litert.interpreter as litert

    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)  # None in sys.modules: ImportError
    monkeypatch.setitem(sys.modules, "tflite_runtime", types.ModuleType("tflite_runtime"))
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", litert)  # same API, other name
    runner = open_model(art.f32)
    assert runner.backend == "tflite_runtime"
    np.testing.assert_allclose(accuracy.predict(runner, art.x), art.ref, atol=1e-5)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    with pytest.raises(UserError, match="pip install ai-edge-litert"):
        open_model(art.f32)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(UserError, match="pip install onnxruntime"):
        open_model(art.onnx)


def test_quantize_round_trip_by_hand():
    info = TensorInfo("x", (-1, 6), "int8", 0.5, -3)
    x = np.array([0.0, 0.25, 1.0, -0.75, 100.0, -100.0], np.float32)
    # x / 0.5 = [0, 0.5, 2, -1.5, 200, -200]; halves round away from zero; + (-3); clip to [-128, 127]
    q = quantize_input(x, info)
    assert q.dtype == np.int8 and q.tolist() == [-3, -2, -1, -5, 127, -128]
    y = dequantize_output(q, info)
    assert y.dtype == np.float32 and y.tolist() == [0.0, 0.5, 1.0, -1.0, 65.0, -62.5]


def test_quantize_uint8_int16_and_float_inputs():
    x = np.array([0.0, 0.05, -2.0, 30.0])
    assert quantize_input(x, TensorInfo("x", (4,), "uint8", 0.1, 10)).tolist() == [10, 11, 0, 255]
    assert quantize_input(x, TensorInfo("x", (4,), "int16", 0.001, 0)).tolist() == [0, 50, -2000, 30000]
    half = quantize_input(x, TensorInfo("x", (4,), "float16", 0.0, 0))
    assert half.dtype == np.float16 and half.tolist() == [0.0, np.float16(0.05), -2.0, 30.0]
    assert dequantize_output(np.array([3], np.int32), TensorInfo("y", (1,), "int32", 0.0, 0)).tolist() == [3.0]


def test_classification_metrics_by_hand():
    outputs = np.array(
        [
            [0.9, 0.05, 0.02, 0.01, 0.01, 0.01],  # true 0: top-1 hit
            [0.1, 0.2, 0.3, 0.4, 0.0, 0.0],  # true 1: predicted 3, top-5 hit
            [0.5, 0.1, 0.1, 0.1, 0.15, 0.05],  # true 4: predicted 0, top-5 hit
            [0.0, 0.0, 0.0, 0.0, 0.0, 1.0],  # true 5: top-1 hit
            [0.3, 0.25, 0.2, 0.15, 0.1, 0.0],  # true 5: predicted 0, the only class outside the top five
        ],
        np.float32,
    )
    labels = np.array([0, 1, 4, 5, 5])
    m = accuracy.classification_metrics(outputs, labels)
    assert m["samples"] == 5 and m["top1"] == pytest.approx(2 / 5) and m["top5"] == pytest.approx(4 / 5)
    cm = np.zeros((6, 6), int)
    cm[0, 0], cm[1, 3], cm[4, 0], cm[5, 5], cm[5, 0] = 1, 1, 1, 1, 1
    assert m["confusion_matrix"] == cm.tolist()
    assert accuracy.classification_metrics(outputs, np.eye(6)[labels]) == m  # one-hot labels
    small = accuracy.classification_metrics(outputs[:, :3], np.array([0, 2, 0, 1, 1]), top_k=5)
    assert "top5" not in small and small["top1"] == pytest.approx(3 / 5)


def test_agreement_figures_by_hand():
    outputs = np.array([[0.7, 0.3], [0.4, 0.6], [0.5, 0.5]], np.float32)
    reference = np.array([[0.8, 0.2], [0.6, 0.4], [0.5, 0.5]], np.float32)
    a = accuracy.classification_metrics(outputs, np.array([0, 1, 0]), reference=reference)["agreement"]
    assert a["top1_agreement"] == pytest.approx(2 / 3)
    assert a["max_abs_diff"] == pytest.approx(0.2) and a["mean_abs_diff"] == pytest.approx(0.6 / 6)


def test_evaluate_on_real_model(art):
    labels = art.ref.argmax(1)
    result = accuracy.evaluate(open_model(art.int8), art.x, labels, batch_size=16, reference=art.ref)
    assert result["samples"] == 40 and "top5" in result
    assert np.sum(result["confusion_matrix"]) == 40
    assert result["top1"] == result["agreement"]["top1_agreement"] >= 0.9
    assert 0 < result["agreement"]["max_abs_diff"] <= 4 / 256


@pytest.mark.parametrize("name", ["f32", "onnx"])
def test_latency_figures(art, name):
    runner = open_model(getattr(art, name))
    lat = latency.measure_latency(runner, art.x[0], warmup=3, runs=30)
    assert set(lat) == {
        "runs",
        "warmup",
        "min_ms",
        "median_ms",
        "p90_ms",
        "p99_ms",
        "mean_ms",
        "std_ms",
        "init_ms",
        "threads",
        "backend",
        "peak_rss_mb",
    }
    assert lat["runs"] == 30 and lat["warmup"] == 3 and lat["threads"] == 1 and lat["backend"] == runner.backend
    assert 0 < lat["min_ms"] <= lat["median_ms"] <= lat["p90_ms"] <= lat["p99_ms"]
    assert lat["init_ms"] > 0 and lat["peak_rss_mb"] > 50  # TF is loaded in this process
    capped = latency.measure_latency(runner, art.x[:1], warmup=50, runs=10_000, max_seconds=0.0)
    assert (capped["warmup"], capped["runs"]) == (1, 5)


def test_file_size(tmp_path):
    path = tmp_path / "zeros.bin"
    path.write_bytes(bytes(10_000))
    size = latency.file_size(path)
    assert size["bytes"] == 10_000 and size["gzip_bytes"] == len(gzip.compress(bytes(10_000), 9, mtime=0)) < 100


def test_file_errors(art, tmp_path):
    good = art.f32.read_bytes()
    cases = {
        tmp_path / "missing.tflite": "does not exist",
        tmp_path: "is a directory",
        tmp_path / "model.h5": "is not a .tflite or .onnx file",
        tmp_path / "fake.tflite": r"not a TFLite model \(file identifier is b'XXXX', expected TFL3\)",
        tmp_path / "cut.tflite": "is corrupt or truncated: ",
        tmp_path / "text.onnx": "is not a valid ONNX model: ",
    }
    (tmp_path / "model.h5").write_bytes(good)
    (tmp_path / "fake.tflite").write_bytes(good[:4] + b"XXXX" + good[8:])
    (tmp_path / "cut.tflite").write_bytes(good[: len(good) // 2])
    (tmp_path / "text.onnx").write_text("not a model\n")
    for path, message in cases.items():
        with pytest.raises(UserError, match=message) as err:
            open_model(path)
        assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="model file .* does not exist"):
        latency.file_size(tmp_path / "missing.tflite")


def test_data_errors(art):
    runner = open_model(art.f32)
    with pytest.raises(UserError, match=r"data shape \(8, 8\) does not match the model input \(8, 8, 1\)"):
        accuracy.predict(runner, art.x[..., 0])
    with pytest.raises(UserError, match="NaN"):
        accuracy.predict(runner, np.where(np.arange(40)[:, None, None, None] == 3, np.nan, art.x))
    with pytest.raises(TypeError, match="quantize_input"):
        open_model(art.int8).run(art.x)
    with pytest.raises(UserError, match="39 labels for 40 samples"):
        accuracy.evaluate(runner, art.x, np.zeros(39, int))
    with pytest.raises(UserError, match=r"labels must be in \[0, 10\)"):
        accuracy.evaluate(runner, art.x, np.full(40, 10))
    with pytest.raises(UserError, match="reference outputs have shape"):
        accuracy.evaluate(runner, art.x, np.zeros(40, int), reference=art.ref[:, :5])


_TF_FREE = textwrap.dedent("""
    import sys
    BLOCKED = {"tensorflow", "tf_keras", "tensorflow_model_optimization", "keras"}

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError("runtime must not import " + name)

    sys.meta_path.insert(0, Block())
    import numpy as np
    import compressor.runtime.interpreters, compressor.runtime.accuracy, compressor.runtime.latency
    from compressor.runtime.accuracy import predict
    from compressor.runtime.interpreters import open_model

    x = np.load(sys.argv[1])
    for path in sys.argv[2:]:
        np.save(path + ".npy", predict(open_model(path), x))
    assert not BLOCKED & {m.split(".")[0] for m in sys.modules}
""")


def test_runtime_never_imports_tensorflow(art):
    np.save(art.dir / "x.npy", art.x)
    done = subprocess.run(
        [sys.executable, "-c", _TF_FREE, str(art.dir / "x.npy"), str(art.f32), str(art.onnx)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "XNNPACK" not in done.stderr  # LiteRT's delegate banner stays off the terminal
    for path in (art.f32, art.onnx):
        np.testing.assert_allclose(np.load(f"{path}.npy"), art.ref, atol=1e-5)


def test_one_gate_check_for_device_and_host_report():
    """runtime.gates.Gates is the one check; the device and the host report word its failures."""
    from compressor.pipeline.validation import gate_failures
    from compressor.recipes.schema import Gates as RecipeGates
    from compressor.runtime.gates import Gates

    gates = Gates(min_accuracy=0.9, max_accuracy_drop=0.01, max_latency_ms=2.0, max_size_kb=10)
    failed = gates.check(accuracy=0.85, reference_accuracy=0.95, p90_ms=2.5, size_bytes=20 * 1024)
    assert [str(f) for f in failed] == [
        "accuracy 85.00% < min 90.00%",
        "accuracy drop 10.00 pt (from reference 95.00%) > max 1.00 pt",
        "size 20.0 KB > max 10 KB",
        "latency p90 2.500 ms > max 2 ms",
    ]
    assert Gates(max_accuracy_drop=0.01).check(accuracy=0.94, reference_accuracy=0.95) == []  # exactly met
    assert gates.check() == []  # nothing measured: nothing fails
    with pytest.raises(UserError, match="needs a reference accuracy"):
        Gates(max_accuracy_drop=0.01).check(accuracy=0.9)
    with pytest.raises(UserError, match="--max-size-kb must be > 0"):
        Gates(max_size_kb=0)

    recipe_gates = RecipeGates(max_accuracy_drop=0.01, min_accuracy=0.9, max_size_kb=10)
    assert recipe_gates.to_runtime() == Gates(min_accuracy=0.9, max_accuracy_drop=0.01, max_size_kb=10)
    assert recipe_gates.to_runtime().accuracy_only() == Gates(min_accuracy=0.9, max_accuracy_drop=0.01)
    row = {"accuracy": 0.85, "accuracy_delta": -0.1, "size_bytes": 20 * 1024}
    assert gate_failures(row, recipe_gates.model_dump()) == [
        "accuracy 85.00% < 90.00%",
        "accuracy drop 10.00% > 1.00%",
        "size 20.0 KB > 10.0 KB",
    ]
    assert gate_failures({**row, "accuracy": 0.99, "accuracy_delta": 0.0, "size_bytes": 1024}, {}) == []
    # an accuracy-only judgement (selective fallback) needs no size
    accuracy_row = {"accuracy": 0.85, "accuracy_delta": -0.1}
    assert gate_failures(accuracy_row, recipe_gates.to_runtime().accuracy_only()) == [
        "accuracy 85.00% < 90.00%",
        "accuracy drop 10.00% > 1.00%",
    ]


def test_did_you_mean_one_wording():
    from compressor.runtime.suggest import did_you_mean, unknown_name_message

    assert did_you_mean("sparsty", ["sparsity", "epochs"]) == "; did you mean 'sparsity'?"
    assert did_you_mean("INT8", ["int8", "float16"]) == "; did you mean 'int8'?"  # case ignored
    assert did_you_mean("zzz", ["int8"]) == ""
    assert (
        unknown_name_message("model", "mpl", ["mlp", "cnn"])
        == "unknown model 'mpl'; did you mean 'mlp'? Valid: cnn, mlp"
    )
    assert unknown_name_message("x", "zzz", ["a"], listed="a or a file") == "unknown x 'zzz'; Valid: a or a file"
