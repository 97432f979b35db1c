"""One recipe of a `compress` run: its steps, its exports, each validated right after export.

What a conversion step type adds after converting (float16's tolerance, int8's diagnostics and
ONNX Runtime quantizer) is looked up in ``export.conversions.CONVERSIONS``, not branched on here.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from compressor.export import onnx_quant
from compressor.export.conversions import CONVERSIONS, CONVERTER, measure_conversion
from compressor.pipeline import validation
from compressor.pipeline.chain import run_chain
from compressor.pipeline.int8_followups import int8_followups
from compressor.pipeline.layout import RunLayout, step_dir
from compressor.pipeline.model_io import LoadedModel
from compressor.recipes import Recipe
from compressor.recipes.stepio import load_step_model
from compressor.runtime.errors import UserError


class PartlyQuantized(Exception):
    """The ONNX of an int8 file with float layers disagreed with it: skipped, with the reason."""


@dataclass
class RunContext:
    """What every recipe of one run shares: the input, where files go, and how to measure."""

    model: LoadedModel
    data: Any  # a Dataset or a StreamingDataset: read through data.split(name) (datasets/splits.py)
    layout: RunLayout  # where files are written (the hidden partial folder)
    final: RunLayout  # where they will be once the run is complete: the paths the report names
    reference: np.ndarray | None = None  # the float model's test outputs
    reference_accuracy: float = 0.0
    threads: int = 1
    latency_runs: int = 100
    resume: bool = False
    trust_code: bool = False  # the user vouched for Lambda layers in the input model, hence in its steps
    debug_quant: bool = False
    onnx_quant: str = "tflite"
    progress: Callable[[str], None] = lambda msg: None

    def measure(self, path: Any, name: str, fmt: str) -> validation.ArtifactResult:
        """Accuracy, agreement with the float model, size and latency on the test split."""
        self.progress(f"validating {name} ({fmt})")
        test = self.data.split("test")  # loaded or streamed: measured batch by batch either way
        result = validation.measure(path, name, fmt, test, None, self.reference, self.threads, self.latency_runs)
        result.path = self.layout.relocate(path, self.final)
        return result


@dataclass
class RecipeOutcome:
    results: list[validation.ArtifactResult] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)
    extras: dict[str, dict] = field(default_factory=dict)  # report section -> this recipe's entry
    converted: list[tuple] = field(default_factory=list)  # (tflite result, ONNX converted from it)


def run_recipe(ctx: RunContext, recipe: Recipe) -> RecipeOutcome:
    ctx.progress(f"recipe {recipe.name}")
    outcome = RecipeOutcome()
    steps = ctx.layout.steps(recipe.name)
    tflite, outcome.steps = run_chain(ctx.model, ctx.data, recipe, steps, ctx.resume, ctx.trust_code)
    final = shutil.copyfile(tflite, ctx.layout.artifact(recipe.name, "tflite"))
    conversion = CONVERSIONS[recipe.steps[-1].type]
    result = measure_conversion(ctx, final, recipe.name, conversion)
    if "error" in result.metrics["latency"]:  # LiteRT could not run it: its failed row is all there is
        outcome.results.append(result)
        return outcome
    if recipe.gates.max_arena_kb is not None:  # the arena gate: measured on the TFLite Micro interpreter
        from compressor.mcu.fit import mcu_fit

        result.metrics["mcu"] = mcu_fit(final, ctx.data.split("test").head(1)[0])
    if conversion.keras_atol is not None:
        reference = _converted_model_outputs(ctx, recipe, steps)
        validation.check_against(result, "keras", reference, atol=conversion.keras_atol)
    if conversion.int8_diagnostics:
        result = int8_followups(ctx, recipe, result, outcome.extras)
    elif ctx.debug_quant:
        outcome.extras["quant_debug"] = {
            "skipped": f"the quantization debugger covers int8 only, not {recipe.steps[-1].type}"
        }
    outcome.results.append(result)
    no_onnx = conversion.onnx_reason(recipe.steps[-1].params)
    if "onnx" in recipe.export.formats and not no_onnx:
        try:
            _export_onnx(ctx, recipe, result, outcome, conversion.onnx_quantizers)
        except PartlyQuantized as e:
            no_onnx = (
                f"its ONNX disagrees with the partly quantized .tflite ({e}): tf2onnx converts the float "
                "layers' quantize/dequantize pairs differently; ship the .tflite, or make every layer int8"
            )
        except UserError as e:
            if conversion.backend == CONVERTER:  # our converter's graphs always convert: a failure is news
                raise
            why = str(e).split(" failed: ", 1)[-1].removeprefix("make_sure failure: ")  # no partial-folder path
            no_onnx = f"tf2onnx failed on this {conversion.backend} graph: {why}"
    if "onnx" in recipe.export.formats and no_onnx:
        ctx.progress(f"  no ONNX for {recipe.name}: {no_onnx}")
        outcome.extras["onnx_skipped"] = no_onnx  # the report's onnx_skipped section
    return outcome


def _converted_model_outputs(ctx: RunContext, recipe: Recipe, steps: Any) -> np.ndarray | None:
    """The Keras outputs a float conversion must reproduce: the input model's, or after training
    steps the last step's model's (a float16 export of a pruned model is checked against the pruned
    model, not the original)."""
    if len(recipe.steps) == 1:
        return ctx.reference
    index = len(recipe.steps) - 2
    model = load_step_model(step_dir(steps, index, recipe.steps[index].type), ctx.trust_code)
    return validation.keras_outputs(model, ctx.data.split("test"))


def _export_onnx(
    ctx: RunContext, recipe: Recipe, tflite: validation.ArtifactResult, outcome: RecipeOutcome, quantizers: bool
) -> None:
    """The recipe's ONNX, converted from its .tflite (and with --onnx-quant, by ONNX Runtime too)."""
    float_layers = outcome.extras.get("selective", {}).get("float_layers") or outcome.steps[-1].get("info", {}).get(
        "float_layers", []
    )
    candidates = []
    for variant in onnx_quant.VARIANTS[ctx.onnx_quant if quantizers else "tflite"]:
        tflite_path = ctx.layout.artifact(recipe.name, "tflite")
        path = onnx_quant.export_variant(
            variant, tflite_path, ctx.model, ctx.data, recipe, ctx.layout, float_layers, ctx.trust_code
        )
        onnx_result = ctx.measure(path, recipe.name, "onnx")
        if variant == "tflite":
            validation.check_against(
                onnx_result,
                f"{recipe.name} tflite",
                tflite.outputs,
                atol=None,
                min_agreement=validation.CROSS_RUNTIME_MIN_AGREEMENT,
            )
            if onnx_result.mismatches and _partly_int8(outcome, float_layers):
                path.unlink(missing_ok=True)
                raise PartlyQuantized(onnx_result.mismatches[0].detail)
            outcome.converted.append((tflite, onnx_result))
        candidates.append((variant, onnx_result))
    kept, info = onnx_quant.keep_better(
        candidates, recipe.gates.model_dump(), ctx.reference_accuracy, ctx.layout, ctx.final, recipe.name
    )
    outcome.results += kept
    if len(candidates) > 1:
        outcome.extras["onnx_quant"] = info


def _partly_int8(outcome: RecipeOutcome, float_layers: list) -> bool:
    """Whether the recipe's int8 .tflite keeps some ops float: layers chosen to stay float, or ops
    with no int8 kernel (allowed, or left float by QAT) that its conversion step recorded."""
    info = outcome.steps[-1].get("info", {}) if outcome.steps else {}
    return bool(float_layers or info.get("float_ops"))
