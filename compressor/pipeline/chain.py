"""Run a recipe's steps in order, each in its own numbered folder, resumable after interruption.

Training steps take and return a Keras model (saved in the step folder); the last step is a
post-training conversion, carried out by the exporter, that writes model.tflite. A step folder
whose meta.json says it completed with the same parameters is reused by --resume instead of
being run again; its model is reloaded through model_io like any user model (safe mode: a Lambda
layer planted in a step folder is refused), since the partial folder is just files on disk.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any

from compressor.export.conversions import run_conversion
from compressor.pipeline.layout import step_dir
from compressor.pipeline.model_io import LoadedModel, load_model
from compressor.recipes import Recipe, distribute, get_step
from compressor.recipes.base import progress
from compressor.recipes.stepio import save_step_model, step_load_scope, step_model_path
from compressor.runtime.atomic import write_json
from compressor.runtime.errors import UserError
from compressor.runtime.safe_load import RUN_FILE_BYTES, load_json_file


def run_chain(
    model: LoadedModel, data: Any, recipe: Recipe, steps_dir: Path, resume: bool = False, trust_code: bool = False
) -> tuple[Path, list[dict]]:
    """Returns the final .tflite and each step's meta (params, seconds, step figures)."""
    current = model
    metas: list[dict] = []
    for i, spec in enumerate(recipe.steps):
        step = get_step(spec.type)
        workdir = step_dir(steps_dir, i, spec.type)
        params = spec.params.model_dump()
        done = _finished(workdir, params) if resume else None
        resume = done is not None  # once a step reruns, every later step must rerun too
        if done is not None:
            progress(f"  step {i}: {spec.type} (resumed from {workdir.name})")
            metas.append(done)
            if step.kind == "convert":
                return workdir / "model.tflite", metas
            current = dataclasses.replace(current, keras=_reload(workdir, trust_code), saved_model_dir=None)
            continue
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        progress(f"  step {i}: {spec.type}")
        t0 = time.time()
        if step.kind == "convert":
            result = run_conversion(spec.type, current, data, spec.params, workdir)
        else:
            trained = _train(step, current.keras, data, spec.params, workdir)
            save_step_model(trained, workdir)
            if distribute.active():  # continue with plain variables: exporters and evaluation run outside the strategy
                trained = _reload(workdir, trust_code)
            current = dataclasses.replace(current, keras=trained, saved_model_dir=None)
        metas.append(_write_meta(workdir, spec.type, i, params, time.time() - t0))
        if step.kind == "convert":
            return result, metas
    raise AssertionError("recipe validation guarantees a conversion step last")


def _train(step: Any, model: Any, data: Any, params: Any, workdir: Path) -> Any:
    """One training step, inside the tf.distribute strategy when there is one (recipes/distribute.py)."""
    distribute.begin_step("/".join(workdir.parts[-3:]))  # <recipe>/steps/NN-type: alike on every worker
    with distribute.scope(), distribute.worker_failures_explained():
        return step.apply(distribute.clone_into_scope(model), data, params, workdir)


def _reload(workdir: Path, trust_code: bool) -> Any:
    """A finished step's model, checked and loaded as strictly as the user's own model."""
    with step_load_scope():
        return load_model(step_model_path(workdir), trust_code=trust_code).keras


def _write_meta(workdir: Path, step_type: str, index: int, params: dict, seconds: float) -> dict:
    meta = {"step": step_type, "index": index, "params": params, "seconds": round(seconds, 3), "complete": True}
    for key in ("info", "history"):  # figures the step wrote: merged so one file tells the whole step
        path = workdir / f"{key}.json"
        if path.is_file():
            meta[key] = load_json_file(path, f"step {key}", limit=RUN_FILE_BYTES)
    write_json(workdir / "meta.json", meta)  # written last: its presence marks the step as finished
    return meta


def _finished(workdir: Path, params: dict) -> dict | None:
    meta_path = workdir / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = load_json_file(meta_path, "step meta.json", limit=RUN_FILE_BYTES)
    except UserError:  # damaged: the step runs again
        return None
    return meta if meta.get("complete") and meta.get("params") == params else None
