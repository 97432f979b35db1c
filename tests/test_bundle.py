"""`compressor package`: bundle contents, manifest, self-test samples, and TFLite metadata round trips."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from compressor.bundle.choose import choose_artifact
from compressor.bundle.package import FLOAT_ATOL, package
from compressor.bundle.tflite_metadata import embed_metadata, read_metadata
from compressor.commands.cli import cli
from compressor.datasets import Preprocessing, load_dataset
from compressor.runtime import accuracy, preprocess
from compressor.runtime.bundle import open_bundle
from compressor.runtime.errors import UserError
from compressor.runtime.interpreters import open_model
from compressor.runtime.manifest import SCHEMA
from compressor.runtime.model_metadata import metadata_entries

LABELS = [str(i) for i in range(10)]


@pytest.fixture(scope="module")
def run_dir(int8_run):
    """conftest.py's int8 run of the tiny model (read-only; this module writes next to it, under its own names)."""
    return int8_run


@pytest.fixture(scope="module")
def report(run_dir):
    return json.loads((run_dir / "report.json").read_text())


@pytest.fixture(scope="module")
def built(run_dir):
    return package(run_dir, run_dir.parent / "test-bundle.zip")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def row(report, artifact, fmt="tflite"):
    return next(r for r in report["artifacts"] if r["artifact"] == artifact and r["format"] == fmt)


def test_default_choice_is_smallest_passing_tflite(built, report):
    assert built["artifact"] == "int8"
    assert built["reason"].startswith("smallest TFLite whose gates passed (")
    assert "also passed: float32" in built["reason"]
    failing = json.loads(json.dumps(report))
    row(failing, "int8")["gates_failed"] = ["accuracy drop 5.00% > 1.00%"]
    assert choose_artifact(failing, None)[0]["artifact"] == "float32"
    picked, reason = choose_artifact(failing, "int8")
    assert picked["artifact"] == "int8" and "its checks FAILED: accuracy drop" in reason
    for r in failing["artifacts"]:
        r["gates_failed"] = ["x"]
    with pytest.raises(UserError, match="no TFLite artifact of this run passed its gates; pick one with --artifact"):
        choose_artifact(failing, None)
    with pytest.raises(UserError, match="no TFLite artifact named 'int4'.*available: float32, int8"):
        choose_artifact(report, "int4")


def test_max_latency_prefers_a_passing_artifact_that_meets_it(report):
    timed = json.loads(json.dumps(report))
    row(timed, "float32")["latency"]["median_ms"], row(timed, "int8")["latency"]["median_ms"] = 0.5, 2.0
    assert choose_artifact(timed, None, max_latency_ms=10)[0]["artifact"] == "int8"  # both meet it: smallest
    picked, reason = choose_artifact(timed, None, max_latency_ms=1.0)
    assert picked["artifact"] == "float32" and reason.startswith("smallest TFLite whose gates passed within 1 ms")
    picked, reason = choose_artifact(timed, None, max_latency_ms=0.1)
    assert (
        picked["artifact"] == "float32"
        and "no passing TFLite meets --max-latency-ms 0.1: shipping the fastest" in reason
    )
    with pytest.raises(UserError, match="--max-latency-ms must be > 0"):
        choose_artifact(timed, None, max_latency_ms=0)


def test_bundle_contents_and_manifest(built, report, run_dir):
    bundle = Path(built["bundle"])
    with zipfile.ZipFile(bundle) as z:
        names = sorted(z.namelist())
        manifest = json.loads(z.read("manifest.json"))
        assert names == ["labels.txt", "manifest.json", "model.onnx", "model.tflite", "samples.npz"]
        for name, entry in manifest["files"].items():
            data = z.read(name)
            assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        assert z.read("labels.txt").decode() == "".join(f"{label}\n" for label in LABELS)
        assert z.read("model.onnx") == (run_dir / "int8" / "model.onnx").read_bytes()
    assert manifest == built["manifest"] and manifest["schema"] == SCHEMA == "compressor.bundle/2"
    assert manifest["model"]["name"] == "digits_cnn" and manifest["model"]["version"] == "1"
    assert manifest["model"]["recipe"] == "int8" and manifest["model"]["recipe_steps"] == ["int8"]
    assert manifest["tool"]["name"] == "compressor" and manifest["versions"]["ai-edge-litert"]
    assert manifest["labels"] == LABELS and manifest["raw_input"] == {"shape": [8, 8, 1], "dtype": "uint8"}
    assert manifest["preprocessing"] == report["data"]["preprocessing"]
    assert manifest["preprocessing"]["scale"] == 1 / 16 and manifest["preprocessing"]["input_range"] == [0.0, 16.0]
    assert manifest["reference"] == {
        "artifact": "float32",
        "accuracy": report["reference_accuracy"],
        "data": "digits",
        "test_samples": 359,
    }
    tfl, onnx = manifest["models"]
    assert (tfl["file"], tfl["format"], onnx["file"], onnx["format"]) == (
        "model.tflite",
        "tflite",
        "model.onnx",
        "onnx",
    )
    assert (
        tfl["inputs"][0]["dtype"] == "int8"
        and tfl["inputs"][0]["scale"] > 0
        and tfl["inputs"][0]["shape"] == [-1, 8, 8, 1]
    )
    assert tfl["outputs"][0]["shape"] == [-1, 10] and tfl["outputs"][0]["dtype"] == "int8"
    assert tfl["host"]["accuracy"] == row(report, "int8")["accuracy"]
    assert tfl["host"]["latency"] == row(report, "int8")["latency"]
    assert onnx["host"]["accuracy"] == row(report, "int8", "onnx")["accuracy"]
    assert tfl["host"]["size_bytes"] == manifest["files"]["model.tflite"]["bytes"]
    assert tfl["self_test"] == {"expected": "expected_tflite", "atol": pytest.approx(1.01 * tfl["outputs"][0]["scale"])}


def test_samples_are_raw_test_inputs_with_host_outputs(built, digits):
    with open_bundle(built["bundle"]) as b:
        s = b.samples()
        assert sorted(s) == ["expected_onnx", "expected_tflite", "raw", "x", "y"]
        np.testing.assert_array_equal(s["raw"], digits.raw_test[:16])
        assert s["raw"].dtype == np.uint8 and s["y"].tolist() == digits.y_test[:16].tolist()
        np.testing.assert_array_equal(s["x"], digits.x_test[:16])
        # The device's preprocessing (numpy only) is bit-identical to the training-time one.
        np.testing.assert_array_equal(
            preprocess.apply(b.manifest["preprocessing"], s["raw"]),
            Preprocessing.from_dict(b.manifest["preprocessing"]).apply(s["raw"]),
        )
        for fmt in ("tflite", "onnx"):
            outputs = accuracy.predict(open_model(b.file(f"model.{fmt}")), s["x"], batch_size=1)
            np.testing.assert_array_equal(outputs, s[f"expected_{fmt}"])


def test_artifact_option_samples_and_errors(run_dir, tmp_path):
    f32 = package(run_dir, tmp_path / "f32.zip", artifact="float32", samples=5, name="digits", version="2.1")
    m = f32["manifest"]
    assert f32["reason"] == "chosen with --artifact" and m["model"]["recipe"] == "float32"
    assert (m["model"]["name"], m["model"]["version"], m["samples"]["count"]) == ("digits", "2.1", 5)
    assert m["models"][0]["inputs"][0]["dtype"] == "float32" and m["models"][0]["self_test"]["atol"] == FLOAT_ATOL
    with pytest.raises(UserError, match="already exists; choose another --out or pass --overwrite"):
        package(run_dir, tmp_path / "f32.zip")
    with pytest.raises(UserError, match="report.json does not exist; pass a run folder"):
        package(tmp_path, tmp_path / "x.zip")
    # Another seed gives another test split: its outputs would not be the run's, so it is refused.
    with pytest.raises(UserError, match="pass the --data and --seed the run was compressed with"):
        package(run_dir, tmp_path / "seed.zip", seed=1)
    assert not (tmp_path / "seed.zip").exists()


def test_package_reloads_the_data_the_run_recorded(tiny_model_path, tmp_path):
    """run.json records the data spec, folder and seed: package needs no --data/--seed to reproduce
    the test split of a run made with seed 3 (seed 0, the old default, would give another split)."""
    from compressor.pipeline.compress import compress

    out = tmp_path / "seed3"
    compress(tiny_model_path, ["int8"], out, seed=3, latency_runs=3, overrides=["export.formats=[tflite]"])
    recorded = json.loads((out / "run.json").read_text())["data"]
    assert (recorded["spec"], recorded["seed"], recorded["data_dir"]) == ("digits", 3, None)
    assert recorded["splits"]["test"] == json.loads((out / "report.json").read_text())["data"]["test_samples"]
    built = package(out, tmp_path / "seed3.zip")
    assert built["artifact"] == "int8" and built["manifest"]["reference"]["data"] == "digits"
    # The options still override what was recorded: seed 0 is another split, refused.
    with pytest.raises(UserError, match="pass the --data and --seed the run was compressed with"):
        package(out, tmp_path / "seed0.zip", seed=0)


def test_package_cli(run_dir, tmp_path):
    out = tmp_path / "cli.zip"
    result = CliRunner().invoke(cli, ["package", str(run_dir), "--out", str(out), "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["artifact"] == "int8" and zipfile.is_zipfile(out)
    again = CliRunner().invoke(cli, ["package", str(run_dir), "--out", str(out), "--artifact", "nope", "--overwrite"])
    assert again.exit_code == 2 and "error: no TFLite artifact named 'nope'" in again.output


def test_tflite_metadata_round_trip(built, digits):
    with open_bundle(built["bundle"]) as b:
        meta = read_metadata(b.file("model.tflite"))
    mine, std = meta["compressor"], meta["standard"]
    assert mine["labels"] == LABELS and mine["name"] == "digits_cnn" and mine["recipe"] == "int8"
    assert mine["preprocessing"] == digits.preprocessing.to_dict() and mine["raw_input"]["shape"] == [8, 8, 1]
    # The standard TFLite Support metadata: normalisation (raw - mean) / std with mean 0, std 16.
    assert (std["name"], std["version"], std["min_parser_version"]) == ("digits_cnn", "1", "1.0.0")
    assert std["input"]["content"] == "image" and std["input"]["color_space"] == "GRAYSCALE"
    assert std["input"]["normalization"] == {"mean": [0.0], "std": [16.0]}
    assert std["input"]["stats"] == {"max": [1.0], "min": [0.0]}
    assert std["output"]["associated_files"] == [{"name": "labels.txt", "type": 2}] and std["labels"] == LABELS


@pytest.mark.parametrize("artifact", ["float32", "int8"])
def test_metadata_keeps_outputs_identical(run_dir, digits, artifact):
    original = (run_dir / artifact / "model.tflite").read_bytes()
    prep = {
        "scale": 1 / 255,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "layout": "NHWC",
        "channel_order": "RGB",
        "input_range": [0.0, 255.0],
    }
    with_meta = embed_metadata(original, labels=["a", "b"], preprocessing=prep, name="m", version="7")
    twice = embed_metadata(with_meta, labels=LABELS, preprocessing=digits.preprocessing.to_dict(), name="m")
    paths = {}
    for name, data in (("original", original), ("once", with_meta), ("twice", twice)):
        paths[name] = run_dir.parent / f"{artifact}-{name}.tflite"
        paths[name].write_bytes(data)
    for xnnpack in (True, False):
        ref = accuracy.predict(open_model(paths["original"], xnnpack=xnnpack), digits.x_test)
        for name in ("once", "twice"):
            np.testing.assert_array_equal(
                accuracy.predict(open_model(paths[name], xnnpack=xnnpack), digits.x_test), ref
            )
    std = read_metadata(paths["once"])["standard"]
    assert std["input"]["color_space"] == "RGB" and std["version"] == "7" and std["labels"] == ["a", "b"]
    assert std["input"]["normalization"]["mean"] == pytest.approx([123.675, 116.28, 103.53], rel=1e-6)
    assert std["input"]["normalization"]["std"] == pytest.approx([58.395, 57.12, 57.375], rel=1e-6)
    # Re-embedding replaces the entries instead of stacking a second copy.
    names = [n for n in metadata_entries(twice) if n in ("compressor_metadata", "TFLITE_METADATA")]
    assert sorted(names) == ["TFLITE_METADATA", "compressor_metadata"]
    again = read_metadata(paths["twice"])
    assert again["compressor"]["labels"] == LABELS and again["standard"]["labels"] == LABELS
    with zipfile.ZipFile(io.BytesIO(twice)) as z:  # one labels.txt in the appended zip
        assert z.namelist() == ["labels.txt"]


def test_flat_features_and_corrupt_metadata(run_dir, tmp_path):
    original = (run_dir / "float32" / "model.tflite").read_bytes()
    flat = embed_metadata(
        original,
        labels=LABELS,
        name="f",
        preprocessing={
            "scale": 2.0,
            "mean": [1.0],
            "std": [4.0],
            "layout": "NC",
            "channel_order": "gray",
            "input_range": [0, 1],
        },
    )
    (tmp_path / "flat.tflite").write_bytes(flat)
    std = read_metadata(tmp_path / "flat.tflite")["standard"]
    assert std["input"]["content"] == "feature" and "color_space" not in std["input"]
    assert std["input"]["normalization"] == {"mean": [0.5], "std": [2.0]}
    assert read_metadata(run_dir / "float32" / "model.tflite") == {"compressor": None, "standard": None}
    (tmp_path / "cut.tflite").write_bytes(flat[:200])
    with pytest.raises(UserError, match="cut.tflite has corrupt TFLite metadata"):
        read_metadata(tmp_path / "cut.tflite")
