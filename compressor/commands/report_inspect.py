"""`compressor report` and `compressor inspect`: read a run's JSON or an artifact file, write or print what is in it."""

from __future__ import annotations

import click

from compressor.commands.app import cli, common, emit


@cli.command("report")
@click.argument("run_dir", type=click.Path())
@click.option("--json", "as_json", is_flag=True)
@common
def report_cmd(run_dir, as_json):
    """Write RUN_DIR/report.html (plots embedded) from a compress, tune or search run's JSON."""
    from compressor.reports.html import write_html

    path = write_html(run_dir)
    emit({"html": str(path)}, as_json, f"report: {path}")


@cli.command("inspect")
@click.argument("file", type=click.Path())
@click.option("--json", "as_json", is_flag=True)
@common
def inspect_cmd(file, as_json):
    """What is inside a .tflite or .onnx: I/O and quantization, ops, bytes, sparsity, clustering, metadata."""
    from compressor.inspection.inspect import format_inspection, inspect_file

    info = inspect_file(file)
    emit(info, as_json, format_inspection(info))
