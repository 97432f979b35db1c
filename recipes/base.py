"""What a recipe step is, and the registry that finds one by its stable name.

A step has a frozen parameter schema (pydantic, unknown keys rejected) and one entry point,
``apply(model, data, params, workdir)``. Training steps take and return a Keras model;
conversion steps (post-training quantization) end a chain and return the .tflite they wrote.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from compressor.runtime.errors import UserError
from compressor.runtime.suggest import unknown_name_message


class StepParams(BaseModel):
    """Base of every step's parameters: frozen, and a misspelt key is an error, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class StepType:
    name: str
    summary: str
    params: type[StepParams]
    kind: Literal["train", "convert"]
    # Training steps transform a Keras model here; conversion steps (None) are carried out by the
    # exporter (compressor.export.conversions), since converting to TFLite is the exporter's job.
    apply: Callable[..., Any] | None

    def describe(self) -> dict:
        fields = {}
        for key, info in self.params.model_fields.items():
            default = None if info.is_required() else info.get_default(call_default_factory=True)
            fields[key] = {"default": default, "description": info.description or ""}
        return {"name": self.name, "kind": self.kind, "summary": self.summary, "params": fields}


_REGISTRY: dict[str, StepType] = {}
_progress: list[Callable[[str], None]] = [lambda msg: None]


def set_progress(fn: Callable[[str], None]) -> None:
    """Where steps report progress lines (epochs); the pipeline points it at the CLI's printer."""
    _progress[0] = fn


def progress(msg: str) -> None:
    _progress[0](msg)


EpochHook = Callable[[int, int, dict], None]
_epoch_hook: list[EpochHook | None] = [None]


def set_epoch_hook(fn: EpochHook | None) -> None:
    """Called as ``fn(epoch, epochs, logs)`` at every epoch end of every fine-tuning fit (epoch is
    0-based within that fit, epochs its configured count); None removes it. What it raises ends the
    fit and the chain: `compressor tune` stops unpromising trials this way (Optuna pruning).
    """
    _epoch_hook[0] = fn


def epoch_hook() -> EpochHook | None:
    return _epoch_hook[0]


def register(name: str, summary: str, params: type[StepParams], kind: Literal["train", "convert"] = "train"):
    """Decorator: register ``apply`` under a stable name (names are part of recipe files: never rename)."""

    def wrap(apply: Callable[..., Any]) -> Callable[..., Any]:
        _add(StepType(name, summary, params, kind, apply))
        return apply

    return wrap


def register_conversion(name: str, summary: str, params: type[StepParams]) -> None:
    """Declare a post-training conversion step: its parameters here, its conversion in the exporter."""
    _add(StepType(name, summary, params, "convert", None))


def _add(step: StepType) -> None:
    if step.name in _REGISTRY:
        raise RuntimeError(f"step type {step.name!r} registered twice")
    _REGISTRY[step.name] = step


def get_step(name: str) -> StepType:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UserError(unknown_name_message("step type", name, _REGISTRY)) from None


def step_types() -> dict[str, StepType]:
    return dict(sorted(_REGISTRY.items()))


def conversion_names() -> list[str]:
    """The post-training conversion step types, in registration order (the converter's first)."""
    return [name for name, step in _REGISTRY.items() if step.kind == "convert"]
