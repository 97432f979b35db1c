"""`compressor package RUN_DIR --out bundle.zip`: turn a compress run into a bundle a mobile app ships.

Contents (flat zip): model.tflite (labels + preprocessing embedded as TFLite metadata),
model.onnx when the recipe exported one, labels.txt, samples.npz (raw + preprocessed test inputs,
labels and each model's own host outputs, for the device self-test) and manifest.json (schema
``compressor.bundle/2``, documented in README.md) with the sha256 of every other file; with a
signing key, also manifest.sig (Ed25519 over manifest.json's bytes, see compressor/bundle/signing.py).

No TensorFlow here: the test set is reloaded with the run's data spec and seed, and checked to
reproduce the run's measured accuracy before a single expected output is recorded.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from compressor import __version__
from compressor.bundle.choose import choose_artifact
from compressor.bundle.image_samples import image_samples
from compressor.bundle.signing import load_private_key, signature_block
from compressor.bundle.signing import sign as signature_bytes
from compressor.bundle.tflite_metadata import write_metadata
from compressor.datasets.splits import split_of
from compressor.pipeline.layout import REFERENCE, RunLayout
from compressor.pipeline.output_guard import check_file_output
from compressor.runtime import accuracy, latency
from compressor.runtime.atomic import write_bytes
from compressor.runtime.bundle import sha256_file
from compressor.runtime.errors import UserError
from compressor.runtime.interpreters import open_model
from compressor.runtime.manifest import MANIFEST, MIN_RUNTIME, SCHEMA, check_manifest
from compressor.runtime.safe_load import RUN_FILE_BYTES, load_json_file
from compressor.runtime.signing import SIGNATURE

FLOAT_ATOL = 1e-4  # float32/float16 graphs: only summation order may differ between CPUs
MIXED_ATOL = 1e-2  # float I/O around integer kernels (dynamic range): rounding can move a few steps
EVAL_BATCH = 256  # test samples a check holds at once (runtime.accuracy.predict's own batch)


def package(
    run_dir: str | Path,
    out: str | Path,
    artifact: str | None = None,
    samples: int = 16,
    name: str | None = None,
    version: str = "1",
    data: str | None = None,
    data_dir: str | None = None,
    seed: int | None = None,
    overwrite: bool = False,
    sign: str | Path | None = None,
    progress: Callable[[str], None] = lambda msg: None,
    max_latency_ms: float | None = None,
    stream: bool | None = None,
) -> dict:
    """Build the bundle; returns {"bundle", "artifact", "reason", "manifest"}.

    The test set is reloaded as the run recorded it in run.json (data spec, data folder, seed);
    ``data``, ``data_dir`` and ``seed`` override what was recorded. ``sign``: an Ed25519 private key
    (compressor keygen) whose signature of manifest.json goes into the bundle as manifest.sig.
    ``max_latency_ms``: among passing artifacts, prefer those whose median latency meets it (choose.py).
    ``stream``: read the test split batch by batch (datasets/source.py; None: when the folder is large);
    only the ``samples`` self-test samples are ever held."""
    run_dir, out = Path(run_dir), Path(out)
    key = load_private_key(sign) if sign is not None else None  # a bad key fails before any work
    layout = RunLayout(run_dir)
    report, run = read_run_file(layout.report_json), read_run_file(layout.run_record)
    if samples < 1:
        raise UserError(f"--samples must be >= 1, got {samples}")
    chosen, reason = choose_artifact(report, artifact, max_latency_ms)
    inputs = [layout.report_json, layout.run_record, run.get("model"), data, data_dir, artifact_file(layout, chosen)]
    check_file_output(out, inputs, overwrite, replaceable=_is_bundle)  # never a folder, an input or a foreign file
    progress(f"packaging {chosen['artifact']}: {reason}")
    dataset = reload_dataset(run_dir, run, report, (data, data_dir, seed), stream, progress)
    model_name = name or _card(run).get("model") or Path(run["model"]).name
    bundle = _Bundle(layout, report, run, chosen, dataset, model_name, str(version))
    with tempfile.TemporaryDirectory(prefix="compressor-package-") as tmp:
        manifest = bundle.write(Path(tmp), samples, reason, signature_block(key) if key else None)
        manifest_bytes = (json.dumps(manifest, indent=2) + "\n").encode("utf-8")
        zipped = io.BytesIO()
        with zipfile.ZipFile(zipped, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(MANIFEST, manifest_bytes)
            if key is not None:  # over the exact bytes stored: the device verifies these, not a re-encoding
                archive.writestr(SIGNATURE, signature_bytes(key, manifest_bytes))
            for f in sorted(manifest["files"]):
                archive.write(Path(tmp) / f, f)
    write_bytes(out, zipped.getvalue())
    return {"bundle": str(out), "artifact": chosen["artifact"], "reason": reason, "manifest": manifest}


class _Bundle:
    """The files of one bundle, written into a folder, and the manifest that describes them."""

    def __init__(self, layout: RunLayout, report: dict, run: dict, chosen: dict, dataset, name: str, version: str):
        self.layout, self.report, self.chosen, self.dataset = layout, report, chosen, dataset
        self.name, self.version = name, version
        self.recipe = next((r for r in run.get("recipes", []) if r["name"] == chosen["artifact"]), None)
        self.prep, self.labels = report["data"]["preprocessing"], list(report["data"]["labels"])
        raw = test_samples(dataset, 1)["raw"]
        self.raw_input = {"shape": list(raw.shape[1:]), "dtype": raw.dtype.name}

    def write(self, tmp: Path, samples: int, reason: str, signature: dict | None) -> dict:
        chosen, dataset = self.chosen, self.dataset
        write_metadata(
            artifact_file(self.layout, chosen),
            tmp / "model.tflite",
            labels=self.labels,
            preprocessing=self.prep,
            name=self.name,
            version=self.version,
            raw_input=self.raw_input,
            description=f"{self.name} compressed with recipe {chosen['artifact']}",
            extra={"recipe": chosen["artifact"]},
        )
        n = min(samples, len(dataset.y_test))
        arrays = test_samples(dataset, n)
        entries = [_model_entry(tmp / "model.tflite", "tflite", chosen, dataset, arrays, self.recipe, check=True)]
        onnx_row = self._onnx_row()
        if onnx_row is not None:
            shutil.copyfile(artifact_file(self.layout, onnx_row), tmp / "model.onnx")
            entries.append(_model_entry(tmp / "model.onnx", "onnx", onnx_row, dataset, arrays, self.recipe, False))
        (tmp / "labels.txt").write_text("".join(f"{label}\n" for label in self.labels), encoding="utf-8")
        self.images = image_samples(self.prep, dataset, n)  # the device re-fits these image files
        buf = io.BytesIO()
        np.savez(buf, **arrays, **self.images)
        (tmp / "samples.npz").write_bytes(buf.getvalue())
        files = sorted(p.name for p in tmp.iterdir())
        return check_manifest({**self._manifest(entries, n, reason, tmp, files), "signature": signature})

    def _onnx_row(self) -> dict | None:
        """The chosen recipe's ONNX, shipped beside the .tflite when its export checks passed."""
        return next(
            (
                r
                for r in self.report["artifacts"]
                if r["artifact"] == self.chosen["artifact"] and r["format"] == "onnx" and not r["export_mismatches"]
            ),
            None,
        )

    def _manifest(self, entries: list[dict], n: int, reason: str, tmp: Path, files: list[str]) -> dict:
        report, recipe = self.report, self.recipe
        return {
            "schema": SCHEMA,
            "min_runtime": MIN_RUNTIME,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "model": {
                "name": self.name,
                "version": self.version,
                "recipe": self.chosen["artifact"],
                "recipe_steps": [s["type"] for s in recipe["steps"]] if recipe else [],
                "selected_because": reason,
            },
            "tool": {"name": "compressor", "version": __version__},
            "versions": report.get("versions", {}),
            "labels": self.labels,
            "labels_file": "labels.txt",
            "preprocessing": self.prep,
            "raw_input": self.raw_input,
            "models": entries,
            "reference": {
                "artifact": REFERENCE,
                "accuracy": float(report["reference_accuracy"]),
                "data": report["data"]["name"],
                "test_samples": int(report["data"]["test_samples"]),
            },
            "samples": {"file": "samples.npz", "count": n, "raw": "raw", "inputs": "x", "labels": "y"}
            | ({"images": sorted(self.images)} if self.images else {}),
            "files": {f: {"sha256": sha256_file(tmp / f), "bytes": (tmp / f).stat().st_size} for f in files},
        }


def _model_entry(path: Path, fmt: str, row: dict, dataset, arrays: dict, recipe: dict | None, check: bool) -> dict:
    runner = open_model(path)
    if check:  # the reloaded test set must be the run's, or the expected outputs mean nothing
        test = split_of(dataset, "test")  # loaded or streamed: a batch at a time
        outputs = np.concatenate([accuracy.predict(runner, x) for x, _ in test.batches(EVAL_BATCH)])
        measured = accuracy.classification_metrics(outputs, test.y)
        # The whole confusion matrix, not just accuracy: another split could score the same by chance.
        if (
            measured["confusion_matrix"] != row.get("confusion_matrix", measured["confusion_matrix"])
            or abs(measured["top1"] - row["accuracy"]) > 1e-9
        ):
            raise UserError(
                f"the reloaded test set gives accuracy {measured['top1']:.4%} but the run measured "
                f"{row['accuracy']:.4%}; pass the --data and --seed the run was compressed with"
            )
    expected = accuracy.predict(runner, arrays["x"])
    arrays[f"expected_{fmt}"] = expected
    out = runner.outputs[0]
    if out.scale > 0 and out.dtype in ("int8", "uint8", "int16"):
        atol = 1.01 * out.scale  # one quantization step
    else:
        last = recipe["steps"][-1]["type"] if recipe else "float32"
        atol = FLOAT_ATOL if last in ("float32", "float16") or row["artifact"] == "float32" else MIXED_ATOL
    size = latency.file_size(path)
    return {
        "file": path.name,
        "format": fmt,
        "inputs": [t.to_dict() for t in runner.inputs],
        "outputs": [t.to_dict() for t in runner.outputs],
        "host": {
            "accuracy": row["accuracy"],
            "accuracy_delta": row["accuracy_delta"],
            "agreement": row.get("agreement", {}),
            "latency": row["latency"],
            "size_bytes": size["bytes"],
            "gzip_bytes": size["gzip_bytes"],
            "gates_failed": row["gates_failed"],
        },
        "self_test": {"expected": f"expected_{fmt}", "atol": atol},
    }


def artifact_file(layout: RunLayout, row: dict) -> Path:
    """The row's file inside the run folder (the recorded absolute path is stale once a run folder moves)."""
    path = layout.recipe_dir(row["artifact"]) / Path(row.get("path") or f"model.{row['format']}").name
    if not path.is_file():
        raise UserError(f"{path} is missing from the run folder; was it moved or cleaned up?")
    return path


def test_samples(dataset: Any, n: int) -> dict[str, np.ndarray]:
    """The first ``n`` test samples as read (raw), as model inputs (x) and their labels (y)."""
    if hasattr(dataset, "x_test"):
        return {"raw": dataset.raw_test[:n], "x": dataset.x_test[:n], "y": dataset.y_test[:n]}
    test, rows = dataset.split("test"), np.arange(n)  # streamed: only these n are read
    return {"raw": test.raw(rows), "x": test.inputs(rows), "y": test.y[rows]}


def reload_dataset(
    run_dir: Path,
    run: dict,
    report: dict,
    given: tuple = (None, None, None),
    stream: bool | None = None,
    progress: Callable[[str], None] = lambda msg: None,
) -> Any:
    """The run's test set, from what run.json recorded; ``given`` (data, data_dir, seed) overrides it.
    Runs made before run.json recorded its data fall back to the model card's data set and seed 0.
    ``stream``: loaded or streamed (datasets/source.py)."""
    from compressor.datasets import DATASET_NAMES
    from compressor.datasets.source import load_recorded

    data, data_dir, seed = given

    recorded = run.get("data") if isinstance(run.get("data"), dict) else {}
    spec = data or recorded.get("spec") or _card(run).get("data")
    if spec is None and report["data"]["name"] in DATASET_NAMES:
        spec = report["data"]["name"]
    if spec is None:
        raise UserError(f"cannot tell which data set {run_dir} was compressed with; pass --data (and --data-dir)")
    data_dir = data_dir or (recorded.get("data_dir") if not data else None)
    seed = seed if seed is not None else int(recorded.get("seed", 0))
    expected = report["data"]
    shape = recorded.get("input_shape")
    dataset = load_recorded(spec, data_dir, seed, expected["preprocessing"], shape, stream, progress)
    if (
        dataset.name != expected["name"]
        or len(dataset.y_test) != expected["test_samples"]
        or dataset.preprocessing.to_dict() != expected["preprocessing"]
    ):
        raise UserError(
            f"--data {spec} gives test set {dataset.name!r} ({len(dataset.y_test)} samples) but the run "
            f"used {expected['name']!r} ({expected['test_samples']}); pass the run's --data"
        )
    return dataset


def _card(run: dict) -> dict:
    from compressor.pipeline.model_io import read_card

    return read_card(Path(run["model"])) if run.get("model") else {}


def _is_bundle(path: Path) -> bool:
    """What --overwrite may replace: a bundle this command wrote (a zip with its manifest)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return MANIFEST in archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def read_run_file(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"{path} does not exist; pass a run folder written by `compressor compress`")
    return load_json_file(path, path.name, limit=RUN_FILE_BYTES)
