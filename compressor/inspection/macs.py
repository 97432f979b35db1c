"""Multiply-accumulates (MACs) per op and in total, read from an exported .tflite.

A MAC is one ``a * b + c``: the unit latency scales with on a CPU whose time goes to convolutions
and matrix products. Counted from the shapes stored in the file (what ships, after any pruning
that removed channels), for one sample (a dynamic batch counts as 1):

    CONV_2D            out[N,H,W,Co] * kh * kw * Ci/groups   (filter [Co, kh, kw, Ci/groups])
    DEPTHWISE_CONV_2D  out[N,H,W,Co] * kh * kw                (filter [1, kh, kw, Co])
    TRANSPOSE_CONV     in[N,H,W,Ci] * kh * kw * Co           (filter [Co, kh, kw, Ci])
    CONV_3D            out[N,D,H,W,Co] * kd * kh * kw * Ci   (filter [kd, kh, kw, Ci, Co])
    FULLY_CONNECTED    rows * units * in                      (weights [units, in])
    BATCH_MATMUL       out[..., M, N] * K

Element-wise ops, pooling and activations are not MACs and are not counted; zeros in a sparse
kernel still count (dense kernels compute them), which is why channel pruning, not magnitude
pruning, lowers this figure.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from compressor.inspection.tflite import TFLiteFile

MAC_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "CONV_3D", "FULLY_CONNECTED", "BATCH_MATMUL")


def _size(shape: list[int]) -> int:
    return int(np.prod([max(int(d), 1) for d in shape])) if shape else 1


def op_macs(f: TFLiteFile, op: str, ins: list[int], outs: list[int]) -> int | None:
    """The MACs of one op, or None when it has none (or its shapes are unknown)."""
    if op not in MAC_OPS or not outs or len(ins) < 2 or min(ins[:2]) < 0:
        return None
    out = f.tensors[outs[0]]["shape"]
    if op == "TRANSPOSE_CONV":  # inputs: output_shape, weights, input
        weights, source = f.tensors[ins[1]]["shape"], f.tensors[ins[2]]["shape"]
        return _size(source) * _size(weights[:3]) if len(weights) == 4 else None
    a, b = f.tensors[ins[0]]["shape"], f.tensors[ins[1]]["shape"]
    if op == "CONV_2D" and len(b) == 4:
        return _size(out) * _size(b[1:])
    if op == "DEPTHWISE_CONV_2D" and len(b) == 4:
        return _size(out) * _size(b[1:3])
    if op == "CONV_3D" and len(b) == 5:
        return _size(out) * _size(b[:4])
    if op == "FULLY_CONNECTED" and len(b) == 2:
        return _size(a) // max(int(b[1]), 1) * _size(b)
    if op == "BATCH_MATMUL" and a:
        return _size(out) * max(int(a[-1]), 1)
    return None


def tflite_macs(content: bytes, name: str = "model") -> dict:
    """{"total": MACs, "by_op": {op type: MACs}, "ops": [{op, output, macs}] in graph order}."""
    f = TFLiteFile(content, name)
    rows, by_op = [], {}
    for op, ins, outs in f.ops:
        macs = op_macs(f, op, ins, outs)
        if macs is None:
            continue
        rows.append({"op": op, "output": f.tensors[outs[0]]["name"], "macs": macs})
        by_op[op] = by_op.get(op, 0) + macs
    return {"total": sum(r["macs"] for r in rows), "by_op": by_op, "ops": rows}


def file_macs(path: str | Path) -> dict:
    """MACs of a .tflite or .onnx file (see tflite_macs)."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        from compressor.inspection.onnx_macs import onnx_macs

        return onnx_macs(path)
    return tflite_macs(path.read_bytes(), str(path))


def format_macs(n: int | None) -> str:
    """1234567 -> '1.23M'."""
    if n is None:
        return ""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)
