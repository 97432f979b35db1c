"""Checks made before any heavy work: a run that cannot succeed fails in seconds, not after training."""

from __future__ import annotations

from typing import Any

from compressor.pipeline.layout import REFERENCE
from compressor.recipes import Recipe, get_step
from compressor.recipes.base import conversion_names
from compressor.runtime.errors import UserError


def check_recipe_names(recipes: list[Recipe]) -> None:
    """Each recipe writes OUT/NAME and one report row per name: two recipes must not share one."""
    seen: set[str] = set()
    for recipe in recipes:
        if recipe.name in seen or recipe.name == REFERENCE:
            clash = f"the {REFERENCE} reference" if recipe.name == REFERENCE else "another recipe"
            raise UserError(
                f"recipe name {recipe.name!r} is also {clash}'s: give each recipe its own `name:` "
                "(its output folder and report row are named after it)"
            )
        seen.add(recipe.name)


def check_trainable(model: Any, recipes: list[Recipe]) -> None:
    if model.trainable:
        return
    for recipe in recipes:
        training = [s.type for s in recipe.steps if get_step(s.type).kind == "train"]
        if training:
            why = getattr(model, "untrainable", None) or f"{model.path} cannot be trained"  # model_io says why
            raise UserError(
                f"recipe {recipe.name} has training steps ({', '.join(training)}): {why} "
                f"(post-training recipes: {', '.join(conversion_names())})"
            )


def check_mcu_gates(recipes: list[Recipe]) -> None:
    """A max_arena_kb gate is measured on TFLite Micro: refuse before any step runs if it is not installed."""
    gated = [r.name for r in recipes if r.gates.max_arena_kb is not None]
    if gated:
        from compressor.mcu.tflm import available

        missing = available()
        if missing:
            raise UserError(f"recipe {gated[0]} has a max_arena_kb gate, measured on TFLite Micro: {missing}")


def check_fits(model: Any, data: Any) -> None:
    """The data's sample shape and class count must fit the model's input and output."""
    expected = tuple(model.input_shape)
    actual = tuple(data.input_shape)
    if len(actual) != len(expected) or any(e is not None and a != e for a, e in zip(actual, expected)):
        raise UserError(
            f"data {data.name} has samples of shape {actual} but the model expects {expected}; "
            "pass --data matching the model input"
        )
    classes = model.output_shape[-1]
    if classes is not None and data.num_classes > classes:
        raise UserError(f"data {data.name} has {data.num_classes} classes but the model outputs {classes}")
