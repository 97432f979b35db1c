"""Reading a space file (``compressor tune --space``, ``compressor search --space``) the way recipe files
are read: a YAML path or a built-in name, parsed, then checked by a strict pydantic schema.

Every error the user can cause is one UserError line naming the file; schema errors also name the
field's path and suggest the closest key for a typo (``params.lr.hgih: unknown key 'hgih'; did you
mean 'high'?``) through the recipe schema's own ``validated``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compressor.recipes.schema import _validated as validated
from compressor.runtime.errors import UserError
from compressor.runtime.safe_load import load_yaml_file

__all__ = ["SPACES_DIR", "builtin_names", "read_space_file", "validated"]

SPACES_DIR = Path(__file__).parent / "spaces"


def builtin_names() -> list[str]:
    return sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))


def read_space_file(spec: str | Path) -> tuple[Any, Path]:
    """(parsed YAML, its path) of an existing file ``spec``, else of the built-in SPACES_DIR/SPEC.yaml."""
    path = Path(spec)
    if not path.is_file():
        builtin = SPACES_DIR / f"{spec}.yaml"
        if not builtin.is_file():
            raise UserError(
                f"search space {spec} is neither a YAML file nor a built-in space ({', '.join(builtin_names())})"
            )
        path = builtin
    # Bounded like a recipe: a space is user input (size, aliases, nesting, encoding, duplicate keys).
    return load_yaml_file(path, "search space"), path
