"""Cross-runtime parity: artifacts that claim to be the same model must give the same answers.

Pairs: float Keras / TFLite f32 / ONNX f32 (all three ways), and each recipe's .tflite with the
ONNX converted from it (int8 .tflite vs QDQ ONNX, float16 vs its ONNX...). For every pair:
top-1 agreement and max/mean absolute difference on the test data. Float pairs below
FLOAT_MIN_AGREEMENT, and quantized pairs below QUANTIZED_MIN_AGREEMENT (two integer kernel
libraries may round one step apart), are errors: the run does not pass.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compressor.runtime.accuracy import agreement

FLOAT_MIN_AGREEMENT = 0.99
QUANTIZED_MIN_AGREEMENT = 0.98
_FLOAT_RECIPES = ("float32", "float16")


def compare(
    a_name: str,
    a: np.ndarray,
    b_name: str,
    b: np.ndarray,
    kind: str,
    float_min: float = FLOAT_MIN_AGREEMENT,
    quantized_min: float = QUANTIZED_MIN_AGREEMENT,
) -> dict:
    """One pair's figures and verdict; ``kind`` is "float" or "quantized"."""
    figures = agreement(np.asarray(a, np.float32), np.asarray(b, np.float32))
    threshold = float_min if kind == "float" else quantized_min
    ok = figures["top1_agreement"] >= threshold
    return {
        "a": a_name,
        "b": b_name,
        "kind": kind,
        **figures,
        "min_agreement": threshold,
        "status": "ok" if ok else "error",
    }


def parity_matrix(
    reference: np.ndarray | None,
    float_results: list[Any],
    converted_pairs: list[tuple[Any, Any]],
    float_min: float = FLOAT_MIN_AGREEMENT,
    quantized_min: float = QUANTIZED_MIN_AGREEMENT,
) -> list[dict]:
    """``float_results``: the float32 TFLite and ONNX results; ``converted_pairs``: (tflite, onnx made from it)."""
    rows = []
    floats = [("keras", reference)] if reference is not None else []
    floats += [(f"{r.name} {r.fmt}", r.outputs) for r in float_results]
    for i, (a_name, a) in enumerate(floats):
        for b_name, b in floats[i + 1 :]:
            rows.append(compare(a_name, a, b_name, b, "float", float_min, quantized_min))
    for tfl, onnx in converted_pairs:
        kind = "float" if tfl.name in _FLOAT_RECIPES else "quantized"
        rows.append(
            compare(
                f"{tfl.name} {tfl.fmt}",
                tfl.outputs,
                f"{onnx.name} {onnx.fmt}",
                onnx.outputs,
                kind,
                float_min,
                quantized_min,
            )
        )
    return rows


def errors(rows: list[dict]) -> list[str]:
    return [
        f"parity {r['a']} vs {r['b']}: top-1 agreement {r['top1_agreement']:.2%} < {r['min_agreement']:.0%} "
        f"(max abs diff {r['max_abs_diff']:.2e})"
        for r in rows
        if r["status"] == "error"
    ]
