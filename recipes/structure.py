"""Which layers the train-time steps rewrite, and the weight statistics they report.

Pruning, clustering and their collaborative QAT schemes (PQAT, CQAT: ``tfmot.experimental.combine``)
agree on exactly two layer types: ``Dense`` and ``Conv2D`` kernels. A sparse or clustered kernel
of any other type (DepthwiseConv2D, Conv1D...) would be densified again by a later ``qat`` step, so
the steps touch these two only. The statistics are plain numpy: ``compressor.inspection.weights`` applies the
same functions to kernels read back out of an exported .tflite.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import field_validator

from compressor.recipes.finetune import FineTuneParams
from compressor.runtime.errors import UserError


class WrapperParams(FineTuneParams):
    """Fine-tuning options of the steps that train through tfmot wrappers (prune, cluster, qat)."""

    @field_validator("mixed_precision")
    @classmethod
    def _float32(cls, value: str) -> str:
        # The wrappers keep float32 masks/centroids/ranges, and fit's mixed-precision path rebuilds
        # the model from its config, which cannot revive tfmot's wrapper classes.
        if value != "float32":
            raise ValueError("must be float32 for tfmot's pruning, clustering and QAT wrappers")
        return value


def sparsity(arr: np.ndarray) -> float:
    """Fraction of exact zeros: a pruned weight is stored as 0 (0.0 or int8 code 0), never ~0."""
    arr = np.asarray(arr)
    return float(np.count_nonzero(arr == 0) / arr.size) if arr.size else 0.0


def unique_values(arr: np.ndarray, axis: int | None = None) -> int:
    """Distinct values in ``arr``; with ``axis``, the largest count over the slices along it.

    TFLite stores conv kernels per output channel (axis 0) with one scale each, and the converter
    folds BatchNorm's per-channel gamma / sigma into them: a kernel clustered to k values keeps at
    most k values per output channel, not per kernel.
    """
    arr = np.asarray(arr)
    if axis is None:
        return int(np.unique(arr).size)
    return max(int(np.unique(s).size) for s in np.moveaxis(arr, axis, 0)) if arr.shape[axis] else 0


def m_by_n_holds(arr: np.ndarray, m: int, n: int) -> bool:
    """Every group of ``n`` consecutive values along the LAST axis has at least ``m`` zeros.

    The last axis is the input dimension in TFLite's layouts ([out, in] fully connected,
    [out, h, w, in] conv), the one structured-sparse kernels skip along. A trailing partial group
    counts as zero-padded, as tfmot pads it when it builds the mask.
    """
    arr = np.asarray(arr)
    rows = arr.reshape(-1, arr.shape[-1]) if arr.ndim else arr.reshape(1, 1)
    pad = (-rows.shape[1]) % n
    groups = np.pad(rows, ((0, 0), (0, pad))).reshape(rows.shape[0], -1, n)
    return bool(np.all(np.count_nonzero(groups == 0, axis=-1) >= m))


def tflite_layout(kernel: np.ndarray) -> np.ndarray:
    """A Keras kernel in TFLite's layout: Dense [in, out] -> [out, in]; Conv2D [h, w, in, out] -> [out, h, w, in]."""
    return np.moveaxis(kernel, -1, 0)


def kernel_layers(model: Any, skip: list[str] | tuple = ()) -> list:
    """Dense/Conv2D layers, seen through tfmot's wrappers (a QAT model's ``quant_conv1`` holds ``conv1``).

    Exact classes: Conv2DTranspose subclasses Conv2D, but no collaborative scheme preserves it.
    """
    return [inner for _, inner in _kernel_pairs(model) if inner.name not in skip]


def _kernel_pairs(model: Any) -> list[tuple]:
    from compressor.keras_shim import keras

    types = (keras.layers.Dense, keras.layers.Conv2D)
    pairs = [(layer, getattr(layer, "layer", layer)) for layer in model.layers]
    return [(outer, inner) for outer, inner in pairs if type(inner) in types]


def check_layer_names(model: Any, names: list[str], step: str, param: str = "skip_layers") -> None:
    """A misspelt name must fail, not silently prune/quantize the layer the user meant to protect."""
    valid = [layer.name for layer in model.layers]
    bad = [n for n in names if n not in valid]
    if bad:
        raise UserError(
            f"{step}: {param}: unknown layer {', '.join(map(repr, bad))}; the model's layers are: {', '.join(valid)}"
        )


def fresh_copy(model: Any, step: str) -> Any:
    """A clone with its own weights: wrappers train the layers they wrap, and the caller's model
    (the float reference, or the input of the next recipe) must not change underneath it."""
    from compressor.keras_shim import keras

    try:
        copy = keras.models.clone_model(model)
    except Exception as e:  # subclassed models, custom layers without get_config
        raise UserError(
            f"{step} needs a Sequential or functional Keras model that can be cloned "
            f"({type(e).__name__}: {str(e).splitlines()[0][:200]})"
        ) from None
    copy.set_weights(model.get_weights())
    return copy


def kernel_stats(model: Any) -> dict[str, dict]:
    """Per Dense/Conv2D layer: size, sparsity and distinct values of its kernel (whole, and the most
    in any output channel: CQAT keeps a Conv2D's clusters per channel, as int8 stores them)."""
    out = {}
    for outer, inner in _kernel_pairs(model):
        # A QuantizeWrapper takes the kernel variable over from the layer it wraps (and sets
        # ``inner.kernel`` to its fake-quantized graph tensor): read the variable from the outer layer.
        kernel = next(w for w in outer.weights if w.name.split("/")[-1] == "kernel:0").numpy()
        out[inner.name] = {
            "size": int(kernel.size),
            "output_channels": int(kernel.shape[-1]),
            "sparsity": round(sparsity(kernel), 4),
            "unique_values": unique_values(kernel),
            "unique_per_output_channel": unique_values(kernel, axis=-1),
        }
    return out
