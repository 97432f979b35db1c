"""Run a recipe's steps in order, each in its own numbered folder, resumable after interruption.

Training steps take and return a Keras model (saved in the step folder); the last step is a
post-training conversion that writes model.tflite. A step folder whose meta.json says it
completed with the same parameters is reused by --resume instead of being run again.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any

from compressor.pipeline.model_io import LoadedModel
from compressor.recipes import Recipe, get_step
from compressor.recipes.base import progress
from compressor.recipes.stepio import load_step_model, save_step_model
from compressor.runtime.atomic import write_json


def run_chain(
    model: LoadedModel, data: Any, recipe: Recipe, steps_dir: Path, resume: bool = False
) -> tuple[Path, list[dict]]:
    """Returns the final .tflite and each step's meta (params, seconds, step figures)."""
    current = model
    metas: list[dict] = []
    for i, spec in enumerate(recipe.steps):
        step = get_step(spec.type)
        workdir = steps_dir / f"{i:02d}-{spec.type}"
        done = _finished(workdir, spec.params) if resume else None
        resume = done is not None  # once a step reruns, every later step must rerun too
        if done is not None:
            progress(f"  step {i}: {spec.type} (resumed from {workdir.name})")
            metas.append(done)
            if step.kind == "convert":
                return workdir / "model.tflite", metas
            current = dataclasses.replace(current, keras=load_step_model(workdir), saved_model_dir=None)
            continue
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        progress(f"  step {i}: {spec.type}")
        t0 = time.time()
        params = step.params(**spec.params)
        if step.kind == "convert":
            result = step.apply(current, data, params, workdir)
        else:
            trained = step.apply(current.keras, data, params, workdir)
            save_step_model(trained, workdir)
            current = dataclasses.replace(current, keras=trained, saved_model_dir=None)
        meta = {
            "step": spec.type,
            "index": i,
            "params": spec.params,
            "seconds": round(time.time() - t0, 3),
            "complete": True,
        }
        info = workdir / "info.json"
        if info.is_file():
            meta["info"] = json.loads(info.read_text())
        history = workdir / "history.json"
        if history.is_file():
            meta["history"] = json.loads(history.read_text())
        write_json(workdir / "meta.json", meta)  # written last: its presence marks the step as finished
        metas.append(meta)
        if step.kind == "convert":
            return result, metas
    raise AssertionError("recipe validation guarantees a conversion step last")


def _finished(workdir: Path, params: dict) -> dict | None:
    meta_path = workdir / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError:
        return None
    return meta if meta.get("complete") and meta.get("params") == params else None
