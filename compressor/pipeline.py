"""`compressor compress`: model + recipes -> steps -> TFLite/ONNX artifacts -> validation -> report.

Run folder layout (written to a temporary sibling, renamed into place when complete):

    OUT/run.json                      what was asked: model, data, recipes, versions
    OUT/float32/model.tflite|.onnx    the float reference exports
    OUT/<recipe>/steps/NN-<type>/     each step's output and meta.json
    OUT/<recipe>/model.tflite|.onnx   the recipe's artifacts
    OUT/report.json                   every measured figure
"""

from __future__ import annotations

import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from compressor.datasets import Dataset, load_dataset
from compressor.model_io import LoadedModel, load_model
from compressor.recipes import Recipe, get_step, load_recipe
from compressor.recipes.base import set_progress as set_step_progress
from compressor.runtime.atomic import write_json
from compressor.runtime.errors import UserError

from . import validation
from .chain import run_chain
from .export.onnx import keras_to_onnx, tflite_to_onnx
from .report import build_report, versions

Progress = Callable[[str], None]


def compress(model_path: str | Path, recipes: list[str], out: str | Path, data: str | None = None,
             data_dir: str | None = None, overrides: list[str] | None = None, overwrite: bool = False,
             resume: bool = False, threads: int = 1, latency_runs: int = 100, seed: int = 0,
             trust_code: bool = False, progress: Progress = lambda msg: None) -> dict:
    """Apply each recipe to the model, export, validate; returns the report (also in OUT/report.json).

    The run is built in a hidden ``.OUT.partial`` folder renamed to OUT when complete. If it
    fails after a step finished, that folder is kept so ``resume=True`` continues from there.
    """
    resolved = [load_recipe(r, overrides) for r in recipes]  # fail on a typo before any heavy work
    out = Path(out)
    if out.exists() and not overwrite:
        raise UserError(f"output folder {out} already exists; choose another --out or pass --overwrite")
    model = load_model(model_path, trust_code=trust_code)
    _check_trainable(model, resolved)
    dataset = load_dataset(data or model.card.get("data", "digits"), data_dir=data_dir, seed=seed)
    check_fits(model, dataset)
    set_step_progress(progress)
    with resumable_dir(out, resume, progress) as work:
        report = _run(model, dataset, resolved, work, out, threads, latency_runs, progress, resume)
        write_json(work / "report.json", report)
    return report


def _check_trainable(model: LoadedModel, recipes: list[Recipe]) -> None:
    if model.trainable:
        return
    for recipe in recipes:
        training = [s.type for s in recipe.steps if get_step(s.type).kind == "train"]
        if training:
            raise UserError(f"recipe {recipe.name} has training steps ({', '.join(training)}) but {model.path} is "
                            "a plain SavedModel without Keras metadata, which cannot be trained; use a "
                            "post-training recipe (float16, dynamic, int8, int16x8) or a tf_keras model")


@contextmanager
def resumable_dir(out: Path, resume: bool, progress: Progress) -> Iterator[Path]:
    work = out.parent / f".{out.name}.partial"
    if work.exists() and not resume:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    try:
        yield work
    except BaseException:
        if any(work.glob("*/steps/*/meta.json")):
            progress(f"partial run kept in {work}; rerun the same command with --resume to continue")
        else:
            shutil.rmtree(work, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    os.replace(work, out)


def check_fits(model: LoadedModel, data: Dataset) -> None:
    expected = tuple(model.input_shape)
    actual = tuple(data.input_shape)
    if len(actual) != len(expected) or any(e is not None and a != e for a, e in zip(actual, expected)):
        raise UserError(f"data {data.name} has samples of shape {actual} but the model expects {expected}; "
                        "pass --data matching the model input")
    classes = model.output_shape[-1]
    if classes is not None and data.num_classes > classes:
        raise UserError(f"data {data.name} has {data.num_classes} classes but the model outputs {classes}")


def _run(model: LoadedModel, data: Dataset, recipes: list[Recipe], tmp: Path, out: Path,
         threads: int, latency_runs: int, progress: Progress, resume: bool) -> dict:
    from .export.tflite import export_float32

    started = time.time()
    x, y = data.x_test, data.y_test
    write_json(tmp / "run.json", {"model": str(model.path), "model_kind": model.kind, "data": data.summary(),
                                  "recipes": [r.model_dump() for r in recipes], "versions": versions()})

    def measure(path: Path, name: str, fmt: str, reference: np.ndarray | None) -> validation.ArtifactResult:
        progress(f"validating {name} ({fmt})")
        result = validation.measure(path, name, fmt, x, y, reference, threads, latency_runs)
        result.path = out / path.relative_to(tmp)
        return result

    progress("exporting float32 reference")
    f32_tflite = export_float32(model, tmp / "float32" / "model.tflite")
    reference = _keras_outputs(model, x)
    tfl = measure(f32_tflite, "float32", "tflite", reference)
    if reference is None:  # plain SavedModel: the float TFLite is the reference
        reference = tfl.outputs
        tfl.metrics["accuracy"]["agreement"] = {"top1_agreement": 1.0, "max_abs_diff": 0.0, "mean_abs_diff": 0.0}
    else:
        validation.check_against(tfl, "keras", reference, atol=validation.FLOAT32_ATOL)
    results = [tfl]
    if model.keras is not None:
        onnx_f32 = measure(keras_to_onnx(model.keras, tmp / "float32" / "model.onnx"), "float32", "onnx", reference)
    else:
        onnx_f32 = measure(tflite_to_onnx(f32_tflite, tmp / "float32" / "model.onnx"), "float32", "onnx", reference)
    validation.check_against(onnx_f32, "keras", reference, atol=validation.FLOAT32_ATOL)
    results.append(onnx_f32)

    gates: dict[str, dict] = {}
    steps: dict[str, list[dict]] = {}
    for recipe in recipes:
        progress(f"recipe {recipe.name}")
        tflite, steps[recipe.name] = run_chain(model, data, recipe, tmp / recipe.name / "steps", resume)
        final = shutil.copyfile(tflite, tmp / recipe.name / "model.tflite")
        result = measure(final, recipe.name, "tflite", reference)
        if recipe.steps[-1].type == "float16":
            validation.check_against(result, "keras", reference, atol=validation.FLOAT16_ATOL)
        results.append(result)
        gates[recipe.name] = recipe.gates.model_dump()
        if "onnx" in recipe.export.formats:
            onnx_path = tflite_to_onnx(final, tmp / recipe.name / "model.onnx", opset=recipe.export.opset)
            onnx_result = measure(onnx_path, recipe.name, "onnx", reference)
            validation.check_against(onnx_result, f"{recipe.name} tflite", result.outputs, atol=None,
                                     min_agreement=validation.CROSS_RUNTIME_MIN_AGREEMENT)
            results.append(onnx_result)
    reference_accuracy = float(np.mean(reference.argmax(axis=1) == y))
    return build_report(model, data, results, gates, steps, reference_accuracy, time.time() - started)


def _keras_outputs(model: LoadedModel, x: np.ndarray) -> np.ndarray | None:
    if model.keras is None:
        return None
    return np.asarray(model.keras.predict(x, batch_size=256, verbose=0), dtype=np.float32)
