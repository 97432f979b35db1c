"""The run report: report.json's content and the table printed at the end of a run."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from compressor import __version__
from compressor.inspection.macs import format_macs
from compressor.reports.speed import annotate_speed, slower_lines

_LIBRARIES = (
    "tensorflow-cpu",
    "tf-keras",
    "tensorflow-model-optimization",
    "tf2onnx",
    "onnx",
    "onnxruntime",
    "ai-edge-litert",
    "numpy",
)


def versions() -> dict[str, str]:
    from compressor.runtime.commands import versions as library_versions

    return {"compressor": __version__, **library_versions(_LIBRARIES)}


def build_report(
    model: Any,
    data: Any,
    results: list,
    gates: dict[str, dict],
    steps: dict[str, list[dict]],
    reference_accuracy: float,
    seconds: float,
    extras: dict | None = None,
) -> dict:
    """``extras``: parity, quant_debug, selective, onnx_quant sections (see compressor/export/)."""
    from compressor.pipeline.validation import gate_failures

    rows = []
    for r in results:
        row = r.row(reference_accuracy)
        row["gates_failed"] = gate_failures(row, gates.get(r.name, {}))
        row["export_mismatches"] = [f"{m.artifact} ({r.fmt}) vs {m.against}: {m.detail}" for m in r.mismatches]
        row["confusion_matrix"] = r.metrics["accuracy"].get("confusion_matrix")
        rows.append(row)
    annotate_speed(rows)
    return {
        "schema": "compressor.report/1",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": {
            "path": str(model.path),
            "kind": model.kind,
            "input_shape": list(model.input_shape),
            **({"bridge": model.bridge} if getattr(model, "bridge", None) else {}),  # Keras 3 rebuilt in tf_keras
        },
        "data": {
            "name": data.name,
            "test_samples": int(len(data.y_test)),
            "labels": list(data.labels),
            "preprocessing": data.preprocessing.to_dict(),
        },
        "reference_accuracy": reference_accuracy,
        "artifacts": rows,
        "gates": gates,
        "steps": steps,
        "passed": all(not r["gates_failed"] and not r["export_mismatches"] for r in rows)
        and all(p["status"] == "ok" for p in (extras or {}).get("parity", [])),
        "seconds": round(seconds, 1),
        "versions": versions(),
        **(extras or {}),
    }


def format_table(report: dict) -> str:
    header = ("artifact", "format", "size", "gzip", "accuracy", "Δ vs float32", "p50 ms", "p90 ms", "MACs", "status")
    lines = [header]
    for r in report["artifacts"]:
        status = "ok"
        if r["export_mismatches"]:
            status = "EXPORT MISMATCH"
        elif r["gates_failed"]:
            status = "GATE FAILED"
        lines.append(
            (
                r["artifact"],
                r["format"],
                _kb(r["size_bytes"]),
                _kb(r["gzip_bytes"]),
                f"{r['accuracy']:.2%}",
                f"{r['accuracy_delta'] * 100:+.2f} pt",
                f"{r['latency']['median_ms']:.3f}",
                f"{r['latency']['p90_ms']:.3f}",
                format_macs(r.get("macs")),
                status,
            )
        )
    widths = [max(len(str(row[i])) for row in lines) for i in range(len(header))]
    text = [
        "  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
        for row in lines
    ]
    text.insert(1, "  ".join("-" * w for w in widths))
    ref = report["reference_accuracy"]
    footer = [
        f"reference: float32 model accuracy {ref:.2%} on {report['data']['test_samples']} test samples "
        f"({report['data']['name']}); latency: 1 sample, {report['artifacts'][0]['latency']['threads']} thread(s)"
    ]
    for r in report["artifacts"]:
        footer += [f"  {r['artifact']} ({r['format']}): {msg}" for msg in r["gates_failed"] + r["export_mismatches"]]
    return "\n".join(text + footer + slower_lines(report) + depth_lines(report))


def depth_lines(report: dict) -> list[str]:
    """Parity errors, worst quantized layers, float fallbacks and the ONNX choice, when present."""
    from compressor.export.parity import summary_lines

    mismatches = [m for r in report["artifacts"] for m in r.get("export_mismatches", [])]
    lines = summary_lines(report.get("parity", []), mismatches)
    for name, info in report.get("quant_debug", {}).items():
        if "worst" in info:
            worst = ", ".join(f"{w['layer']} {w['rmse_over_scale']:.2f}" for w in info["worst"][:3])
            lines.append(
                f"{name}: largest int8 error RMSE/scale (0.29 = rounding only): {worst}; "
                f"all tensors in {name}/quant_debug.csv"
            )
    for name, info in report.get("quant_debug", {}).items():
        if "skipped" in info:
            lines.append(f"{name}: no quantization debug report: {info['skipped']}")
    for name, log in report.get("selective", {}).items():
        if "skipped" in log:
            lines.append(f"{name}: no float fallback: {log['skipped']}")
        elif "cost" in log:
            c = log["cost"]
            lines.append(
                f"{name}: kept in float {', '.join(log['float_layers'])} ({log['ops']['float']} of "
                f"{log['ops']['float'] + log['ops']['integer']} ops): accuracy {c['plain']['accuracy']:.2%} -> "
                f"{c['selective']['accuracy']:.2%}, size {c['size_bytes'] / 1024:+.1f} KB, "
                f"latency {_ms(c['latency_ms'])}"
            )
        else:
            lines.append(f"{name}: no float fallback within {log['limit']} layer(s) improved accuracy")
    for name, info in report.get("onnx_quant", {}).items():
        figures = ", ".join(f"{v} {d['accuracy']:.2%}" for v, d in info["variants"].items())
        lines.append(f"{name} ONNX: kept {info['kept']} ({figures})")
    return lines


def _ms(delta: float) -> str:
    return f"{delta * 1000:+.1f} µs" if abs(delta) < 0.1 else f"{delta:+.2f} ms"


def _kb(n: int) -> str:
    return f"{n / 1024:.1f} KB"
