"""The run folder of a tune/search: create it, resume it, or replace it (--overwrite).

The rules for --out are output_guard's (never an input, the current folder, a file, or a folder
this tool did not write); the folder is locked for the whole study (run_lock), so a second
`tune` on the same --out is refused at once instead of sharing its study and trial folders.
"""

from __future__ import annotations

import atexit
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from compressor.pipeline.layout import StudyLayout, mark_output
from compressor.pipeline.output_guard import check_output, out_path
from compressor.pipeline.run_lock import RunLock
from compressor.runtime.errors import UserError
from compressor.tuning.storage import check_url, default_url, open_storage, redact

__all__ = ["prepare", "release", "study_folder", "redact"]  # redact: tune/search print storage URLs through it

_HELD: dict[Path, RunLock] = {}  # run folders this process has prepared and not yet released


def prepare(
    out: str | Path, kind: str, storage: str | None, study: str, overwrite: bool, inputs: Iterable = ()
) -> tuple[Path, str]:
    """Returns (run folder, storage URL). An existing run folder of the same kind is resumed.

    ``--overwrite`` clears the local folder (and with it the default SQLite study), only if this
    tool wrote it. A study in a shared database is never deleted: other machines may be working
    on it; a fresh shared study gets a new --study name instead. ``inputs``: the command's model,
    data and recipe/space files, which --out must not be or hold. The folder stays locked until
    ``release(out)`` or the end of the process.
    """
    if storage:
        check_url(storage)
    out = out_path(out)
    check_output(out, list(inputs), overwrite, existing_ok=not overwrite)
    layout = StudyLayout(out, kind)
    if out.is_dir() and not overwrite and not layout.config.is_file() and any(out.iterdir()):
        raise UserError(
            f"output folder {out} already exists and is not a `compressor {kind}` run; "
            "choose another --out or pass --overwrite"
        )
    _lock(out)
    try:
        if storage and not _under(storage, out):
            open_storage(storage)  # a bad URL or an unreachable database is refused before the folder exists
        if overwrite and out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        mark_output(out, kind)
    except BaseException:
        release(out)
        raise
    return out, storage or default_url(layout)


def release(out: str | Path) -> None:
    """Unlock a run folder ``prepare`` locked (nothing if it holds no lock)."""
    lock = _HELD.pop(RunLock(out_path(out)).path, None)
    if lock is not None:
        lock.release()


@contextmanager
def study_folder(
    out: str | Path, kind: str, storage: str | None, study: str, overwrite: bool, inputs: Iterable = ()
) -> Iterator[tuple[Path, str]]:
    """``prepare`` for the length of a ``with`` block: the folder is unlocked when the study ends."""
    folder, url = prepare(out, kind, storage, study, overwrite, inputs)
    try:
        yield folder, url
    finally:
        release(folder)


def _lock(out: Path) -> None:
    lock = RunLock(out)
    if lock.path not in _HELD:  # the same process preparing its own folder again keeps its lock
        lock.acquire()
        if not _HELD:
            atexit.register(_release_all)
        _HELD[lock.path] = lock


def _release_all() -> None:
    """At exit: remove the lock files of studies never released (the OS frees the locks anyway)."""
    for lock in list(_HELD.values()):
        lock.release()
    _HELD.clear()


def _under(storage: str, out: Path) -> bool:
    """Whether a journal/SQLite storage file lives inside the run folder (created with it)."""
    path = storage.removeprefix("journal:").split(":///", 1)[-1]
    return Path(out).absolute() in Path(path).absolute().parents
