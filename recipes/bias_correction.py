"""Empirical bias correction: a training-free step that cancels the mean output shift int8 weights cause.

Nagel et al. 2019 (arXiv:1906.04721, section 4.2). Rounding a kernel to int8 adds an error
dW = Q(W) - W whose effect on a layer's output has a non-zero mean per channel,
E[Q(W) x] - E[W x] = E[dW x], which every later layer inherits as a shift. Measured here on the
float model's own inputs to each layer over a calibration sample and subtracted from the layer's
bias, the int8 layer's expected output equals the float one again.

Q is what TFLite's int8 does to Conv2D, DepthwiseConv2D and Dense kernels: symmetric, one scale
per output channel (channel_weights.int8_per_channel); a following BatchNormalization, folded by
the converter, scales each output channel, which commutes with per-channel symmetric rounding, so
the shift is measured on the unfolded kernel and corrected through the BN's beta (divided by the
fold factor's gamma / sqrt(var + eps)). A kernel with neither bias nor such a BN is listed as
skipped. Put the step right before the int8 conversion (int8, aeq_int8, int16x8: all round weights
this way); before float16 or dynamic it would correct an error those do not make.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from compressor.recipes import channel_weights as cw
from compressor.recipes.base import progress, register
from compressor.recipes.ptq import CalibratedParams, check_calibration
from compressor.recipes.rebuild import consumers, editable_config, output_names
from compressor.recipes.stepio import write_info


class BiasCorrectionParams(CalibratedParams):
    """The calibration sample the shift is measured on (the int8 step's own defaults)."""


def targets(model: Any) -> list[tuple[Any, Any | None]]:
    """(kernel layer, the BatchNormalization folded into it or None) for every correctable layer."""
    config = editable_config(model, "bias_correct")
    outs, ends = consumers(config), set(output_names(config))
    found = []
    for entry in config["layers"]:
        layer = model.get_layer(entry["config"]["name"])
        if cw.supported(layer) or len(entry.get("inbound_nodes") or [[]]) > 1:
            continue
        after = outs.get(layer.name, [])
        bn = None  # a layer with a bias is corrected there; without, through the BN that follows it
        if (
            not layer.use_bias
            and len(after) == 1
            and layer.name not in ends
            and type(model.get_layer(after[0])).__name__ == "BatchNormalization"
        ):
            bn = model.get_layer(after[0])
            if "beta" not in [w.name.split("/")[-1].split(":")[0] for w in bn.weights]:
                bn = None
        found.append((layer, bn))
    return found


def _quantization_error_layer(layer: Any) -> Any:
    """A copy of ``layer`` without bias or activation whose kernel is dW = Q(W) - W."""
    config = {**layer.get_config(), "use_bias": False, "activation": "linear", "name": f"{layer.name}__dw"}
    delta = type(layer).from_config(config)
    delta.build(layer.input_shape)
    kernel = layer.get_weights()[0]
    delta.set_weights([cw.int8_per_channel(kernel, type(layer).__name__ == "DepthwiseConv2D") - kernel])
    return delta


def output_shifts(model: Any, layers: list[Any], sample: np.ndarray, batch: int = 32) -> list[np.ndarray]:
    """E[dW x] per output channel of each layer, x the float model's input to it over ``sample``."""
    from compressor.keras_shim import keras, tf

    probe = keras.Model(model.inputs, [layer.input for layer in layers])
    deltas = [_quantization_error_layer(layer) for layer in layers]
    sums, counts = [0.0] * len(layers), [0] * len(layers)
    for start in range(0, len(sample), batch):
        xs = probe(sample[start : start + batch], training=False)
        xs = xs if isinstance(xs, (list, tuple)) else [xs]
        for i, (delta, x) in enumerate(zip(deltas, xs)):
            y = delta(x)
            sums[i] = sums[i] + tf.reduce_sum(y, axis=list(range(len(y.shape) - 1))).numpy()
            counts[i] += int(np.prod(y.shape[:-1]))
    return [s / n for s, n in zip(sums, counts)]


def correct(layer: Any, bn: Any | None, shift: np.ndarray) -> None:
    """Subtract ``shift`` from the layer's output: from its bias, or through the BN that follows it."""
    if bn is not None:
        names = [w.name.split("/")[-1].split(":")[0] for w in bn.weights]
        folded = shift * cw.fold_factor(bn, shift.shape[0])
        bn.set_weights([v - folded if n == "beta" else v for n, v in zip(names, bn.get_weights())])
        return
    weights = layer.get_weights()
    weights[1] = weights[1] - shift.astype(weights[1].dtype)
    layer.set_weights(weights)


@register(
    "bias_correct",
    "empirical bias correction for int8 weights, on calibration data (training-free)",
    BiasCorrectionParams,
)
def apply(model: Any, data: Any, params: BiasCorrectionParams, workdir: Path) -> Any:
    from compressor.keras_shim import keras

    clone = keras.models.clone_model(model)  # the caller's model stays as it was: other recipes start from it
    clone.set_weights(model.get_weights())
    found = targets(clone)
    usable = [(layer, bn) for layer, bn in found if bn is not None or layer.use_bias]
    skipped = [layer.name for layer, bn in found if (layer, bn) not in usable]
    sample = check_calibration(params.calibration(data), tuple(clone.input_shape[1:]))
    shifts = output_shifts(clone, [layer for layer, _ in usable], sample) if usable else []
    for (layer, bn), shift in zip(usable, shifts):
        correct(layer, bn, shift)
    progress(f"  bias correction: {len(usable)} layer(s) on {len(sample)} calibration samples")
    write_info(
        workdir,
        {
            "calibration": {"source": params.calibration_source, "samples": int(len(sample))},
            "layers": {
                layer.name: {"into": bn.name if bn is not None else "bias", "max_abs_shift": float(np.abs(s).max())}
                for (layer, bn), s in zip(usable, shifts)
            },
            "skipped": {name: "no bias and no BatchNormalization after it to absorb the shift" for name in skipped},
        },
    )
    return clone
