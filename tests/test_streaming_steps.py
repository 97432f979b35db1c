"""Every training step reads streamed data: prune, regularize, distill and channel_prune give on a
streamed shard folder what they give on the same folder loaded, and a compress run with them streams.
Progress bars over streamed passes appear on a terminal only, never with --quiet."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from compressor.datasets import load_dataset, open_stream, reading
from tests.test_streaming import write_shards

SAMPLES = 600  # of the embedded digits: 432 train, 48 val, 120 test


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """600 digits as uint8 shards (0..16 stretched to 0..255), as test_streaming writes them."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = np.clip(digits.images[:SAMPLES] * 16, 0, 255).astype(np.uint8)
    folder = tmp_path_factory.mktemp("shards") / "digits600"
    write_shards(folder, x, digits.target[:SAMPLES].astype(np.int64), "train", shards=2)
    return folder


@pytest.fixture(scope="module")
def teacher(tiny_model_path):
    from compressor.pipeline.model_io import load_model

    return load_model(tiny_model_path).keras


STEPS = {
    "prune": {"epochs": 1, "sparsity": 0.5, "frequency": 2},
    "regularize": {"epochs": 1},
    "distill": {"epochs": 1, "baseline": True, "early_stopping": 0},
    "channel_prune": {"epochs": 1, "target": 0.6, "distill_weight": 0.5},
}


def _run(name: str, model, data, workdir: Path) -> tuple[dict, list, list[str]]:
    from compressor.recipes.base import get_step, set_progress

    step, lines = get_step(name), []
    set_progress(lines.append)
    try:
        out = step.apply(model, data, step.params(**STEPS[name]), workdir)
    finally:
        set_progress(lambda msg: None)
    return json.loads((workdir / "info.json").read_text()), out.get_weights(), lines


def _untimed(line: str) -> str:
    return re.sub(r"\(\d+\.\d+ s\)", "", line)


@pytest.mark.parametrize("name", list(STEPS))
def test_training_step_streamed_equals_loaded(name, teacher, shards, tmp_path):
    """The same splits, batches and teacher outputs in the same order: the same step result. A streamed
    data set has no x arrays at all, so any whole-array read would fail here."""
    loaded, streamed = load_dataset(str(shards), seed=0), open_stream(str(shards), seed=0)
    assert not hasattr(streamed, "x_train")
    a, wa, lines_a = _run(name, teacher, loaded, tmp_path / "loaded")
    b, wb, lines_b = _run(name, teacher, streamed, tmp_path / "streamed")
    assert [_untimed(line) for line in lines_a] == [_untimed(line) for line in lines_b]
    for x, y in zip(wa, wb):
        np.testing.assert_allclose(x, y, atol=1e-5)
    if name == "prune":
        assert a["overall_sparsity"] == b["overall_sparsity"] == pytest.approx(0.5, abs=0.01)
        assert a["schedule"] == b["schedule"]
    if name == "regularize":
        assert a["val_accuracy_before"] == b["val_accuracy_before"] > 0.5
        assert a["val_accuracy_after"] == pytest.approx(b["val_accuracy_after"], abs=1 / 48)
    if name == "distill":
        assert a["test_accuracy"].keys() == b["test_accuracy"].keys() >= {"teacher", "student_alone", "distilled"}
        for key, value in a["test_accuracy"].items():
            assert value == pytest.approx(b["test_accuracy"][key], abs=1 / 48), key
        assert a["test_accuracy"]["teacher"] > 0.5
        assert any("distill: teacher log-probs over 432 + 48 samples" in line for line in lines_a)
    if name == "channel_prune":
        assert a["macs_after"] == b["macs_after"] < a["macs_before"]
        assert a["val_accuracy_after"] == pytest.approx(b["val_accuracy_after"], abs=1 / 48)
        assert any("channel_prune: teacher log-probs over" in line for line in lines_a)


def test_soft_targets_ride_as_the_streamed_labels(teacher, shards):
    """Teacher log-probs computed a batch at a time equal the whole-array prediction, and a streamed
    split carries them as its (2-D, float) labels through batches and tf.data."""
    from compressor.datasets.splits import with_targets
    from compressor.recipes.distill import soft_targets

    loaded, streamed = load_dataset(str(shards), seed=0), open_stream(str(shards), seed=0)
    whole = np.log(np.maximum(teacher.predict(loaded.x_train, batch_size=256, verbose=0), 1e-30))
    soft = soft_targets(teacher, streamed.split("train"))
    assert soft.shape == (len(loaded.y_train), 11)
    np.testing.assert_array_equal(soft[:, 0], loaded.y_train)
    np.testing.assert_allclose(soft[:, 1:], whole, atol=1e-6)
    relabelled = with_targets(streamed, {"train": soft})
    assert relabelled.split("val").y is streamed.split("val").y and streamed.y_train.ndim == 1
    x, y = next(iter(relabelled.split("train").to_tf(32, shuffle=True, seed=1)))
    assert tuple(x.shape) == (32, 8, 8, 1) and tuple(y.shape) == (32, 11) and y.dtype.name == "float32"


@pytest.fixture(scope="module")
def pruned_run(tiny_model_path, shards, tmp_path_factory) -> tuple[Path, dict, list[str]]:
    """compress prune-int8 (1 epoch) on the shards with stream=True: (run folder, report, progress lines)."""
    from compressor.pipeline.compress import compress

    out, lines = tmp_path_factory.mktemp("pruned") / "run", []
    overrides = ["steps.0.params.epochs=1", "steps.1.params.calibration_samples=32", "export.formats=[tflite]"]
    kw = {"data": str(shards), "overrides": overrides, "latency_runs": 2, "stream": True, "progress": lines.append}
    return out, compress(tiny_model_path, ["prune-int8"], out, **kw), lines


def test_compress_with_a_training_step_streams(pruned_run):
    """prune-int8 with stream=True: the run streams (it was refused while prune read whole arrays; so
    were distill, channel_prune and regularize), prunes and measures its int8 export."""
    from compressor.pipeline.run_data import stream_blocker
    from compressor.recipes import load_recipe

    names = ["prune-int8", "distill-int8", "channel-prune-int8", "regularize-int8"]
    assert stream_blocker([load_recipe(n) for n in names]) is None
    out, report, lines = pruned_run
    run = json.loads((out / "run.json").read_text())
    assert run["data"]["streamed"] is True and run["data"]["splits"]["train"] == 432
    assert any("data streamed" in line for line in lines)
    rows = {r["artifact"]: r for r in report["artifacts"]}
    assert rows.keys() == {"float32", "prune-int8"}
    assert report["steps"]["prune-int8"][0]["info"]["overall_sparsity"] == pytest.approx(0.5, abs=0.01)
    assert rows["prune-int8"]["accuracy"] > 0.3  # chance: 0.1


def test_every_streaming_step_is_a_registered_step():
    """A misspelt name would silently keep a streaming step out (bias_correction vs bias_correct was)."""
    import compressor.recipes.schema  # noqa: F401  (registers every step)
    from compressor.pipeline.run_data import STREAMING_STEPS
    from compressor.recipes.base import step_types

    assert set(step_types()) >= STREAMING_STEPS
    assert set(step_types()) == STREAMING_STEPS  # every step streams today; a new one must say so


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_streamed_pass_draws_a_bar_on_a_terminal_only(shards, monkeypatch):
    """A bar on an interactive stderr only, and gone once the last batch is handed out (Keras stops
    drawing from a pipeline of known length without exhausting it: its epoch line must not land on
    the bar)."""
    streamed = open_stream(str(shards), seed=0)
    monkeypatch.setattr(reading, "MIN_SAMPLES", 100)
    for terminal, bars, drawn in ((True, True, True), (False, True, False), (True, False, False)):
        err = _Terminal() if terminal else io.StringIO()
        monkeypatch.setattr(sys, "stderr", err)
        reading.set_bars(bars)
        passing = streamed.split("train").batches(64)
        try:
            seen = sum(len(next(passing)[1]) for _ in range(7))  # 432 samples: 7 batches, not exhausted
            assert seen == 432 and reading._state["open"] == 0
            cleared = err.getvalue()
        finally:
            passing.close()
            reading.set_bars(True)
        assert ("train split" in cleared and "/432 [" in cleared) is drawn, (terminal, bars)
        assert cleared.endswith("\r") if drawn else cleared == ""


def test_quiet_turns_bars_off():
    from click.testing import CliRunner

    from compressor.commands.cli import cli

    try:
        result = CliRunner().invoke(cli, ["report", "no-such-run", "--quiet"])  # parsed, then refused
        assert result.exit_code == 2 and reading._state["bars"] is False
    finally:
        reading.set_bars(True)
        from compressor.commands.app import state

        state["quiet"] = False


def test_train_streams_a_shard_folder(shards, tmp_path):
    """`compressor train --stream`: fitted and tested a batch at a time; the card says streamed, and its
    test accuracy is what the saved model scores on the same test split loaded."""
    from compressor.pipeline.model_io import load_model
    from compressor.pipeline.train import train

    lines: list[str] = []
    card = train(
        "digits_cnn",
        tmp_path / "base",
        data=str(shards),
        epochs=1,
        batch_size=64,
        model_params={"filters": 4, "dense_units": 16},
        stream=True,
        progress=lines.append,
    )
    assert card["dataset"]["streamed"] is True and card["dataset"]["splits"] == {"train": 432, "val": 48, "test": 120}
    assert any("data streamed" in line for line in lines) and any("epoch 1/1" in line for line in lines)
    loaded = load_dataset(str(shards), seed=0)
    model = load_model(card["model_path"]).keras
    scored = float(np.mean(model.predict(loaded.x_test, verbose=0).argmax(1) == loaded.y_test))
    assert card["test_accuracy"] == pytest.approx(scored, abs=1e-6) and scored > 0.1


def test_tune_and_search_stream(tiny_model_path, shards, tmp_path):
    """tune (an architecture trial, the refit on train+val) and search (its int8 baseline trial) on
    streamed shards: fitted and measured a batch at a time (search's export is compress, tested above)."""
    from compressor.pipeline.model_io import load_model, read_card
    from compressor.tuning.search import search
    from compressor.tuning.tune import tune

    space = tmp_path / "space.yaml"
    space.write_text(json.dumps({"epochs": 1, "params": {"learning_rate": 3e-3, "model.filters": 4}}))
    streamed = {"data": str(shards), "n_trials": 1, "data_options": {"stream": True}}
    tuned = tune(tmp_path / "t", model="digits_cnn", space=str(space), sampler="random", pruner="none", **streamed)
    final = tuned["final"]
    assert tuned["counts"]["COMPLETE"] == 1 and len(final["history"]["loss"]) == 1
    card = read_card(Path(final["model_path"]))
    assert card["dataset"]["streamed"] is True and card["training"]["splits"] == "train+val"
    loaded = load_dataset(str(shards), seed=0)
    refit = load_model(final["model_path"]).keras
    scored = float(np.mean(refit.predict(loaded.x_test, verbose=0).argmax(1) == loaded.y_test))
    assert final["test_accuracy"] == pytest.approx(scored, abs=1e-6)
    found = search(tiny_model_path, tmp_path / "s", max_accuracy_drop=0.3, final=False, **streamed)
    assert found["validation_samples"] == 48 and found["chosen"]["label"] == "int8"
    assert found["chosen"]["losses"] + found["chosen"]["gains"] <= 48 and found["chosen"]["val_accuracy"] > 0.3


def test_package_streams_the_test_split(pruned_run, tmp_path):
    """package (app and mcu) on a streamed run: the test split is checked a batch at a time and only the
    self-test samples are read; the bundle holds what the same run packaged from loaded data holds."""
    import zipfile

    from compressor.bundle.package import package
    from compressor.mcu.package_mcu import package_mcu

    run = pruned_run[0]
    said: list[str] = []
    bundles = {
        s: package(run, tmp_path / f"{s}.zip", "prune-int8", samples=5, stream=s, progress=said.append)
        for s in (True, False)
    }
    assert sum("data streamed" in line for line in said) == 1
    assert bundles[True]["artifact"] == bundles[False]["artifact"] == "prune-int8"
    held = {}
    for s in (True, False):
        with zipfile.ZipFile(tmp_path / f"{s}.zip") as archive:
            held[s] = np.load(io.BytesIO(archive.read("samples.npz")))
            assert held[s]["x"].shape == (5, 8, 8, 1) and held[s]["raw"].dtype == np.uint8
    for key in held[True].files:
        np.testing.assert_array_equal(held[True][key], held[False][key])
    streamed, loaded = (bundles[s]["manifest"] for s in (True, False))
    assert streamed["raw_input"] == loaded["raw_input"] == {"shape": [8, 8, 1], "dtype": "uint8"}
    mcu = {s: package_mcu(run, tmp_path / f"mcu-{s}", "prune-int8", stream=s) for s in (True, False)}
    assert mcu[True]["accuracy"] == mcu[False]["accuracy"] and mcu[True]["accuracy"]["samples"] == 120


def test_stream_flag_reaches_train_and_search(tiny_model_path, tmp_path):
    """--stream on data that cannot stream: the library's one-line refusal, exit 2, from each command."""
    from click.testing import CliRunner

    from compressor.commands.cli import cli

    for args in (
        ["train", "--data", "digits", "--epochs", "1", "--out", str(tmp_path / "t")],
        ["search", tiny_model_path, "--data", "digits", "--max-accuracy-drop", "0.2", "--out", str(tmp_path / "s")],
    ):
        result = CliRunner().invoke(cli, [*args, "--stream"])
        assert result.exit_code == 2, (args[0], result.output)
        assert "cannot stream digits: streaming reads a folder of .npy shards" in result.output, args[0]
