"""Check a .tflite's structure before its bytes reach LiteRT, whose C++ trusts the file.

A crafted or damaged model can make the interpreter read or write out of bounds: a graph input
backed by constant data makes ``set_tensor`` write into the read-only mapped file (SIGSEGV), a
tensor shape larger than its buffer makes kernels read past it, a tensor or opcode index out of
range reads beyond a vector. Each such fault is refused here with one line,
"X is not a valid .tflite: ...". What the checks cover: every offset, table and vector inside the
file (flatbuffer.py), every buffer's data inside the file, tensor byte sizes consistent with
shape x element size, no negative or absurd dims, graph inputs and op outputs not constant, every
opcode, tensor and buffer index in range, at least one subgraph.
"""

from __future__ import annotations

import math
from pathlib import Path

from .errors import UserError
from .flatbuffer import Corrupt, Truncated
from .tflite_model import TENSOR_TYPES, Subgraph, Tensor, TFLiteModel, parse

MAX_ELEMENTS = 2**31  # more elements in one tensor is a crafted shape, not a model for a device


def check_tflite_file(path: str | Path) -> TFLiteModel:
    """Read ``path`` and check it; returns the parsed structure (UserError when it is not valid)."""
    path = Path(path)
    try:
        content = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    return check_tflite(content, str(path))


def check_tflite(content: bytes, name: str = "model") -> TFLiteModel:
    """Parse ``content`` and refuse anything LiteRT could not run safely, in one line naming ``name``."""
    if len(content) < 8 or content[4:8] != b"TFL3":
        raise UserError(f"{name} is not a TFLite model (file identifier is {bytes(content[4:8])!r}, expected TFL3)")
    try:
        model = parse(content)
        _check(model)
    except Truncated as e:
        raise UserError(f"{name} is not a valid .tflite: the file is corrupt or truncated: {e}") from None
    except Corrupt as e:
        raise UserError(f"{name} is not a valid .tflite: {e}; re-export it or use the original file") from None
    return model


def _check(model: TFLiteModel) -> None:
    if not model.subgraphs:
        raise Corrupt("it has no subgraph")
    for name, index in model.metadata:
        if index >= len(model.buffers):
            raise Corrupt(f"metadata {name!r} points at buffer {index} of {len(model.buffers)}")
    for s in model.signatures:
        if s.subgraph >= len(model.subgraphs):
            raise Corrupt(f"a signature names subgraph {s.subgraph} of {len(model.subgraphs)}")
        count = len(model.subgraphs[s.subgraph].tensors)
        if any(i >= count for i in s.tensors):
            raise Corrupt(f"a signature names a tensor index out of range (subgraph {s.subgraph} has {count})")
    for g, graph in enumerate(model.subgraphs):
        for tensor in graph.tensors:
            _check_tensor(model, tensor)
        _check_graph(model, g, graph)


def _check_tensor(model: TFLiteModel, t: Tensor) -> None:
    where = f"tensor {t.name!r}"
    if t.buffer >= len(model.buffers):
        raise Corrupt(f"{where} points at buffer {t.buffer}, but the file has {len(model.buffers)} buffers")
    if t.type not in TENSOR_TYPES:
        raise Corrupt(f"{where} has unknown type code {t.type}")
    if any(d < 0 for d in t.shape) or any(d < -1 for d in t.shape_signature):
        raise Corrupt(f"{where} has a negative dimension in its shape {list(t.shape)}")
    elements = math.prod(t.shape)
    if elements > MAX_ELEMENTS or math.prod(abs(d) for d in t.shape_signature) > MAX_ELEMENTS:
        raise Corrupt(f"{where} has an absurd shape {list(t.shape)} (over {MAX_ELEMENTS} elements)")
    if t.scales and len(t.zero_points) != len(t.scales):
        raise Corrupt(f"{where} has {len(t.scales)} quantization scales but {len(t.zero_points)} zero points")
    if len(t.scales) > 1 and not 0 <= t.quantized_dimension < len(t.shape):
        raise Corrupt(f"{where} is quantized along dimension {t.quantized_dimension} of a rank-{len(t.shape)} shape")
    size = model.buffers[t.buffer].size if t.buffer else 0
    item = TENSOR_TYPES[t.type][1]
    if size and item and not t.sparse and size != elements * item:
        raise Corrupt(
            f"{where} is {t.type_name} {list(t.shape)} ({elements * item} bytes) but its buffer holds {size} bytes"
        )


def _check_graph(model: TFLiteModel, g: int, graph: Subgraph) -> None:
    count = len(graph.tensors)

    def constant(i: int) -> bool:
        t = graph.tensors[i]
        return bool(t.buffer and model.buffers[t.buffer].size) and not t.is_variable

    for kind, indices in (("input", graph.inputs), ("output", graph.outputs)):
        bad = [i for i in indices if not 0 <= i < count]
        if bad:
            raise Corrupt(f"subgraph {g} {kind} tensor index {bad[0]} is out of range ({count} tensors)")
    for i in graph.inputs:
        if constant(i):
            raise Corrupt(f"graph input {graph.tensors[i].name!r} is a constant tensor (backed by a buffer with data)")
    for n, op in enumerate(graph.operators):
        where = f"operator {n} of subgraph {g}"
        if op.opcode >= len(model.operator_codes):
            raise Corrupt(f"{where} has opcode index {op.opcode}, but the file has {len(model.operator_codes)}")
        if any(not -1 <= i < count for i in (*op.inputs, *op.intermediates)) or any(
            not 0 <= i < count for i in op.outputs
        ):
            raise Corrupt(f"{where} names a tensor index out of range ({count} tensors)")
        written = [i for i in op.outputs if constant(i)]
        if written:
            raise Corrupt(f"{where} writes into constant tensor {graph.tensors[written[0]].name!r}")
