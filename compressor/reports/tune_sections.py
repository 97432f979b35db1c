"""HTML report sections of a tune run (tune.json): summary, trials, hyperparameter plots, curves, refit."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from compressor.pipeline.layout import StudyLayout
from compressor.reports.compress_sections import compress_sections
from compressor.reports.html_blocks import Section, guarded, img, pct, table
from compressor.runtime.safe_load import RUN_FILE_BYTES, load_json_file


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _score(row: dict) -> float | None:
    """Completed: the trial's value; pruned: the last epoch it reached (what the pruner judged)."""
    if row.get("value") is not None:
        return row["value"]
    inter = list((row.get("intermediate") or {}).values())
    return inter[-1] if inter else None


def tune_sections(data: dict, run_dir: Path) -> list[Section]:
    from compressor.reports import plots

    rows, final = data["trials"], data.get("final") or {}
    space = data.get("space", {}).get("params", {})
    names = [k for k, v in space.items() if isinstance(v, dict)]  # searched ones; fixed values are in the space
    out: list[Section] = [("Tuning summary", _summary(data)), ("Trials", _trials_table(rows, names, data.get("best")))]
    scored = [r for r in rows if _score(r) is not None]
    figs = []
    for name in names:
        pts = [r for r in scored if name in (r.get("values") or {})]
        if pts:
            figs.append(img(_param_plot(name, space[name], pts), f"{name} vs accuracy"))
    if figs:
        out.append(
            ("Hyperparameters vs validation accuracy (hollow: pruned)", '<div class="grid">' + "".join(figs) + "</div>")
        )
    curves = {str(r["number"]): list(r["intermediate"].values()) for r in rows if r.get("intermediate")}
    if curves:
        pruned = {str(r["number"]) for r in rows if r["state"] == "PRUNED"}
        out.append(
            (
                "Validation accuracy per epoch (dashed: pruned)",
                img(plots.intermediate_curves(curves, pruned, "trials"), "trial curves"),
            )
        )
    if final.get("history"):
        out.append(("Final refit on train+val", img(plots.training_curves(final["history"], "refit"), "refit curves")))
    best = StudyLayout(run_dir, "tune").run("best")
    best_report = best.report_json
    if best_report.is_file():
        out += guarded(
            "best/report.json",
            lambda: compress_sections(
                load_json_file(best_report, str(best_report), limit=RUN_FILE_BYTES), best.root, prefix="tuned recipe: "
            ),
        )
    return out


def _summary(data: dict) -> str:
    """The study, its trial counts and settings, the best trial and the refit winner's test accuracy."""
    best, final = data.get("best"), data.get("final") or {}
    counts = ", ".join(f"{n} {s.lower()}" for s, n in data["counts"].items() if n)
    summary = (
        f"<p>study <b>{html.escape(data['study'])}</b> ({html.escape(data['storage'])}): {counts}; sampler "
        f"{data['sampler']}, pruner {data['pruner']}, {data['workers']} worker(s), {data['seconds']:.0f} s.</p>"
    )
    if best:
        summary += (
            f"<p>best trial {best['number']}: validation accuracy <b>{pct(best['value'])}</b> with "
            + ", ".join(f"{html.escape(k)}={html.escape(_fmt(v))}" for k, v in best["values"].items())
            + "</p>"
        )
    if "test_accuracy" in final:
        summary += (
            f"<p>winner refit on train+val, evaluated once on test: <b>{pct(final['test_accuracy'])}</b>"
            f" — {html.escape(str(final.get('model_path') or final.get('artifact') or ''))}</p>"
        )
    if data.get("narrowed_space"):
        summary += f'<p class="note">coarse-to-fine: a second study can use {html.escape(data["narrowed_space"])}</p>'
    return summary


def _trials_table(rows: list[dict], names: list[str], best: dict | None) -> str:
    header = ["trial", "state", "val accuracy", "epochs", "seconds"] + names
    cells = [
        [r["number"], r["state"], pct(_score(r)), r["epochs_run"] or "", _fmt(r["seconds"] or "")]
        + [_fmt((r.get("values") or {}).get(k, "")) for k in names]
        for r in rows
    ]
    attrs = [' class="chosen"' if best and r["number"] == best["number"] else "" for r in rows]
    return table(header, cells, attrs)


def _param_plot(name: str, spec: dict, pts: list[dict]) -> bytes:
    """Categorical values as categories; 1 - beta parameters on the log axis they were sampled on."""
    from compressor.reports import plots

    xs = [r["values"][name] for r in pts]
    scale = spec.get("scale", "linear")
    if spec.get("type") == "categorical":
        xs, scale = [str(x) for x in xs], "linear"
    elif scale == "one_minus_log":
        xs, name = [1.0 - x for x in xs], f"1 - {name}"
    return plots.param_scatter(xs, [_score(r) for r in pts], [r["state"] for r in pts], name, log=scale != "linear")
