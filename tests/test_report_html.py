"""The HTML report: self-contained (base64 PNGs), tables match report.json, optional sections, chromium."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess

import pytest

from compressor.reports.html import write_html


@pytest.fixture(scope="module")
def compressed(int8_run):
    """conftest.py's int8 run of the tiny model (read-only) and its report.json."""
    return int8_run, json.loads((int8_run / "report.json").read_text())


def _images(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def test_compress_writes_a_self_contained_report(compressed):
    out, report = compressed
    html = (out / "report.html").read_text()
    images = _images(html)
    assert len(images) >= 3 and all(img.startswith(b"\x89PNG\r\n\x1a\n") for img in images)
    assert "<script" not in html and "http://" not in html and "https://" not in html  # nothing fetched
    rows = re.findall(r'<tr data-artifact="([^"]+)" data-format="([^"]+)"[^>]*>(.*?)</tr>', html)
    assert [(a, f) for a, f, _ in rows] == [(r["artifact"], r["format"]) for r in report["artifacts"]]
    for (_, _, cells), r in zip(rows, report["artifacts"]):
        values = re.findall(r"<td[^>]*>(.*?)</td>", cells)
        assert values[2] == f"{r['size_bytes'] / 1024:.1f} KB"
        assert values[4] == f"{r['accuracy']:.2%}"
        assert values[7] == f"{r['latency']['median_ms']:.3f}"
    assert "Confusion matrix: int8 (tflite)" in html  # the shipped artifact: smallest passing int8
    assert "section failed" not in html and "Per-layer quantization error" not in html


def test_quant_debug_chart_only_when_present(compressed, tmp_path):
    out, report = compressed
    run = tmp_path / "copy"
    shutil.copytree(out, run)
    worst = [
        {"layer": f"conv{i}", "op": "CONV_2D", "rmse": 0.01 * i, "rmse_over_scale": 0.3 * i, "scale": 0.03}
        for i in range(1, 4)
    ]
    report["quant_debug"] = {"int8": {"tensors": 3, "worst": worst, "files": []}, "dynamic": {"skipped": "int8 only"}}
    (run / "report.json").write_text(json.dumps(report))
    html = write_html(run).read_text()
    assert "Per-layer quantization error: int8" in html and "dynamic" not in html.split("Per-layer")[1][:80]
    assert len(_images(html)) == len(_images((out / "report.html").read_text())) + 1


def test_title_names_the_run_not_its_partial_folder(compressed, tmp_path):
    out, _ = compressed
    # compress writes report.html inside its hidden .run.partial folder, renamed to run when complete
    assert "<title>compressor report: run</title>" in (out / "report.html").read_text()
    building = tmp_path / ".nightly.partial"
    shutil.copytree(out, building)
    assert "<title>compressor report: nightly</title>" in write_html(building).read_text()
    assert "<h1>compressor report: int8 sweep</h1>" in write_html(building, name="int8 sweep").read_text()


def test_every_scatter_point_is_named(compressed, tmp_path, monkeypatch):
    from compressor.reports import plots

    out, report = compressed
    legends = {}
    draw = plots._png

    def record(fig):
        ax = fig.axes[0]
        if ax.get_legend() is not None:
            legends[ax.get_title()] = [t.get_text() for t in ax.get_legend().get_texts()]
        return draw(fig)

    monkeypatch.setattr(plots, "_png", record)
    run = tmp_path / "copy"
    shutil.copytree(out, run)
    write_html(run)
    names = [f"{r['artifact']}/{r['format']}" for r in report["artifacts"]]
    assert len(names) >= 4  # float32 and int8, each as tflite and onnx
    for title in ("accuracy vs size", "accuracy vs latency"):
        assert [f"{n}: {name}" for n, name in enumerate(names, 1)] == legends[title][: len(names)], legends
    # search plots key each point by its trial number, the legend names its recipe
    labels, keys = ["int8", "float16", "dynamic"], ["3", "7", "9"]
    fig = plots.pareto_figure([1, 2, 3], [0.9, 0.8, 0.7], labels, [True, False, False], "x", "y", "t", keys=keys)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()][:3] == ["3: int8", "7: float16", "9: dynamic"]
    assert [t.get_text() for t in ax.texts] == ["3", "7", "9"]


def test_report_command_errors_are_one_line(tmp_path):
    from click.testing import CliRunner

    from compressor.commands.cli import cli

    res = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert res.exit_code == 2 and res.output.count("\n") == 1
    assert "has no report.json, tune.json or search.json" in res.output


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed (optional visual check)")
def test_chromium_renders_the_report(compressed, tmp_path):
    out, _ = compressed
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            f"--screenshot={shot}",
            "--window-size=1200,1600",
            (out / "report.html").resolve().as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 20_000  # a rendered page, not a blank one
