"""Parse the YAML and JSON files a user hands us without letting the file decide how much we allocate.

A recipe, a search space or a bundle manifest is small; a hostile one is not. Every limit here turns
what would be an exhausted machine or an internal error into one ``UserError`` line:

- size: the file is read up to ``limit`` bytes (1 MiB by default), never whole;
- YAML aliases (``*name``) are refused: a "billion laughs" file expands a few hundred bytes of
  anchors into billions of nodes, and our files never need them;
- nesting: more than ``max_depth`` levels is refused before the recursive parts of PyYAML and the
  json module could raise RecursionError;
- text must be UTF-8 (a leading BOM is accepted); JSON's NaN/Infinity and numbers that overflow to
  inf are refused; a key given twice in one mapping is refused in both formats, since silently
  keeping the last one hides a typo.

PyYAML is imported only by the YAML functions: the device package parses JSON only.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

from .errors import UserError

MAX_BYTES = 1 << 20
# The JSON files of a run folder (report.json, search.json, step metas): written by this tool, larger
# than anything a user writes by hand, and still bounded when a hostile one is handed to us.
RUN_FILE_BYTES = 64 << 20
MAX_DEPTH = 64

# A JSON string (skipped whole, so brackets inside strings do not count) or one bracket.
_JSON_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def read_text(path: str | os.PathLike, what: str, limit: int = MAX_BYTES) -> str:
    """The UTF-8 text of ``path``, refusing a file over ``limit`` bytes before reading it whole."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise UserError(f"{what} {path} cannot be read ({e.strerror or e}); check the path and permissions") from None
    return decode(data, f"{what} {path}", limit)


def decode(data: bytes, source: str, limit: int = MAX_BYTES) -> str:
    """``data`` as text; ``source`` names it in the one-line error."""
    if len(data) > limit:
        raise UserError(f"{source} is larger than {_size(limit)}; refusing it (such files are a few KiB)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(
            f"{source} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); save it as UTF-8"
        ) from None


def load_yaml_file(path: str | os.PathLike, what: str, limit: int = MAX_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """Read and parse the YAML file ``path``; ``what`` ("recipe file", "search space") starts the messages."""
    return parse_yaml(read_text(path, what, limit), f"{what} {path}", max_depth)


def load_json_file(path: str | os.PathLike, what: str, limit: int = MAX_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    return parse_json(read_text(path, what, limit), f"{what} {path}", max_depth)


def parse_yaml(text: str, source: str, max_depth: int = MAX_DEPTH) -> Any:
    """YAML ``text`` with safe types only, no aliases, at most ``max_depth`` levels, no duplicate keys."""
    import yaml  # not a dependency of the device package, which reads JSON only

    try:
        loader = _bounded_loader(yaml, max_depth)(text)  # its reader already rejects control characters
    except yaml.YAMLError as e:
        raise UserError(f"{source} is not valid YAML: {str(e).splitlines()[0]}") from None
    try:
        return loader.get_single_data()
    except _Refused as e:
        raise UserError(f"{source}: {e}") from None
    except yaml.YAMLError as e:
        raise UserError(f"{source} is not valid YAML: {str(e).splitlines()[0]}") from None
    except (ValueError, OverflowError, RecursionError) as e:  # e.g. a date 2021-13-45, an int of 5000 digits
        raise UserError(f"{source} has a value that cannot be read: {e}") from None
    finally:
        loader.dispose()


def parse_json(text: str | bytes, source: str, max_depth: int = MAX_DEPTH) -> Any:
    """JSON ``text`` with at most ``max_depth`` levels, finite numbers only, no duplicate keys."""
    if isinstance(text, bytes):
        text = decode(text, source, limit=len(text))
    try:
        _check_json_depth(text, max_depth)
        return json.loads(text, object_pairs_hook=_unique_pairs, parse_constant=_no_constant, parse_float=_finite_float)
    except _Refused as e:
        raise UserError(f"{source}: {e}") from None
    except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError; so is an int of 5000 digits
        raise UserError(f"{source} is not valid JSON: {e}") from None


class _Refused(ValueError):
    """Raised inside the parsers; turned into a UserError naming the file."""


def _check_json_depth(text: str, max_depth: int) -> None:
    depth = 0
    for match in _JSON_TOKENS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > max_depth:
                raise _Refused(f"nested more than {max_depth} levels deep; refusing it")
        elif token in "]}":
            depth -= 1


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise _Refused(f"key {key!r} appears twice in one object; keep one")
        out[key] = value
    return out


def _no_constant(name: str) -> float:
    raise _Refused(f"{name} is not a number JSON allows; write a finite number")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise _Refused(f"the number {literal[:40]} is out of range for a float")
    return value


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit >= 1 << 20 and not limit % (1 << 20) else f"{limit} bytes"


def _bounded_loader(yaml: Any, max_depth: int) -> type:
    """A SafeLoader subclass (pure Python: the C loader's composer cannot be bounded) with the limits."""

    class BoundedLoader(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise _Refused(
                    f"line {event.start_mark.line + 1}: YAML aliases (*{event.anchor}) are not allowed; "
                    "write the value out in full"
                )
            self.depth += 1
            if self.depth > max_depth:
                mark = self.peek_event().start_mark
                raise _Refused(f"line {mark.line + 1}: nested more than {max_depth} levels deep; refusing it")
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def construct_mapping(self, node: Any, deep: bool = False) -> dict:
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # unhashable key: SafeConstructor names the problem below
                    continue
                if duplicate:
                    line = key_node.start_mark.line + 1
                    raise _Refused(f"line {line}: key {key!r} appears twice in one mapping; keep one")
            return super().construct_mapping(node, deep=deep)

    return BoundedLoader
