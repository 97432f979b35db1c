"""Which steps read streamed data: a compress run streams only when every step of every recipe does.

Steps listed in ``STREAMING_STEPS`` read data only through ``data.split(name)`` (fit via tf.data,
calibration via a bounded take, measurement batch by batch); the others still use whole x arrays
(prune counts len(x_train), distill and channel_prune pack soft labels over x_train, regularize
probes x_val), so a run containing one of them loads its data into memory.
"""

from __future__ import annotations

from compressor.recipes import Recipe

STREAMING_STEPS = frozenset(
    {
        "qat",
        "cluster",
        "equalize",
        "bias_correction",
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
