"""The `compressor` click group and what every command shares: --debug/-v/--quiet, progress lines,
NAME=VALUE parsing, JSON-or-text output, one-line errors.

Imports no command module: the command modules import this one, and compressor.commands.cli imports
them all to register their commands.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

import click

from compressor import __version__
from compressor.runtime.errors import UserError
from compressor.runtime.exit_codes import GATE_FAILED, outcome
from compressor.runtime.safe_load import parse_yaml

state = {"debug": False, "quiet": False}


def _set_flag(name):
    def callback(ctx, param, value):
        if value:
            state[name] = True
            if name == "quiet":  # no progress bars either (datasets/reading.py)
                from compressor.datasets.reading import set_bars

                set_bars(False)
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
    if not state["quiet"]:
        click.echo(msg, err=True)


class Cli(click.Group):
    """Ends every command the same way: one line on stderr and the exit code of
    compressor.runtime.exit_codes (2 the user's input or environment, 130 interrupted, 70 a bug);
    --debug adds the traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except (Exception, KeyboardInterrupt) as e:
            code, line = outcome(e)
            if state["debug"]:
                traceback.print_exc()
            click.echo(line, err=True)
            ctx.exit(code)


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="compressor")
def cli():
    """Compress trained TensorFlow/Keras models for phones and edge boards, and prove it.

    \b
    compressor train --model digits_cnn --data digits --out runs/base
    compressor compress runs/base/model --recipe int8 --out runs/int8
    compressor validate runs/int8/int8/model.tflite --data digits
    """


def parse_params(items: tuple[str, ...]) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"--param {item!r}: expected NAME=VALUE, e.g. --param filters=16")
        k, v = item.split("=", 1)
        out[k.strip()] = parse_yaml(v, f"--param {k.strip()}")
    return out


def emit(result: dict, as_json: bool, text: str) -> None:
    click.echo(json.dumps(result, indent=2, default=str) if as_json else text)


def fail_unless(passed: bool) -> None:
    """Exit GATE_FAILED when a gate failed: the result was printed, but it is not shippable."""
    if not passed:
        sys.exit(GATE_FAILED)
