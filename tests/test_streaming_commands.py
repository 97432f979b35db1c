"""`validate` and `compress --accuracy-budget` read streamed data too (issue 17): the same figures as
on the same folder loaded, computed a batch at a time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compressor.pipeline.validate_artifact import validate_artifact
from tests.test_streaming_steps import shards  # noqa: F401  (the module's 600-digit shard folder)


@pytest.mark.parametrize("reference", ["keras", "tflite"])
def test_validate_streamed_equals_loaded(int8_run, tiny_model_path, shards, reference):  # noqa: F811
    artifact = str(Path(int8_run) / "int8" / "model.tflite")
    ref = tiny_model_path if reference == "keras" else str(Path(int8_run) / "float32" / "model.tflite")
    runs = {
        stream: validate_artifact(artifact, str(shards), reference=ref, latency_runs=5, stream=stream)
        for stream in (False, True)
    }
    loaded, streamed = runs[False]["accuracy"], runs[True]["accuracy"]
    assert streamed["samples"] == loaded["samples"] == 120
    assert streamed["top1"] == loaded["top1"] > 0.5
    assert streamed["agreement"] == loaded["agreement"]
    assert runs[True]["preprocessing"] == runs[False]["preprocessing"]


def test_accuracy_budget_streams(tiny_model_path, shards, tmp_path):  # noqa: F811
    from compressor.pipeline.budget import compress_to_budget

    lines: list[str] = []
    report = compress_to_budget(
        tiny_model_path, tmp_path / "run", 0.05, data=str(shards), stream=True, latency_runs=5, progress=lines.append
    )
    streamed = [line for line in lines if line.startswith("data streamed")]
    assert len(streamed) == 2, lines  # the ladder's data, then the chosen rung's compress
    assert lines.index(streamed[0]) < min(i for i, line in enumerate(lines) if line.startswith("budget: trying"))
    assert json.loads((tmp_path / "run" / "run.json").read_text())["data"]["streamed"] is True
    attempts = report["budget"]["attempts"]
    assert attempts and "val_accuracy" in attempts[0]
    assert report["budget"]["chosen"] in {a["name"] for a in attempts}
