"""Structure-aware .tflite mutations: find the integers a flatbuffer's tables and vectors hold, change one.

A small reader of the flatbuffer wire format (root offset, vtables, vectors) walks the TFLite schema's
fields that an interpreter trusts: tensor shapes, types and buffer indices, operator opcode indices and
tensor index lists, subgraph inputs/outputs, opcodes, buffer offsets/sizes, vector lengths and table
offsets. Field numbers follow tensorflow/lite/schema/schema.fbs.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from hypothesis import strategies as st


@dataclass(frozen=True)
class Slot:
    where: str  # e.g. "subgraph[0].tensor[3].shape[1]"
    pos: int
    fmt: str  # struct format of the value stored there


def _u32(buf: bytes, pos: int) -> int:
    return struct.unpack_from("<I", buf, pos)[0]


def _field(buf: bytes, table: int, index: int) -> int | None:
    """Absolute position of field ``index`` of the table at ``table``, None when absent."""
    vtable = table - struct.unpack_from("<i", buf, table)[0]
    vt_len = struct.unpack_from("<H", buf, vtable)[0]
    if 4 + 2 * index >= vt_len:
        return None
    off = struct.unpack_from("<H", buf, vtable + 4 + 2 * index)[0]
    return table + off if off else None


def _vector(buf: bytes, table: int, index: int, slots: list, where: str) -> list[int]:
    """Positions of a vector field's elements; its length and offset become slots too."""
    at = _field(buf, table, index)
    if at is None:
        return []
    start = at + _u32(buf, at)
    slots += [Slot(f"{where}.offset", at, "<I"), Slot(f"{where}.length", start, "<I")]
    return [start + 4 + 4 * i for i in range(_u32(buf, start))]


def _tables(buf: bytes, table: int, index: int, slots: list, where: str) -> list[int]:
    return [p + _u32(buf, p) for p in _vector(buf, table, index, slots, where)]


def _scalar(buf: bytes, table: int, index: int, fmt: str, slots: list, where: str) -> None:
    at = _field(buf, table, index)
    if at is not None:
        slots.append(Slot(where, at, fmt))


def _ints(buf: bytes, table: int, index: int, slots: list, where: str) -> None:
    slots += [Slot(f"{where}[{i}]", p, "<i") for i, p in enumerate(_vector(buf, table, index, slots, where))]


def tflite_slots(buf: bytes) -> list[Slot]:
    """Every mutable integer of the schema fields above, in the model ``buf``."""
    slots: list[Slot] = [Slot("root_offset", 0, "<I")]
    model = _u32(buf, 0)
    _scalar(buf, model, 0, "<I", slots, "version")
    for i, code in enumerate(_tables(buf, model, 1, slots, "operator_codes")):
        _scalar(buf, code, 0, "<b", slots, f"opcode[{i}].deprecated_builtin_code")
        _scalar(buf, code, 2, "<i", slots, f"opcode[{i}].version")
        _scalar(buf, code, 3, "<i", slots, f"opcode[{i}].builtin_code")
    for s, sub in enumerate(_tables(buf, model, 2, slots, "subgraphs")):
        for t, tensor in enumerate(_tables(buf, sub, 0, slots, f"subgraph[{s}].tensors")):
            where = f"subgraph[{s}].tensor[{t}]"
            _ints(buf, tensor, 0, slots, f"{where}.shape")
            _scalar(buf, tensor, 1, "<b", slots, f"{where}.type")
            _scalar(buf, tensor, 2, "<I", slots, f"{where}.buffer")
            _ints(buf, tensor, 7, slots, f"{where}.shape_signature")
        _ints(buf, sub, 1, slots, f"subgraph[{s}].inputs")
        _ints(buf, sub, 2, slots, f"subgraph[{s}].outputs")
        for o, op in enumerate(_tables(buf, sub, 3, slots, f"subgraph[{s}].operators")):
            _scalar(buf, op, 0, "<I", slots, f"subgraph[{s}].op[{o}].opcode_index")
            _ints(buf, op, 1, slots, f"subgraph[{s}].op[{o}].inputs")
            _ints(buf, op, 2, slots, f"subgraph[{s}].op[{o}].outputs")
    for b, buffer in enumerate(_tables(buf, model, 4, slots, "buffers")):
        _vector(buf, buffer, 0, slots, f"buffer[{b}].data")
        _scalar(buf, buffer, 1, "<Q", slots, f"buffer[{b}].offset")
        _scalar(buf, buffer, 2, "<Q", slots, f"buffer[{b}].size")
    return slots


_EDGES = {
    "<b": [-128, -1, 0, 1, 127],
    "<i": [-(2**31), -2, -1, 0, 1, 2, 3, 255, 65536, 2**31 - 1],
    "<I": [0, 1, 2, 3, 4, 8, 255, 65535, 2**31 - 1, 2**31, 2**32 - 1],
    "<Q": [0, 1, 2**31, 2**32, 2**63 - 1, 2**64 - 1],
}
_RANGES = {"<b": (-128, 127), "<i": (-(2**31), 2**31 - 1), "<I": (0, 2**32 - 1), "<Q": (0, 2**64 - 1)}


@st.composite
def mutated_tflite(draw, seed: bytes, slots: list[Slot], max_ops: int = 3) -> tuple[bytes, list[str]]:
    """(``seed`` with 1-``max_ops`` schema integers changed, what was changed)."""
    buf, done = bytearray(seed), []
    for _ in range(draw(st.integers(1, max_ops))):
        slot = draw(st.sampled_from(slots))
        old = struct.unpack_from(slot.fmt, buf, slot.pos)[0]
        low, high = _RANGES[slot.fmt]
        new = draw(
            st.one_of(
                st.sampled_from(_EDGES[slot.fmt]),
                st.integers(max(low, old - 4), min(high, old + 4)),  # off by a few: an index one past the end
                st.integers(low, high),
            )
        )
        struct.pack_into(slot.fmt, buf, slot.pos, new)
        done.append(f"{slot.where}: {old} -> {new}")
    return bytes(buf), done
