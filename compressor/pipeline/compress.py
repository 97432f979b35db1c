"""`compressor compress`: model + recipes -> steps -> TFLite/ONNX artifacts -> validation -> report.

The flow: check everything cheap first (recipes, model, data); export the float reference;
run each recipe (steps, export, validation: pipeline/recipe_run.py); compare the runtimes
(parity); write the report. The run folder is laid out by pipeline/layout.py; it is built in a
hidden partial folder and renamed into place when complete. Before any model is loaded, --out is
checked (pipeline/output_guard.py) and locked (pipeline/run_lock.py), and a --resume is checked
against the fingerprint of the inputs the partial run was started from (pipeline/fingerprint.py).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from compressor.datasets.source import load_or_stream
from compressor.export import parity, selective
from compressor.export.onnx import keras_to_onnx, tflite_to_onnx
from compressor.export.onnx_quant import VARIANTS as ONNX_QUANT_VARIANTS
from compressor.export.tflite import export_float32
from compressor.pipeline import keras3_bridge, validation
from compressor.pipeline.fingerprint import check_resume, fingerprint
from compressor.pipeline.layout import REFERENCE, RunLayout, mark_output
from compressor.pipeline.model_io import load_model, read_card, resolve_model_path
from compressor.pipeline.output_guard import check_output, check_replaceable, out_path
from compressor.pipeline.preflight import check_fits, check_mcu_gates, check_recipe_names, check_trainable
from compressor.pipeline.recipe_run import RunContext, run_recipe
from compressor.pipeline.run_data import stream_blocker
from compressor.pipeline.run_lock import RunLock
from compressor.recipes import Recipe, load_recipe
from compressor.recipes.base import set_progress as set_step_progress
from compressor.reports.summary import build_report, versions
from compressor.runtime.atomic import output_dir, write_json
from compressor.runtime.errors import Interrupted, UserError

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
    reuse_steps: dict[str, Path] | None = None,
    preprocess: str = "auto",
    image_fit: str = "resize",
    stream: bool | None = None,
) -> dict:
    """Apply each recipe to the model, export, validate; returns the report (also in OUT/report.json).

    A run that fails after a step finished keeps its partial folder: ``resume=True`` continues it.
    ``debug_quant``: per-tensor int8 error report; ``float_layers``: "a,b" or "auto[:N]" for the int8
    steps (export/selective.py); ``onnx_quant``: tflite | ort | both (export/onnx_quant.py).
    ``reuse_steps``: recipe name -> a steps folder made from the same model, data and seed (a search
    trial's), copied in so its finished steps are not retrained. ``preprocess`` / ``image_fit`` /
    ``stream``: how raw data becomes model inputs, and whether it is streamed (compressor/datasets/).
    """
    resolved = _resolve_recipes(recipes, overrides, float_layers, onnx_quant)  # a typo fails before any work
    final = RunLayout(out_path(out))
    model_file = resolve_model_path(model_path)
    data_spec = data or read_card(model_file).get("data", "digits")
    _check_out(final, [model_path, model_file, data_spec, data_dir, *recipes], overwrite)
    with RunLock(final.root):
        # defaults left out: a partial run recorded before these options resumes as before
        reading = {
            k: v for k, v in (("preprocess", preprocess), ("image_fit", image_fit)) if v not in ("auto", "resize")
        }
        started_from = fingerprint(model_file, data_spec, data_dir, seed, resolved, reading)
        _check_partial(final.partial, started_from, resume)
        options = (preprocess, image_fit, stream, trust_code)
        model, dataset = _inputs(model_path, resolved, data_spec, data_dir, seed, options, progress)
        set_step_progress(progress)
        ctx = RunContext(model, dataset, final.partial, final, threads=threads, latency_runs=latency_runs)
        ctx.resume, ctx.trust_code, ctx.debug_quant = resume or bool(reuse_steps), trust_code, debug_quant
        ctx.onnx_quant, ctx.progress = onnx_quant, progress
        with _building(final, resume, progress) as work:
            _start(work, started_from, reuse_steps or {})
            write_json(work.run_record, run_record(model, dataset, resolved, data_spec, data_dir, seed))
            report = _run(ctx, resolved)
            write_json(work.report_json, report)
            from compressor.reports.html import write_html  # report.html with the plots embedded

            write_html(work.root, name=final.root.name)
    return report


def _inputs(model_path, recipes: list[Recipe], spec: str, data_dir, seed: int, options: tuple, progress: Progress):
    """The model and the run's data (loaded or streamed: datasets/source.py), checked against each other
    and the recipes before any step. ``options``: (preprocess, image_fit, stream, trust_code)."""
    preprocess, image_fit, stream, trust_code = options
    model = load_model(model_path, trust_code=trust_code)
    check_trainable(model, recipes)
    check_mcu_gates(recipes)
    blocker = stream_blocker(recipes)
    dataset = load_or_stream(spec, data_dir, seed, model, preprocess, image_fit, stream, blocker, progress)
    check_fits(model, dataset)
    progress(f"preprocess: {dataset.preprocessing.mode} ({dataset.preprocess_reason})")
    test_head = dataset.split("test").head(keras3_bridge.MAX_CHECK_SAMPLES)
    keras3_bridge.verify(model, test_head, trust_code)  # a Keras 3 rebuild equals Keras 3 before any step
    return model, dataset


def _resolve_recipes(recipes: list[str], overrides: list[str] | None, float_layers: str | None, onnx_quant: str):
    resolved = [load_recipe(r, overrides) for r in recipes]
    resolved = selective.apply_float_layers_option(resolved, float_layers)
    check_recipe_names(resolved)
    if onnx_quant not in ONNX_QUANT_VARIANTS:
        raise UserError(f"--onnx-quant must be one of {', '.join(ONNX_QUANT_VARIANTS)}, got {onnx_quant!r}")
    return resolved


def _check_out(final: RunLayout, inputs: list, overwrite: bool) -> None:
    """Before any model is loaded: OUT and its partial folder may be written, and hold no input."""
    check_output(final.root, inputs, overwrite)
    check_output(final.partial.root, inputs, overwrite, existing_ok=True)


def _check_partial(partial: RunLayout, started_from: dict, resume: bool) -> None:
    """Under the lock: a resumed partial run was started from the same inputs; a partial run that
    is started over is this tool's to delete."""
    if resume:
        check_resume(partial, started_from)
    elif partial.root.is_dir():
        check_replaceable(partial.root)


def _start(work: RunLayout, started_from: dict, reuse_steps: dict[str, Path]) -> None:
    """Mark the folder as ours, record what it is started from (--resume compares it), seed reused steps."""
    mark_output(work.root, "compress")
    write_json(work.fingerprint, started_from)
    for recipe, steps in reuse_steps.items():
        if Path(steps).is_dir():
            shutil.rmtree(work.steps(recipe), ignore_errors=True)
            shutil.copytree(steps, work.steps(recipe))


@contextmanager
def _building(final: RunLayout, resume: bool, progress: Progress) -> Iterator[RunLayout]:
    """Build the run in its partial folder, renamed into place when complete. A failed run with a
    finished step is kept for --resume (and the user told so); otherwise it is removed."""
    keep = RunLayout.finished_step_in
    try:
        with output_dir(final.root, True, partial=final.partial.root, resume=resume, keep_partial=keep) as work:
            yield RunLayout(work)
    except BaseException as e:
        if RunLayout.finished_step_in(final.partial.root):
            kept = f"partial run kept in {final.partial.root}; rerun the same command with --resume to continue"
            if isinstance(e, KeyboardInterrupt) and not isinstance(e, Interrupted):
                raise Interrupted(kept) from e  # the CLI prints it even with --quiet
            progress(kept)
        raise


def run_record(model, dataset, recipes: list[Recipe], data_spec: str, data_dir: str | None, seed: int) -> dict:
    """run.json: what was asked, enough to reload the very same data later (`compressor package`)."""
    spec_path = Path(data_spec)
    source = {
        "spec": str(spec_path.resolve()) if spec_path.exists() else data_spec,
        "data_dir": str(Path(data_dir).resolve()) if data_dir else None,
        "seed": seed,
    }
    return {
        "model": str(model.path),
        "model_kind": model.kind,
        "data": {**source, **dataset.summary()},
        "recipes": [r.model_dump() for r in recipes],
        "versions": versions(),
    }


def _run(ctx: RunContext, recipes: list[Recipe]) -> dict:
    started = time.time()
    float_results, keras_reference = _reference(ctx, needs_onnx=any("onnx" in r.export.formats for r in recipes))
    results = list(float_results)
    steps: dict[str, list[dict]] = {}
    extras: dict[str, dict] = {"quant_debug": {}, "selective": {}, "onnx_quant": {}, "onnx_skipped": {}}
    converted: list[tuple] = []  # (tflite result, ONNX converted from it): parity pairs
    for recipe in recipes:
        outcome = run_recipe(ctx, recipe)
        results += outcome.results
        steps[recipe.name] = outcome.steps
        converted += outcome.converted
        for section, entry in outcome.extras.items():
            extras[section][recipe.name] = entry
    extras["parity"] = parity.parity_matrix(keras_reference, float_results, converted)
    extras = {k: v for k, v in extras.items() if v or k == "parity"}
    gates = {r.name: r.gates.model_dump() for r in recipes}
    seconds = time.time() - started
    return build_report(ctx.model, ctx.data, results, gates, steps, ctx.reference_accuracy, seconds, extras)


def _reference(ctx: RunContext, needs_onnx: bool) -> tuple[list[validation.ArtifactResult], np.ndarray | None]:
    """Export and measure the float32 reference; sets ``ctx.reference`` (the outputs every
    artifact is compared with) and returns the float results and the Keras outputs (if any)."""
    ctx.progress(f"exporting {REFERENCE} reference")
    model, layout = ctx.model, ctx.layout
    f32_tflite = export_float32(model, layout.reference("tflite"))
    keras_reference = ctx.reference = validation.reference_outputs(model, ctx.data.split("test"))
    tfl = ctx.measure(f32_tflite, REFERENCE, "tflite")
    if keras_reference is None:  # plain SavedModel: the float TFLite is the reference
        ctx.reference = tfl.outputs
        tfl.metrics["accuracy"]["agreement"] = {"top1_agreement": 1.0, "max_abs_diff": 0.0, "mean_abs_diff": 0.0}
    else:
        validation.check_against(tfl, "keras", keras_reference, atol=validation.FLOAT32_ATOL)
    results = [tfl]
    if needs_onnx:  # the float ONNX is only a reference for ONNX exports
        f32_onnx = layout.reference("onnx")
        if model.keras is not None:
            keras_to_onnx(model.keras, f32_onnx)
        else:
            tflite_to_onnx(f32_tflite, f32_onnx)
        onnx_f32 = ctx.measure(f32_onnx, REFERENCE, "onnx")
        validation.check_against(onnx_f32, "keras", ctx.reference, atol=validation.FLOAT32_ATOL)
        results.append(onnx_f32)
    ctx.reference_accuracy = float(np.mean(ctx.reference.argmax(axis=1) == ctx.data.y_test))
    return results, keras_reference
