"""Every training preset on the architectures people ship (issue 16): one family per job.

The family (benchmarks/arch_models.py) is trained briefly on the embedded digits (its own split;
test: 359 images, one image = 0.28 points), saved as .h5, then every preset with a training step
runs through the real ``compress`` (the function the CLI calls), each training step at the
family's epochs (arch_models.FAMILIES; distill without its labels-only baseline), plus plain ``int8`` as the
no-training reference. All presets share one ``compress`` run (one float export); a preset that
fails is recorded with its error and the run is started again without it, reusing the steps the
other presets had finished. Per preset: status, int8 TFLite test accuracy, the ONNX (produced or
the reason it was skipped), layers left float, wall time (from the run's own "recipe X" progress
lines to the next). Progress goes to WORK/progress.log.

    python -m benchmarks.job benchmarks.arch_matrix_bench:family_matrix \
        '{"work": "/tmp/arch", "family": "conv1d"}'
"""

from __future__ import annotations

import shutil
import time
import traceback
from pathlib import Path

BASELINE = "int8"
LATENCY_RUNS = 10  # latency is not what this section measures


def training_presets() -> list[str]:
    """The presets with at least one step that trains (its parameters have ``epochs``)."""
    from compressor.recipes import get_step, load_recipe, preset_names

    return [p for p in preset_names() if _training_steps(load_recipe(p), get_step)]


def _training_steps(recipe, get_step) -> list[int]:
    return [i for i, s in enumerate(recipe.steps) if "epochs" in get_step(s.type).params.model_fields]


def overrides(presets: list[str], epochs: int | None) -> list[str]:
    """``PRESET:steps.N.params.epochs=E`` for each training step (none: the preset's own epochs); distill
    trains no labels-only baseline (a second student: time, and not what this section compares)."""
    from compressor.recipes import get_step, load_recipe

    out = []
    for preset in presets:
        recipe = load_recipe(preset)
        for i in _training_steps(recipe, get_step):
            if epochs is not None:
                out.append(f"{preset}:steps.{i}.params.epochs={epochs}")
            if recipe.steps[i].type == "distill":
                out.append(f"{preset}:steps.{i}.params.baseline=false")
    return out


def family_matrix(work: str, family: str) -> dict:
    from .arch_models import FAMILIES, INPUTS, SKIPPED
    from .faster_bench import split_npz

    folder = Path(work) / family
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    log = Log(Path(work) / "progress.log", family)
    kind, float_epochs, step_epochs = FAMILIES[family]
    from .arch_models import family_data

    data = family_data(kind)
    npz = split_npz(data, folder / "data.npz")
    log(f"training the float model {float_epochs} epochs on {INPUTS[kind]}")
    model_path, train_s, params = _train(family, data, float_epochs, folder / "model.h5")
    log(f"trained in {train_s:.0f} s ({params:,} parameters)")
    skipped = SKIPPED.get(family, {})
    presets = [BASELINE, *(p for p in training_presets() if p not in skipped)]
    matrix = _run_all(model_path, npz, presets, step_epochs, folder, log)
    matrix["rows"].update({p: {"not_run": why} for p, why in skipped.items()})
    return {
        "task": INPUTS[kind],
        "parameters": params,
        "float_epochs": float_epochs,
        "step_epochs": step_epochs if step_epochs is not None else "preset defaults",
        "train_s": round(train_s, 1),
        **matrix,
    }


def _train(family: str, data, epochs: int, path: Path) -> tuple[Path, float, int]:
    """Adam 2e-3, batch 32, on train+val (compress splits val off again); BatchNorm momentum 0.9 as in
    hard_arch_bench (the applications' 0.999 leaves the statistics untrained in a few hundred steps)."""
    import numpy as np

    from compressor.keras_shim import keras, set_seed

    from .arch_models import build

    set_seed(0)
    model = build(family)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    t0 = time.time()
    x, y = np.concatenate([data.x_train, data.x_val]), np.concatenate([data.y_train, data.y_val])
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    model.save(path)
    return path, time.time() - t0, int(model.count_params())


def _run_all(model: Path, npz: Path, presets: list[str], epochs: int | None, folder: Path, log: Log) -> dict:
    """One compress over the pending presets; a failing preset is recorded and dropped, the others rerun
    reusing their finished steps (copied out of the failed run's partial folder)."""
    from compressor.pipeline.compress import compress
    from compressor.pipeline.layout import RunLayout

    rows: dict[str, dict] = {}
    pending, reuse, report = list(presets), {}, None
    for attempt in range(len(presets)):
        out = folder / f"run{attempt}"
        clock = RecipeClock(log)
        try:
            report = compress(
                str(model),
                pending,
                out,
                data=str(npz),
                overrides=overrides([p for p in pending if p != BASELINE], epochs),
                overwrite=True,
                latency_runs=LATENCY_RUNS,
                preprocess="none",
                progress=clock,
                reuse_steps=reuse,
            )
        except Exception as e:  # a preset's failure is a result: record it, go on without it
            failed = clock.current or "(before any recipe)"
            rows[failed] = {"status": "error", **_error(e), "seconds": clock.seconds().get(failed)}
            log(f"{failed}: {rows[failed]['error']}")
            if failed not in pending:
                return {"error": rows.pop(failed)["error"], "rows": rows}
            done = [p for p in clock.started if p != failed]
            pending.remove(failed)
            reuse = _keep_steps(RunLayout(out).partial, done, folder / f"reuse{attempt}")
            for p in done:
                rows.setdefault(p, {"seconds": clock.seconds()[p]})  # timed the first time, trained once
            if not pending:
                break
            continue
        for name, s in clock.seconds().items():
            rows.setdefault(name, {}).setdefault("seconds", s)
        break
    return _rows(report, rows) if report else {"rows": rows}


def _keep_steps(partial, presets: list[str], to: Path) -> dict[str, Path]:
    kept = {}
    for preset in presets:
        if partial.steps(preset).is_dir():
            kept[preset] = Path(shutil.copytree(partial.steps(preset), to / preset, dirs_exist_ok=True))
    return kept


def _error(e: Exception) -> dict:
    from compressor.runtime.errors import UserError

    if isinstance(e, UserError):
        return {"error": str(e).splitlines()[0][:400], "internal": False}
    tail = traceback.format_exception(e)[-6:]
    return {"error": f"internal error: {type(e).__name__}: {str(e)[:300]}", "internal": True, "traceback": tail}


def _rows(report: dict, rows: dict) -> dict:
    """Each preset's figures from the report; the failed ones keep their error."""
    artifacts = {(a["artifact"], a["format"]): a for a in report["artifacts"]}
    skipped = report.get("onnx_skipped", {})
    for preset, steps in report["steps"].items():
        tfl, onnx = artifacts.get((preset, "tflite")), artifacts.get((preset, "onnx"))
        problems = (tfl["gates_failed"] + tfl["export_mismatches"]) if tfl else ["no .tflite"]
        rows.setdefault(preset, {}).update(
            status="ok" if not problems else "; ".join(problems)[:300],
            int8_test_accuracy=round(tfl["accuracy"], 4) if tfl else None,
            onnx=("produced" + (f" ({onnx['accuracy']:.2%})" if onnx else "")) if onnx else skipped.get(preset, "no"),
            onnx_mismatch="; ".join(onnx["export_mismatches"])[:200] if onnx else "",
            **_float_layers(steps, tfl),
        )
    return {"float_test_accuracy": round(report["reference_accuracy"], 4), "rows": rows}


def _float_layers(steps: list[dict], tflite: dict | None) -> dict:
    """Layers QAT left float in training (its step info), and the ops the .tflite runs in float (read
    from the file: the partly quantized case)."""
    from compressor.inspection.tflite import float_ops

    out = {}
    for meta in steps:
        if meta["step"] == "qat":
            out["qat_float_layers"] = len(meta.get("info", {}).get("left_float", []))
    if tflite:
        out["tflite_float_ops"] = float_ops(Path(tflite["path"]).read_bytes())
    return out


class Log:
    """Timestamped lines appended to the section's progress log."""

    def __init__(self, path: Path, family: str) -> None:
        self.path, self.family = path, family

    def __call__(self, msg: str) -> None:
        with self.path.open("a") as f:
            f.write(f"{time.strftime('%H:%M:%S', time.gmtime())} [{self.family}] {msg}\n")


class RecipeClock:
    """compress's progress callback: logs every line, and times each recipe from its "recipe X" line to
    the next one (the last one to the end of the run)."""

    def __init__(self, log: Log) -> None:
        self.log, self.started, self.marks = log, [], []
        self.current: str | None = None

    def __call__(self, msg: str) -> None:
        self.log(msg)
        if msg.startswith("recipe "):
            self.current = msg.removeprefix("recipe ").strip()
            self.started.append(self.current)
            self.marks.append(time.time())

    def seconds(self) -> dict[str, float]:
        ends = [*self.marks[1:], time.time()]
        return {name: round(end - start, 1) for name, start, end in zip(self.started, self.marks, ends, strict=True)}
