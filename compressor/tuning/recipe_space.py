"""The recipe search space of `compressor search`: which steps may appear, with which parameters.

    description: what the search may combine
    steps:                          # candidate training steps, in chain order
      - type: prune
        optional: true              # the search decides whether the step is in the recipe
        params: {epochs: 4}         # fixed values and distributions (space.Param), shared by variants
        variants:                   # optional: one is chosen per trial (conditional parameters)
          unstructured: {sparsity: {type: float, low: 0.3, high: 0.85}}
          "2:4": {sparsity: 0.5, m_by_n: "2:4"}
      - type: qat
        requires: [int8]            # conversions allowed after this step
        excludes: [float_fallback]  # conversion params that make no sense after it (not sampled)
    convert:                        # the final post-training conversion: one per trial
      int8: {float_fallback: {type: int, low: 0, high: 2}}
      dynamic: {}

``float_fallback: N`` on int8 keeps the N layers with the largest int8 error in float (ranked
once on the input model by the quantization debugger) -- the step's ``float_layers``.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from compressor.runtime.errors import UserError
from compressor.tuning.hparam_space import Param, _Strict, first_value, suggest
from compressor.tuning.space_file import SPACES_DIR, read_space_file, validated

Params = dict[str, Param | float | int | str | bool | None | list]


class StepBlock(_Strict):
    type: str
    optional: bool = True
    params: Params = Field(default_factory=dict)
    variants: dict[str, Params] | None = None
    requires: list[str] | None = Field(None, description="conversions allowed after this step")
    excludes: list[str] = Field(default_factory=list, description="conversion params not searched after this step")


class SearchSpace(_Strict):
    description: str = ""
    steps: list[StepBlock] = Field(default_factory=list)
    convert: dict[str, Params] = Field(min_length=1)
    export: dict[str, Any] = Field(default_factory=lambda: {"formats": ["tflite"]})


def load_search_space(spec: str | None) -> SearchSpace:
    raw, path = read_space_file(spec or SPACES_DIR / "recipes.yaml")
    return search_space_from_dict(raw, str(path))


def search_space_from_dict(raw: Any, source: str = "search space") -> SearchSpace:
    if not isinstance(raw, dict):
        raise UserError(f"{source} must be a mapping with 'steps' and 'convert'")
    space = validated(SearchSpace, _with_params(raw), (), raw, source)
    check(space, source)
    return space


def _with_params(raw: dict) -> dict:
    """Mappings with a 'type' key inside params become Param objects (validated with their path)."""

    def conv(params: Any, path: tuple) -> Any:
        if not isinstance(params, dict):
            return params
        return {
            k: validated(Param, v, path + (k,), raw, "search space") if isinstance(v, dict) and "type" in v else v
            for k, v in params.items()
        }

    out = dict(raw)
    steps = raw.get("steps") or []
    if isinstance(steps, list):  # anything else is left for the schema to name
        out["steps"] = [
            {
                **b,
                "params": conv(b.get("params", {}), ("steps", i, "params")),
                **(
                    {"variants": {n: conv(v, ("steps", i, "variants", n)) for n, v in b["variants"].items()}}
                    if isinstance(b.get("variants"), dict)
                    else {}
                ),
            }
            if isinstance(b, dict)
            else b
            for i, b in enumerate(steps)
        ]
    if isinstance(raw.get("convert"), dict):
        out["convert"] = {k: conv(v or {}, ("convert", k)) for k, v in raw["convert"].items()}
    return out


def check(space: SearchSpace, source: str) -> None:
    """Every block with its first values must make a valid recipe: typos fail now, not in trial 17."""
    from compressor.recipes import get_step, validate_recipe

    types = [b.type for b in space.steps]
    if len(set(types)) != len(types):
        raise UserError(f"{source}: steps: each step type may appear once (got {', '.join(types)})")
    for name in space.convert:
        if get_step(name).kind != "convert":
            raise UserError(f"{source}: convert.{name}: not a post-training conversion step")
    conv_name = next(iter(space.convert))
    conv = {"type": conv_name, "params": fixed_params(space.convert[conv_name])}
    for i, block in enumerate(space.steps):
        if get_step(block.type).kind != "train":
            raise UserError(f"{source}: steps[{i}].type: {block.type} is a conversion; list it under convert")
        for variant in block.variants or {None: {}}:
            params = {**fixed_params(block.params), **fixed_params((block.variants or {}).get(variant, {}))}
            validate_recipe(
                {"name": "check", "steps": [{"type": block.type, "params": params}, conv], "export": space.export},
                f"{source}: steps[{i}]" + (f" variant {variant}" if variant else ""),
            )


def fixed_params(params: Params) -> dict:
    return {k: first_value(v) for k, v in params.items() if k != "float_fallback"}


def sample_recipe(trial: Any, space: SearchSpace) -> tuple[dict, str]:
    """A recipe dict for this trial and a short label like 'prune(s=0.62)+qat+int8'."""
    steps, parts = [], []
    allowed = list(space.convert)
    excluded: set[str] = set()
    for block in space.steps:
        if block.optional and not trial.suggest_categorical(block.type, [True, False]):
            continue
        params = _suggest_all(trial, block.type, block.params)
        tag = ""
        if block.variants:
            variant = trial.suggest_categorical(f"{block.type}.variant", list(block.variants))
            params.update(_suggest_all(trial, f"{block.type}.{variant}", block.variants[variant]))
            tag = variant
        if block.requires:
            allowed = [c for c in allowed if c in block.requires]
        excluded.update(block.excludes)
        steps.append({"type": block.type, "params": params})
        parts.append(_label(block.type, tag, params))
    if not allowed:
        raise UserError("the chosen steps allow no conversion in common (check 'requires' in the space)")
    key = "convert" if allowed == list(space.convert) else f"convert[{'|'.join(allowed)}]"
    conv = allowed[0] if len(allowed) == 1 else trial.suggest_categorical(key, allowed)
    cparams = _suggest_all(trial, conv, {k: v for k, v in space.convert[conv].items() if k not in excluded})
    steps.append({"type": conv, "params": cparams})
    parts.append(_label(conv, "", cparams))
    return {"name": "search", "steps": steps, "export": dict(space.export)}, "+".join(parts)


def _suggest_all(trial: Any, prefix: str, params: Params) -> dict:
    return {k: suggest(trial, f"{prefix}.{k}", v) if isinstance(v, Param) else v for k, v in params.items()}


_SHORT = {
    "sparsity": "s",
    "clusters": "k",
    "width": "w",
    "float_fallback": "fp",
    "learning_rate": "lr",
    "target": "macs",
}


def _label(step: str, tag: str, params: dict) -> str:
    shown = [
        f"{_SHORT[k]}={v:.2g}" if isinstance(v, float) else f"{_SHORT[k]}={v}"
        for k, v in params.items()
        if k in _SHORT and k != "learning_rate" and v
    ]
    inner = ",".join(([tag] if tag and tag != "unstructured" else []) + shown)
    return f"{step}({inner})" if inner else step
