"""QAT starts where the float model is: calibrated ranges, then a checked starting accuracy.

tfmot creates every fake-quant range as [-6, 6]: weights keep it until the first training step,
and activation ranges follow the data by an exponential moving average with decay 0.999, i.e.
over thousands of steps. A fine-tuning of a few epochs therefore began far from the float model
(a residual SeparableConv2D model fell from 84.5% to 57.0% after one epoch). Here, before any
training step, one pass over calibration samples sets each range to what the float model's
tensors really span (weights: their min/max; activations: the running min/max over the batches,
0 included as TFLite requires), with BatchNormalization in inference mode and dropout/noise off,
so the pass changes nothing but the ranges. The wrapped model's validation accuracy must then be
within ``max_start_gap`` of the float model's; otherwise the layer whose output error grows most
is named (per-layer outputs of both models compared on a few samples).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from compressor.recipes.qat_layers import _tfmot

CALIBRATION_SAMPLES = 256
CALIBRATION_BATCH = 32
BLAME_SAMPLES = 64


def _calibrating_class(base: type) -> type:
    from compressor.keras_shim import tf

    class Calibrating(base):
        """MovingAverageQuantizer whose training pass widens [min, max] to cover each batch at once."""

        def __call__(self, inputs, training, weights, **kwargs):
            if not training or self.per_axis or self.symmetric:
                return super().__call__(inputs, training, weights, **kwargs)
            lo = tf.minimum(weights["min_var"], tf.reduce_min(inputs))
            hi = tf.maximum(weights["max_var"], tf.reduce_max(inputs))
            weights["min_var"].assign(lo)
            weights["max_var"].assign(hi)
            return tf.quantization.fake_quant_with_min_max_vars(
                inputs, lo, hi, num_bits=self.num_bits, narrow_range=self.narrow_range
            )

    return Calibrating


def _activation_quantizers(model: Any) -> list[tuple[Any, list]]:
    """(quantizer, [min_var, max_var]) of every moving-average range in the wrapped model."""
    base = _tfmot("quantizers").MovingAverageQuantizer
    found = []
    for layer in model.layers:
        if type(getattr(layer, "quantizer", None)) is base:  # QuantizeLayer at the input
            found.append((layer.quantizer, [layer.quantizer_vars[k] for k in ("min_var", "max_var")]))
        for act in getattr(layer, "_quantize_activations", []):
            for vars_ in (getattr(act, "_pre_activation_vars", None), getattr(act, "_post_activation_vars", None)):
                if vars_ and type(act.quantizer) is base:
                    found.append((act.quantizer, [vars_["min_var"], vars_["max_var"]]))
        for quantizer in getattr(layer, "_output_quantizers", None) or []:
            if type(quantizer) is base:
                found.append((quantizer, [layer._output_quantizer_vars[k] for k in ("min_var", "max_var")]))
    return found


@contextlib.contextmanager
def _calibration_mode(model: Any) -> Iterator[None]:
    """Training-mode forward passes that only move ranges: BN in inference mode, dropout/noise off."""
    saved: list[tuple[Any, str, Any]] = []
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        kind = type(inner).__name__
        if "BatchNormalization" in kind:
            saved.append((inner, "trainable", inner.trainable))
            inner.trainable = False
        for attr in ("rate", "stddev"):
            if ("Dropout" in kind or "Noise" in kind) and hasattr(inner, attr):
                saved.append((inner, attr, getattr(inner, attr)))
                setattr(inner, attr, 0.0)
    quantizers = _activation_quantizers(model)
    classes = [type(q) for q, _ in quantizers]
    try:
        for quantizer, pair in quantizers:
            quantizer.__class__ = _calibrating_class(type(quantizer))
            for var in pair:
                var.assign(np.zeros(var.shape, np.float32))
        yield
    finally:
        for (quantizer, _), cls in zip(quantizers, classes):
            quantizer.__class__ = cls
        for obj, attr, value in reversed(saved):
            setattr(obj, attr, value)


def calibrate_ranges(model: Any, x: np.ndarray) -> int:
    """Set the wrapped model's fake-quant ranges from ``x``; returns the samples used."""
    pick = np.random.default_rng(0).permutation(len(x))[:CALIBRATION_SAMPLES]  # a file sorted by class is not
    sample = x[np.sort(pick)]
    with _calibration_mode(model):
        for start in range(0, len(sample), CALIBRATION_BATCH):
            model(sample[start : start + CALIBRATION_BATCH], training=True)
    return int(len(sample))


def accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(model.predict(x, batch_size=128, verbose=0).argmax(axis=-1) == y))


def _outputs(model: Any, x: np.ndarray, original_names: bool) -> dict[str, np.ndarray]:
    """Every single-output layer's output on ``x``, keyed by the (wrapped) layer's own name."""
    from compressor.keras_shim import keras

    nodes = getattr(model, "_network_nodes", set())  # "<layer>_ib-<i>": the calls that belong to this model
    layers, tensors = [], []
    for layer in model.layers:
        calls = [i for i in range(len(layer.inbound_nodes)) if f"{layer.name}_ib-{i}" in nodes]
        if isinstance(layer, keras.layers.InputLayer) or not calls:
            continue
        tensor = layer.get_output_at(calls[0])
        if not isinstance(tensor, (list, tuple)):
            layers.append(layer)
            tensors.append(tensor)
    probe = keras.Model(model.inputs, tensors)
    values = probe.predict(x, batch_size=BLAME_SAMPLES, verbose=0)
    names = [getattr(layer, "layer", layer).name if original_names else layer.name for layer in layers]
    return dict(zip(names, values if isinstance(values, list) else [values]))


def blame(float_model: Any, wrapped: Any, x: np.ndarray) -> tuple[str, float]:
    """(layer, relative error it adds): where the wrapped model's outputs part from the float model's."""
    from compressor.recipes.qat_layers import _inbound

    x = x[:BLAME_SAMPLES]
    ref, got = _outputs(float_model, x, False), _outputs(wrapped, x, True)
    errors = {}
    for name, a in ref.items():
        b = got.get(name)
        if b is not None and b.shape == a.shape:
            errors[name] = float(np.mean(np.abs(a - b)) / (np.mean(np.abs(a)) + 1e-12))
    producers, _ = _inbound(float_model)
    added = {n: e - max([errors.get(p, 0.0) for p in producers.get(n, [])], default=0.0) for n, e in errors.items()}
    worst = max(added, key=added.get) if added else "?"
    return worst, round(errors.get(worst, 0.0), 4)
