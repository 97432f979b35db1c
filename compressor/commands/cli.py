"""Command line: parse, build the config, call one library function, print. No logic here.

Heavy modules (TensorFlow via the shim, the pipeline) are imported inside the commands, so
`compressor --help` starts in a fraction of a second.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

import click

from compressor import __version__
from compressor.runtime.errors import UserError

_state = {"debug": False, "quiet": False}


def _set_flag(name):
    def callback(ctx, param, value):
        if value:
            _state[name] = True
            if name == "verbose":
                from compressor.runtime.quiet import set_verbose

                set_verbose(True)
                os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        return value

    return callback


def common(fn):
    """--debug / -v / --quiet on every command (users type them after the subcommand)."""
    fn = click.option(
        "--debug", is_flag=True, expose_value=False, callback=_set_flag("debug"), help="Show full tracebacks."
    )(fn)
    fn = click.option(
        "-v",
        "--verbose",
        is_flag=True,
        expose_value=False,
        callback=_set_flag("verbose"),
        help="Show TensorFlow's own log output.",
    )(fn)
    fn = click.option(
        "-q", "--quiet", is_flag=True, expose_value=False, callback=_set_flag("quiet"), help="No progress lines."
    )(fn)
    return fn


def progress(msg: str) -> None:
    if not _state["quiet"]:
        click.echo(msg, err=True)


class Cli(click.Group):
    """Turns a UserError into one line and exit code 2; anything else into exit code 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as e:
            if _state["debug"]:
                traceback.print_exc()
            click.echo(f"error: {e}", err=True)
            ctx.exit(2)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted; nothing was written to the output folder", err=True)
            ctx.exit(130)
        except Exception as e:
            if _state["debug"]:
                traceback.print_exc()
            click.echo(
                f"error: internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} "
                "(rerun with --debug for the traceback, and please report it)",
                err=True,
            )
            ctx.exit(1)


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="compressor")
def cli():
    """Compress trained TensorFlow/Keras models for phones and edge boards, and prove it.

    \b
    compressor train --model digits_cnn --data digits --out runs/base
    compressor compress runs/base/model --recipe int8 --out runs/int8
    compressor validate runs/int8/int8/model.tflite --data digits
    """


def _kv(items: tuple[str, ...]) -> dict:
    import yaml

    out = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"--param {item!r}: expected NAME=VALUE, e.g. --param filters=16")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def _emit(result: dict, as_json: bool, text: str) -> None:
    click.echo(json.dumps(result, indent=2, default=str) if as_json else text)


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
@click.option("--optimizer", default="adam", show_default=True, type=click.Choice(["adam", "sgd", "rmsprop"]))
@click.option("--param", "params", multiple=True, help="Architecture argument NAME=VALUE (repeatable).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@common
def train(
    model_name, data, data_dir, out, epochs, batch_size, learning_rate, optimizer, params, seed, overwrite, as_json
):
    """Train a reference architecture and save it as a SavedModel."""
    from compressor.pipeline.train import train as run

    card = run(
        model_name,
        out,
        data=data,
        data_dir=data_dir,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        optimizer=optimizer,
        seed=seed,
        model_params=_kv(params),
        overwrite=overwrite,
        progress=progress,
    )
    _emit(
        card,
        as_json,
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
    "--set", "overrides", multiple=True, help="Override a recipe field: steps.0.params.calibration_samples=500"
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
@common
def compress(
    model,
    recipes,
    data,
    data_dir,
    out,
    overrides,
    threads,
    latency_runs,
    seed,
    trust_code,
    overwrite,
    resume,
    dry_run,
    as_json,
    debug_quant,
    float_layers,
    onnx_quant,
):
    """Apply recipes to MODEL, export TFLite + ONNX, validate each artifact, write report.json."""
    if dry_run:
        from compressor.recipes import load_recipe

        resolved = [load_recipe(r, list(overrides)).model_dump() for r in recipes]
        import yaml

        click.echo(json.dumps(resolved, indent=2) if as_json else yaml.safe_dump(resolved, sort_keys=False))
        return
    from compressor.pipeline.compress import compress as run
    from compressor.reports.summary import format_table

    report = run(
        model,
        list(recipes),
        out,
        data=data,
        data_dir=data_dir,
        overrides=list(overrides),
        overwrite=overwrite,
        resume=resume,
        threads=threads,
        latency_runs=latency_runs,
        seed=seed,
        trust_code=trust_code,
        progress=progress,
        debug_quant=debug_quant,
        float_layers=float_layers,
        onnx_quant=onnx_quant,
    )
    _emit(report, as_json, format_table(report) + f"\nreport: {out}/report.json")
    if not report["passed"]:
        sys.exit(1)


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
@common
def validate(artifact, data, data_dir, reference, threads, latency_runs, seed, trust_code, as_json):
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
    )
    _emit(result, as_json, format_validation(result))


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
    _emit(report, as_json, format_table(report) + f"\nreport: {out}/compress/report.json")
    if not report["passed"]:
        sys.exit(1)


@cli.command("models")
@click.option("--json", "as_json", is_flag=True)
def models_cmd(as_json):
    """List the reference architectures and their arguments."""
    from compressor.models import MODELS

    data = {
        name: {"summary": s.summary, "input_shape": list(s.default_input_shape), "params": s.params}
        for name, s in MODELS.items()
    }
    text = "\n".join(
        f"{name:14s} {d['summary']}\n" + "".join(f"    {k}: {v}\n" for k, v in d["params"].items())
        for name, d in data.items()
    )
    _emit(data, as_json, text.rstrip())


@cli.command("recipes")
@click.option("--json", "as_json", is_flag=True)
def recipes_cmd(as_json):
    """List the built-in recipe presets and the step types with their parameters."""
    from compressor.recipes import load_recipe, preset_names, step_types
    from compressor.recipes.finetune import FineTuneParams

    presets = {name: load_recipe(name).description for name in preset_names()}
    steps = {name: s.describe() for name, s in step_types().items()}
    shared = set(FineTuneParams.model_fields)
    lines = ["presets:"] + [f"  {n:18s} {d}" for n, d in presets.items()] + ["", "step types:"]
    for name, s in steps.items():
        lines.append(f"  {name:18s} [{s['kind']}] {s['summary']}")
        lines += [
            f"      {k} = {v['default']!r}  {v['description']}".rstrip()
            for k, v in s["params"].items()
            if k not in shared or v["default"] != FineTuneParams.model_fields[k].default
        ]
    lines += ["", "fine-tuning options of every [train] step (defaults; a step's own defaults are listed above):"]
    lines += [
        f"      {k} = {f.default!r}  {f.description or ''}".rstrip() for k, f in FineTuneParams.model_fields.items()
    ]
    _emit({"presets": presets, "steps": steps}, as_json, "\n".join(lines))


@cli.command("package")
@click.argument("run_dir", type=click.Path())
@click.option("--out", required=True, type=click.Path(), help="Bundle .zip to write.")
@click.option(
    "--artifact", default=None, help="Recipe artifact to ship (default: the smallest TFLite whose gates passed)."
)
@click.option(
    "--samples", default=16, show_default=True, type=click.IntRange(1, 10000), help="Self-test samples in the bundle."
)
@click.option("--name", default=None, help="Model name in the manifest (default: the trained architecture's name).")
@click.option("--version", "model_version", default="1", show_default=True, help="Model version in the manifest.")
@click.option("--data", default=None, help="Data set the run was compressed with (default: the model's training data).")
@click.option("--data-dir", type=click.Path())
@click.option("--seed", default=0, show_default=True, type=int, help="The seed the run was compressed with.")
@click.option("--overwrite", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
@common
def package_cmd(run_dir, out, artifact, samples, name, model_version, data, data_dir, seed, overwrite, as_json):
    """Bundle a compress run for mobile apps: model(s), labels, manifest, self-test samples."""
    from compressor.bundle.package import package

    result = package(
        run_dir,
        out,
        artifact=artifact,
        samples=samples,
        name=name,
        version=model_version,
        data=data,
        data_dir=data_dir,
        seed=seed,
        overwrite=overwrite,
        progress=progress,
    )
    files = ", ".join(result["manifest"]["files"])
    _emit(
        result,
        as_json,
        f"wrote {out}: {result['artifact']} ({result['reason']}); files: {files}, manifest.json\n"
        f"check it on the device: compressor-runtime verify {out} && compressor-runtime validate {out}",
    )


# tune, search, report and inspect live in cli_tools.py; importing it registers them on `cli`.
from compressor.commands import tools as cli_tools  # noqa: E402,F401


def main() -> None:
    cli(prog_name="compressor")
