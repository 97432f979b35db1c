"""Byte-level mutations as hypothesis strategies: flip bits, overwrite ranges, truncate, extend, splice.

``mutated_bytes(seed, others)`` draws 1-4 operations and applies them in turn; ``others`` are the
other seeds, so a splice can carry a zip header into a .tflite or YAML into a manifest.
"""

from __future__ import annotations

from hypothesis import strategies as st

# Values that sit on the edges of the integer widths file formats use for offsets, sizes and counts.
EDGE_CHUNKS = [
    b"\x00",
    b"\xff",
    b"\x7f",
    b"\x80",
    b"\x00\x00\x00\x00",
    b"\xff\xff\xff\xff",
    b"\xff\xff\xff\x7f",
    b"\x00\x00\x00\x80",
    b"\x01\x00\x00\x00",
    b"\xff\xff\xff\xff\xff\xff\xff\xff",
    b"PK\x03\x04",
    b"TFL3",
]


def _pos(draw, data: bytearray, end: bool = False) -> int:
    return draw(st.integers(0, len(data) if end else max(len(data) - 1, 0)))


def _flip(draw, data: bytearray, others) -> bytearray:
    if data:
        data[_pos(draw, data)] ^= 1 << draw(st.integers(0, 7))
    return data


def _overwrite(draw, data: bytearray, others) -> bytearray:
    chunk = draw(st.one_of(st.sampled_from(EDGE_CHUNKS), st.binary(min_size=1, max_size=16)))
    at = _pos(draw, data)
    data[at : at + len(chunk)] = chunk
    return data


def _truncate(draw, data: bytearray, others) -> bytearray:
    return data[: _pos(draw, data, end=True)]


def _extend(draw, data: bytearray, others) -> bytearray:
    tail = draw(st.one_of(st.binary(min_size=1, max_size=64), st.sampled_from(EDGE_CHUNKS)))
    return data + tail * draw(st.sampled_from([1, 2, 1000]))


def _delete(draw, data: bytearray, others) -> bytearray:
    at = _pos(draw, data)
    del data[at : at + draw(st.integers(1, 64))]
    return data


def _duplicate(draw, data: bytearray, others) -> bytearray:
    at = _pos(draw, data)
    chunk = data[at : at + draw(st.integers(1, 256))]
    to = _pos(draw, data, end=True)
    return data[:to] + chunk + data[to:]


def _splice(draw, data: bytearray, others) -> bytearray:
    if not others:
        return data
    other = draw(st.sampled_from(others))
    start = draw(st.integers(0, max(len(other) - 1, 0)))
    chunk = other[start : start + draw(st.integers(1, 512))]
    at = _pos(draw, data, end=True)
    if draw(st.booleans()):
        return data[:at] + chunk + data[at:]
    data[at : at + len(chunk)] = chunk
    return data


OPERATIONS = {
    "flip": _flip,
    "overwrite": _overwrite,
    "truncate": _truncate,
    "extend": _extend,
    "delete": _delete,
    "duplicate": _duplicate,
    "splice": _splice,
}


@st.composite
def mutated_bytes(draw, seed: bytes, others: list[bytes] | tuple = ()) -> bytes:
    """``seed`` after 1-4 byte-level operations (a truncation at the very end may leave it unchanged)."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        data = OPERATIONS[draw(st.sampled_from(sorted(OPERATIONS)))](draw, data, others)
    return bytes(data)
