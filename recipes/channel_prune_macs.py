"""Multiply-accumulates (MACs) of a Keras model's Conv/Dense layers, from its static shapes.

One MAC is one ``acc += w * x``. Per call of a layer (H'W' = output positions, k = kernel taps):

    Conv (1D/2D)        H'W' * k * C_in / groups * C_out
    DepthwiseConv       H'W' * k * C_in * multiplier
    SeparableConv       H'W' * k * C_in * m  +  H'W' * C_in * m * C_out   (depthwise + pointwise)
    Conv...Transpose    HW * k * C_in * C_out                              (HW = input positions)
    Dense               (positions) * C_in * units

Each figure is returned as two terms: the MACs that scale with the input channels alone (the
depthwise part) and those that scale with input x output channels; removing channels scales each
term by the kept fractions, which is how channel pruning estimates a plan before building it.
Biases, BatchNorm and activations are not counted (they are folded or cost O(outputs)).
"""

from __future__ import annotations

import math
from typing import Any

_DEPTHWISE = {"DepthwiseConv1D", "DepthwiseConv2D"}
_SEPARABLE = {"SeparableConv1D", "SeparableConv2D"}
_TRANSPOSED = {"Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"}
_CONV = {"Conv1D", "Conv2D", "Conv3D"}


def layer_macs(model: Any) -> dict[str, tuple[int, int]]:
    """Layer name -> (input-channel-only MACs, input x output MACs), summed over the layer's calls."""
    out: dict[str, tuple[int, int]] = {}
    for layer in model.layers:
        kind = type(layer).__name__
        if kind not in _DEPTHWISE | _SEPARABLE | _TRANSPOSED | _CONV | {"Dense"}:
            continue
        total = (0, 0)
        for node in range(len(layer.inbound_nodes)):
            terms = _call_macs(layer, kind, layer.get_input_shape_at(node), layer.get_output_shape_at(node))
            total = (total[0] + terms[0], total[1] + terms[1])
        out[layer.name] = total
    return out


def total_macs(model: Any) -> int:
    return int(sum(a + b for a, b in layer_macs(model).values()))


def _call_macs(layer: Any, kind: str, in_shape: tuple, out_shape: tuple) -> tuple[int, int]:
    if any(d is None for d in (*in_shape[1:], *out_shape[1:])):
        return 0, 0  # dynamic spatial size: nothing static to count
    c_in, c_out = int(in_shape[-1]), int(out_shape[-1])
    positions = math.prod(out_shape[1:-1])
    if kind == "Dense":
        return 0, positions * c_in * c_out
    taps = math.prod(layer.kernel_size)
    if kind in _DEPTHWISE:
        return positions * taps * c_out, 0  # c_out = c_in * multiplier
    if kind in _SEPARABLE:
        mult = int(layer.depth_multiplier)
        return positions * taps * c_in * mult, positions * c_in * mult * c_out
    if kind in _TRANSPOSED:
        return 0, math.prod(in_shape[1:-1]) * taps * c_in * c_out
    return 0, positions * taps * c_in // int(getattr(layer, "groups", 1) or 1) * c_out
