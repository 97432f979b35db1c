"""Command line: parse, build the config, call one library function, print. No logic here.

The group and its shared options live in compressor.commands.app; each command module registers its
commands on it when imported. This module imports them all and is the console script's entry point.
"""

from __future__ import annotations

from compressor.commands import flow, listings, package, report_inspect, tune_search  # noqa: F401  (registers them)
from compressor.commands.app import cli

__all__ = ["cli", "main"]


def main() -> None:
    cli(prog_name="compressor")
