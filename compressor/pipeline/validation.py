"""Validate every artifact on its target interpreter, right after export.

Two different questions, answered separately:
- export check: is the file a faithful conversion of its source? (float exports must match the
  Keras model within a tolerance; an ONNX made from a .tflite must agree with that .tflite).
  Mismatches are collected across all artifacts and raised together (see ExportMismatch).
- measurement: accuracy, agreement with the float model, size, latency — what the report shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compressor.datasets.splits import as_split
from compressor.export import parity
from compressor.inspection.macs import file_macs
from compressor.runtime import accuracy, latency
from compressor.runtime.gates import Gates
from compressor.runtime.interpreters import open_model

# What a faithful float conversion keeps to: export/parity.py owns the rule (scaled to the outputs),
# so the status column and the report's parity line judge alike.
FLOAT32_ATOL = parity.FLOAT32
FLOAT16_ATOL = parity.FLOAT16
# An ONNX converted from a quantized .tflite runs other integer kernels: rounding may differ by
# a step, so we require near-total top-1 agreement instead of an absolute tolerance.
CROSS_RUNTIME_MIN_AGREEMENT = 0.98
PREDICT_BATCH = 256  # samples a prediction batch holds: a streamed test split is never read whole


@dataclass
class ExportMismatch:
    artifact: str
    against: str
    detail: str


@dataclass
class ArtifactResult:
    name: str
    fmt: str
    path: Path
    metrics: dict
    outputs: np.ndarray = field(repr=False)
    mismatches: list[ExportMismatch] = field(default_factory=list)

    def row(self, reference_accuracy: float) -> dict:
        m = self.metrics
        return {
            "artifact": self.name,
            "format": self.fmt,
            "path": str(self.path),
            "size_bytes": m["size"]["bytes"],
            "gzip_bytes": m["size"]["gzip_bytes"],
            "accuracy": m["accuracy"]["top1"],
            "accuracy_delta": m["accuracy"]["top1"] - reference_accuracy,
            "agreement": m["accuracy"].get("agreement", {}),
            "latency": m["latency"],
            "macs": m["macs"],
            **({"mcu": m["mcu"]} if "mcu" in m else {}),  # TFLite Micro arena and flash (max_arena_kb gate)
        }


def reference_outputs(model: Any, x: Any) -> np.ndarray | None:
    """The Keras model's float32 outputs on ``x``: what every export is checked against.

    ``x``: arrays or a split (datasets/splits.py), read a batch at a time. None for a plain
    SavedModel (``model.keras`` is None): then the float TFLite is the reference.
    """
    if model.keras is None:
        return None
    return keras_outputs(model.keras, x)


def keras_outputs(keras_model: Any, x: Any) -> np.ndarray:
    """A Keras model's float32 outputs on ``x`` (arrays or a split), computed batch by batch: only the
    N x classes outputs are held, never the inputs of a streamed split."""
    parts = [keras_model.predict_on_batch(xb) for xb, _ in as_split(x).batches(PREDICT_BATCH)]
    return np.concatenate([np.asarray(p, dtype=np.float32) for p in parts])


def runner_outputs(runner: Any, x: Any) -> np.ndarray:
    """An interpreter's outputs on ``x`` (arrays or a split), a batch at a time (see keras_outputs)."""
    return np.concatenate([accuracy.predict(runner, xb, PREDICT_BATCH) for xb, _ in as_split(x).batches(PREDICT_BATCH)])


def measure(
    path: Path,
    name: str,
    fmt: str,
    x: Any,
    y: np.ndarray | None,
    reference: np.ndarray | None,
    threads: int = 1,
    latency_runs: int = 100,
) -> ArtifactResult:
    """``x``, ``y``: arrays, or ``x`` a split (its own labels; ``y`` None) read batch by batch."""
    samples = as_split(x, y)
    runner = open_model(path, threads=threads)
    outputs = runner_outputs(runner, samples)
    metrics = {
        "accuracy": accuracy.classification_metrics(outputs, samples.y, reference=reference),
        "size": latency.file_size(path),
        "latency": latency.measure_latency(runner, samples.head(1), warmup=10, runs=latency_runs, max_seconds=5.0),
        "macs": file_macs(path)["total"],  # per sample, beside the latency it explains
    }
    return ArtifactResult(name, fmt, path, metrics, outputs)


def check_against(
    result: ArtifactResult,
    source_name: str,
    source_outputs: np.ndarray,
    atol: parity.Tolerance | None,
    min_agreement: float | None = None,
) -> None:
    """Record a mismatch on ``result`` when it is not a faithful conversion of its source."""
    figures = accuracy.agreement(result.outputs, source_outputs)
    agree = figures["top1_agreement"]
    if atol is not None:
        for detail in atol.failures(result.outputs, source_outputs, figures):
            result.mismatches.append(ExportMismatch(result.name, source_name, detail))
    if min_agreement is not None and agree < min_agreement:
        result.mismatches.append(
            ExportMismatch(result.name, source_name, f"top-1 agreement {agree:.2%} < {min_agreement:.0%}")
        )


def gate_failures(row: dict, gates: dict | Gates) -> list[str]:
    """A report row's failed gates, worded for the report; the check itself is runtime.gates.

    ``gates``: a recipe's gates as a dict (``recipe.gates.model_dump()``) or a Gates
    (``recipe.gates.to_runtime()``). ``row`` needs accuracy and accuracy_delta; size_bytes when
    a size gate is set.
    """
    arena_limit = None
    if isinstance(gates, dict):
        gates = dict(gates)
        arena_limit = gates.pop("max_arena_kb", None)
        gates = Gates(**gates)
    reference = row["accuracy"] - row["accuracy_delta"]
    failed = [f.brief() for f in gates.check(row["accuracy"], reference, size_bytes=row.get("size_bytes"))]
    return failed + _arena_failures(row, arena_limit)


def _arena_failures(row: dict, limit_kb: float | None) -> list[str]:
    """The max_arena_kb gate: only .tflite rows are measured on TFLite Micro (recipe_run)."""
    if limit_kb is None or row["format"] != "tflite":
        return []
    fit = row.get("mcu")
    if fit is None or not fit["full_int8"]:
        return ["not full-int8: does not run on TFLite Micro"]
    arena_kb = fit["recommended_arena_bytes"] / 1024
    return [f"arena {arena_kb:.1f} KB > {limit_kb:g} KB (TFLite Micro)"] if arena_kb > limit_kb else []
