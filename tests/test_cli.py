"""The CLI: one-line errors with exit code 2, clean terminal output, listings, JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from compressor.commands.cli import cli

COMPRESSOR = str(Path(sys.executable).parent / "compressor")


def invoke(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


def assert_user_error(code, output, fragment):
    assert code == 2, output
    lines = [ln for ln in output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], output
    assert "Traceback" not in output


def test_help_does_not_import_tensorflow():
    code = (
        "import sys; from compressor.commands.cli import main; sys.argv=['compressor','--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "assert 'tensorflow' not in sys.modules, 'TF imported by --help'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "compress" in proc.stdout


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["compress", "no/such/model", "--out", "{tmp}/o"], "model path no/such/model does not exist"),
        (["compress", "{tmp}", "--out", "{tmp}/o"], "is a folder but not a SavedModel"),
        (["compress", "{model}", "--recipe", "int9", "--out", "{tmp}/o"], "did you mean 'int8'?"),
        (
            ["compress", "{model}", "--out", "{tmp}/o", "--set", "steps.0.params.calibration_samples=-1"],
            "steps[0].params.calibration_samples: must be greater than or equal to 1",
        ),
        (["compress", "{model}", "--data", "digts", "--out", "{tmp}/o"], "did you mean 'digits'?"),
        (["compress", "{model}", "--data", "{tmp}/bad.npz", "--out", "{tmp}/o"], "does not match"),
        (["train", "--model", "digit_cnn", "--out", "{tmp}/t"], "did you mean 'digits_cnn'?"),
        (["validate", "{tmp}/nothing.tflite"], "does not exist"),
    ],
)
def test_user_errors(args, fragment, tiny_model_path, tmp_path):
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "bad.npz",
        x_train=rng.random((10, 4, 4)),
        y_train=np.arange(10) % 3,
        x_test=rng.random((6, 4, 4)),
        y_test=np.arange(6) % 3,
    )
    filled = [a.format(tmp=tmp_path, model=tiny_model_path) for a in args]
    fragment = fragment.format(tmp=tmp_path)
    code, output = invoke(*filled)
    if "does not match" in fragment:
        fragment = "but the model expects (8, 8, 1)"
    assert_user_error(code, output, fragment)
    assert not (tmp_path / "o").exists() and not (tmp_path / "t").exists()


def test_existing_output_needs_overwrite(tiny_model_path, tmp_path):
    (tmp_path / "o").mkdir()
    assert_user_error(*invoke("compress", tiny_model_path, "--out", tmp_path / "o"), "pass --overwrite")


def test_dry_run_prints_resolved_recipe(tiny_model_path, tmp_path):
    code, output = invoke(
        "compress",
        tiny_model_path,
        "--out",
        tmp_path / "o",
        "--recipe",
        "int8",
        "--set",
        "steps.0.params.calibration_samples=64",
        "--dry-run",
        "--json",
    )
    assert code == 0, output
    resolved = json.loads(output)
    params = resolved[0]["steps"][0]["params"]
    assert (params["calibration_samples"], params["io_dtype"]) == (64, "int8")
    assert not (tmp_path / "o").exists()


def test_listings():
    code, output = invoke("recipes", "--json")
    data = json.loads(output)
    assert code == 0 and "int8" in data["presets"]
    assert data["steps"]["int8"]["params"]["calibration_samples"]["default"] == 200
    code, output = invoke("models")
    assert code == 0 and "digits_cnn" in output and "mobilenet_v2" in output


def test_compress_subprocess_terminal_is_clean(tiny_model_path, tmp_path):
    """The real console script: table on stdout, no TensorFlow C++ log lines anywhere."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run(
        [
            COMPRESSOR,
            "compress",
            tiny_model_path,
            "--recipe",
            "dynamic",
            "--out",
            str(tmp_path / "run"),
            "--runs",
            "5",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    assert "dynamic" in proc.stdout and "float32" in proc.stdout and "p90 ms" in proc.stdout
    for noise in ("W0000", "I0000", "XNNPACK", "tensorflow/"):
        assert noise not in proc.stdout


def test_validate_json(int8_run):
    artifact = int8_run / "int8" / "model.tflite"
    code, output = invoke(
        "validate", artifact, "--reference", int8_run / "float32" / "model.tflite", "--runs", "5", "--json"
    )
    assert code == 0, output
    result = json.loads(output)
    assert result["backend"] in ("litert", "tflite_runtime")
    assert result["accuracy"]["agreement"]["top1_agreement"] > 0.9
    assert result["inputs"][0]["dtype"] == "int8"
    assert result["size"]["bytes"] == artifact.stat().st_size
