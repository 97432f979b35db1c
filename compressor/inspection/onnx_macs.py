"""MACs per op and in total of an .onnx, with the formulas of inspection/macs.py in ONNX's NCHW
layouts, from the shapes ONNX shape inference gives every tensor (a dynamic batch counts as 1):

    Conv           out[N,Co,H,W] * prod(W[1:])      (W [Co, Ci/groups, kh, kw])
    ConvTranspose  in[N,Ci,H,W] * prod(W[1:])       (W [Ci, Co/groups, kh, kw])
    Gemm / MatMul  out[..., M, N] * K               (K: A's contracted dimension)

Weights and shapes are read only; nothing runs. A tensor whose shape stays unknown after
inference leaves its op uncounted (and listed with macs None).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from compressor.runtime.errors import UserError

MAC_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "ConvInteger", "MatMulInteger")


def _shapes(graph) -> dict[str, list[int] | None]:
    shapes = {}
    for v in [*graph.input, *graph.value_info, *graph.output]:
        dims = v.type.tensor_type.shape.dim
        shapes[v.name] = [d.dim_value if d.HasField("dim_value") else 1 for d in dims] if dims else None
    for init in graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def _size(shape: list[int]) -> int:
    return int(np.prod([max(int(d), 1) for d in shape])) if shape else 1


def _node_macs(node, shapes: dict) -> int | None:
    ins = [shapes.get(name) for name in node.input[:2]]
    out = shapes.get(node.output[0]) if node.output else None
    if len(ins) < 2 or None in ins or out is None:
        return None
    a, w = ins
    if node.op_type in ("Conv", "ConvInteger") and len(w) >= 3:
        return _size(out) * _size(w[1:])
    if node.op_type == "ConvTranspose" and len(w) >= 3:
        return _size(a) * _size(w[1:])
    if node.op_type == "Gemm" and len(a) == 2:
        trans_a = next((attr.i for attr in node.attribute if attr.name == "transA"), 0)
        return _size(out) * max(int(a[0] if trans_a else a[1]), 1)
    if node.op_type in ("MatMul", "MatMulInteger") and a:
        return _size(out) * max(int(a[-1]), 1)
    return None


def onnx_macs(path: str | Path) -> dict:
    """{"total": MACs, "by_op": {op type: MACs}, "ops": [{op, output, macs}] in graph order}."""
    import onnx

    try:
        model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    except Exception as e:  # protobuf DecodeError, inference errors on a damaged graph
        raise UserError(f"{path} is not a valid ONNX model ({type(e).__name__}: {str(e)[:200]})") from None
    shapes = _shapes(model.graph)
    rows, by_op = [], {}
    for node in model.graph.node:
        if node.op_type not in MAC_OPS:
            continue
        macs = _node_macs(node, shapes)
        rows.append({"op": node.op_type, "output": node.output[0] if node.output else "", "macs": macs})
        if macs is not None:
            by_op[node.op_type] = by_op.get(node.op_type, 0) + macs
    return {"total": sum(by_op.values()), "by_op": by_op, "ops": rows}
