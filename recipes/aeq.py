"""Post-training steps on the LiteRT Quantizer (ai-edge-quantizer, AEQ): aeq_int8, aeq_a16w8, aeq_int4.

The TFLite converter's own quantization is deprecated upstream in favour of AEQ, which works on
a float32 .tflite and adds what the converter cannot: int4 blockwise weights, int16 activations
for chosen ops only, and selection of ops by regular expression. This module declares the
steps' parameters; the quantization itself is the exporter's (compressor.export.aeq).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from compressor.recipes.base import StepParams, register_conversion
from compressor.recipes.ptq import CalibratedParams

# What AEQ matches a regex against (ai_edge_quantizer.utils.tfl_flatbuffer_utils.get_op_scope):
# an op's "scope", the names of its output tensors in the float32 .tflite joined by ';' with a
# trailing ';', searched with re.search. The converter names tensors after the TF ops they fuse.
SCOPE_HELP = (
    "regular expressions searched (re.search) in each op's output tensor names in the float32 .tflite, "
    "joined by ';' (e.g. 'digits_cnn/dense/MatMul;digits_cnn/dense/Relu;'): a Keras layer name "
    "like 'dense/' usually matches its op; a regex that matches no op is refused, listing them"
)


def _compiled(patterns: list[str]) -> list[str]:
    """A regex that does not compile is refused when the recipe is read, not deep in the quantizer."""
    for pattern in patterns:
        try:
            re.compile(pattern)
        except (re.error, OverflowError, RecursionError) as e:  # "a{99999999999}", 2000 nested groups
            raise ValueError(f"{pattern[:80]!r} is not a regular expression: {e}") from None
    return patterns


class AeqStaticParams(CalibratedParams):
    """Static (calibrated) quantization: activation ranges from the calibration sample's min/max."""

    float_layers: list[str] = Field(default_factory=list, description="ops kept in float32: " + SCOPE_HELP)

    @field_validator("float_layers")
    @classmethod
    def _float_layers_compile(cls, v: list[str]) -> list[str]:
        return _compiled(v)


class AeqInt8Params(AeqStaticParams):
    int16_layers: list[str] = Field(
        default_factory=list,
        description="ops given int16 activations and int8 weights (a16w8), the rest int8: " + SCOPE_HELP,
    )

    @field_validator("int16_layers")
    @classmethod
    def _int16_layers_compile(cls, v: list[str]) -> list[str]:
        return _compiled(v)


class AeqA16W8Params(AeqStaticParams):
    """int16 activations, int8 weights everywhere (float_layers excepted)."""


class AeqInt4Params(StepParams):
    # AEQ's blockwise granularities are BLOCKWISE_32/64/128/256 (qtyping.QuantGranularity).
    block_size: Literal[32, 64, 128, 256] = Field(
        32,
        description="weights per int4 scale along a fully-connected kernel's input dimension; a kernel whose "
        "input size it does not divide gets one scale per output channel instead",
    )


register_conversion(
    "aeq_int8",
    "ai-edge-quantizer: int8 weights and activations, calibrated; selective float/int16 ops by regex",
    AeqInt8Params,
)
register_conversion(
    "aeq_a16w8", "ai-edge-quantizer: int16 activations, int8 weights, calibrated (no ONNX)", AeqA16W8Params
)
register_conversion(
    "aeq_int4",
    "ai-edge-quantizer: int4 weights (blockwise in fully-connected layers, per channel in convolutions), "
    "activations quantized on the fly like dynamic; no calibration (no ONNX)",
    AeqInt4Params,
)
