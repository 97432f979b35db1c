"""What ``compressor-runtime`` does: verify, validate and bench, as functions returning JSON-ready dicts.

A target is a bundle (.zip) or a bare .tflite/.onnx. A bundle brings its preprocessing, labels,
host figures and self-test samples; a bare .tflite brings what its embedded metadata holds
(labels, preprocessing); a bare .onnx brings nothing, so its --data must already be model inputs.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np

from . import accuracy, latency, preprocess
from .bundle import Bundle, open_bundle
from .errors import UserError
from .gates import Gates
from .interpreters import Runner, open_model
from .model_metadata import compressor_metadata, read_metadata
from .selftest import run_self_test
from .signing import KEY_ENV

REPORT_SCHEMA = "compressor.runtime-report/1"
_LIBRARIES = ("compressor-runtime", "compressor", "numpy", "ai-edge-litert", "tflite-runtime", "onnxruntime")
Progress = Callable[[str], None]

NO_GATES = Gates()  # a shared immutable default: nothing is checked


@dataclass
class Target:
    path: Path  # the model file that runs
    runner: Runner
    bundle: Bundle | None = None
    entry: dict = field(default_factory=dict)  # the bundle manifest's models[] entry
    info: dict | None = None  # preprocessing, raw_input, labels: from the manifest or the .tflite


@contextmanager
def open_target(
    path: str | Path, fmt: str | None = None, threads: int = 1, xnnpack: bool = True, key: str | Path | None = None
) -> Iterator[Target]:
    path = Path(path)
    if threads < 1:
        raise UserError(f"--threads must be >= 1, got {threads}")
    if path.suffix.lower() in (".tflite", ".onnx"):
        if key is not None:
            raise UserError(
                f"a signing key is set (--key or ${KEY_ENV}): only signed bundles run, and {path.name} is a bare "
                "model; package and sign it, or unset the key"
            )
        if fmt is not None and path.suffix.lower() != f".{fmt}":
            raise UserError(f"--model {fmt} picks a model inside a bundle; {path.name} is a model file itself")
        runner = open_model(path, threads=threads, xnnpack=xnnpack)  # first: it names a corrupt file best
        meta = compressor_metadata(path) if path.suffix.lower() == ".tflite" else None
        yield Target(path, runner, info=meta)
        return
    with open_bundle(path, key=_public_key(key)) as bundle:
        entry = bundle.model(fmt)
        runner = open_model(bundle.file(entry["file"]), threads=threads, xnnpack=xnnpack)
        yield Target(bundle.file(entry["file"]), runner, bundle, entry, bundle.manifest)


def _public_key(key: str | Path | None):
    if key is None:
        return None
    from .signing import load_public_key

    return load_public_key(key)


def verify(path: str | Path, key: str | Path | None = None) -> dict:
    """Check a bundle's signature (with ``key``), schema and every file's sha256 (plus the model files' headers)."""
    with open_bundle(path, key=_public_key(key)) as bundle:
        m = bundle.manifest
        for entry in m["models"]:
            if entry["format"] == "tflite":
                _check_embedded(bundle, entry["file"])
        return {
            "schema": REPORT_SCHEMA,
            "command": "verify",
            "target": str(path),
            "bundle_schema": m["schema"],
            "model": m["model"],
            "signature": bundle.signature,
            "files": {n: {**f, "ok": True} for n, f in sorted(m["files"].items())},
            "passed": True,
        }


def _check_embedded(bundle: Bundle, name: str) -> None:
    """The .tflite must carry the same labels as the manifest: an app may read them from either."""
    with open(bundle.file(name), "rb") as f:
        if f.read(8)[4:8] != b"TFL3":
            raise UserError(f"bundle file {name} is not a TFLite model (no TFL3 file identifier)")
    embedded = read_metadata(bundle.file(name))["compressor"]
    if embedded is None or embedded.get("labels") != bundle.manifest["labels"]:
        raise UserError(f"bundle file {name} does not carry the manifest's labels in its TFLite metadata")


def validate(
    path: str | Path,
    data: str | None = None,
    fmt: str | None = None,
    threads: int = 1,
    xnnpack: bool = True,
    batch_size: int = 256,
    runs: int = 100,
    warmup: int = 10,
    gates: Gates = NO_GATES,
    progress: Progress = lambda msg: None,
    key: str | Path | None = None,
) -> dict:
    """Self-test (bundles), accuracy on ``data`` (raw x_test, y_test), latency, size, then gates."""
    if gates.need_accuracy and data is None:
        raise UserError("accuracy gates need labelled data: pass --data test.npz")
    with open_target(path, fmt, threads, xnnpack, key) as t:
        report = _header("validate", path, t, xnnpack)
        sample = None
        # Data mistakes are found before anything runs: a wrong file should not cost a self-test.
        labelled = _load_data(t, data) if data is not None else None
        if t.bundle is not None:
            progress(f"self-test on {t.bundle.manifest['samples']['count']} bundled samples")
            report["self_test"] = run_self_test(t.bundle, t.entry, t.runner, batch_size)
            sample = t.bundle.samples()[t.bundle.manifest["samples"]["inputs"]][:1]
        elif data is None:
            raise UserError(f"{Path(path).name} is a bare model without self-test samples; pass --data test.npz")
        if labelled is not None:
            progress(f"accuracy on {data}")
            report["accuracy"] = _accuracy(t, *labelled, batch_size)
            sample = labelled[0][:1]
        progress(f"latency: {warmup} warm-up + {runs} timed runs")
        report["latency"] = latency.measure_latency(t.runner, sample, warmup, runs, max_seconds=30.0)
        report["size"] = latency.file_size(t.path)
        acc = report.get("accuracy", {}).get("top1")
        return _finish(report, gates, acc, _reference_accuracy(t))


def bench(
    path: str | Path,
    fmt: str | None = None,
    threads: int = 1,
    xnnpack: bool = True,
    runs: int = 100,
    warmup: int = 10,
    gates: Gates = NO_GATES,
    reference: bool = False,
    progress: Progress = lambda msg: None,
    key: str | Path | None = None,
) -> dict:
    """Latency, init time, peak memory and size; optionally next to litert-benchmark's figures."""
    if gates.need_accuracy:
        raise UserError("bench measures latency only; use validate --data for accuracy gates")
    with open_target(path, fmt, threads, xnnpack, key) as t:
        report = _header("bench", path, t, xnnpack)
        if t.bundle is not None:
            sample = t.bundle.samples()[t.bundle.manifest["samples"]["inputs"]][:1]
        else:  # any in-range input times the same: these graphs have no data-dependent control flow
            sample = np.zeros([1] + [max(d, 1) for d in t.runner.inputs[0].shape[1:]], np.float32)
        progress(f"latency: {warmup} warm-up + {runs} timed runs")
        report["latency"] = latency.measure_latency(t.runner, sample, warmup, runs)
        report["size"] = latency.file_size(t.path)
        if reference:
            if t.path.suffix != ".tflite":
                raise UserError("--litert-benchmark compares .tflite models only")
            from .reference_bench import agrees, run_litert_benchmark

            progress("running litert-benchmark on the same model and thread count")
            ref = run_litert_benchmark(t.path, threads=threads, runs=runs, warmup=warmup)
            ours = report["latency"]["median_ms"]
            if not xnnpack:
                ref["note"] = "litert-benchmark always runs its default CPU accelerator (XNNPACK); ours ran without it"
            report["litert_benchmark"] = {
                **ref,
                "our_median_ms": ours,
                "median_ratio": ours / ref["median_ms"] if ref["median_ms"] else None,
                "within_10_percent": agrees(ours, ref["median_ms"], 0.10),
            }
        return _finish(report, gates, None, None)


def _load_data(t: Target, data: str) -> tuple[np.ndarray, np.ndarray, str, bool]:
    """Model inputs, class ids, the file name, and whether the preprocessing was applied."""
    x, y = preprocess.load_data(data, t.info)
    if t.info and t.info.get("preprocessing") and t.info.get("raw_input"):
        preprocess.check_raw(x, t.info["raw_input"], t.info["preprocessing"])
        x = preprocess.apply(t.info["preprocessing"], x)
        applied = True
    else:  # nothing says how to preprocess: the data must already be model inputs
        if x.dtype.kind not in "iuf":
            raise UserError(f"x_test has dtype {x.dtype}; model inputs must be numbers")
        applied = False
    classes = int(np.prod([d for d in t.runner.outputs[0].shape[1:] if d > 0]))
    y = preprocess.check_labels(np.asarray(y), len(x), classes)
    return x, y, str(data), applied


def _accuracy(t: Target, x: np.ndarray, y: np.ndarray, data: str, applied: bool, batch_size: int) -> dict:
    started = time.perf_counter()
    outputs = accuracy.predict(t.runner, x, batch_size)
    seconds = time.perf_counter() - started
    result = accuracy.classification_metrics(outputs, y)
    result.update(
        {
            "data": str(data),
            "preprocessing_applied": applied,
            "batch_size": batch_size,
            "seconds": seconds,
            "samples_per_s": len(x) / seconds if seconds > 0 else None,
        }
    )
    if t.entry:
        result["host_accuracy"] = t.entry["host"]["accuracy"]
    return result


def _reference_accuracy(t: Target) -> float | None:
    return float(t.bundle.manifest["reference"]["accuracy"]) if t.bundle is not None else None


def _header(command: str, path: str | Path, t: Target, xnnpack: bool) -> dict:
    model = dict(t.bundle.manifest["model"]) if t.bundle is not None else {}
    if t.info and not model:
        model = {k: t.info[k] for k in ("name", "version") if k in t.info}
    model.update({"file": t.path.name, "format": t.path.suffix.lstrip(".")})
    return {
        "schema": REPORT_SCHEMA,
        "command": command,
        "target": str(path),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": model,
        "backend": t.runner.backend,
        "threads": t.runner.threads,
        "xnnpack": xnnpack if t.runner.backend != "onnxruntime" else None,
        "inputs": [i.to_dict() for i in t.runner.inputs],
        "outputs": [o.to_dict() for o in t.runner.outputs],
        "labels": (t.info or {}).get("labels"),
        "signature": t.bundle.signature if t.bundle is not None else None,
        "versions": versions(),
    }


def _finish(report: dict, gates: Gates, acc: float | None, reference: float | None) -> dict:
    failed = [str(f) for f in gates.check(acc, reference, p90_ms=report["latency"]["p90_ms"])]
    report["gates"] = {"requested": gates.to_dict(), "reference_accuracy": reference, "failed": failed}
    self_test_ok = report.get("self_test", {}).get("passed", True)
    report["passed"] = self_test_ok and not failed
    return report


def versions(libraries: tuple[str, ...] = _LIBRARIES) -> dict[str, str]:
    """Python, machine and the installed versions of ``libraries`` (missing ones left out)."""
    found = {"python": platform.python_version(), "machine": platform.machine()}
    for name in libraries:
        with suppress(metadata.PackageNotFoundError):  # not installed: left out
            found[name] = metadata.version(name)
    return found
