"""Section "architectures" (issue 16): each family x each training preset, one job per family
(benchmarks/arch_matrix_bench.py), so a family that crashes or runs out of time costs only its row.

    python -m benchmarks.run --only architectures

Progress (every compress line, timestamped per family) goes to WORK/architectures/progress.log
(WORK: .bench by default). ``--quick`` runs the small families only.
"""

from __future__ import annotations

from .context import Context
from .measure import run_job

FAMILY_TIMEOUT = 2700  # s per family job: a family that hangs costs its row, not the section


def architectures(ctx: Context) -> dict:
    from .arch_models import FAMILIES

    work = ctx.work / "architectures"
    work.mkdir(parents=True, exist_ok=True)
    (work / "progress.log").unlink(missing_ok=True)
    out: dict = {}
    for family in FAMILIES:
        if ctx.quick and FAMILIES[family][0] == "rgb32":
            continue  # a smoke run: the applications take ~10-20 min each
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
    """The families (task, training) in a list, then one row per family x preset."""
    out = [
        "Each family trained briefly on the embedded digits (test split: 359 images, one image = 0.28 points), "
        "then `compress` with every preset that trains, each training step at the epochs given below "
        "(distill without its labels-only baseline), plus plain `int8` (no training) for comparison. "
        "Accuracy: float = the model given to compress, int8 = the preset's full-integer .tflite, on the test "
        "split. Status: ok, `gate:` the preset's own accuracy gate failed (the artifact is still written), "
        "`refused:` a one-line user error, `INTERNAL:` a traceback (a bug), `not run:` why. Float column: layers "
        "QAT left float in training / ops the .tflite runs in float. Seconds: the preset's share of the compress run.",
        "",
    ]
    for family, fam in data.items():
        if "task" in fam:
            out.append(
                f"- {family}: {fam['parameters']:,} parameters, {fam['task']}, float model trained "
                f"{fam['float_epochs']} epochs ({fam['train_s']:.0f} s); training steps: "
                f"{_epochs(fam['step_epochs'])}"
                + (
                    f"; job wall time {fam['wall_s']:.0f} s, peak RSS {fam['peak_rss_mb']:,} MB"
                    if fam.get("wall_s")
                    else ""
                )
            )
    out += ["", "| family | preset | status | float acc | int8 acc | Δ pt | ONNX | float: QAT / .tflite ops | s |"]
    out.append("|---|---|---|---|---|---|---|---|---|")
    failures = []
    for family, fam in data.items():
        if "rows" not in fam:
            out.append(f"| {family} | all | {fam.get('error', '')[:300]} | | | | | | |")
            continue
        for preset in sorted(fam["rows"], key=lambda p: (p != "int8", p)):
            row = fam["rows"][preset]
            if row.get("internal"):
                failures.append((family, preset, row.get("traceback", [])))
            out.append("| " + " | ".join(_cells(family, preset, row, fam.get("float_test_accuracy"))) + " |")
    out.append("")
    for family, preset, tail in failures:
        out += [f"Internal error, {family} x {preset}:", "", "```", "".join(tail).strip(), "```", ""]
    return out


def _epochs(step_epochs) -> str:
    return "the presets' own epochs" if isinstance(step_epochs, str) else f"{step_epochs} epoch each"


def _status(row: dict) -> str:
    if "not_run" in row:
        return f"not run: {row['not_run']}"
    if "error" in row:
        return ("INTERNAL: " if row.get("internal") else "refused: ") + row["error"].removeprefix("internal error: ")
    status = row.get("status") or ""
    return status if status == "ok" else f"gate: {status}"


def _cells(family: str, preset: str, row: dict, ref: float | None) -> list[str]:
    acc = row.get("int8_test_accuracy")
    ops = row.get("tflite_float_ops")
    float_ops = ", ".join(f"{k} {v}" for k, v in ops.items()) if ops else ("none" if ops is not None else "")
    qat = row.get("qat_float_layers")
    return [
        family,
        preset,
        _status(row).replace("|", "/")[:300],
        f"{ref:.2%}" if ref is not None else "",
        f"{acc:.2%}" if acc is not None else "",
        f"{(acc - ref) * 100:+.1f}" if acc is not None and ref is not None else "",
        ((row.get("onnx") or "") + (f"; mismatch: {row['onnx_mismatch']}" if row.get("onnx_mismatch") else "")).replace(
            "|", "/"
        )[:200],
        (f"{qat} / " if qat is not None else "") + float_ops,
        f"{row['seconds']:.0f}" if row.get("seconds") is not None else "",
    ]
