"""What a `compress` run was started from, so --resume never reuses steps trained from something else.

Recorded in the partial folder when the run starts: the sha256 of the model file (a folder hashed
file by file), the data (spec, data folder, seed) and each resolved recipe. A resume whose
fingerprint differs is refused, naming what changed; the per-step parameter check in chain.py
stays as a second line.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from compressor.pipeline.layout import RunLayout
from compressor.recipes import Recipe
from compressor.runtime.errors import UserError
from compressor.runtime.safe_load import load_json_file

CHUNK = 1 << 20
INPUTS = {
    "model": "the model file",
    "data": "the data (spec, --data-dir, --preprocess or --image-fit)",
    "seed": "the seed",
}


def fingerprint(
    model_file: Path,
    data_spec: str,
    data_dir: str | None,
    seed: int,
    recipes: list[Recipe],
    reading: dict | None = None,
) -> dict:
    """``reading``: how the data is read ({"preprocess": ..., "image_fit": ...}); a change reruns everything."""
    spec = Path(data_spec)
    return {
        "model": hash_path(model_file),
        "data": {
            "spec": str(spec.resolve()) if spec.exists() else data_spec,
            "data_dir": str(Path(data_dir).resolve()) if data_dir else None,
            **(reading or {}),
        },
        "seed": seed,
        "recipes": {r.name: _digest(json.dumps(r.model_dump(), sort_keys=True, default=str).encode()) for r in recipes},
    }


def hash_path(path: Path) -> str:
    """sha256 of a file, or of a folder's files (relative name and content, in sorted order)."""
    path = Path(path)
    if path.is_file():
        return _hash_file(path)
    total = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        total.update(f.relative_to(path).as_posix().encode() + b"\0" + _hash_file(f).encode())
    return total.hexdigest()


def check_resume(partial: RunLayout, current: dict) -> None:
    """Refuse to continue a partial run started from another model, data, seed or recipe."""
    if not partial.root.is_dir() or not RunLayout.finished_step_in(partial.root):
        return  # nothing would be reused
    if not partial.fingerprint.is_file():
        raise UserError(
            f"--resume refused: {partial.root} does not record what it was started from; rerun without --resume"
        )
    try:
        recorded = load_json_file(partial.fingerprint, "the resume fingerprint")
    except (OSError, UserError):  # unreadable: nothing matches, so the resume is refused below
        recorded = {}
    changed = _changes(recorded, current)
    if changed:
        raise UserError(
            f"--resume refused: {', '.join(changed)} changed since {partial.root} was started; "
            "rerun with the same inputs, or without --resume to start over"
        )


def _changes(recorded: dict, current: dict) -> list[str]:
    changed = [name for key, name in INPUTS.items() if recorded.get(key) != current[key]]
    before, now = recorded.get("recipes") or {}, current["recipes"]
    changed += [f"recipe {name}" for name in now if name in before and before[name] != now[name]]
    if set(before) != set(now):
        changed.append(f"the recipe list ({', '.join(sorted(before)) or 'none'} -> {', '.join(sorted(now))})")
    return changed


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
