"""Which steps read streamed data: a compress run streams only when every step of every recipe does.

Steps listed in ``STREAMING_STEPS`` read data only through ``data.split(name)`` (fit via tf.data,
calibration via a bounded take, measurement and teacher outputs batch by batch, targets swapped with
``with_targets``); a step missing from it would use whole x arrays, so a run containing it would load
its data into memory. Today every registered step streams; the check stays for new ones.
"""

from __future__ import annotations

from compressor.recipes import Recipe

STREAMING_STEPS = frozenset(
    {
        "regularize",
        "prune",
        "qat",
        "distill",
        "channel_prune",
        "cluster",
        "equalize",
        "bias_correct",
        "float16",
        "sparse_float",
        "dynamic",
        "int8",
        "int16x8",
        "aeq_int8",
        "aeq_a16w8",
        "aeq_int4",
    }
)


def stream_blocker(recipes: list[Recipe]) -> str | None:
    """Why this run cannot stream its data (the first step that needs arrays), or None."""
    for recipe in recipes:
        for step in recipe.steps:
            if step.type not in STREAMING_STEPS:
                return f"step {step.type} (recipe {recipe.name}) reads whole arrays"
    return None
