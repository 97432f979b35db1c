"""Writing a value at a dotted path of a raw recipe: ``steps.0.params.sparsity``.

Used by ``--set KEY.PATH=VALUE`` (recipes/schema.py) and by tuning trials, which write their
sampled values at the paths of the search space. Numeric parts index lists; a missing part is
created (a list when the next part is a number). Errors start with ``where``, the caller's name
for the path (``--set steps.0.x``, ``search space: params.steps.0.x``).

``--set RECIPE:KEY.PATH=VALUE`` applies to one recipe of the command line only: RECIPE is the
``--recipe`` value as given (preset name or file path), the file's stem, or the recipe's name.
Without ``RECIPE:`` an override applies to every recipe, as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compressor.runtime.errors import UserError
from compressor.runtime.safe_load import parse_yaml


def apply_override(raw: dict, item: str) -> None:
    """``steps.0.params.sparsity=0.8``: the value is parsed as YAML (numbers, lists, booleans)."""
    if "=" not in item:
        raise UserError(f"--set {item!r}: expected KEY.PATH=VALUE, e.g. steps.0.params.calibration_samples=500")
    key, value = item.split("=", 1)
    set_path(raw, key.strip(), parse_yaml(value, f"--set {key}"), f"--set {key}")


def set_path(raw: dict, path: str, value: Any, where: str) -> None:
    """``raw[...]`` at ``path`` = ``value``; intermediate mappings/lists are created as needed."""
    parts = path.split(".")
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise UserError(f"{where}: {part!r} is not a valid index (the list has {len(node)} items)")
            node = node[int(part)]
        elif isinstance(node, dict):
            node = node.setdefault(part, [] if parts[i + 1].isdigit() else {})
        else:
            raise UserError(f"{where}: {'.'.join(parts[:i])} is not a mapping or list")
    last = parts[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise UserError(f"{where}: {last!r} is not a valid index")
        node[int(last)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise UserError(f"{where}: {'.'.join(parts[:-1])} is not a mapping or list")


def split_target(item: str) -> tuple[str | None, str]:
    """``"qat-int8:steps.0.params.epochs=1"`` -> ("qat-int8", "steps.0.params.epochs=1"); a ``:`` in
    the value (``m_by_n=2:4``) is not a target."""
    key = item.split("=", 1)[0]
    if ":" not in key:
        return None, item
    target, rest = item.split(":", 1)
    return target.strip(), rest


def recipe_names(spec: str, name: str | None = None) -> set[str]:
    """The names an override may target a recipe by."""
    return {spec, Path(spec).stem, *([name] if name else [])}


def overrides_for(spec: str, name: str | None, overrides: list[str]) -> list[str]:
    """The overrides (target removed) that apply to the recipe ``spec`` called ``name``."""
    names = recipe_names(spec, name)
    out = []
    for item in overrides:
        target, rest = split_target(item)
        if target is None or target in names:
            out.append(rest)
    return out


def check_targets(overrides: list[str], recipes: dict[str, str | None]) -> None:
    """Every ``RECIPE:`` of ``overrides`` names one of ``recipes`` (spec -> recipe name): a misspelt
    target must fail, not silently leave the recipe the user meant to change as it was."""
    known = set().union(*(recipe_names(spec, name) for spec, name in recipes.items())) if recipes else set()
    for item in overrides:
        target, rest = split_target(item)
        if target is not None and target not in known:
            listed = ", ".join(recipes) or "none"
            raise UserError(
                f"--set {item!r}: no recipe {target!r} on this command line (recipes: {listed}); "
                f"write --set {rest.split('=', 1)[0]}=... to change every recipe"
            )
