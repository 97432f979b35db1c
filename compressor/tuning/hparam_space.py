"""Search spaces in YAML: one distribution per hyperparameter, sampled through an Optuna trial.

Same style as recipe files (pydantic, unknown keys rejected, errors name the field's path):

    description: digits_cnn training
    epochs: 10
    params:
      learning_rate: {type: float, low: 1.0e-4, high: 1.0e-1, scale: log}
      batch_size:    {type: categorical, choices: [16, 32, 64, 128]}
      beta_1:        {type: float, low: 0.8, high: 0.999, scale: one_minus_log}
      model.dropout: {type: float, low: 0.0, high: 0.5}
      l2: 1.0e-5                     # a plain value is fixed, not searched

``scale: one_minus_log`` samples 1 - beta on a log scale: momentum-like values close to 1
(0.9, 0.99, 0.999) are a decade apart in 1 - beta, which is where their effect lives.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from compressor.runtime.errors import UserError
from compressor.tuning.space_file import read_space_file, validated


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Param(_Strict):
    """One searched hyperparameter."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    scale: Literal["linear", "log", "one_minus_log"] = "linear"
    step: float | None = Field(None, gt=0, description="grid step of int/float (linear scale only)")
    choices: list[Any] | None = None
    grid_points: int = Field(3, ge=2, le=50, description="values of a float/int range in a grid search")

    @model_validator(mode="after")
    def _consistent(self) -> Param:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty 'choices' list")
            return self
        if self.low is None or self.high is None or not self.low < self.high:
            raise ValueError("a float/int parameter needs low < high")
        if self.scale == "log" and self.low <= 0:
            raise ValueError("scale: log needs low > 0")
        if self.scale == "one_minus_log" and not (0 <= self.low < self.high < 1):
            raise ValueError("scale: one_minus_log needs 0 <= low < high < 1 (e.g. a momentum 0.8..0.999)")
        if self.step is not None and self.scale != "linear":
            raise ValueError("step is only allowed with scale: linear")
        return self


class Space(_Strict):
    """A named set of parameters; ``epochs`` is the training budget of one trial (pruning resource)."""

    description: str = ""
    epochs: int = Field(10, ge=1, le=10_000)
    params: dict[str, Param | float | int | str | bool | None | list] = Field(default_factory=dict)

    def searched(self) -> dict[str, Param]:
        return {k: v for k, v in self.params.items() if isinstance(v, Param)}

    def fixed(self) -> dict[str, Any]:
        return {k: v for k, v in self.params.items() if not isinstance(v, Param)}


def load_space(spec: str | Path, source: str | None = None) -> Space:
    """A built-in space name (compressor/tuning/spaces/NAME.yaml) or a YAML file path."""
    raw, path = read_space_file(spec)
    return space_from_dict(raw, source or str(path))


def space_from_dict(raw: Any, source: str = "search space") -> Space:
    if not isinstance(raw, dict):
        raise UserError(f"{source} must be a mapping with 'params'")
    params = raw.get("params") or {}
    if not isinstance(params, dict):
        raise UserError(f"{source}: params: must be a mapping of name -> distribution or value")
    # Plain mappings with a 'type' key are distributions; validate them one by one for exact paths.
    checked = {}
    for name, value in params.items():
        checked[name] = validated(Param, value, ("params", name), raw, source) if isinstance(value, dict) else value
    return validated(Space, {**raw, "params": checked}, (), raw, source)


def space_to_dict(space: Space) -> dict:
    return space.model_dump(exclude_none=True, exclude_defaults=False)


def optuna_name(name: str, p: Param) -> str:
    """The name Optuna stores: for one_minus_log it is the sampled quantity, 1 - value."""
    return f"1-{name}" if p.scale == "one_minus_log" else name


def sample(trial: Any, space: Space) -> dict[str, Any]:
    """Values for one trial (searched ones suggested by ``trial``, fixed ones as given)."""
    values = dict(space.fixed())
    for name, p in space.searched().items():
        values[name] = suggest(trial, name, p)
    return values


def suggest(trial: Any, name: str, p: Param) -> Any:
    """One value of ``p`` from ``trial``, stored under optuna_name(name, p)."""
    key = optuna_name(name, p)
    if p.type == "categorical":
        return trial.suggest_categorical(key, p.choices)
    if p.scale == "one_minus_log":
        return 1.0 - trial.suggest_float(key, 1.0 - p.high, 1.0 - p.low, log=True)
    if p.type == "int":
        return trial.suggest_int(key, int(p.low), int(p.high), step=int(p.step or 1), log=p.scale == "log")
    return trial.suggest_float(key, p.low, p.high, step=p.step, log=p.scale == "log")


def first_value(p: Param | Any) -> Any:
    """A representative value (first choice, or low) to check a space's fixed parts before searching."""
    if not isinstance(p, Param):
        return p
    if p.type == "categorical":
        return p.choices[0]
    return int(p.low) if p.type == "int" else (p.low if p.scale != "one_minus_log" else p.high)


def values_from_params(space: Space, params: dict[str, Any]) -> dict[str, Any]:
    """Invert ``optuna_name``: a finished trial's stored params back to the space's values."""
    values = dict(space.fixed())
    for name, p in space.searched().items():
        key = optuna_name(name, p)
        if key in params:
            values[name] = 1.0 - params[key] if p.scale == "one_minus_log" else params[key]
    return values


def grid(space: Space) -> dict[str, list]:
    """Grid points per Optuna name: categorical choices, or ``grid_points`` values spread on the scale."""
    out: dict[str, list] = {}
    for name, p in space.searched().items():
        key = optuna_name(name, p)
        if p.type == "categorical":
            out[key] = list(p.choices)
            continue
        lo, hi = (1.0 - p.high, 1.0 - p.low) if p.scale == "one_minus_log" else (p.low, p.high)
        n = p.grid_points
        if p.scale == "linear":
            pts = [lo + (hi - lo) * i / (n - 1) for i in range(n)]
        else:  # log and one_minus_log: geometric spacing
            pts = [math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * i / (n - 1)) for i in range(n)]
        pts = [lo] + [min(max(v, lo), hi) for v in pts[1:-1]] + [hi]  # exp(log(x)) may round outside
        if p.type == "int":
            pts = sorted({int(round(v)) for v in pts})
        out[key] = pts
    return out


def grid_size(space: Space) -> int:
    return math.prod(len(v) for v in grid(space).values()) if space.searched() else 1
