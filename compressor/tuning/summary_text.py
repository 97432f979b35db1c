"""The plain-text summaries `compressor tune` and `compressor search` print at the end."""

from __future__ import annotations

from compressor.inspection.macs import format_macs


def _kb(n: float) -> str:
    return f"{n / 1024:.1f} KB"


def _table(header: tuple, rows: list[tuple]) -> list[str]:
    lines = [header] + rows
    widths = [max(len(str(r[i])) for r in lines) for i in range(len(header))]
    text = [
        "  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
        for r in lines
    ]
    text.insert(1, "  ".join("-" * w for w in widths))
    return text


def format_tune(result: dict) -> str:
    c = result["counts"]
    lines = [
        f"study {result['study']}: {c['COMPLETE']} complete, {c['PRUNED']} pruned, {c['FAIL']} failed "
        f"in {result['seconds']:.0f} s ({result['workers']} worker(s)), {result.get('epochs_spent', 0)} epochs "
        "trained"
    ]
    best = result.get("best")
    if best is None:
        return "\n".join(lines + ["no trial completed: nothing to refit"])
    shown = {k: v for k, v in best["values"].items() if k in _searched(result)}
    lines.append(
        f"best trial {best['number']}: validation accuracy {best['value']:.2%}  "
        + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())
    )
    final = result.get("final") or {}
    if "test_accuracy" in final:
        where = final.get("model_path") or final.get("recipe")
        lines.append(f"refit on train+val, test accuracy {final['test_accuracy']:.2%} (evaluated once): {where}")
    if result.get("narrowed_space"):
        lines.append(f"narrowed space for a finer second study: {result['narrowed_space']}")
    return "\n".join(lines)


def _searched(result: dict) -> set[str]:
    return {k for k, v in (result.get("space", {}).get("params") or {}).items() if isinstance(v, dict)}


def format_search(result: dict) -> str:
    header = ("trial", "recipe", "val acc", "drop", "bound", "size", "gzip", "p50 ms", "MACs", "ok")
    rows = [
        (
            r["number"],
            r["label"],
            f"{r['val_accuracy']:.2%}",
            f"{r['accuracy_drop'] * 100:+.2f} pt",
            f"{r.get('drop_bound', r['accuracy_drop']) * 100:+.2f} pt",
            _kb(r["size_bytes"]),
            _kb(r["gzip_bytes"]),
            f"{r['latency_ms']:.3f}",
            format_macs(r.get("macs")),
            "yes" if r["feasible"] else "no",
        )
        for r in result["candidates"]
        if r["front"]
    ]
    lines = [
        "Pareto front (validation split; objectives: accuracy, gzip size, latency; 'bound': upper "
        f"{result.get('confidence', 0.5):g}-confidence bound of the drop, the constraint):"
    ] + _table(header, rows)
    lines.append(result["verdict"])
    lines += result.get("notes", [])
    best = result.get("best_run") or {}
    if best.get("report"):
        lines.append(f"chosen artifact: {best['artifact']}  (report {best['report']})")
        lines.append(
            f"on the test split (evaluated once): accuracy {best['test_accuracy']:.2%}, float32 "
            f"{best['reference_test_accuracy']:.2%}, drop {best['test_accuracy_drop']:+.2%}: "
            + (
                "gate passed"
                if best["passed"]
                else "GATE FAILED: " + "; ".join(best["gates_failed"] or ["export mismatch"])
            )
        )
        if best.get("baseline"):
            b = best["baseline"]
            diff = (best["test_accuracy"] - b["test_accuracy"]) * 100
            lines.append(
                f"plain int8 PTQ on the same test split: {b['test_accuracy']:.2%}, gzip "
                f"{b['gzip_bytes'] / 1024:.1f} KB: the chosen artifact is "
                f"{b['gzip_bytes'] / best['gzip_bytes']:.2f}x smaller (gzip) at {diff:+.2f} pt "
                + ("(no worse)" if diff >= 0 else "(WORSE than int8 PTQ, within the accuracy limit)")
            )
        if not best["passed"]:
            lines.append(
                "the validation split chose it but the test split disagrees: the validation estimate is "
                f"noisy ({_val_note(result)}); rerun with more trials or a stricter --max-accuracy-drop"
            )
    return "\n".join(lines)


def _val_note(result: dict) -> str:
    n = result.get("validation_samples")
    return f"{n} validation samples, 1 sample = {1 / n:.2%}" if n else "small validation split"
