"""Cross-runtime parity: artifacts that claim to be the same model must give the same answers.

Pairs: float Keras / TFLite f32 / ONNX f32 (all three ways), and each recipe's .tflite with the
ONNX converted from it (int8 .tflite vs QDQ ONNX, float16 vs its ONNX...). For every pair:
top-1 agreement and max/mean absolute difference on the test data.

A float conversion is judged by ``Tolerance``, scaled to the outputs: with s = the largest |output|
of either side (1 for probabilities, larger for logits),

    max |a - b| <= max_rel * s,   mean |a - b| <= mean_rel * s,   top-1 agreement >= min_agreement.

Rounding noise of a faithful float32 conversion (other kernels, other summation orders) stays far
inside it: MobileNetV3Small differs by 7.6e-6 on average and 1.99e-4 at most, with 100% top-1
agreement, where the old fixed max of 1e-4 failed it. A real error (a wrong op, weight or
preprocessing) moves the mean by orders of magnitude more, or flips top-1 answers. Quantized pairs
(two integer kernel libraries may round one step apart) are judged by top-1 agreement alone.
The same rule decides both the export check of each artifact (pipeline/validation.py) and the
rows here, so the report's status column and its parity line cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from compressor.runtime.accuracy import agreement

FLOAT_MIN_AGREEMENT = 0.99
QUANTIZED_MIN_AGREEMENT = 0.98


@dataclass(frozen=True)
class Tolerance:
    """How far a float conversion may stray from its source, relative to the outputs' scale."""

    max_rel: float
    mean_rel: float
    min_agreement: float = FLOAT_MIN_AGREEMENT

    def describe(self) -> str:
        return (
            f"max diff <= {self.max_rel:g} x scale, mean <= {self.mean_rel:g} x scale, "
            f"top-1 >= {self.min_agreement:.0%}"
        )

    def failures(self, outputs: np.ndarray, reference: np.ndarray, figures: dict | None = None) -> list[str]:
        """Why ``outputs`` are not a faithful float conversion of ``reference`` (empty: they are)."""
        figures = figures or agreement(np.asarray(outputs, np.float32), np.asarray(reference, np.float32))
        both = [np.abs(np.asarray(v, np.float32)).max(initial=0.0) for v in (outputs, reference)]
        scale = max(float(max(both)), 1e-6)  # symmetric: either side may be the source
        out = []
        if figures["top1_agreement"] < self.min_agreement:
            out.append(f"top-1 agreement {figures['top1_agreement']:.2%} < {self.min_agreement:.0%}")
        if figures["max_abs_diff"] > self.max_rel * scale:
            out.append(f"max abs diff {figures['max_abs_diff']:.2e} > {self.max_rel * scale:.2e}")
        if figures["mean_abs_diff"] > self.mean_rel * scale:
            out.append(f"mean abs diff {figures['mean_abs_diff']:.2e} > {self.mean_rel * scale:.2e}")
        return out


FLOAT32 = Tolerance(max_rel=1e-3, mean_rel=1e-4)
FLOAT16 = Tolerance(max_rel=2e-2, mean_rel=2e-3)
_FLOAT_RECIPES = {"float32": FLOAT32, "float16": FLOAT16}


def compare(
    a_name: str,
    a: np.ndarray,
    b_name: str,
    b: np.ndarray,
    kind: str,
    float_min: float = FLOAT_MIN_AGREEMENT,
    quantized_min: float = QUANTIZED_MIN_AGREEMENT,
    tolerance: Tolerance = FLOAT32,
) -> dict:
    """One pair's figures and verdict; ``kind`` is "float" (``tolerance``, with float_min as its
    top-1 floor) or "quantized" (top-1 agreement >= quantized_min)."""
    figures = agreement(np.asarray(a, np.float32), np.asarray(b, np.float32))
    if kind == "float":
        rule = Tolerance(tolerance.max_rel, tolerance.mean_rel, float_min)
        failed = rule.failures(a, b, figures)
        threshold = float_min
    else:
        threshold = quantized_min
        failed = [] if figures["top1_agreement"] >= threshold else [f"top-1 agreement {figures['top1_agreement']:.2%}"]
    return {
        "a": a_name,
        "b": b_name,
        "kind": kind,
        **figures,
        "min_agreement": threshold,
        **({"tolerance": rule.describe()} if kind == "float" else {}),
        "status": "ok" if not failed else "error",
        **({"failed": failed} if failed else {}),
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
                _FLOAT_RECIPES.get(tfl.name, FLOAT32),
            )
        )
    return rows


def errors(rows: list[dict]) -> list[str]:
    out = []
    for r in rows:
        if r["status"] != "error":
            continue
        failed = r.get("failed") or [f"top-1 agreement {r['top1_agreement']:.2%} < {r['min_agreement']:.0%}"]
        reasons = [f if "<" in f or ">" in f else f"{f} < {r['min_agreement']:.0%}" for f in failed]
        out.append(f"parity {r['a']} vs {r['b']}: {'; '.join(reasons)} (max abs diff {r['max_abs_diff']:.2e})")
    return out


def summary_lines(rows: list[dict], export_mismatches: list[str] | None = None) -> list[str]:
    """The report's parity lines: every failing pair, or how many agree under which rule. Never
    "agree" while an artifact's export check (its status column) failed: both use the rule above."""
    failing = errors(rows)
    if failing:
        return failing
    if export_mismatches:
        return [f"parity: {len(export_mismatches)} export check(s) failed: {'; '.join(export_mismatches)}"]
    if not rows:
        return []
    return [
        f"parity: {len(rows)} pairs agree (float: {FLOAT32.describe()}, scale = largest |output|; "
        f"quantized: top-1 >= {QUANTIZED_MIN_AGREEMENT:.0%})"
    ]
