"""Atomic file output: write to a temporary sibling, then rename, so no reader ever sees half a file."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# mkstemp/mkdtemp create 0600/0700 entries; a finished output gets the permissions any other
# file the user creates gets (0666/0777 less the umask), or a bundle could not be shared.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def write_bytes(path: str | os.PathLike, data: bytes, mode: int | None = None, exclusive: bool = False) -> Path:
    """``mode``: the finished file's permissions (default 0666 less the umask; 0600 for a secret).
    ``exclusive``: never replace an existing file (FileExistsError), still atomically: a hard link
    of the finished temporary file, which fails if ``path`` exists."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK if mode is None else mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if exclusive:
            os.link(tmp, path)
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    # numpy scalars and arrays end up in reports; avoid importing numpy here just for isinstance.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")


@contextmanager
def output_dir(
    path: str | os.PathLike,
    overwrite: bool = False,
    partial: str | os.PathLike | None = None,
    resume: bool = False,
    keep_partial: Callable[[Path], bool] = lambda folder: False,
) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; on success it replaces ``path`` in one rename.

    By default the folder is a fresh temporary one, removed on any error, so a failed run leaves
    nothing half-written. A resumable run names its own ``partial`` folder instead: with
    ``resume`` an existing one is continued, and on an error it is kept when ``keep_partial``
    says it holds finished work.
    """
    from .errors import UserError

    path = Path(path)
    if path.exists() and not overwrite:
        raise UserError(f"output folder {path} already exists; choose another --out or pass --overwrite")
    path.parent.mkdir(parents=True, exist_ok=True)
    if partial is None:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
        tmp.chmod(0o777 & ~_UMASK)
    else:
        tmp = Path(partial)
        if os.path.lexists(tmp) and not resume:
            _remove(tmp)
        tmp.mkdir(parents=True, exist_ok=True)
    try:
        yield tmp
    except BaseException:
        if partial is None or not keep_partial(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    _replace_dir(tmp, path)


def _replace_dir(tmp: Path, path: Path) -> None:
    """Move ``tmp`` to ``path``; what ``path`` was (folder, file or link) is set aside, then removed,
    or put back if the move fails, so nothing named ``.NAME.old`` is ever left behind."""
    if not os.path.lexists(path):
        os.replace(tmp, path)
        return
    old = path.with_name(f".{path.name}.old")
    _remove(old)
    os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.replace(old, path)
        raise
    _remove(old, strict=False)  # the new output is in place: a leftover must not fail the run


def _remove(path: Path, strict: bool = True) -> None:
    """Delete a folder tree, or a file or symbolic link (never following the link)."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        if strict:
            raise
