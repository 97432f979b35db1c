"""The run folder of a tune/search: create it, resume it, or replace it (--overwrite)."""

from __future__ import annotations

import shutil
from pathlib import Path

from compressor.pipeline.layout import StudyLayout
from compressor.runtime.errors import UserError
from compressor.tuning.storage import check_url, default_url, redact

__all__ = ["prepare", "redact"]  # redact: tune/search print storage URLs through it


def prepare(out: str | Path, kind: str, storage: str | None, study: str, overwrite: bool) -> tuple[Path, str]:
    """Returns (run folder, storage URL). An existing run folder of the same kind is resumed.

    ``--overwrite`` clears the local folder (and with it the default SQLite study). A study in a
    shared database is never deleted: other machines may be working on it; a fresh shared
    study gets a new --study name instead.
    """
    if storage:
        check_url(storage)
    out = Path(out)
    layout = StudyLayout(out, kind)
    marker = layout.config
    if out.exists():
        if not out.is_dir():
            raise UserError(f"--out {out} is a file; give a folder for the run")
        if overwrite:
            shutil.rmtree(out)
        elif not marker.is_file() and any(out.iterdir()):
            raise UserError(
                f"output folder {out} already exists and is not a `compressor {kind}` run; "
                "choose another --out or pass --overwrite"
            )
    out.mkdir(parents=True, exist_ok=True)
    return out, storage or default_url(layout)
