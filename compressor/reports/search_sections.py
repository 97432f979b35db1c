"""HTML report sections of a search run (search.json): verdict, Pareto front, trade-off plots, all trials."""

from __future__ import annotations

import html
from pathlib import Path

from compressor.inspection.macs import format_macs
from compressor.pipeline.layout import StudyLayout
from compressor.reports.compress_sections import compress_sections
from compressor.reports.html_blocks import Section, guarded, img, kb, ms, pct, table
from compressor.runtime.safe_load import RUN_FILE_BYTES, load_json_file


def search_sections(data: dict, run_dir: Path) -> list[Section]:
    rows = [r for r in data["candidates"]]
    chosen, base = data.get("chosen"), data.get("baseline")
    front = [r for r in rows if r["front"]]
    out: list[Section] = [
        ("Search summary", _summary(data)),
        ("Pareto front (validation split)", _candidates_table(front, chosen)),
    ]
    if rows:
        out.append(
            (
                "Accuracy vs size and latency (red: Pareto front of the pair, gray: infeasible)",
                _tradeoff_plots(data, rows),
            )
        )
    failures = "".join(
        f'<p class="note">trial {f["number"]} failed: {html.escape(str(f["error"]))}</p>'
        for f in data.get("failed", [])
    )
    out.append(("All trials", _candidates_table(rows, chosen) + failures))
    if base:
        out.append(
            (
                "Baseline",
                f"<p>plain int8 PTQ (trial {base['number']}): {pct(base['val_accuracy'])}, "
                f"{kb(base['gzip_bytes'])} gzip, {ms(base['latency_ms'])} ms</p>",
            )
        )
    best = StudyLayout(run_dir, "search").run("best")
    best_report = best.report_json
    if best_report.is_file():
        out += guarded(
            "best/report.json",
            lambda: compress_sections(
                load_json_file(best_report, str(best_report), limit=RUN_FILE_BYTES),
                best.root,
                prefix="chosen artifact: ",
            ),
        )
    return out


def _summary(data: dict) -> str:
    """The verdict, the chosen artifact's one evaluation on the test split, and the search's notes."""
    best_run = data.get("best_run") or {}
    test_line = ""
    if best_run:
        status = "gate passed" if best_run["passed"] else "GATE FAILED: " + "; ".join(best_run["gates_failed"])
        test_line = (
            f"<p>exported as {html.escape(best_run['artifact'])}; on the test split (evaluated once): "
            f"<b>{pct(best_run['test_accuracy'])}</b> vs float32 {pct(best_run['reference_test_accuracy'])}"
            f" ({status})</p>"
        )
        if best_run.get("baseline"):
            b = best_run["baseline"]
            test_line += (
                f"<p>plain int8 PTQ on the same test split: {pct(b['test_accuracy'])}, gzip "
                f"{kb(b['gzip_bytes'])} (chosen: {kb(best_run['gzip_bytes'])})</p>"
            )
    return (
        f"<p>{html.escape(data['verdict'])}</p>"
        + test_line
        + "".join(f'<p class="note">{html.escape(n)}</p>' for n in data.get("notes", []))
    )


_HEADER = [
    *("trial", "recipe", "val accuracy", "drop", "drop bound", "size", "gzip", "p50 ms", "MACs", "feasible", "front")
]


def _candidates_table(rows: list[dict], chosen: dict | None) -> str:
    """One row per trial; the chosen one highlighted, the rest of the Pareto front marked."""

    def cells(r: dict) -> list:
        return [
            r["number"],
            r["label"],
            pct(r["val_accuracy"]),
            f"{r['accuracy_drop'] * 100:+.2f} pt",
            f"{r.get('drop_bound', r['accuracy_drop']) * 100:+.2f} pt",
            kb(r["size_bytes"]),
            kb(r["gzip_bytes"]),
            ms(r["latency_ms"]),
            format_macs(r.get("macs")),
            "yes" if r["feasible"] else "no",
            "yes" if r["front"] else "",
        ]

    def attrs(r: dict) -> str:
        cls = "chosen" if chosen and r["number"] == chosen["number"] else "front" if r["front"] else ""
        return f' data-trial="{r["number"]}"' + (f' class="{cls}"' if cls else "")

    return table(_HEADER, [cells(r) for r in rows], [attrs(r) for r in rows])


def _tradeoff_plots(data: dict, rows: list[dict]) -> str:
    """Validation accuracy against gzip size and against latency, with the accuracy floor of the constraint."""
    from compressor.reports import plots
    from compressor.tuning.pareto import front_mask

    acc = [r["val_accuracy"] for r in rows]
    labels = [r["label"] for r in rows]
    trials = [str(r["number"]) for r in rows]  # each point keyed by its trial number, as in the tables
    feasible = [r["feasible"] for r in rows]
    floor = data["reference_val_accuracy"] - data["max_accuracy_drop"]
    # Feasibility is judged on the drop's upper bound: a point above this line can still be gray.
    limit_label = (
        "max accuracy drop"
        if data.get("confidence", 0.5) <= 0.5
        else f"max drop (feasible: its {data['confidence']:g}-bound is within)"
    )
    figs = []
    for key, xlabel, xs in (
        ("size", "gzip size (KB)", [r["gzip_bytes"] / 1024 for r in rows]),
        ("latency", "median latency (ms)", [r["latency_ms"] for r in rows]),
    ):
        # Each plot shows the front of its own two objectives; the table's front uses all three.
        front = front_mask(list(zip(acc, xs)), [True, False])
        figs.append(
            img(
                plots.pareto_scatter(
                    xs,
                    acc,
                    labels,
                    front,
                    xlabel,
                    "validation accuracy",
                    f"accuracy vs {key}",
                    feasible,
                    floor,
                    limit_label,
                    keys=trials,
                ),
                f"accuracy vs {key}",
            )
        )
    return '<div class="grid">' + "".join(figs) + "</div>"
