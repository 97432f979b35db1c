"""--resume: an interrupted run continues from its last finished step; nothing is retrained."""

from __future__ import annotations

import json

import pytest

from compressor.pipeline.compress import compress

FAST = ["steps.0.params.epochs=1", "export.formats=[tflite]"]


def test_interrupted_run_resumes_from_last_finished_step(tiny_model_path, tmp_path):
    out = tmp_path / "run"
    partial = tmp_path / ".run.partial"

    def interrupt_before_conversion(msg: str) -> None:
        if msg.strip().startswith("step 1: int8"):
            raise KeyboardInterrupt  # what Ctrl-C does between steps

    with pytest.raises(KeyboardInterrupt):
        compress(
            tiny_model_path, ["prune-int8"], out, overrides=FAST, latency_runs=5, progress=interrupt_before_conversion
        )
    assert not out.exists(), "an interrupted run must not look finished"
    prune_meta = partial / "prune-int8" / "steps" / "00-prune" / "meta.json"
    assert json.loads(prune_meta.read_text())["complete"] is True
    assert (partial / "prune-int8" / "steps" / "00-prune" / "model.h5").is_file()
    first_meta = prune_meta.read_text()

    lines: list[str] = []
    report = compress(
        tiny_model_path, ["prune-int8"], out, overrides=FAST, latency_runs=5, resume=True, progress=lines.append
    )
    assert any("step 0: prune (resumed from 00-prune)" in ln for ln in lines), lines
    assert any(ln.strip() == "step 1: int8" for ln in lines)
    assert not any("epoch" in ln for ln in lines), "the finished prune step was trained again"
    assert (out / "prune-int8" / "steps" / "00-prune" / "meta.json").read_text() == first_meta
    assert not partial.exists()
    row = next(r for r in report["artifacts"] if r["artifact"] == "prune-int8")
    sparsity = report["steps"]["prune-int8"][0]["info"]
    assert row["accuracy"] > 0.5 and sparsity


def test_changed_params_rerun_the_step(tiny_model_path, tmp_path):
    out = tmp_path / "run"

    def stop(msg: str) -> None:
        if msg.strip().startswith("step 1: int8"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        compress(tiny_model_path, ["prune-int8"], out, overrides=FAST, latency_runs=5, progress=stop)
    lines: list[str] = []
    compress(
        tiny_model_path,
        ["prune-int8"],
        out,
        overrides=FAST + ["steps.0.params.sparsity=0.3"],
        latency_runs=5,
        resume=True,
        progress=lines.append,
    )
    assert any(ln.strip() == "step 0: prune" for ln in lines), "params changed: the step must run again"


def test_failure_before_any_step_leaves_nothing(tiny_model_path, tmp_path):
    def fail_early(msg: str) -> None:
        if msg.startswith("exporting float32"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        compress(tiny_model_path, ["dynamic"], tmp_path / "run", progress=fail_early)
    assert list(tmp_path.iterdir()) == []
