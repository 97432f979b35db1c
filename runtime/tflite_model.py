"""The parts of a .tflite flatbuffer the checks and ``compressor inspect`` need, read bounds-checked.

Slots follow LiteRT's schema.fbs (a field's slot is its position in the table). Nothing here
judges the model: ``tflite_check.check_tflite`` does, and it is the only way in for callers.
"""

from __future__ import annotations

from dataclasses import dataclass

from .flatbuffer import Table, Truncated, root

# TensorType: (name, bytes per element); 0 = not a fixed size (strings, resources, packed sub-byte types).
TENSOR_TYPES = {
    0: ("FLOAT32", 4),
    1: ("FLOAT16", 2),
    2: ("INT32", 4),
    3: ("UINT8", 1),
    4: ("INT64", 8),
    5: ("STRING", 0),
    6: ("BOOL", 1),
    7: ("INT16", 2),
    8: ("COMPLEX64", 8),
    9: ("INT8", 1),
    10: ("FLOAT64", 8),
    11: ("COMPLEX128", 16),
    12: ("UINT64", 8),
    13: ("RESOURCE", 0),
    14: ("VARIANT", 0),
    15: ("UINT32", 4),
    16: ("UINT16", 2),
    17: ("INT4", 0),
    18: ("BFLOAT16", 2),
    19: ("INT2", 0),
    20: ("UINT4", 0),
    21: ("FLOAT8_E4M3FN", 1),
    22: ("FLOAT8_E5M2", 1),
}


@dataclass(frozen=True)
class Tensor:
    name: str
    type: int  # TensorType code; TENSOR_TYPES names it
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]  # -1 marks a dynamic dim; empty when the file has none
    buffer: int
    is_variable: bool
    sparse: bool
    scales: tuple[float, ...]
    zero_points: tuple[int, ...]
    quantized_dimension: int

    @property
    def type_name(self) -> str:
        return TENSOR_TYPES.get(self.type, (f"TYPE_{self.type}", 0))[0]


@dataclass(frozen=True)
class Operator:
    opcode: int  # index into TFLiteModel.operator_codes
    inputs: tuple[int, ...]  # -1: an optional input left out
    outputs: tuple[int, ...]
    intermediates: tuple[int, ...]


@dataclass(frozen=True)
class Subgraph:
    tensors: tuple[Tensor, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    operators: tuple[Operator, ...]


@dataclass(frozen=True)
class OperatorCode:
    builtin: int  # the larger of builtin_code and deprecated_builtin_code, as LiteRT reads it
    custom: str | None


@dataclass(frozen=True)
class Buffer:
    start: int  # where the bytes are in the file (inside the flatbuffer, or after it for large models)
    size: int  # 0: no data (an activation's buffer)
    external: bool  # addressed by (offset, size) after the flatbuffer rather than a data vector


@dataclass(frozen=True)
class Signature:
    subgraph: int
    tensors: tuple[int, ...]  # every input and output tensor index it names


@dataclass(frozen=True)
class TFLiteModel:
    version: int
    operator_codes: tuple[OperatorCode, ...]
    subgraphs: tuple[Subgraph, ...]
    buffers: tuple[Buffer, ...]
    metadata: tuple[tuple[str, int], ...]  # (name, buffer index)
    signatures: tuple[Signature, ...]

    def buffer_bytes(self, content: bytes, index: int) -> bytes | None:
        """A buffer's data, or None when it has none (or the index is 0, the empty sentinel)."""
        if not 0 < index < len(self.buffers) or not self.buffers[index].size:
            return None
        b = self.buffers[index]
        return bytes(content[b.start : b.start + b.size])


def parse(content: bytes) -> TFLiteModel:
    """Read the model's structure; raises ``Corrupt`` when an offset or length leaves the file."""
    model = root(content)
    codes = tuple(OperatorCode(max(c.scalar(0, "<b"), c.scalar(3, "<i")), c.string(1)) for c in model.tables(1))
    return TFLiteModel(
        version=model.scalar(0, "<I"),
        operator_codes=codes,
        subgraphs=tuple(_subgraph(g) for g in model.tables(2)),
        buffers=tuple(_buffer(b, len(content)) for b in model.tables(4)),
        metadata=tuple((m.string(0) or "", m.scalar(1, "<I")) for m in model.tables(6)),
        signatures=tuple(_signature(s) for s in model.tables(7)),
    )


def _subgraph(g: Table) -> Subgraph:
    return Subgraph(
        tensors=tuple(_tensor(t) for t in g.tables(0)),
        inputs=g.numbers(1, "i"),
        outputs=g.numbers(2, "i"),
        operators=tuple(
            Operator(op.scalar(0, "<I"), op.numbers(1, "i"), op.numbers(2, "i"), op.numbers(8, "i"))
            for op in g.tables(3)
        ),
    )


def _tensor(t: Table) -> Tensor:
    q = t.table(4)
    return Tensor(
        name=t.string(3) or "",
        type=t.scalar(1, "<b"),
        shape=t.numbers(0, "i"),
        shape_signature=t.numbers(7, "i"),
        buffer=t.scalar(2, "<I"),
        is_variable=bool(t.scalar(5, "<B")),
        sparse=t.table(6) is not None,
        scales=q.numbers(2, "f") if q is not None else (),
        zero_points=q.numbers(3, "q") if q is not None else (),
        quantized_dimension=q.scalar(6, "<i") if q is not None else 0,
    )


def _buffer(b: Table, file_size: int) -> Buffer:
    offset, size = b.scalar(1, "<Q"), b.scalar(2, "<Q")
    if offset > 1:  # offset 0/1: the data vector holds the bytes (1 is a writer's placeholder)
        if offset + size > file_size:
            raise Truncated(f"a buffer's data ({size} bytes at offset {offset}) lies past the end of the file")
        return Buffer(offset, size, True)
    start, n = b.vector(0, 1)
    return Buffer(start, n, False)


def _signature(s: Table) -> Signature:
    maps = [*s.tables(0), *s.tables(1)]
    return Signature(s.scalar(4, "<I"), tuple(m.scalar(1, "<I") for m in maps))
