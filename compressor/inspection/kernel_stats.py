"""Sparsity and unique-value statistics of stored weight kernels, shared by the .tflite and .onnx inspections."""

from __future__ import annotations

import numpy as np


def kernel_stats(name: str, op: str, values: np.ndarray, channel_axis: int | None) -> dict:
    """Zeros and unique values of one stored weight tensor (quantized values as stored).

    Per-channel uniques matter because BatchNorm folding or per-channel int8 scales multiply
    each output channel by its own factor: a clustered kernel keeps <= k values per channel,
    not per tensor.
    """
    from compressor.inspection.weights import sparsity, unique_values

    per_channel = unique_values(values, channel_axis) if channel_axis is not None and values.ndim > 1 else None
    return {
        "name": name,
        "op": op,
        "dtype": str(values.dtype),
        "shape": list(values.shape),
        "elements": int(values.size),
        "zeros": int(np.count_nonzero(values == 0)),
        "sparsity": sparsity(values),
        "unique_values": unique_values(values),
        "unique_per_channel_max": per_channel,
    }


def summarise_kernels(kernels: list[dict]) -> dict:
    elements = sum(k["elements"] for k in kernels)
    return {
        "count": len(kernels),
        "elements": elements,
        "sparsity": sum(k["zeros"] for k in kernels) / elements if elements else 0.0,
        "max_unique_values": max((k["unique_values"] for k in kernels), default=0),
    }
