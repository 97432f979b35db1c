"""One self-contained HTML report per run folder (PNG plots embedded as base64), from its JSON files.

`compressor report RUN_DIR` and the end of compress/tune/search call ``write_html``. It reads
whatever the folder holds: report.json (compress), tune.json (tune), search.json (search, plus
best/report.json of the chosen artifact). A section that cannot be drawn shows its error
instead of failing the run: the figures in the JSON are the record, the plots only show them.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from compressor.runtime.atomic import write_text
from compressor.runtime.errors import UserError

Section = tuple[str, str]  # (title, HTML body)

CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 12px}
h1{font-size:22px}h2{font-size:17px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}
table{border-collapse:collapse;font-size:12.5px;margin:8px 0}th,td{border:1px solid #ddd;padding:3px 7px}
th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}tr.front td{background:#fff3f0}
tr.chosen td{background:#e7f6e7;font-weight:600}img{max-width:100%;margin:6px 8px 6px 0}.err{color:#b00}
.note{color:#555}.grid{display:flex;flex-wrap:wrap}"""


def img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def table(header: list[str], rows: list[list[Any]], row_attrs: list[str] | None = None) -> str:
    """Numbers right-aligned; ``row_attrs`` adds e.g. ' class="front" data-artifact="int8"' per row."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cells = "".join(
            f'<td class="n">{html.escape(str(c))}</td>' if _numeric(c) else f"<td>{html.escape(str(c))}</td>"
            for c in row
        )
        body.append(f"<tr{row_attrs[i] if row_attrs else ''}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _numeric(c: Any) -> bool:
    s = str(c).strip().replace("%", "").replace("+", "").replace("−", "-").split(" ")[0]
    try:
        float(s)
        return True
    except ValueError:
        return False


def pct(v: float | None) -> str:
    return "" if v is None else f"{v:.2%}"


def kb(n: float | None) -> str:
    return "" if n is None else f"{n / 1024:.1f} KB"


def ms(v: float | None) -> str:
    return "" if v is None else f"{v:.3f}"


def write_html(run_dir: str | Path, progress: Callable[[str], None] | None = None) -> Path:
    """Write RUN_DIR/report.html from the JSON files in RUN_DIR; returns its path."""
    from compressor.reports.tuning_sections import search_sections, tune_sections

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a run folder")
    builders = (("search.json", search_sections), ("tune.json", tune_sections), ("report.json", compress_sections))
    sections: list[Section] = []
    kinds = []
    for name, build in builders:
        path = run_dir / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise UserError(f"{path} is not valid JSON ({e})") from None
        kinds.append(name)
        sections += guarded(name, lambda d=data, b=build: b(d, run_dir))
    if not kinds:
        raise UserError(
            f"{run_dir} has no report.json, tune.json or search.json: is it a compress, tune or search run folder?"
        )
    out = write_text(run_dir / "report.html", page(f"compressor report: {run_dir.name}", kinds, sections))
    if progress is not None:
        progress(f"report: {out}")
    return out


def guarded(what: str, build: Callable[[], list[Section]]) -> list[Section]:
    try:
        return build()
    except Exception as e:  # a plot bug must not cost the run its report: show it, keep the rest
        return [
            (
                f"{what}: section failed",
                f'<p class="err">{html.escape(type(e).__name__)}: {html.escape(str(e)[:300])}</p>',
            )
        ]


def page(title: str, sources: list[str], sections: list[Section]) -> str:
    toc = "".join(f'<li><a href="#s{i}">{html.escape(t)}</a></li>' for i, (t, _) in enumerate(sections))
    body = "".join(f'<h2 id="s{i}">{html.escape(t)}</h2>\n{b}\n' for i, (t, b) in enumerate(sections))
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"
        f'<p class="note">from {", ".join(html.escape(s) for s in sources)}</p><ul>{toc}</ul>\n{body}</body></html>\n'
    )


# --- compress runs (report.json) ------------------------------------------------------------


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
    from compressor.reports import plots
    from compressor.tuning.pareto import front_mask

    rows = report.get("artifacts") or []
    ship = shipped(report)
    header = [
        "artifact",
        "format",
        "size",
        "gzip",
        "accuracy",
        "Δ vs float32",
        "agreement",
        "p50 ms",
        "p90 ms",
        "status",
    ]
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
    out: list[Section] = [
        (
            f"{prefix}Results",
            table(header, cells, attrs)
            + (
                f'<p class="note">float32 reference accuracy {pct(ref)} on {data.get("test_samples")} test samples of '
                f"{html.escape(str(data.get('name')))}; highlighted: the artifact to ship "
                "(smallest compressed .tflite, passing ones first)</p>"
            ),
        )
    ]
    if rows:
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
        out.append((f"{prefix}Accuracy vs size and latency", '<div class="grid">' + "".join(figs) + "</div>"))
    curves = []
    for recipe, metas in (report.get("steps") or {}).items():
        for meta in metas:
            hist = {k: v for k, v in (meta.get("history") or {}).items() if isinstance(v, list)}
            if hist:
                curves.append(
                    img(
                        plots.training_curves(hist, f"{recipe}: step {meta.get('index')} {meta.get('step')}"),
                        f"{recipe} {meta.get('step')} curves",
                    )
                )
    if curves:
        out.append((f"{prefix}Training curves of each step", "".join(curves)))
    if ship and ship.get("confusion_matrix"):
        out.append(
            (
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
        )
    if report.get("quant_debug"):
        out += guarded("quant_debug", lambda: quant_sections(report["quant_debug"], run_dir, prefix))
    return out


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
            rows = json.loads(full.read_text()).get("tensors") or rows
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
