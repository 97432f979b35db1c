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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from compressor.datasets import Dataset, load_dataset
from compressor.export import onnx_quant as onnxq
from compressor.export import parity, quant_debug, selective
from compressor.export.onnx import keras_to_onnx, tflite_to_onnx
from compressor.pipeline import validation
from compressor.pipeline.chain import run_chain
from compressor.pipeline.model_io import LoadedModel, load_model
from compressor.recipes import Recipe, get_step, load_recipe
from compressor.recipes.base import set_progress as set_step_progress
from compressor.reports.summary import build_report, versions
from compressor.runtime.atomic import write_bytes, write_json
from compressor.runtime.errors import UserError

Progress = Callable[[str], None]


def compress(
    model_path: str | Path,
    recipes: list[str],
    out: str | Path,
    data: str | None = None,
    data_dir: str | None = None,
    overrides: list[str] | None = None,
    overwrite: bool = False,
    resume: bool = False,
    threads: int = 1,
    latency_runs: int = 100,
    seed: int = 0,
    trust_code: bool = False,
    progress: Progress = lambda msg: None,
    debug_quant: bool = False,
    float_layers: str | None = None,
    onnx_quant: str = "tflite",
) -> dict:
    """Apply each recipe to the model, export, validate; returns the report (also in OUT/report.json).

    The run is built in a hidden ``.OUT.partial`` folder renamed to OUT when complete. If it
    fails after a step finished, that folder is kept so ``resume=True`` continues from there.
    ``debug_quant``: per-tensor int8 error report; ``float_layers``: "a,b" or "auto[:N]" for the
    int8 steps (see export/selective.py); ``onnx_quant``: tflite | ort | both (export/onnx_quant.py).
    """
    resolved = [load_recipe(r, overrides) for r in recipes]  # fail on a typo before any heavy work
    resolved = selective.apply_float_layers_option(resolved, float_layers)
    _check_names(resolved)
    if onnx_quant not in onnxq.VARIANTS:
        raise UserError(f"--onnx-quant must be one of {', '.join(onnxq.VARIANTS)}, got {onnx_quant!r}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise UserError(f"output folder {out} already exists; choose another --out or pass --overwrite")
    model = load_model(model_path, trust_code=trust_code)
    _check_trainable(model, resolved)
    dataset = load_dataset(data or model.card.get("data", "digits"), data_dir=data_dir, seed=seed)
    check_fits(model, dataset)
    set_step_progress(progress)
    with resumable_dir(out, resume, progress) as work:
        report = _run(
            model, dataset, resolved, work, out, threads, latency_runs, progress, resume, debug_quant, onnx_quant
        )
        write_json(work / "report.json", report)
        from compressor.reports.html import write_html  # report.html with the plots embedded, next to report.json

        write_html(work)
    return report


def _check_names(recipes: list[Recipe]) -> None:
    """Each recipe writes OUT/NAME and one report row per name: two recipes must not share one."""
    seen: set[str] = set()
    for recipe in recipes:
        if recipe.name in seen or recipe.name == "float32":
            clash = "the float32 reference" if recipe.name == "float32" else "another recipe"
            raise UserError(
                f"recipe name {recipe.name!r} is also {clash}'s: give each recipe its own `name:` "
                "(its output folder and report row are named after it)"
            )
        seen.add(recipe.name)


def _check_trainable(model: LoadedModel, recipes: list[Recipe]) -> None:
    if model.trainable:
        return
    for recipe in recipes:
        training = [s.type for s in recipe.steps if get_step(s.type).kind == "train"]
        if training:
            raise UserError(
                f"recipe {recipe.name} has training steps ({', '.join(training)}) but {model.path} is "
                "a plain SavedModel without Keras metadata, which cannot be trained; use a "
                "post-training recipe (float16, dynamic, int8, int16x8) or a tf_keras model"
            )


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
        raise UserError(
            f"data {data.name} has samples of shape {actual} but the model expects {expected}; "
            "pass --data matching the model input"
        )
    classes = model.output_shape[-1]
    if classes is not None and data.num_classes > classes:
        raise UserError(f"data {data.name} has {data.num_classes} classes but the model outputs {classes}")


def _run(
    model: LoadedModel,
    data: Dataset,
    recipes: list[Recipe],
    tmp: Path,
    out: Path,
    threads: int,
    latency_runs: int,
    progress: Progress,
    resume: bool,
    debug_quant: bool = False,
    onnx_quant: str = "tflite",
) -> dict:
    from compressor.export.tflite import export_float32

    started = time.time()
    x, y = data.x_test, data.y_test
    write_json(
        tmp / "run.json",
        {
            "model": str(model.path),
            "model_kind": model.kind,
            "data": data.summary(),
            "recipes": [r.model_dump() for r in recipes],
            "versions": versions(),
        },
    )

    def measure(path: Path, name: str, fmt: str, reference: np.ndarray | None) -> validation.ArtifactResult:
        progress(f"validating {name} ({fmt})")
        result = validation.measure(path, name, fmt, x, y, reference, threads, latency_runs)
        result.path = out / path.relative_to(tmp)
        return result

    progress("exporting float32 reference")
    f32_tflite = export_float32(model, tmp / "float32" / "model.tflite")
    reference = keras_reference = _keras_outputs(model, x)
    tfl = measure(f32_tflite, "float32", "tflite", reference)
    if reference is None:  # plain SavedModel: the float TFLite is the reference
        reference = tfl.outputs
        tfl.metrics["accuracy"]["agreement"] = {"top1_agreement": 1.0, "max_abs_diff": 0.0, "mean_abs_diff": 0.0}
    else:
        validation.check_against(tfl, "keras", reference, atol=validation.FLOAT32_ATOL)
    results = [tfl]
    if any("onnx" in r.export.formats for r in recipes):  # the float ONNX is only a reference for ONNX exports
        f32_onnx = tmp / "float32" / "model.onnx"
        onnx_path = (
            keras_to_onnx(model.keras, f32_onnx) if model.keras is not None else tflite_to_onnx(f32_tflite, f32_onnx)
        )
        onnx_f32 = measure(onnx_path, "float32", "onnx", reference)
        validation.check_against(onnx_f32, "keras", reference, atol=validation.FLOAT32_ATOL)
        results.append(onnx_f32)
    reference_accuracy = float(np.mean(reference.argmax(axis=1) == y))
    float_results = list(results)

    gates: dict[str, dict] = {}
    steps: dict[str, list[dict]] = {}
    extras: dict[str, dict] = {"quant_debug": {}, "selective": {}, "onnx_quant": {}}
    converted: list[tuple] = []  # (tflite result, ONNX converted from it): parity pairs
    for recipe in recipes:
        progress(f"recipe {recipe.name}")
        folder, last = tmp / recipe.name, recipe.steps[-1].type
        tflite, steps[recipe.name] = run_chain(model, data, recipe, folder / "steps", resume)
        final = shutil.copyfile(tflite, folder / "model.tflite")
        result = measure(final, recipe.name, "tflite", reference)
        if last == "float16":
            validation.check_against(result, "keras", reference, atol=validation.FLOAT16_ATOL)
        gates[recipe.name] = recipe.gates.model_dump()
        fall_back = selective.should_fall_back(recipe, result.row(reference_accuracy))
        debug = debug_quant and last == "int8"
        if debug_quant and not debug:
            extras["quant_debug"][recipe.name] = {"skipped": f"the quantization debugger covers int8 only, not {last}"}
        debugger = None
        if debug or fall_back:
            try:
                debugger = quant_debug.QuantDebugger.for_recipe(model, data, recipe, folder / "steps")
            except UserError as e:  # a diagnostic that cannot run must not sink the run's artifacts
                extras["quant_debug" if debug else "selective"][recipe.name] = {"skipped": str(e)}
        if debugger is not None and debug:
            progress(f"  quantization debugger: {recipe.name}")
            extras["quant_debug"][recipe.name] = quant_debug.write_report(debugger.statistics(), folder)
        if debugger is not None and fall_back:
            content, log = selective.fall_back(debugger, data, recipe, f32_tflite, folder, progress)
            if content is not None:
                plain_row = result.row(reference_accuracy)
                result = measure(write_bytes(final, content), recipe.name, "tflite", reference)
                log["cost"] = selective.cost(plain_row, result.row(reference_accuracy))
            extras["selective"][recipe.name] = log
        results.append(result)
        if "onnx" in recipe.export.formats:
            candidates = []
            float_layers = extras["selective"].get(recipe.name, {}).get("float_layers") or steps[recipe.name][-1].get(
                "info", {}
            ).get("float_layers", [])
            for variant in onnxq.VARIANTS[onnx_quant if last == "int8" else "tflite"]:
                path = onnxq.export_variant(
                    variant, final, model, data, recipe, folder, tmp / "float32" / "model.onnx", float_layers
                )
                onnx_result = measure(path, recipe.name, "onnx", reference)
                if variant == "tflite":
                    validation.check_against(
                        onnx_result,
                        f"{recipe.name} tflite",
                        result.outputs,
                        atol=None,
                        min_agreement=validation.CROSS_RUNTIME_MIN_AGREEMENT,
                    )
                    converted.append((result, onnx_result))
                candidates.append((variant, onnx_result))
            kept, info = onnxq.keep_better(
                candidates, gates[recipe.name], reference_accuracy, folder, out / recipe.name, recipe.name
            )
            results += kept
            if len(candidates) > 1:
                extras["onnx_quant"][recipe.name] = info
    extras["parity"] = parity.parity_matrix(keras_reference, float_results, converted)
    extras = {k: v for k, v in extras.items() if v or k == "parity"}
    return build_report(model, data, results, gates, steps, reference_accuracy, time.time() - started, extras)


def _keras_outputs(model: LoadedModel, x: np.ndarray) -> np.ndarray | None:
    if model.keras is None:
        return None
    return np.asarray(model.keras.predict(x, batch_size=256, verbose=0), dtype=np.float32)
