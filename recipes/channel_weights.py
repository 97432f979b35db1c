"""Per-channel views of the kernels TFLite quantizes per output channel: Conv2D, DepthwiseConv2D, Dense.

Cross-layer equalization and bias correction both reason about a kernel the way the converter
sees it: with a BatchNormalization that directly follows it folded in (W' = W * gamma / sqrt(var + eps)
per output channel, Ioffe & Szegedy 2015), channels last. This module owns those facts; the steps
only ask for a layer's per-channel ranges or rescale its channels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

KERNEL_LAYERS = ("Conv2D", "DepthwiseConv2D", "Dense")


def supported(layer: Any) -> str | None:
    """Why ``layer``'s kernel cannot be treated per channel here, or None when it can."""
    kind = type(layer).__name__
    if kind not in KERNEL_LAYERS:
        return f"{kind} is not one of {', '.join(KERNEL_LAYERS)}"
    config = layer.get_config()
    if config.get("data_format", "channels_last") != "channels_last":
        return "channels_first"
    if kind == "DepthwiseConv2D" and config.get("depth_multiplier", 1) != 1:
        return "depth_multiplier != 1"
    if kind == "Conv2D" and config.get("groups", 1) != 1:
        return "grouped convolution"
    return None


def fold_factor(bn: Any | None, channels: int) -> np.ndarray:
    """gamma / sqrt(moving_var + eps) of a BatchNormalization (ones without one): what folding
    multiplies each output channel of the preceding kernel by."""
    if bn is None:
        return np.ones(channels, np.float32)
    values = dict(zip((w.name.split("/")[-1].split(":")[0] for w in bn.weights), bn.get_weights()))
    gamma = values.get("gamma", np.ones(channels, np.float32))
    return gamma / np.sqrt(values["moving_variance"] + bn.epsilon)


def output_ranges(layer: Any, bn: Any | None = None) -> np.ndarray:
    """max |W'| per output channel of the (BN-folded) kernel."""
    kernel = layer.get_weights()[0]
    axes = (0, 1, 3) if type(layer).__name__ == "DepthwiseConv2D" else tuple(range(kernel.ndim - 1))
    ranges = np.abs(kernel).max(axis=axes)
    return ranges * np.abs(fold_factor(bn, ranges.shape[0]))


def input_ranges(layer: Any, bn: Any | None = None) -> np.ndarray:
    """max |W'| per input channel of the (BN-folded) kernel."""
    kernel = layer.get_weights()[0]
    if type(layer).__name__ == "DepthwiseConv2D":
        folded = kernel * fold_factor(bn, kernel.shape[2])[None, None, :, None]
    else:
        folded = kernel * fold_factor(bn, kernel.shape[-1])
    axes = tuple(i for i in range(folded.ndim) if i != folded.ndim - 2)
    return np.abs(folded).max(axis=axes)


def scale_outputs(layer: Any, bn: Any | None, factor: np.ndarray) -> None:
    """Multiply output channel c by factor[c]: through the BatchNormalization's gamma and beta when
    one follows (BN(y) * f = BN with gamma*f, beta*f), else the kernel's and bias' channel."""
    if bn is not None:
        names = [w.name.split("/")[-1].split(":")[0] for w in bn.weights]
        bn.set_weights([v * factor if n in ("gamma", "beta") else v for n, v in zip(names, bn.get_weights())])
        return
    weights = layer.get_weights()
    if type(layer).__name__ == "DepthwiseConv2D":
        weights[0] = weights[0] * factor[None, None, :, None]
    else:
        weights[0] = weights[0] * factor
    if len(weights) > 1:
        weights[1] = weights[1] * factor
    layer.set_weights(weights)


def scale_inputs(layer: Any, factor: np.ndarray) -> None:
    """Multiply the kernel's input channel c by factor[c] (the bias does not see the input)."""
    weights = layer.get_weights()
    shape = [1] * weights[0].ndim
    shape[-2] = -1
    weights[0] = weights[0] * factor.reshape(shape)
    layer.set_weights(weights)


def int8_per_channel(kernel: np.ndarray, depthwise: bool = False) -> np.ndarray:
    """The kernel as TFLite's int8 stores it, dequantized: symmetric, one scale per output channel,
    scale = max|w| / 127, values round(w / scale) in [-127, 127] (TFLite's quantization spec)."""
    axes = (0, 1, 3) if depthwise else tuple(range(kernel.ndim - 1))
    peak = np.abs(kernel).max(axis=axes, keepdims=True)
    scale = np.where(peak > 0, peak / 127.0, 1.0)
    return (np.clip(np.round(kernel / scale), -127, 127) * scale).astype(kernel.dtype)
