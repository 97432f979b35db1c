"""Commands of the core flow: train a reference model, compress it, validate an artifact, the demo.

Heavy modules (TensorFlow via the shim, the pipeline) are imported inside the commands, so
`compressor --help` starts in a fraction of a second.
"""

from __future__ import annotations

import json

import click

from compressor.commands.app import cli, common, emit, fail_unless, parse_params, progress
from compressor.commands.data_options import data_options, stream_option
from compressor.commands.distribute_options import distribute_options, distributed
from compressor.pipeline.layout import DemoLayout
from compressor.recipes.optimizers import OPTIMIZERS


@cli.command()
@click.option(
    "--model",
    "model_name",
    default="digits_cnn",
    show_default=True,
    help="Reference architecture (see `compressor models`).",
)
@click.option(
    "--data",
    default="digits",
    show_default=True,
    help="digits | mnist | fashion_mnist | cifar10 | FILE.npz | IMAGE_FOLDER",
)
@click.option("--data-dir", type=click.Path(), help="Folder with the mnist/fashion_mnist/cifar10 distribution files.")
@click.option("--out", required=True, type=click.Path(), help="Output folder (SavedModel in OUT/model).")
@click.option("--epochs", default=20, show_default=True, type=int)
@click.option("--batch-size", default=32, show_default=True, type=int)
@click.option("--lr", "learning_rate", default=1e-3, show_default=True, type=float)
@click.option("--optimizer", default="adam", show_default=True, type=click.Choice(OPTIMIZERS))
@click.option("--param", "params", multiple=True, help="Architecture argument NAME=VALUE (repeatable).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@click.option("--resume", is_flag=True, help="--distribute: continue an interrupted training from its last epoch.")
@distribute_options()
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@stream_option
@data_options
@common
def train(model_name, data, data_dir, out, epochs, batch_size, learning_rate, optimizer, params, seed, **flags):
    """Train a reference architecture and save it as a SavedModel."""
    from compressor.pipeline.train import train as run

    training = {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate, "optimizer": optimizer}
    with distributed(flags["distribute"], flags["replicas"], out, flags["resume"], progress) as where:
        card = run(
            model_name,
            where,
            data=data,
            data_dir=data_dir,
            seed=seed,
            model_params=parse_params(params),
            overwrite=flags["overwrite"],
            progress=progress,
            preprocess=flags["preprocess"],
            image_fit=flags["image_fit"],
            stream=flags["stream"],
            **training,
        )
    emit(
        card,
        flags["as_json"],
        f"saved {card['model_path']}  ({card['parameters']:,} parameters, test accuracy {card['test_accuracy']:.2%})",
    )


@cli.command()
@click.argument("model", type=click.Path())
@click.option(
    "--recipe",
    "recipes",
    multiple=True,
    default=("int8",),
    show_default=True,
    help="Preset name or recipe .yaml (repeatable: several recipes, one report).",
)
@click.option("--data", default=None, help="Dataset (default: the one the model was trained on, else digits).")
@click.option("--data-dir", type=click.Path())
@click.option("--out", required=True, type=click.Path())
@click.option(
    "--set",
    "overrides",
    multiple=True,
    help="Override a recipe field: steps.0.params.calibration_samples=500 (every recipe) or "
    "RECIPE:steps.0.params.epochs=1 (that recipe only).",
)
@click.option(
    "--threads", default=1, show_default=True, type=click.IntRange(1, 64), help="Interpreter threads for latency."
)
@click.option(
    "--runs", "latency_runs", default=100, show_default=True, type=click.IntRange(5, 100000), help="Timed latency runs."
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--trust-code", is_flag=True, help="Allow Lambda layers (runs code stored in the model file).")
@click.option("--overwrite", is_flag=True)
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last finished step.")
@click.option("--dry-run", is_flag=True, help="Print the resolved recipes and exit.")
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--debug-quant",
    is_flag=True,
    help="Per-tensor int8 error (RMSE, RMSE/scale) from TFLite's quantization "
    "debugger, written to OUT/<recipe>/quant_debug.csv|json.",
)
@click.option(
    "--float-layers",
    default=None,
    metavar="NAMES|auto[:N]",
    help="int8 recipes: keep these layers (comma-separated) in float, or 'auto[:N]': when the accuracy "
    "gate fails, keep up to N (default 3) of the worst-quantized layers in float.",
)
@click.option(
    "--onnx-quant",
    type=click.Choice(["tflite", "ort", "both"]),
    default="tflite",
    show_default=True,
    help="int8 ONNX from the .tflite (tf2onnx QDQ), from ONNX Runtime's static quantization, or both "
    "(the better under the gates becomes model.onnx).",
)
@click.option(
    "--accuracy-budget",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=None,
    help="Choose the recipe: the cheapest int8 fix (plain, percentile ranges, equalization + bias correction, "
    "float layers, QAT) whose drop on the validation split is at most this (0.01 = 1 point); instead of --recipe.",
)
@stream_option
@distribute_options()
@data_options
@common
def compress(model, recipes, out, overrides, **o):
    """Apply recipes to MODEL, export TFLite + ONNX, validate each artifact, write report.json.

    --set RECIPE:steps.0.params.epochs=1 changes one recipe; --set steps.0.params.epochs=1 all of them."""
    data_args = {k: o[k] for k in ("data", "data_dir", "seed", "preprocess", "image_fit", "stream")}
    measuring = {k: o[k] for k in ("overwrite", "threads", "latency_runs", "trust_code")}
    if o["accuracy_budget"] is not None:
        flags = {"--set": bool(overrides), **{f"--{k.replace('_', '-')}": bool(o[k]) for k in BUDGET_CONFLICTS}}
        if click.get_current_context().get_parameter_source("recipes") == click.core.ParameterSource.COMMANDLINE:
            flags["--recipe"] = True
        return _to_budget(model, out, o["accuracy_budget"], o["as_json"], {**data_args, **measuring}, flags)
    from compressor.recipes import load_recipe
    from compressor.recipes.overrides import check_targets

    check_targets(list(overrides), {r: load_recipe(r).name for r in recipes})
    if o["dry_run"]:
        resolved = [load_recipe(r, list(overrides)).model_dump() for r in recipes]
        import yaml

        click.echo(json.dumps(resolved, indent=2) if o["as_json"] else yaml.safe_dump(resolved, sort_keys=False))
        return
    from compressor.pipeline.compress import compress as run
    from compressor.pipeline.layout import RunLayout
    from compressor.reports.summary import format_table

    quant = {k: o[k] for k in ("debug_quant", "float_layers", "onnx_quant")}
    with distributed(o["distribute"], o["replicas"], out, o["resume"], progress) as where:
        report = run(
            model,
            list(recipes),
            where,
            overrides=list(overrides),
            resume=o["resume"],
            progress=progress,
            **data_args,
            **measuring,
            **quant,
        )
    emit(report, o["as_json"], format_table(report) + f"\nreport: {RunLayout(out).report_json}")
    fail_unless(report["passed"])


BUDGET_CONFLICTS = ("resume", "dry_run", "debug_quant", "float_layers")


def _to_budget(model, out, budget, as_json, options, conflicts):
    """compress --accuracy-budget: the ladder of pipeline/budget.py instead of named recipes."""
    conflicts = [flag for flag, on in conflicts.items() if on]
    if conflicts:
        raise click.UsageError(f"--accuracy-budget chooses the recipe itself; drop {', '.join(conflicts)}")
    from compressor.pipeline.budget import compress_to_budget
    from compressor.pipeline.layout import RunLayout
    from compressor.reports.summary import format_table

    report = compress_to_budget(model, out, budget, progress=progress, **options)
    emit(report, as_json, format_table(report) + f"\nreport: {RunLayout(out).report_json}")
    fail_unless(report["passed"])


@cli.command()
@click.argument("artifact", type=click.Path())
@click.option("--data", default="digits", show_default=True)
@click.option("--data-dir", type=click.Path())
@click.option("--reference", type=click.Path(), help="Model (.tflite/.onnx/Keras) to measure agreement against.")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--runs", "latency_runs", default=100, show_default=True, type=click.IntRange(5, 100000))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--trust-code", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
@data_options
@stream_option
@common
def validate(
    artifact, data, data_dir, reference, threads, latency_runs, seed, trust_code, as_json, preprocess, image_fit, stream
):
    """Accuracy, agreement, latency and size of a .tflite or .onnx on its interpreter."""
    from compressor.pipeline.validate_artifact import format_validation, validate_artifact

    result = validate_artifact(
        artifact,
        data,
        data_dir=data_dir,
        reference=reference,
        threads=threads,
        latency_runs=latency_runs,
        seed=seed,
        trust_code=trust_code,
        preprocess=preprocess,
        image_fit=image_fit,
        stream=stream,
    )
    emit(result, as_json, format_validation(result))


@cli.command()
@click.option("--out", default="runs/demo", show_default=True, type=click.Path())
@click.option("--epochs", default=20, show_default=True, type=int)
@click.option("--overwrite", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
@common
def demo(out, epochs, overwrite, as_json):
    """Train digits_cnn on the embedded digits, compress with float16/dynamic/int8, print the table."""
    from compressor.pipeline.demo import run_demo
    from compressor.reports.summary import format_table

    report = run_demo(out, epochs=epochs, overwrite=overwrite, progress=progress)
    emit(report, as_json, format_table(report) + f"\nreport: {DemoLayout(out).compress.report_json}")
    fail_unless(report["passed"])
