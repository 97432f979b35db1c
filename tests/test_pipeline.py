"""compress end to end on a tiny trained model: every PTQ recipe, export checks, report values."""

from __future__ import annotations

import json

import numpy as np
import pytest

from compressor.pipeline.compress import compress
from compressor.runtime.errors import UserError
from compressor.runtime.interpreters import open_model


@pytest.fixture(scope="module")
def all_ptq(tiny_model_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("ptq") / "run"
    report = compress(tiny_model_path, ["float16", "dynamic", "int8", "int16x8"], out, latency_runs=10)
    return out, report


def _row(report, name, fmt):
    return next(r for r in report["artifacts"] if r["artifact"] == name and r["format"] == fmt)


def test_every_artifact_exported_and_validated(all_ptq):
    out, report = all_ptq
    got = {(r["artifact"], r["format"]) for r in report["artifacts"]}
    for name in ("float32", "float16", "dynamic", "int8"):
        assert {(name, "tflite"), (name, "onnx")} <= got
        assert (out / name / "model.tflite").is_file() and (out / name / "model.onnx").is_file()
    assert ("int16x8", "tflite") in got and ("int16x8", "onnx") not in got
    assert json.loads((out / "report.json").read_text())["artifacts"] == json.loads(json.dumps(report["artifacts"]))
    assert report["passed"], [r["export_mismatches"] + r["gates_failed"] for r in report["artifacts"]]
    assert not list(out.parent.glob(".run.*")), "temporary folder left behind"


def test_float_exports_match_keras(all_ptq):
    _, report = all_ptq
    for fmt in ("tflite", "onnx"):
        row = _row(report, "float32", fmt)
        assert row["agreement"]["max_abs_diff"] < 1e-4
        assert row["accuracy_delta"] == pytest.approx(0.0, abs=1e-9)


def test_quantized_sizes_and_dtypes(all_ptq):
    out, report = all_ptq
    # The tiny model's ~6k parameters make the flatbuffer's fixed overhead visible: the ratios
    # are looser than the 0.5x / 0.25x of the weights alone.
    f32 = _row(report, "float32", "tflite")["size_bytes"]
    assert _row(report, "float16", "tflite")["size_bytes"] < 0.7 * f32
    assert _row(report, "int8", "tflite")["size_bytes"] < 0.45 * f32
    runner = open_model(out / "int8" / "model.tflite")
    assert runner.inputs[0].dtype == "int8" and runner.outputs[0].dtype == "int8"
    assert runner.inputs[0].scale > 0
    assert open_model(out / "int16x8" / "model.tflite").inputs[0].dtype == "float32"
    assert open_model(out / "int8" / "model.onnx").inputs[0].dtype == "int8"


def test_quantized_accuracy_close_and_onnx_agrees(all_ptq):
    _, report = all_ptq
    for name in ("float16", "dynamic", "int8", "int16x8"):
        row = _row(report, name, "tflite")
        assert abs(row["accuracy_delta"]) <= 0.03, (name, row["accuracy_delta"])
        if name == "int16x8":
            continue
        onnx_row = _row(report, name, "onnx")
        assert abs(onnx_row["accuracy"] - row["accuracy"]) <= 0.01


def test_step_folders_and_meta(all_ptq):
    out, _ = all_ptq
    meta = json.loads((out / "int8" / "steps" / "00-int8" / "meta.json").read_text())
    assert meta["step"] == "int8" and meta["params"]["calibration_samples"] == 200
    run = json.loads((out / "run.json").read_text())
    assert run["data"]["name"] == "digits" and run["versions"]["tf-keras"].startswith("2.21")


def test_gate_failure_is_reported_not_hidden(tiny_model_path, tmp_path):
    report = compress(
        tiny_model_path, ["int8"], tmp_path / "gated", latency_runs=5, overrides=["gates.min_accuracy=1.0"]
    )
    row = _row(report, "int8", "tflite")
    assert row["gates_failed"] and "accuracy" in row["gates_failed"][0]
    assert report["passed"] is False


def test_existing_output_refused_and_untouched(tiny_model_path, tmp_path):
    out = tmp_path / "exists"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="already exists"):
        compress(tiny_model_path, ["dynamic"], out)
    assert (out / "keep.txt").read_text() == "mine"


def test_two_recipes_with_one_name_refused(tiny_model_path, tmp_path):
    for name in ("mine", "float32"):
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"name: {name}\nsteps:\n  - type: dynamic\n")
    with pytest.raises(UserError, match=r"recipe name 'mine' is also another recipe's: give each recipe its own"):
        compress(tiny_model_path, [str(tmp_path / "mine.yaml"), str(tmp_path / "mine.yaml")], tmp_path / "out")
    with pytest.raises(UserError, match=r"recipe name 'float32' is also the float32 reference's"):
        compress(tiny_model_path, [str(tmp_path / "float32.yaml")], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_wrong_data_shape_leaves_nothing(tiny_model_path, tmp_path, seed):
    data = tmp_path / "d.npz"
    rng = np.random.default_rng(seed)
    np.savez(
        data,
        x_train=rng.random((20, 5, 5)).astype("float32"),
        y_train=np.arange(20) % 10,
        x_test=rng.random((10, 5, 5)).astype("float32"),
        y_test=np.arange(10),
    )
    with pytest.raises(UserError, match=r"shape \(5, 5, 1\) but the model expects \(8, 8, 1\)"):
        compress(tiny_model_path, ["dynamic"], tmp_path / "out", data=str(data))
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["d.npz"]


def test_plain_savedmodel_works_for_post_training(tiny_run, tmp_path):
    from compressor.keras_shim import tf
    from compressor.pipeline.model_io import load_model

    keras_model = load_model(tiny_run[1]["model_path"]).keras
    plain = tmp_path / "plain"
    holder = tf.Module()
    holder.model = keras_model  # tracked, so its variables are saved with the function
    holder.serve = tf.function(
        lambda x: {"probs": holder.model(x)}, input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.float32, name="input")]
    )
    tf.saved_model.save(holder, str(plain), signatures={"serving_default": holder.serve.get_concrete_function()})
    loaded = load_model(plain)
    assert loaded.kind == "savedmodel" and not loaded.trainable and loaded.input_shape == (8, 8, 1)
    report = compress(plain, ["int8"], tmp_path / "out", latency_runs=5)
    assert report["passed"]
    assert _row(report, "int8", "tflite")["accuracy"] > 0.5
