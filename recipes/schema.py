"""The recipe file: an ordered list of steps, export targets and validation gates, in one schema.

Presets ship as YAML under recipes/presets/; a user's own file has the same shape. Every
error names the field by its path (``steps[1].params.sparsity: ...``) so a typo is found at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from compressor.recipes.base import conversion_names, get_step
from compressor.recipes.overrides import apply_override, overrides_for
from compressor.runtime.errors import UserError
from compressor.runtime.gates import Gates as RuntimeGates
from compressor.runtime.safe_load import parse_yaml, read_text
from compressor.runtime.suggest import did_you_mean, unknown_name_message

PRESETS_DIR = Path(__file__).parent / "presets"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StepSpec(_Strict):
    """One step. ``params`` is the mapping as read; validate_recipe replaces it with the step type's
    typed parameters (a StepParams), which then travel unchanged to the code that uses them."""

    type: str
    params: Any = Field(default_factory=dict)


class ExportSpec(_Strict):
    formats: list[Literal["tflite", "onnx"]] = Field(default_factory=lambda: ["tflite", "onnx"])
    opset: int = Field(17, ge=13, le=21, description="ONNX opset")


class Gates(_Strict):
    max_accuracy_drop: float | None = Field(None, ge=0, le=1, description="fraction, e.g. 0.01 = 1 point")
    min_accuracy: float | None = Field(None, ge=0, le=1)
    max_size_kb: float | None = Field(None, gt=0)
    max_arena_kb: float | None = Field(
        None, gt=0, description="tensor arena on TFLite Micro (measured + 10%); a .tflite that is not full-int8 fails"
    )

    def to_runtime(self) -> RuntimeGates:
        """The limits the one gate check (runtime/gates.py) takes; the arena is measured on the host only."""
        return RuntimeGates(**self.model_dump(exclude={"max_arena_kb"}))


class Recipe(_Strict):
    name: str
    description: str = ""
    steps: list[StepSpec] = Field(min_length=1)
    export: ExportSpec = Field(default_factory=ExportSpec)
    gates: Gates = Field(default_factory=Gates)


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def load_recipe(spec: str, overrides: list[str] | None = None) -> Recipe:
    """Resolve a preset name or a YAML path, apply ``key.path=value`` overrides, validate."""
    path = Path(spec)
    if spec.endswith((".yaml", ".yml")) or path.is_file():
        if not path.is_file():
            raise UserError(f"recipe file {spec} does not exist")
        source = str(path)
    elif (PRESETS_DIR / f"{spec}.yaml").is_file():
        path, source = PRESETS_DIR / f"{spec}.yaml", f"preset {spec}"
    else:
        raise UserError(unknown_name_message("recipe", spec, preset_names()) + " or a .yaml recipe file")
    # Bounded: a recipe is user input (size, aliases, nesting, encoding, duplicate keys).
    raw = parse_yaml(read_text(path, "recipe file"), source)
    if not isinstance(raw, dict):
        raise UserError(f"{source} must be a mapping with 'name' and 'steps'")
    raw.setdefault("name", path.stem)
    for item in overrides_for(spec, raw.get("name"), overrides or []):  # RECIPE:path=value targets one recipe
        apply_override(raw, item)
    return validate_recipe(raw, source)


def validate_recipe(raw: dict, source: str = "recipe") -> Recipe:
    """Check the structure, then each step's type and params; the first error names its path."""
    recipe = _validated(Recipe, raw, (), raw, source)
    steps = []
    for i, step in enumerate(recipe.steps):
        try:
            step_type = get_step(step.type)
        except UserError as e:
            raise UserError(f"{source}: steps[{i}].type: {e}") from None
        params = _validated(step_type.params, step.params, ("steps", i, "params"), raw, source)
        steps.append(StepSpec(type=step.type, params=params))
    kinds = [get_step(s.type).kind for s in steps]
    if kinds[-1] != "convert":
        raise UserError(
            f"{source}: steps[{len(steps) - 1}].type: the last step must be a post-training "
            f"conversion ({', '.join(conversion_names())})"
        )
    if "convert" in kinds[:-1]:
        i = kinds.index("convert")
        raise UserError(f"{source}: steps[{i}].type: only the last step may be a post-training conversion")
    if steps[-1].type == "int16x8" and "onnx" in recipe.export.formats:
        raise UserError(
            f"{source}: export.formats: int16x8 cannot be exported to ONNX (ONNX Runtime has no "
            "int16 QDQ kernels at the opsets tf2onnx emits); use formats: [tflite]"
        )
    return recipe.model_copy(update={"steps": steps})


def _validated(model: type[BaseModel], data: Any, prefix: tuple, raw: dict, source: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = prefix + tuple(err["loc"])
        msg = err["msg"].removeprefix("Value error, ").replace("Input should be", "must be")
        if err["type"] == "extra_forbidden":
            msg = _extra_key_message(model, err["loc"])
        raise UserError(f"{source}: {_path(loc)}: {msg}") from None


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _extra_key_message(model: type[BaseModel], loc: tuple) -> str:
    """'unknown key 'sparsty'; did you mean 'sparsity'?' using the schema at that location."""
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        ann = model.model_fields[part].annotation
        args = [a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not args:
            break
        model = args[0]
    valid = sorted(model.model_fields)
    return f"unknown key {loc[-1]!r}{did_you_mean(str(loc[-1]), valid)} (valid: {', '.join(valid)})"
