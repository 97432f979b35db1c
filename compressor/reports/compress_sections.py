"""HTML report sections of a compress run (report.json): results, trade-off plots, curves, confusion, quant error."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from compressor.inspection.macs import format_macs
from compressor.reports.html_blocks import Section, guarded, img, kb, ms, pct, table
from compressor.reports.speed import slower_lines
from compressor.reports.step_tables import distill_table, qat_layer_table
from compressor.runtime.safe_load import RUN_FILE_BYTES, load_json_file


def status(row: dict) -> str:
    return "EXPORT MISMATCH" if row.get("export_mismatches") else "GATE FAILED" if row.get("gates_failed") else "ok"


def shipped(report: dict) -> dict | None:
    """The artifact a user would ship: the smallest passing compressed .tflite; if none passes, the
    smallest compressed .tflite anyway (its failure is what the report must show); else the first row."""
    rows = report.get("artifacts") or []
    compressed = [r for r in rows if r["artifact"] != "float32" and r["format"] == "tflite"]
    ok = [r for r in compressed if status(r) == "ok"] or compressed
    return min(ok, key=lambda r: r["size_bytes"]) if ok else (rows[0] if rows else None)


def compress_sections(report: dict, run_dir: Path, prefix: str = "") -> list[Section]:
    rows = report.get("artifacts") or []
    ship = shipped(report)
    out: list[Section] = [(f"{prefix}Results", _results_table(report, ship))]
    if report.get("budget"):
        out.append((f"{prefix}Accuracy budget: every attempt", _budget_table(report["budget"])))
    if rows:
        out.append((f"{prefix}Accuracy vs size and latency", _tradeoff_plots(rows)))
    curves = _step_curves(report.get("steps") or {})
    if curves:
        out.append((f"{prefix}Training curves of each step", "".join(curves)))
    qat = qat_layer_table(report.get("steps") or {})
    if qat:
        out.append((f"{prefix}QAT: layers left float or given their own config", qat))
    distill = distill_table(report.get("steps") or {})
    if distill:
        out.append((f"{prefix}Distillation: test accuracy of teacher and student", distill))
    if ship and ship.get("confusion_matrix"):
        out.append(_confusion_section(ship, report.get("data", {}), prefix))
    if report.get("quant_debug"):
        out += guarded("quant_debug", lambda: quant_sections(report["quant_debug"], run_dir, prefix))
    return out


_RESULTS_HEADER = [
    "artifact",
    "format",
    "size",
    "gzip",
    "accuracy",
    "Δ vs float32",
    "agreement",
    "p50 ms",
    "p90 ms",
    "MACs",
    "quantized by",
]


def _results_table(report: dict, ship: dict | None) -> str:
    """One row per artifact, the one to ship highlighted, and the float32 reference under it."""
    rows = report.get("artifacts") or []
    cells = [
        [
            r["artifact"],
            r["format"],
            kb(r["size_bytes"]),
            kb(r["gzip_bytes"]),
            pct(r["accuracy"]),
            f"{r['accuracy_delta'] * 100:+.2f} pt",
            pct((r.get("agreement") or {}).get("top1_agreement")),
            ms(r["latency"]["median_ms"]),
            ms(r["latency"]["p90_ms"]),
            format_macs(r.get("macs")),
            _quantized_by(report, r),
            status(r),
        ]
        for r in rows
    ]
    attrs = [
        f' data-artifact="{html.escape(r["artifact"])}" data-format="{r["format"]}"'
        + (' class="chosen"' if r is ship else "")
        for r in rows
    ]
    ref = report.get("reference_accuracy")
    data = report.get("data", {})
    return (
        table([*_RESULTS_HEADER, "status"], cells, attrs)
        + (
            f'<p class="note">float32 reference accuracy {pct(ref)} on {data.get("test_samples")} test samples of '
            f"{html.escape(str(data.get('name')))}; highlighted: the artifact to ship "
            "(smallest compressed .tflite, passing ones first)</p>"
        )
        + "".join(f'<p class="note">{html.escape(line)}</p>' for line in slower_lines(report))
    )


def _quantized_by(report: dict, row: dict) -> str:
    """The tool that quantized an artifact, as its recipe's conversion step recorded it in meta.json
    ("converter": the TFLite converter, or "ai-edge-quantizer X.Y"); an ONNX from its .tflite (tf2onnx)
    keeps those integers; one made by ONNX Runtime's own quantizer (--onnx-quant) says so."""
    steps = report.get("steps") or {}
    name, kept = row["artifact"], None
    if name not in steps and row["format"] == "onnx":  # an ONNX variant not kept: "<recipe>.<tag>"
        name, _, kept = name.rpartition(".")
    kept = kept or (report.get("onnx_quant") or {}).get(name, {}).get("kept")
    if row["format"] == "onnx" and kept == "ort":
        return "onnxruntime"
    metas = steps.get(name) or [{}]
    return str((metas[-1].get("info") or {}).get("backend", ""))


def _tradeoff_plots(rows: list[dict]) -> str:
    """Test accuracy against gzip size and against median latency, the Pareto front of each pair marked."""
    from compressor.reports import plots
    from compressor.tuning.pareto import front_mask

    labels = [f"{r['artifact']}/{r['format']}" for r in rows]
    acc = [r["accuracy"] for r in rows]
    figs = []
    for key, xlabel, values in (
        ("size", "gzip size (KB)", [r["gzip_bytes"] / 1024 for r in rows]),
        ("latency", "median latency (ms)", [r["latency"]["median_ms"] for r in rows]),
    ):
        front = front_mask(list(zip(acc, values)), [True, False])
        figs.append(
            img(
                plots.pareto_scatter(values, acc, labels, front, xlabel, "test accuracy", f"accuracy vs {key}"),
                f"accuracy vs {key}",
            )
        )
    return '<div class="grid">' + "".join(figs) + "</div>"


def _step_curves(steps: dict) -> list[str]:
    """Training curves of every recipe step that trained (its history holds per-epoch lists)."""
    from compressor.reports import plots

    curves = []
    for recipe, metas in steps.items():
        for meta in metas:
            hist = {k: v for k, v in (meta.get("history") or {}).items() if isinstance(v, list)}
            if hist:
                curves.append(
                    img(
                        plots.training_curves(hist, f"{recipe}: step {meta.get('index')} {meta.get('step')}"),
                        f"{recipe} {meta.get('step')} curves",
                    )
                )
    return curves


def _confusion_section(ship: dict, data: dict, prefix: str) -> Section:
    from compressor.reports import plots

    return (
        f"{prefix}Confusion matrix: {ship['artifact']} ({ship['format']})",
        img(
            plots.confusion_matrix(
                ship["confusion_matrix"],
                data.get("labels") or [],
                f"{ship['artifact']} ({ship['format']}), test split",
            ),
            "confusion matrix",
        ),
    )


QUANT_TOP = 25  # tensors shown per chart, worst first; the full table is in quant_debug.csv


def quant_sections(debug: Any, run_dir: Path, prefix: str) -> list[Section]:
    """Per-layer int8 error, from {recipe: {"worst": rows, "files": [...]}} (full rows read from the file)."""
    from compressor.reports import plots

    out = []
    for recipe, summary in debug.items() if isinstance(debug, dict) else []:
        if not isinstance(summary, dict) or "skipped" in summary:
            continue
        rows = summary.get("worst") or []
        full = run_dir / recipe / "quant_debug.json"
        if full.is_file():
            rows = load_json_file(full, str(full), limit=RUN_FILE_BYTES).get("tensors") or rows
        rows = [r for r in rows if isinstance(r, dict) and "layer" in r][:QUANT_TOP]
        metric = next((k for k in ("rmse_over_scale", "rmse", "max_abs_error") if rows and k in rows[0]), None)
        if not rows or metric is None:
            continue
        names = [f"{r['layer']} ({r.get('op', '')})" for r in rows]
        values = [float(r[metric]) if r[metric] != float("inf") else 0.0 for r in rows]
        out.append(
            (
                f"{prefix}Per-layer quantization error: {recipe}",
                img(
                    plots.layer_bars(names, values, metric, f"{recipe}: int8 error per tensor, worst first"),
                    "per-layer error",
                )
                + f'<p class="note">{metric}: RMSE of the int8 tensor vs float, in units of its quantization '
                f"step; ~0.29 is pure rounding noise. Full table: {html.escape(recipe)}/quant_debug.csv</p>",
            )
        )
    return out


def _budget_table(budget: dict) -> str:
    """compress --accuracy-budget: each rung tried on the validation split, cheapest first."""
    rows = [
        [
            a["name"],
            a["what"],
            pct(a.get("val_accuracy")),
            f"{a['drop'] * 100:+.2f} pt" if "drop" in a else "",
            kb(a.get("size_bytes")),
            ms(a.get("latency_ms")),
            "yes" if a["met"] else a.get("error", "no")[:120],
        ]
        for a in budget["attempts"]
    ]
    verdict = "met by" if budget["met"] else "NOT met; the most accurate attempt is shipped:"
    return table(["rung", "what", "val accuracy", "drop", "size", "p50 ms", "within budget"], rows) + (
        f'<p class="note">budget {budget["budget"] * 100:g} points on the validation split, {verdict} '
        f"{html.escape(budget['chosen'])}; the test split was measured once, for that artifact only</p>"
    )
