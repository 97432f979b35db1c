"""Post-training quantization with the LiteRT Quantizer (ai-edge-quantizer, AEQ) on a float32 .tflite.

The TFLite converter's quantization is deprecated upstream in favour of AEQ, a separate tool that
rewrites an already converted float32 flatbuffer. So every AEQ step first converts the chain's
model with our own converter (float32), then hands the bytes to AEQ with a quantization recipe
built from the step's parameters (ai_edge_quantizer.recipe_manager.RecipeManager):

- aeq_int8:  ``add_static_config(".*", ALL_SUPPORTED, activation_num_bits=8, weight_num_bits=8)``,
  AEQ's ``recipe.static_wi8_ai8``; activation ranges from ``Quantizer.calibrate`` (min/max of the
  same calibration sample the converter's int8 uses; Jacob et al. 2018, arXiv:1712.05877);
- aeq_a16w8: the same with 16-bit (symmetric) activations, AEQ's ``recipe.static_wi8_ai16``;
- aeq_int4:  ``add_dynamic_config`` with 4-bit weights: BLOCKWISE_<n> for FULLY_CONNECTED (one
  scale per n input weights of each output row), CHANNELWISE for CONV_2D and the rest (AEQ's policy
  has no blockwise convolution), activations float and quantized on the fly by the kernel.

Selective ops: AEQ matches a regex (re.search) against an op's scope, the names of its output
tensors joined by ';' plus a trailing ';' (tfl_flatbuffer_utils.get_op_scope); when several
match, the rule added last wins, so float_layers are added after int16_layers. TensorFlow is not
imported here: AEQ itself needs only numpy and ai-edge-litert (checked: importing and running it
leaves ``tensorflow`` out of sys.modules); the float32 conversion goes through the Keras shim.
"""

from __future__ import annotations

import re
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import numpy as np

from compressor.export.tflite import convert
from compressor.recipes.ptq import check_calibration
from compressor.runtime.errors import UserError
from compressor.runtime.quiet import native_stderr_silenced

DISTRIBUTION = "ai-edge-quantizer"


def backend() -> str:
    """What meta.json and the report name as the producer of an AEQ artifact."""
    return f"{DISTRIBUTION} {version(DISTRIBUTION)}"


@dataclass(frozen=True)
class Op:
    """One operator of the float32 model as AEQ sees it."""

    kind: str  # TFLite builtin name, e.g. FULLY_CONNECTED
    scope: str  # what AEQ's regexes are searched in
    weight_shape: tuple[int, ...] | None  # input 1 of a FULLY_CONNECTED / CONV_2D, when constant

    @property
    def name(self) -> str:
        return self.scope.rstrip(";")


def float_model_ops(float_model: bytes) -> list[Op]:
    """Every op of every subgraph with its AEQ scope, read with AEQ's own flatbuffer utilities."""
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as fbu

    model = fbu.read_model(bytearray(float_model))
    ops = []
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            kind = fbu.TFL_OP_CODE_TO_NAME.get(model.operatorCodes[op.opcodeIndex].builtinCode)
            kind = getattr(kind, "value", "CUSTOM")  # a TFLOperationName, or None for ops AEQ does not know
            weight = None
            if len(op.inputs) > 1 and op.inputs[1] >= 0:
                tensor = subgraph.tensors[op.inputs[1]]
                if model.buffers[tensor.buffer].data is not None:
                    weight = tuple(int(d) for d in tensor.shape)
            ops.append(Op(kind, fbu.get_op_scope(op, subgraph.tensors), weight))
    return ops


def check_patterns(step: str, field: str, patterns: list[str], ops: list[Op]) -> dict[str, list[str]]:
    """pattern -> the ops it selects; a pattern that selects nothing is a typo: one line naming it."""
    matched = {p: [op.name for op in ops if op.scope and re.search(p, op.scope)] for p in patterns}
    for pattern, names in matched.items():
        if not names:
            examples = ", ".join(repr(op.name[:70]) for op in ops if op.scope)
            examples = examples if len(examples) <= 300 else examples[:297] + "..."
            raise UserError(
                f"{step}: {field}: {pattern!r} matches no op; regexes are searched in each op's output "
                f"tensor names in the float32 .tflite, which are: {examples}"
            )
    return matched


def quantize_static(
    model: Any,
    sample: np.ndarray,
    step: str,
    activation_bits: int,
    float_layers: list[str] = (),
    int16_layers: list[str] = (),
) -> tuple[bytes, dict]:
    """aeq_int8 (activation_bits 8, optionally a16w8 ops) or aeq_a16w8 (16), calibrated on ``sample``."""
    from ai_edge_quantizer import algorithm_manager, qtyping, recipe_manager

    float_model = convert(model, "float32")
    sample = check_calibration(sample, model.input_shape)
    ops = float_model_ops(float_model)
    int16 = check_patterns(step, "int16_layers", list(int16_layers), ops)
    floats = check_patterns(step, "float_layers", list(float_layers), ops)
    every = qtyping.TFLOperationName.ALL_SUPPORTED
    rules = recipe_manager.RecipeManager()
    rules.add_static_config(".*", every, activation_num_bits=activation_bits, weight_num_bits=8)
    for pattern in int16:
        rules.add_static_config(pattern, every, activation_num_bits=16, weight_num_bits=8)
    for pattern in floats:
        # Rules are keyed by their regex: an empty group "(?:)" (same matches) keeps a float rule from
        # replacing an int16 rule of the same text in place, where a later int16 rule would beat it.
        no_quantize = algorithm_manager.AlgorithmName.NO_QUANTIZE
        rules.add_quantization_config(f"{pattern}(?:)", every, algorithm_key=no_quantize)
    flatbuffer = _quantize(step, float_model, rules.get_quantization_recipe(), sample)
    info: dict = {}
    if int16:
        info["int16_layers"] = int16
    if floats:
        info["float_layers"] = floats
    return flatbuffer, info


def quantize_int4(model: Any, step: str, block_size: int) -> tuple[bytes, dict]:
    """int4 weights: blockwise where AEQ and the kernel's input size allow it, else per channel."""
    from ai_edge_quantizer import qtyping, recipe_manager

    float_model = convert(model, "float32")
    ops = float_model_ops(float_model)
    names = qtyping.TFLOperationName
    granularity = qtyping.QuantGranularity
    rules = recipe_manager.RecipeManager()
    rules.add_dynamic_config(".*", names.ALL_SUPPORTED, 4, granularity.CHANNELWISE)
    rules.add_dynamic_config(".*", names.FULLY_CONNECTED, 4, granularity[f"BLOCKWISE_{block_size}"])
    fc = [op for op in ops if op.kind == "FULLY_CONNECTED" and op.weight_shape]
    # AEQ refuses a block size that does not divide the kernel's input size: such a layer (often
    # the small classifier head) keeps one int4 scale per output channel instead.
    per_channel = [op for op in fc if op.weight_shape[-1] % block_size]
    for op in per_channel:
        rules.add_dynamic_config(f"^{re.escape(op.scope)}$", names.FULLY_CONNECTED, 4, granularity.CHANNELWISE)
    flatbuffer = _quantize(step, float_model, rules.get_quantization_recipe(), None)
    info = {
        "block_size": block_size,
        "int4_blockwise": [op.name for op in fc if op not in per_channel],
        "int4_per_channel_fully_connected": [op.name for op in per_channel],
    }
    return flatbuffer, info


def _quantize(step: str, float_model: bytes, recipe: list, sample: np.ndarray | None) -> bytes:
    """Run AEQ: calibrate (static recipes) through the float model's first signature, then quantize."""
    from ai_edge_quantizer import quantizer

    try:
        with _quiet():
            aeq = quantizer.Quantizer(bytearray(float_model), recipe)
            calibration = None
            if aeq.need_calibration:
                key, input_name = _signature(float_model)
                feed = [{input_name: row[None, ...]} for row in sample]
                calibration = aeq.calibrate({key: feed}, num_threads=1)
            result = aeq.quantize(calibration, enable_progress_report=False)
    except Exception as e:  # AEQ raises ValueError/RuntimeError/KeyError on models it cannot handle
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"{step}: {backend()} failed: {first[:300]}") from None
    return bytes(result.quantized_model)


def _signature(float_model: bytes) -> tuple[str, str]:
    """The signature key and input name AEQ's calibration feeds (the converter writes one signature)."""
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as fbu

    signature = fbu.read_model(bytearray(float_model)).signatureDefs[0]
    return signature.signatureKey.decode(), signature.inputs[0].name.decode()


@contextmanager
def _quiet() -> Iterator[None]:
    """AEQ's calibration draws a tqdm bar and LiteRT warns about preserving all tensors and announces
    XNNPACK on fd 2: nothing the user can act on (``-v`` shows it, as for the converter)."""
    with native_stderr_silenced(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            sys.stderr.flush()  # tqdm's last carriage-return line, before fd 2 is restored
