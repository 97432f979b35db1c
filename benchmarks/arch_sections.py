"""Section "architectures" (issue 16): each family x each training preset, one job per family
(benchmarks/arch_matrix_bench.py), so a family that crashes or runs out of time costs only its row.

    python -m benchmarks.run --only architectures
"""

from __future__ import annotations

from .context import Context
from .measure import run_job

FAMILY_TIMEOUT = 1200  # s per family job: a family that hangs costs its row, not the section


def architectures(ctx: Context) -> dict:
    from .arch_models import FAMILIES

    work = ctx.work / "architectures"
    work.mkdir(parents=True, exist_ok=True)
    (work / "progress.log").unlink(missing_ok=True)
    out: dict = {}
    for family in FAMILIES:
        try:
            job = run_job(
                "benchmarks.arch_matrix_bench:family_matrix", timeout=FAMILY_TIMEOUT, work=str(work), family=family
            )
        except Exception as e:  # a crashed or timed-out family is a row too; the others still run
            out[family] = {"error": f"{type(e).__name__}: {str(e)[-400:]}"}
            continue
        out[family] = {"wall_s": round(job["wall_s"], 1), "peak_rss_mb": round(job["peak_rss_mb"]), **job["result"]}
    return out


def render(data: dict) -> list[str]:
    """One row per family x preset: status, float and int8 accuracy, ONNX, float ops, time."""
    lines = [
        "| family | task | preset | status | float acc | int8 acc | Δ pt | ONNX | float in QAT / ops in .tflite | s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    failures = []
    for family, fam in data.items():
        if "error" in fam and "rows" not in fam:
            lines.append(f"| {family} | | all | {fam['error'][:200]} | | | | | | |")
            continue
        ref = fam.get("float_test_accuracy")
        for preset, row in fam["rows"].items():
            if row.get("internal"):
                failures.append((family, preset, row.get("traceback", [])))
            lines.append("| " + " | ".join(_cells(family, fam, preset, row, ref)) + " |")
    out = lines + [""]
    for family, preset, tail in failures:
        out += [f"Internal error, {family} x {preset}:", "", "```", "".join(tail).strip(), "```", ""]
    return out


def _cells(family: str, fam: dict, preset: str, row: dict, ref: float | None) -> list[str]:
    acc = row.get("int8_test_accuracy")
    ops = row.get("tflite_float_ops")
    float_ops = ", ".join(f"{k} {v}" for k, v in ops.items()) if ops else ("none" if ops is not None else "")
    qat = row.get("qat_float_layers")
    return [
        family,
        f"{fam['task'].split('(')[0].strip()}, {fam['float_epochs']} ep",
        preset,
        (row.get("status") or "") if "error" not in row else row["error"].replace("|", "/")[:200],
        f"{ref:.2%}" if ref is not None else "",
        f"{acc:.2%}" if acc is not None else "",
        f"{(acc - ref) * 100:+.1f}" if acc is not None and ref is not None else "",
        (row.get("onnx") or "").replace("|", "/")[:120],
        (f"{qat} / " if qat is not None else "") + float_ops,
        f"{row['seconds']:.0f}" if row.get("seconds") is not None else "",
    ]
