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
    fn = click.option("--debug", is_flag=True, expose_value=False, callback=_set_flag("debug"),
                      help="Show full tracebacks.")(fn)
    fn = click.option("-v", "--verbose", is_flag=True, expose_value=False, callback=_set_flag("verbose"),
                      help="Show TensorFlow's own log output.")(fn)
    fn = click.option("-q", "--quiet", is_flag=True, expose_value=False, callback=_set_flag("quiet"),
                      help="No progress lines.")(fn)
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
            click.echo(f"error: internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} "
                       "(rerun with --debug for the traceback, and please report it)", err=True)
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
@click.option("--model", "model_name", default="digits_cnn", show_default=True, help="Reference architecture (see `compressor models`).")
@click.option("--data", default="digits", show_default=True, help="digits | mnist | fashion_mnist | cifar10 | FILE.npz | IMAGE_FOLDER")
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
def train(model_name, data, data_dir, out, epochs, batch_size, learning_rate, optimizer, params, seed, overwrite, as_json):
    """Train a reference architecture and save it as a SavedModel."""
    from compressor.train import train as run

    card = run(model_name, out, data=data, data_dir=data_dir, epochs=epochs, batch_size=batch_size,
               learning_rate=learning_rate, optimizer=optimizer, seed=seed, model_params=_kv(params),
               overwrite=overwrite, progress=progress)
    _emit(card, as_json, f"saved {card['model_path']}  ({card['parameters']:,} parameters, "
                         f"test accuracy {card['test_accuracy']:.2%})")


@cli.command()
@click.argument("model", type=click.Path())
@click.option("--recipe", "recipes", multiple=True, default=("int8",), show_default=True,
              help="Preset name or recipe .yaml (repeatable: several recipes, one report).")
@click.option("--data", default=None, help="Dataset (default: the one the model was trained on, else digits).")
@click.option("--data-dir", type=click.Path())
@click.option("--out", required=True, type=click.Path())
@click.option("--set", "overrides", multiple=True, help="Override a recipe field: steps.0.params.calibration_samples=500")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1, 64), help="Interpreter threads for latency.")
@click.option("--runs", "latency_runs", default=100, show_default=True, type=click.IntRange(5, 100000), help="Timed latency runs.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--trust-code", is_flag=True, help="Allow Lambda layers (runs code stored in the model file).")
@click.option("--overwrite", is_flag=True)
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last finished step.")
@click.option("--dry-run", is_flag=True, help="Print the resolved recipes and exit.")
@click.option("--json", "as_json", is_flag=True)
@common
def compress(model, recipes, data, data_dir, out, overrides, threads, latency_runs, seed, trust_code, overwrite,
             resume, dry_run, as_json):
    """Apply recipes to MODEL, export TFLite + ONNX, validate each artifact, write report.json."""
    if dry_run:
        from compressor.recipes import load_recipe

        resolved = [load_recipe(r, list(overrides)).model_dump() for r in recipes]
        import yaml

        click.echo(json.dumps(resolved, indent=2) if as_json else yaml.safe_dump(resolved, sort_keys=False))
        return
    from compressor.pipeline import compress as run
    from compressor.report import format_table

    report = run(model, list(recipes), out, data=data, data_dir=data_dir, overrides=list(overrides),
                 overwrite=overwrite, resume=resume, threads=threads, latency_runs=latency_runs, seed=seed,
                 trust_code=trust_code, progress=progress)
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
    from compressor.validate_cmd import validate_artifact, format_validation

    result = validate_artifact(artifact, data, data_dir=data_dir, reference=reference, threads=threads,
                               latency_runs=latency_runs, seed=seed, trust_code=trust_code)
    _emit(result, as_json, format_validation(result))


@cli.command()
@click.option("--out", default="runs/demo", show_default=True, type=click.Path())
@click.option("--epochs", default=20, show_default=True, type=int)
@click.option("--overwrite", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
@common
def demo(out, epochs, overwrite, as_json):
    """Train digits_cnn on the embedded digits, compress with float16/dynamic/int8, print the table."""
    from compressor.demo import run_demo
    from compressor.report import format_table

    report = run_demo(out, epochs=epochs, overwrite=overwrite, progress=progress)
    _emit(report, as_json, format_table(report) + f"\nreport: {out}/compress/report.json")
    if not report["passed"]:
        sys.exit(1)


@cli.command("models")
@click.option("--json", "as_json", is_flag=True)
def models_cmd(as_json):
    """List the reference architectures and their arguments."""
    from compressor.models import MODELS

    data = {name: {"summary": s.summary, "input_shape": list(s.default_input_shape), "params": s.params}
            for name, s in MODELS.items()}
    text = "\n".join(f"{name:14s} {d['summary']}\n" + "".join(f"    {k}: {v}\n" for k, v in d["params"].items())
                     for name, d in data.items())
    _emit(data, as_json, text.rstrip())


@cli.command("recipes")
@click.option("--json", "as_json", is_flag=True)
def recipes_cmd(as_json):
    """List the built-in recipe presets and the step types with their parameters."""
    from compressor.recipes import load_recipe, preset_names, step_types

    presets = {name: load_recipe(name).description for name in preset_names()}
    steps = {name: s.describe() for name, s in step_types().items()}
    lines = ["presets:"] + [f"  {n:18s} {d}" for n, d in presets.items()] + ["", "step types:"]
    for name, s in steps.items():
        lines.append(f"  {name:18s} [{s['kind']}] {s['summary']}")
        lines += [f"      {k} = {v['default']!r}  {v['description']}" for k, v in s["params"].items()]
    _emit({"presets": presets, "steps": steps}, as_json, "\n".join(lines))


def main() -> None:
    cli(prog_name="compressor")


if __name__ == "__main__":
    main()
