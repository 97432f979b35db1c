"""What follows an int8 conversion once its artifact is measured: the quantization debugger's
per-tensor report (--debug-quant) and, when the accuracy gate failed and the step allows it,
keeping the worst layers in float (export/selective.py).
"""

from __future__ import annotations

from typing import Any

from compressor.export import quant_debug, selective
from compressor.pipeline.validation import ArtifactResult
from compressor.runtime.atomic import write_bytes
from compressor.runtime.errors import UserError

# The float-layer search scores every candidate on the validation split, held as arrays: a streamed
# split is cut to this many seeded samples (a loaded one is used whole, as it always was).
SELECTIVE_SAMPLES = 2000


def int8_followups(ctx: Any, recipe: Any, result: ArtifactResult, extras: dict) -> ArtifactResult:
    """Returns the recipe's tflite result (re-measured if float layers replaced the artifact);
    what was done goes into ``extras`` under "quant_debug" and "selective"."""
    fall_back = selective.should_fall_back(recipe, result.row(ctx.reference_accuracy))
    if not (ctx.debug_quant or fall_back):
        return result
    try:
        steps = ctx.layout.steps(recipe.name)
        debugger = quant_debug.QuantDebugger.for_recipe(ctx.model, ctx.data, recipe, steps, ctx.trust_code)
    except UserError as e:  # a diagnostic that cannot run must not sink the run's artifacts
        extras["quant_debug" if ctx.debug_quant else "selective"] = {"skipped": str(e)}
        return result
    folder = ctx.layout.recipe_dir(recipe.name)
    if ctx.debug_quant:
        ctx.progress(f"  quantization debugger: {recipe.name}")
        extras["quant_debug"] = quant_debug.write_report(debugger.statistics(), folder)
    if fall_back:
        held = ctx.data.arrays(SELECTIVE_SAMPLES, splits=("val", "test"))  # streamed data: a bounded subset
        content, log = selective.fall_back(debugger, held, recipe, ctx.layout.reference("tflite"), folder, ctx.progress)
        if content is not None:
            plain_row = result.row(ctx.reference_accuracy)
            path = write_bytes(ctx.layout.artifact(recipe.name, "tflite"), content)
            result = ctx.measure(path, recipe.name, "tflite")
            log["cost"] = selective.cost(plain_row, result.row(ctx.reference_accuracy))
        extras["selective"] = log
    return result
