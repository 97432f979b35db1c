"""The ``sparse_float`` conversion step: float32 with pruned weights stored sparse, for XNNPACK.

XNNPACK runs a float model with its sparse kernels only when the weights reach it as sparse
tensors (DENSIFY ops) and the graph has the shape its sparse path accepts (see
compressor/inspection/xnnpack_sparse.py); the exporter (compressor/export/sparse_float.py) does both
and records whether the file qualifies. Float16 is not offered: XNNPACK refuses sparse float16
weights. Follows a ``prune`` step with ``policy: xnnpack`` (1x1 convolutions at >= 2/3 sparsity).
"""

from __future__ import annotations

from compressor.recipes.base import StepParams, register_conversion


class SparseFloatParams(StepParams):
    """No parameters: float32 only (float16 sparse weights are refused by XNNPACK), sparsity from the model."""


register_conversion(
    "sparse_float",
    "float32 with pruned weights stored sparse (DENSIFY) for XNNPACK's sparse kernels (ARM, x86 without AVX)",
    SparseFloatParams,
)
