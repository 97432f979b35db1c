"""What an --out may be: the one set of rules compress, train, tune/search and package follow.

A user's file is never lost to --out: an output folder is replaced (``--overwrite``) only when it
carries this tool's marker (layout.OUTPUT_MARKER) or is empty, and never when it is, holds, or
lies above an input of the command or the current folder. Everything else is a one-line refusal,
raised before any model is loaded.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from compressor.pipeline.layout import output_marker
from compressor.runtime.errors import UserError


def out_path(out: str | Path) -> Path:
    """``out`` as given, made absolute only when its last part names no folder (``.``, ``..``): the
    partial folder and the lock file are named after it."""
    out = Path(out)
    return Path(os.path.abspath(out)) if out.name in ("", ".", "..") else out


def check_output(out: Path, inputs: Iterable[str | Path | None], overwrite: bool, *, existing_ok: bool = False) -> None:
    """Refuse a folder --out this command must not create or replace.

    ``existing_ok``: an existing folder is the caller's to judge (tune/search resume a run).
    """
    _check_not_an_input(out, inputs)
    _check_parents(out)
    if not os.path.lexists(out):
        return
    if not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder; choose another --out")
    if existing_ok:
        return
    if not overwrite:
        raise UserError(f"output folder {out} already exists; choose another --out or pass --overwrite")
    check_replaceable(out)


def check_file_output(
    out: Path, inputs: Iterable[str | Path | None], overwrite: bool, replaceable: Callable[[Path], bool]
) -> None:
    """Refuse a file --out (``package``'s bundle) that is a folder or an input, or that exists and is
    not to be replaced: without --overwrite, or when ``replaceable`` says this tool did not write it."""
    _check_not_an_input(out, inputs)
    _check_parents(out)
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give the bundle's file name, e.g. {out / 'bundle.zip'}")
    if not os.path.lexists(out):
        return
    if not overwrite:
        raise UserError(f"{out} already exists; choose another --out or pass --overwrite")
    if not replaceable(out):
        raise UserError(f"--overwrite refused: {out} was not written by compressor; delete it or choose another --out")


def check_replaceable(folder: Path) -> None:
    """Only a folder this tool wrote (it carries the marker) or an empty one may be deleted."""
    if output_marker(folder).is_file() or not any(folder.iterdir()):
        return
    raise UserError(
        f"--overwrite refused: {folder} was not written by compressor (no {output_marker(folder).name}); "
        "delete it yourself or choose another --out"
    )


def _check_not_an_input(out: Path, inputs: Iterable[str | Path | None]) -> None:
    real = Path(out).resolve()
    cwd = Path.cwd().resolve()
    if real == cwd or real in cwd.parents:
        raise UserError(f"--out {out} is the current folder or holds it; choose a new folder for the output")
    for given in inputs:
        if given is None or not os.path.lexists(given):
            continue  # a data set name such as "digits", not a path
        source = Path(given).resolve()
        if source == real or real in source.parents:
            raise UserError(f"--out {out} is or holds an input of this command ({given}); choose another --out")


def _check_parents(out: Path) -> None:
    for parent in Path(out).absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"--out {out}: {parent} is a file, not a folder; choose another --out")
            return
