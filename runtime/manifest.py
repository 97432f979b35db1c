"""The bundle's manifest.json: its versioned schema and the checks a device runs before trusting it.

No pydantic on the device: the schema is a nested dict of expected types, checked by hand, and
every mistake names its path (``manifest.json: models[0].file: expected a string, got int``).
The full field list is documented in README.md ("On the device: compressor-runtime and bundles").
"""

from __future__ import annotations

import re

from .errors import UserError

SCHEMA_NAME = "compressor.bundle"
SCHEMA_VERSION = 1
SCHEMA = f"{SCHEMA_NAME}/{SCHEMA_VERSION}"
MANIFEST = "manifest.json"
FORMATS = ("tflite", "onnx")
LAYOUTS = ("NHWC", "NC")

_NUM = (int, float)
_TENSOR = {"name": str, "shape": list, "dtype": str, "scale": _NUM, "zero_point": int}
_MODEL = {
    "file": str,
    "format": str,
    "inputs": [_TENSOR],
    "outputs": [_TENSOR],
    "host": {"accuracy": _NUM, "size_bytes": int, "gzip_bytes": int, "latency": dict},
    "self_test": {"expected": str, "atol": _NUM},
}
_SPEC = {
    "schema": str,
    "created": str,
    "model": {"name": str, "version": str, "recipe": str},
    "tool": {"name": str, "version": str},
    "versions": dict,
    "labels": [str],
    "labels_file": str,
    "preprocessing": {
        "scale": _NUM,
        "mean": [_NUM],
        "std": [_NUM],
        "layout": str,
        "channel_order": str,
        "input_range": [_NUM],
    },
    "raw_input": {"shape": [int], "dtype": str},
    "models": [_MODEL],
    "reference": {"artifact": str, "accuracy": _NUM, "data": str, "test_samples": int},
    "samples": {"file": str, "count": int, "raw": str, "inputs": str, "labels": str},
    "files": dict,
}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # bundles are flat: no folders, no ".."
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def check_manifest(manifest: object) -> dict:
    """Return ``manifest`` when it follows the schema; otherwise raise one ``UserError`` naming the field."""
    if not isinstance(manifest, dict):
        raise UserError(f"{MANIFEST}: expected a JSON object, got {type(manifest).__name__}")
    schema = manifest.get("schema")
    if not isinstance(schema, str) or not schema.startswith(SCHEMA_NAME + "/"):
        raise UserError(f"{MANIFEST}: schema is {schema!r}, expected {SCHEMA!r}; this is not a compressor bundle")
    version = schema.split("/", 1)[1]
    if version != str(SCHEMA_VERSION):
        raise UserError(
            f"{MANIFEST}: bundle schema {schema} is not supported by this runtime (it reads {SCHEMA}); "
            "install the compressor-runtime version that matches the packager"
        )
    _check(manifest, _SPEC, "")
    _check_values(manifest)
    return manifest


def _check(value: object, spec: object, path: str) -> None:
    where = path or "the top level"
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            raise UserError(f"{MANIFEST}: {where}: expected an object, got {_kind(value)}")
        for key, sub in spec.items():
            if key not in value:
                raise UserError(f"{MANIFEST}: {where}: missing field {key!r}")
            _check(value[key], sub, f"{path}.{key}" if path else key)
    elif isinstance(spec, list):
        if not isinstance(value, list):
            raise UserError(f"{MANIFEST}: {where}: expected a list, got {_kind(value)}")
        for i, item in enumerate(value):
            _check(item, spec[0], f"{path}[{i}]")
    else:
        types = spec if isinstance(spec, tuple) else (spec,)
        # bool is an int subclass in Python, but true/false is never a valid number here.
        if isinstance(value, bool) or not isinstance(value, types):
            raise UserError(f"{MANIFEST}: {where}: expected {_names(types)}, got {_kind(value)}")


def _check_values(m: dict) -> None:
    """What types cannot say: known enums, references to listed files, well-formed hashes."""
    files = m["files"]
    for name, entry in files.items():
        if not _SAFE_NAME.match(name) or name == MANIFEST:
            raise UserError(f"{MANIFEST}: files: {name!r} is not a plain file name; bundles hold no folders")
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("sha256"), str)
            or not _SHA256.match(entry["sha256"])
            or not isinstance(entry.get("bytes"), int)
        ):
            raise UserError(f'{MANIFEST}: files.{name}: expected {{"sha256": 64 hex digits, "bytes": int}}')
    refs = [("labels_file", m["labels_file"]), ("samples.file", m["samples"]["file"])]
    refs += [(f"models[{i}].file", model["file"]) for i, model in enumerate(m["models"])]
    for field, name in refs:
        if name not in files:
            raise UserError(f"{MANIFEST}: {field}: {name!r} is not listed under files")
    if not m["models"]:
        raise UserError(f"{MANIFEST}: models: the bundle lists no model")
    for i, model in enumerate(m["models"]):
        if model["format"] not in FORMATS:
            raise UserError(f"{MANIFEST}: models[{i}].format: {model['format']!r}, expected one of {FORMATS}")
        if not model["inputs"] or not model["outputs"]:
            raise UserError(f"{MANIFEST}: models[{i}]: needs at least one input and one output")
    prep = m["preprocessing"]
    if prep["layout"] not in LAYOUTS:
        raise UserError(f"{MANIFEST}: preprocessing.layout: {prep['layout']!r}, expected one of {LAYOUTS}")
    if not prep["mean"] or not prep["std"] or any(s == 0 for s in prep["std"]):
        raise UserError(f"{MANIFEST}: preprocessing: mean and std need values, and std must not be 0")
    if len(prep["input_range"]) != 2 or prep["input_range"][0] > prep["input_range"][1]:
        raise UserError(f"{MANIFEST}: preprocessing.input_range: expected [low, high] with low <= high")
    if not m["labels"]:
        raise UserError(f"{MANIFEST}: labels: the list is empty")


def _kind(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def _names(types: tuple) -> str:
    return " or ".join(
        {str: "a string", int: "an integer", float: "a number", dict: "an object", list: "a list"}[t] for t in types
    )
