"""A bounds-checked flatbuffer reader: every offset, table, vector and string must lie inside the buffer.

The generated schema classes trust the file: a crafted offset reads past the end, a crafted
vector length makes numpy allocate gigabytes. Here a bad offset raises ``Corrupt`` (callers turn
it into one ``UserError`` naming the file), and no vector is longer than the bytes left after it,
so what a reader allocates is bounded by the size of the file; and since a crafted file can point
many entries at the same large vector, all reads from one root share a budget of a few times the
file's size, which also bounds the time spent. Used for .tflite models
(tflite_check.py) and the TFLite metadata inside them (model_metadata.py); the device may not
have the generated classes at all.
"""

from __future__ import annotations

import struct


class Corrupt(Exception):
    """A structural fault in a flatbuffer; its message says what and where, in a few words."""


class Truncated(Corrupt):
    """Something the buffer points at lies past its end: typically a file cut short."""


_BUDGET_FACTOR, _BUDGET_SLACK = 4, 1 << 20  # bytes a whole read may touch: 4x the file, plus 1 MiB


class Table:
    """One flatbuffer table: fields found through its vtable, every offset checked."""

    def __init__(self, buf: bytes, pos: int, budget: list[int] | None = None):
        self.buf, self.pos = buf, pos
        self.budget = budget if budget is not None else [_BUDGET_FACTOR * len(buf) + _BUDGET_SLACK]
        self.vtable = pos - i32(buf, pos)
        self.vt_len, self.obj_len = u16(buf, self.vtable), u16(buf, self.vtable + 2)
        if self.vt_len < 4 or self.vt_len % 2 or self.vtable + self.vt_len > len(buf):
            raise Corrupt(f"bad vtable at offset {self.vtable}")
        if self.obj_len < 4 or pos + self.obj_len > len(buf):
            raise Truncated(f"table at offset {pos} runs past the end of the file")
        self._spend(self.obj_len)

    def _spend(self, size: int) -> None:
        self.budget[0] -= size
        if self.budget[0] < 0:
            raise Corrupt("it refers to the same data over and over (reads exceed 4x the file size)")

    def position(self, slot: int) -> int | None:
        """Where a field's value is stored in the buffer; None when the table leaves it out."""
        entry = 4 + 2 * slot
        if entry >= self.vt_len:
            return None  # field added to the schema after this file was written
        off = u16(self.buf, self.vtable + entry)
        if off and off >= self.obj_len:
            raise Corrupt(f"field {slot} of the table at offset {self.pos} lies outside it")
        return self.pos + off if off else None

    def scalar(self, slot: int, fmt: str, default: int | float = 0):
        p = self.position(slot)
        return default if p is None else unpack(fmt, self.buf, p)

    def table(self, slot: int) -> Table | None:
        p = self.position(slot)
        return None if p is None else Table(self.buf, p + u32(self.buf, p), self.budget)

    def vector(self, slot: int, item_size: int) -> tuple[int, int]:
        """(start of the first item, item count) of a vector field; (0, 0) when absent."""
        p = self.position(slot)
        if p is None:
            return 0, 0
        start = p + u32(self.buf, p)
        n = u32(self.buf, start)
        if start + 4 + n * item_size > len(self.buf):
            raise Truncated(f"vector of {n} items at offset {start} runs past the end of the file")
        self._spend(4 + n * item_size)
        return start + 4, n

    def tables(self, slot: int) -> list[Table]:
        start, n = self.vector(slot, 4)
        return [Table(self.buf, start + 4 * i + u32(self.buf, start + 4 * i), self.budget) for i in range(n)]

    def numbers(self, slot: int, fmt: str) -> tuple:
        """A vector of scalars; ``fmt`` is one struct code such as ``i``, ``f`` or ``q``."""
        start, n = self.vector(slot, struct.calcsize(fmt))
        return struct.unpack_from(f"<{n}{fmt}", self.buf, start) if n else ()

    def bytes(self, slot: int) -> bytes:
        start, n = self.vector(slot, 1)
        return bytes(self.buf[start : start + n])

    def floats(self, slot: int) -> list[float]:
        return list(self.numbers(slot, "f"))

    def string(self, slot: int) -> str | None:
        p = self.position(slot)
        if p is None:
            return None
        start = p + u32(self.buf, p)
        n = u32(self.buf, start)
        if start + 4 + n > len(self.buf):
            raise Truncated(f"string at offset {start} runs past the end of the file")
        self._spend(4 + n)
        return bytes(self.buf[start + 4 : start + 4 + n]).decode("utf-8", errors="replace")


def root(buf: bytes) -> Table:
    """The root table: its offset is the buffer's first 4 bytes."""
    return Table(buf, u32(buf, 0))


def unpack(fmt: str, buf: bytes, pos: int):
    if pos < 0:
        raise Corrupt("negative offset")
    try:
        return struct.unpack_from(fmt, buf, pos)[0]
    except struct.error:
        raise Truncated(f"offset {pos} is past the end of the file") from None


def u16(buf: bytes, pos: int) -> int:
    return unpack("<H", buf, pos)


def u32(buf: bytes, pos: int) -> int:
    return unpack("<I", buf, pos)


def i32(buf: bytes, pos: int) -> int:
    return unpack("<i", buf, pos)
