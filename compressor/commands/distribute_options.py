"""--distribute / --replicas for the commands that train (train, compress, tune), and where each
process of a distributed job writes. The strategy itself lives in recipes/distribute.py."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from compressor.recipes.distribute import MODES


def distribute_options(modes: tuple[str, ...] = MODES):
    def decorate(fn):
        fn = click.option(
            "--replicas",
            default=None,
            type=click.IntRange(1, 64),
            help="--distribute mirrored: devices to use (default every GPU; on a CPU-only machine, "
            "N logical CPU devices).",
        )(fn)
        return click.option(
            "--distribute",
            default="none",
            show_default=True,
            type=click.Choice(list(modes)),
            help="Train with tf.distribute: mirrored (this machine's devices) or multi-worker (TF_CONFIG; "
            "every machine runs the same command, the chief writes OUT). The batch size is the global batch.",
        )(fn)

    return decorate


@contextmanager
def distributed(mode: str, replicas: int | None, out: str, resume: bool, progress) -> Iterator[Path]:
    """Set up the strategy (before any TensorFlow work) and yield the folder this process writes."""
    from compressor.recipes import distribute

    distribute.setup(mode, replicas)
    with distribute.output_folder(Path(out), resume) as where:
        if distribute.active():
            role = "chief" if distribute.is_chief() else f"not the chief: writes {where}, removed at the end"
            progress(f"distributed: {mode}, {distribute.replicas()} replica(s) in sync; this process is {role}")
        yield where
