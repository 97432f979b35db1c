"""Keras 3 files in: detection, the tf_keras bridge (rebuilt outputs equal Keras 3's), post-training
and training presets through `compress`, and the refusals (Lambda, untranslatable layers, training
on a model.export()).

The Keras 3 models are built, trained and run by Keras 3 itself in one child process
(tests/keras3_models.py, TF_USE_LEGACY_KERAS unset); this process holds tf_keras only.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from compressor.pipeline.keras3_bridge import compare, rebuild, verify
from compressor.pipeline.keras3_layers import BridgeError
from compressor.pipeline.model_io import detect_kind, load_model
from compressor.runtime.errors import UserError

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def k3(digits, tmp_path_factory) -> Path:
    """The folder of Keras 3 models (and Keras 3's own predictions), built once per module."""
    from compressor.pipeline.keras3_reference import child_env

    out = tmp_path_factory.mktemp("keras3")
    data = out / "digits.npz"
    np.savez(data, x_train=digits.x_train, y_train=digits.y_train, x_test=digits.x_test)
    done = subprocess.run(
        [sys.executable, str(HERE / "keras3_models.py"), str(data), str(out)],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def keras3_accuracy(k3: Path, name: str, digits) -> float:
    return float(np.mean(np.load(k3 / f"{name}_pred.npy").argmax(1) == digits.y_test))


def test_keras3_formats_detected(k3, tmp_path):
    from compressor.keras_shim import keras

    assert detect_kind(k3 / "func.keras") == "keras3-keras"
    assert detect_kind(k3 / "func.h5") == "keras3-h5"
    assert detect_kind(k3 / "func_export") == "keras3-export"
    inp = keras.Input((4,))
    keras.Model(inp, keras.layers.Dense(2)(inp)).save(tmp_path / "tfk.keras")  # tf_keras' own .keras
    assert detect_kind(tmp_path / "tfk.keras") == "keras-v3"


@pytest.mark.parametrize(
    "name", ["func.keras", "func.h5", "seq.keras", "mobilenet_v3_small.keras", "mobilenet_v2.keras"]
)
def test_rebuild_equals_keras3(k3, digits, name):
    """The tf_keras rebuild's outputs equal Keras 3's own within 1e-5 (outputs that vary per input)."""
    model, record = rebuild(k3 / name)
    stem = name.split(".")[0]
    x = np.load(k3 / f"{stem}_x.npy") if (k3 / f"{stem}_x.npy").is_file() else digits.x_test
    reference = np.load(k3 / f"{stem}_pred.npy")
    rebuilt = model.predict(x, verbose=0)
    assert reference.std(axis=0).max() > 1e-3  # a constant output would make the check vacuous
    assert np.abs(rebuilt - reference).max() <= 1e-5
    assert record["name"] == "keras3-to-tf_keras" and record["keras_version"].startswith("3.")
    if stem in ("seq", "mobilenet_v3_small"):  # hard_silu has no tf_keras activation: rewritten as layers
        assert any("hard_silu as standard layers" in r for r in record["rewrites"])
    if stem == "mobilenet_v3_small":  # its hard-sigmoid writes keras.ops add/multiply into the graph
        assert any("keras.ops.Add" in r for r in record["rewrites"])


def test_hard_silu_rewrite_converts_to_hard_swish(k3):
    """The rewritten hard_silu is relu6(x + 3) / 6 times x as Keras 3 computes it: the TFLite
    converter fuses it into one HARD_SWISH op, as it does for Keras 3's own export."""
    from ai_edge_litert.interpreter import Interpreter

    from compressor.keras_shim import tf

    model, _ = rebuild(k3 / "seq.keras")
    ops = [
        op["op_name"]
        for op in Interpreter(
            model_content=tf.lite.TFLiteConverter.from_keras_model(model).convert()
        )._get_ops_details()
    ]
    assert ops.count("HARD_SWISH") == 1 and "MINIMUM" not in ops


def test_post_training_from_keras_file_and_export(k3, digits, tmp_path):
    from compressor.pipeline.compress import compress

    expected = keras3_accuracy(k3, "func", digits)
    for source, formats in (("func.keras", "[tflite, onnx]"), ("func_export", "[tflite]")):
        report = compress(
            k3 / source, ["int8"], tmp_path / source, latency_runs=5, overrides=[f"export.formats={formats}"]
        )
        assert report["reference_accuracy"] == pytest.approx(expected, abs=1 / len(digits.y_test))
        int8 = next(r for r in report["artifacts"] if r["artifact"] == "int8" and r["format"] == "tflite")
        assert int8["accuracy"] >= expected - 0.03
    bridge = report_model(tmp_path / "func.keras")
    assert bridge["check"]["passed"] and bridge["check"]["samples"] == len(digits.y_test)
    assert bridge["check"]["max_abs_diff"] <= 1e-5 and bridge["check"]["top1_agreement"] == 1.0
    assert "bridge" not in report["model"] and report["model"]["kind"] == "keras3-export"


def report_model(run: Path) -> dict:
    import json

    return json.loads((run / "report.json").read_text())["model"]["bridge"]


# The bridge-then-train route: `make test` runs it once (the .h5 file under QAT, the stricter wrapper);
# the .keras file under prune (the same route; ~10 s) with COMPRESSOR_FULL_MATRIX=1 too.
BRIDGE_PRESETS = [("func.h5", "qat-int8")]
if os.environ.get("COMPRESSOR_FULL_MATRIX"):
    BRIDGE_PRESETS.append(("seq.keras", "prune-int8"))


@pytest.mark.parametrize(("source", "recipe"), BRIDGE_PRESETS)
def test_training_preset_through_bridge(k3, digits, tmp_path, source, recipe):
    from compressor.pipeline.compress import compress

    expected = keras3_accuracy(k3, source.split(".")[0], digits)
    fast = ["export.formats=[tflite]", "steps.0.params.epochs=1"]  # tiny data, one epoch
    report = compress(k3 / source, [recipe], tmp_path / "run", latency_runs=5, overrides=fast)
    assert report["model"]["bridge"]["check"]["passed"]
    assert report["reference_accuracy"] == pytest.approx(expected, abs=1 / len(digits.y_test))
    row = next(r for r in report["artifacts"] if r["artifact"] == recipe and r["format"] == "tflite")
    assert row["accuracy"] >= expected - 0.05
    assert report["steps"][recipe][0]["step"] in ("qat", "prune")


def test_check_refuses_a_rebuild_that_differs(k3, digits):
    model = load_model(k3 / "func.keras")
    dense = model.keras.get_layer("dense")
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel, bias + np.linspace(0, 0.5, len(bias))])  # what a wrong translation would do
    with pytest.raises(UserError, match="differs from Keras 3.*max \\|diff\\|"):
        verify(model, digits.x_test)
    assert model.bridge["check"]["passed"] is False


def test_compare_tolerance():
    ref = np.array([[0.2, 0.8], [0.6, 0.4]], np.float32)
    assert compare(ref + 5e-6, ref)["passed"]
    assert not compare(ref + 1e-4, ref)["passed"]
    assert compare(ref[::-1], ref)["top1_agreement"] == 0.0


def test_lambda_refused_without_trust(k3):
    with pytest.raises(UserError, match="Lambda layer \\('doubler'\\).*--trust-code"):
        load_model(k3 / "lambda.keras")


def test_untranslatable_layer_is_one_error(k3):
    with pytest.raises(BridgeError, match="Keras 3 layer 'my_gru' \\(GRU\\) cannot be rebuilt in tf_keras"):
        rebuild(k3 / "gru.keras")


def test_training_on_export_refused(k3):
    from compressor.pipeline.preflight import check_trainable
    from compressor.recipes import load_recipe

    model = load_model(k3 / "func_export")
    assert model.kind == "keras3-export" and not model.trainable
    with pytest.raises(UserError, match="Keras 3 model.export\\(\\) SavedModel.*pass the Keras 3 .keras file"):
        check_trainable(model, [load_recipe("qat-int8")])


def test_cli_untranslatable_layer_exit_2(k3, tmp_path):
    """A training preset on a model with a layer the bridge lacks: one line naming it, exit 2; the
    post-training route (Keras 3's own export, made in a child) loaded before that line."""
    done = subprocess.run(
        [sys.executable, "-m", "compressor", "compress", str(k3 / "gru.keras"), "--recipe", "qat-int8",
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, env={**os.environ, "COMPRESSOR_VERBOSE": "0"}, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-1000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "'my_gru' (GRU)" in lines[0] and "post-training" in lines[0]
    assert not (tmp_path / "out").exists()
