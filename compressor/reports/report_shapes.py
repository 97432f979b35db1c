"""What a report.json, tune.json or search.json must hold before report.html is drawn from it.

The sections read these fields without checking each one (a missing one would show up as a
"section failed" box in an otherwise empty page, exit 0). A file of the wrong shape is not a
report: say so in one line, before anything is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compressor.runtime.errors import UserError

# kind: (schema prefix, the command that writes it, top-level fields, the list of rows, the fields of each row)
SHAPES = {
    "compress": (
        "compressor.report/",
        "compress",
        ("artifacts",),
        "artifacts",
        ("artifact", "format", "size_bytes", "gzip_bytes", "accuracy", "accuracy_delta", "latency"),
    ),
    "tune": (
        "compressor.tune/",
        "tune",
        ("study", "storage", "sampler", "pruner", "workers", "seconds", "counts", "trials"),
        "trials",
        ("number", "state", "epochs_run", "seconds"),
    ),
    "search": (
        "compressor.search/",
        "search",
        ("verdict", "candidates", "reference_val_accuracy", "max_accuracy_drop"),
        "candidates",
        (
            "number",
            "label",
            "val_accuracy",
            "accuracy_drop",
            "size_bytes",
            "gzip_bytes",
            "latency_ms",
            "feasible",
            "front",
        ),
    ),
}


def check_shape(kind: str, path: Path, data: Any) -> None:
    """Raise a one-line UserError when ``data`` (read from ``path``) is not a ``kind`` report."""
    why = _what_is_wrong(kind, data)
    if why:
        command = SHAPES[kind][1]
        raise UserError(f"{path} is not a compressor report ({why}); `compressor {command}` writes it")


def _what_is_wrong(kind: str, data: Any) -> str | None:
    schema, _, fields, rows_key, row_fields = SHAPES[kind]
    if not isinstance(data, dict):
        return f"its top level is a {_json_type(data)}, not an object"
    if isinstance(data.get("schema"), str) and not data["schema"].startswith(schema):
        return f"schema {data['schema']!r}, expected {schema}N"
    missing = [f for f in fields if f not in data]
    if missing:
        return f"no {', '.join(repr(f) for f in missing)}"
    rows = data[rows_key]
    if not isinstance(rows, list):
        return f"{rows_key!r} is a {_json_type(rows)}, not a list"
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            return f"{rows_key}[{i}] is a {_json_type(row)}, not an object"
        missing = [f for f in row_fields if f not in row]
        if missing:
            return f"{rows_key}[{i}] has no {', '.join(repr(f) for f in missing)}"
    if kind == "compress":
        for i, row in enumerate(rows):
            if not isinstance(row["latency"], dict) or not {"median_ms", "p90_ms"} <= row["latency"].keys():
                return f"artifacts[{i}].latency has no 'median_ms' and 'p90_ms'"
    return None


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "list", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
