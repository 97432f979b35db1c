"""--resume: an interrupted run continues from its last finished step; nothing is retrained."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from compressor.pipeline.compress import compress
from compressor.runtime.errors import UserError

FAST = ["steps.0.params.epochs=1", "export.formats=[tflite]"]


def _stop_before_conversion(msg: str) -> None:
    if msg.strip().startswith("step 1: int8"):
        raise KeyboardInterrupt  # what Ctrl-C does between steps


@pytest.fixture(scope="module")
def interrupted(tiny_model_path, tmp_path_factory):
    """A prune-int8 run interrupted after its prune step: (folder holding .run.partial, its listing)."""
    root = tmp_path_factory.mktemp("interrupted")
    with pytest.raises(KeyboardInterrupt):
        compress(
            tiny_model_path,
            ["prune-int8"],
            root / "run",
            overrides=FAST,
            latency_runs=3,
            progress=_stop_before_conversion,
        )
    return root, _listing(root / ".run.partial")


def test_interrupted_run_resumes_from_last_finished_step(interrupted, tiny_model_path, tmp_path):
    assert not (interrupted[0] / "run").exists(), "an interrupted run must not look finished"
    assert not (interrupted[0] / ".run.lock").exists(), "the interrupted run left its lock: a resume would fail"
    out = _copy_partial(interrupted, tmp_path)  # the module's interrupted run, resumed in a copy
    partial = tmp_path / ".run.partial"
    prune_meta = partial / "prune-int8" / "steps" / "00-prune" / "meta.json"
    assert json.loads(prune_meta.read_text())["complete"] is True
    assert (partial / "prune-int8" / "steps" / "00-prune" / "model.h5").is_file()
    first_meta = prune_meta.read_text()

    lines: list[str] = []
    report = compress(
        tiny_model_path, ["prune-int8"], out, overrides=FAST, latency_runs=3, resume=True, progress=lines.append
    )
    assert any("step 0: prune (resumed from 00-prune)" in ln for ln in lines), lines
    assert any(ln.strip() == "step 1: int8" for ln in lines)
    assert not any("epoch" in ln for ln in lines), "the finished prune step was trained again"
    assert (out / "prune-int8" / "steps" / "00-prune" / "meta.json").read_text() == first_meta
    assert not partial.exists()
    row = next(r for r in report["artifacts"] if r["artifact"] == "prune-int8")
    sparsity = report["steps"]["prune-int8"][0]["info"]
    assert row["accuracy"] > 0.5 and sparsity


def _listing(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


def _copy_partial(interrupted, tmp_path: Path) -> Path:
    shutil.copytree(interrupted[0] / ".run.partial", tmp_path / ".run.partial")
    return tmp_path / "run"


def _other_model(tiny_run, tmp_path: Path) -> Path:
    """The tiny train output with one byte of its model changed: another model file, same card."""
    copy = shutil.copytree(tiny_run[0], tmp_path / "other")
    variables = next((copy / "model" / "variables").glob("variables.data-*"))
    data = bytearray(variables.read_bytes())
    data[-1] ^= 1
    variables.write_bytes(bytes(data))
    return copy


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"overrides": FAST + ["steps.0.params.sparsity=0.3"]}, "recipe prune-int8 changed"),
        ({"seed": 1}, "the seed changed"),
        ({"model": "other"}, "the model file changed"),
        ({"recipes": ["dynamic"], "overrides": ["export.formats=[tflite]"]}, "the recipe list"),
        ({"preprocess": "none"}, r"the data \(spec, --data-dir, --preprocess or --image-fit\) changed"),
    ],
)
def test_resume_from_other_inputs_is_refused(interrupted, tiny_run, tiny_model_path, tmp_path, change, fragment):
    """Steps trained from one model/recipe/seed are never reused for another: the resume is refused
    before any model is loaded, naming what changed, and the partial run is left as it was."""
    out = _copy_partial(interrupted, tmp_path)
    model = _other_model(tiny_run, tmp_path) if change.get("model") else tiny_model_path
    kwargs = {"overrides": FAST, "latency_runs": 3, "resume": True}
    kwargs.update({k: v for k, v in change.items() if k not in ("model", "recipes")})
    with pytest.raises(UserError, match=fragment) as refused:
        compress(model, change.get("recipes", ["prune-int8"]), out, **kwargs)
    assert "--resume refused" in str(refused.value) and "\n" not in str(refused.value)
    assert _listing(tmp_path / ".run.partial") == interrupted[1], "a refused resume must not touch the partial run"
    assert not out.exists() and not (tmp_path / ".run.lock").exists()


def test_lambda_planted_in_a_step_folder_is_refused(interrupted, tiny_model_path, tmp_path):
    """A step folder is files on disk: its model is loaded in safe mode, so planted code never runs."""
    from compressor.keras_shim import keras

    out = _copy_partial(interrupted, tmp_path)
    ran = tmp_path / "lambda-ran"
    code = eval(f"lambda x: x if __import__('pathlib').Path({str(ran)!r}).write_text('ran') else x")
    planted = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Lambda(code),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    step = tmp_path / ".run.partial" / "prune-int8" / "steps" / "00-prune"
    planted.save(step / "model.h5", save_format="h5")
    ran.unlink()  # building the model ran it once, here; loading must not run it again
    with pytest.raises(UserError, match="Lambda layer"):
        compress(tiny_model_path, ["prune-int8"], out, overrides=FAST, latency_runs=3, resume=True)
    assert not ran.exists(), "the planted Lambda's code ran"


def test_failure_before_any_step_leaves_nothing(tiny_model_path, tmp_path):
    def fail_early(msg: str) -> None:
        if msg.startswith("exporting float32"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        compress(tiny_model_path, ["dynamic"], tmp_path / "run", progress=fail_early)
    assert list(tmp_path.iterdir()) == []


def test_reuse_steps_seeds_a_fresh_run(interrupted, tiny_model_path, tmp_path):
    """How search exports its choice: a trial's finished steps are copied in, not retrained, and the
    run records its own fingerprint (a later --resume of it is checked like any other)."""
    steps = interrupted[0] / ".run.partial" / "prune-int8" / "steps"
    lines: list[str] = []
    out = tmp_path / "best"
    compress(tiny_model_path, ["prune-int8"], out, overrides=FAST, latency_runs=3,
             reuse_steps={"prune-int8": steps}, progress=lines.append)  # fmt: skip
    assert any("step 0: prune (resumed from 00-prune)" in ln for ln in lines), lines
    assert not any("epoch" in ln for ln in lines)
    assert json.loads((out / "resume-fingerprint.json").read_text())["seed"] == 0
