"""The bundle's manifest.json: its versioned schema and the checks a device runs before trusting it.

No pydantic on the device: the schema is a nested dict of expected types, checked by hand, and
every mistake names its path (``manifest.json: models[0].file: expected a string, got int``).
The full field list is documented in README.md ("On the device: compressor-runtime and bundles").
"""

from __future__ import annotations

import math
import re

from . import __version__ as RUNTIME_VERSION
from .errors import UserError
from .image_fit import check_image_spec
from .signing import ALGORITHM, SIGNATURE

SCHEMA_NAME = "compressor.bundle"
SCHEMA_VERSION = 2  # /2 adds the signature block and min_runtime; bundles of /1 are still read
READS = ("1", "2")
SCHEMA = f"{SCHEMA_NAME}/{SCHEMA_VERSION}"
MIN_RUNTIME = "0.2.0"  # the first compressor-runtime that reads SCHEMA: what the packager writes as min_runtime
MANIFEST = "manifest.json"
FORMATS = ("tflite", "onnx")
LAYOUTS = ("NHWC", "NTC", "NC")

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
# Bounds for numbers: generous for any real bundle, and they stop a manifest from smuggling in a
# tolerance that passes every output, a negative count or a size that would allocate without end.
MAX_LABELS = 65_536
MAX_SAMPLES = 1_000_000
MAX_FILE_BYTES = 4 << 30
MAX_DIM = 1 << 31
MAX_MAGNITUDE = 1e9  # preprocessing constants and quantization scales
# The packager writes one quantization step of the output (1.01 * scale), 1e-4 or 1e-2 (float I/O).
MAX_FLOAT_ATOL = 1e-2
RAW_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "int64", "float16", "float32", "float64")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # bundles are flat: no folders, no ".."
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_KEY_ID = re.compile(r"^[0-9a-f]{16}$")
_VERSION = re.compile(r"^[0-9]{1,4}(\.[0-9]{1,4}){0,3}$")


def check_manifest(manifest: object) -> dict:
    """Return ``manifest`` when it follows the schema; otherwise raise one ``UserError`` naming the field."""
    if not isinstance(manifest, dict):
        raise UserError(f"{MANIFEST}: expected a JSON object, got {type(manifest).__name__}")
    schema = manifest.get("schema")
    if not isinstance(schema, str) or not schema.startswith(SCHEMA_NAME + "/"):
        raise UserError(f"{MANIFEST}: schema is {schema!r}, expected {SCHEMA!r}; this is not a compressor bundle")
    version = schema.split("/", 1)[1]
    if version not in READS:
        readable = ", ".join(f"{SCHEMA_NAME}/{v}" for v in READS)
        raise UserError(
            f"{MANIFEST}: bundle schema {schema} is not supported by this runtime (it reads {readable}); "
            "install the compressor-runtime version that matches the packager"
        )
    _check(manifest, _SPEC, "")
    if version != "1":
        _check_v2(manifest)
    _check_finite(manifest)
    _check_values(manifest)
    _check_ranges(manifest)
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


def _check_v2(m: dict) -> None:
    """What /2 adds: the runtime version it needs, and the signature block (null when unsigned)."""
    needed = m.get("min_runtime")
    if not isinstance(needed, str) or not _VERSION.match(needed):
        raise UserError(f'{MANIFEST}: min_runtime: expected a version such as "0.2.0", got {needed!r}')
    if _version_tuple(needed) > _version_tuple(RUNTIME_VERSION):
        raise UserError(
            f"{MANIFEST}: this bundle needs compressor-runtime >= {needed}, this is {RUNTIME_VERSION}; "
            "upgrade the runtime on the device"
        )
    if "signature" not in m:
        raise UserError(f"{MANIFEST}: the top level: missing field 'signature' (null for an unsigned bundle)")
    block = m["signature"]
    if block is None:
        return
    expected = {"algorithm": ALGORITHM, "file": SIGNATURE}
    if (
        not isinstance(block, dict)
        or set(block) != {"algorithm", "key_id", "file"}
        or any(block.get(k) != v for k, v in expected.items())
        or not isinstance(block.get("key_id"), str)
        or not _KEY_ID.match(block["key_id"])
    ):
        raise UserError(
            f'{MANIFEST}: signature: expected null or {{"algorithm": "{ALGORITHM}", '
            f'"key_id": 16 hex digits, "file": "{SIGNATURE}"}}'
        )


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _check_values(m: dict) -> None:
    """What types cannot say: known enums, references to listed files, well-formed hashes."""
    files = m["files"]
    for name, entry in files.items():
        if not _SAFE_NAME.match(name) or name in (MANIFEST, SIGNATURE):
            raise UserError(f"{MANIFEST}: files: {name!r} is not a plain file name; bundles hold no folders")
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("sha256"), str)
            or not _SHA256.match(entry["sha256"])
            or type(entry.get("bytes")) is not int
            or not 0 <= entry["bytes"] <= MAX_FILE_BYTES
        ):
            expected = f'{{"sha256": 64 hex digits, "bytes": 0..{MAX_FILE_BYTES}}}'
            raise UserError(f"{MANIFEST}: files.{name}: expected {expected}")
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
    if not isinstance(prep.get("mode", ""), str):
        raise UserError(f'{MANIFEST}: preprocessing.mode: expected a string such as "scale" or "none"')
    if prep.get("image") is not None:
        check_image_spec(prep["image"], f"{MANIFEST}: preprocessing.image")
    if not m["labels"]:
        raise UserError(f"{MANIFEST}: labels: the list is empty")


def _check_finite(manifest: dict) -> None:
    """No NaN or inf anywhere (also in free-form objects such as ``versions`` or ``host.latency``):
    a NaN tolerance compares false with everything, so a self-test would pass whatever the model says."""
    stack: list = [("", manifest)]
    while stack:  # iterative: the manifest's depth is the parser's business, not the stack's
        path, value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{MANIFEST}: {path}: {value} is not a finite number")
        if isinstance(value, dict):
            stack += [(f"{path}.{k}" if path else str(k), v) for k, v in value.items()]
        elif isinstance(value, list):
            stack += [(f"{path}[{i}]", v) for i, v in enumerate(value)]


def _check_ranges(m: dict) -> None:
    """Every number within what a real bundle can hold, so nothing downstream allocates or passes by it."""
    _in_range(len(m["labels"]), 1, MAX_LABELS, "labels (count)")
    _in_range(m["samples"]["count"], 1, MAX_SAMPLES, "samples.count")
    _in_range(m["reference"]["accuracy"], 0, 1, "reference.accuracy")
    _in_range(m["reference"]["test_samples"], 0, 1 << 40, "reference.test_samples")
    prep = m["preprocessing"]
    _in_range(prep["scale"], 1e-12, MAX_MAGNITUDE, "preprocessing.scale")
    for key in ("mean", "std", "input_range"):
        for i, value in enumerate(prep[key]):
            _in_range(value, -MAX_MAGNITUDE, MAX_MAGNITUDE, f"preprocessing.{key}[{i}]")
    for i, dim in enumerate(m["raw_input"]["shape"]):
        _in_range(dim, 1, MAX_DIM - 1, f"raw_input.shape[{i}]")
    if m["raw_input"]["dtype"] not in RAW_DTYPES:
        raise UserError(f"{MANIFEST}: raw_input.dtype: {m['raw_input']['dtype']!r}, expected one of {RAW_DTYPES}")
    for i, model in enumerate(m["models"]):
        where = f"models[{i}]"
        _in_range(model["host"]["accuracy"], 0, 1, f"{where}.host.accuracy")
        for key in ("size_bytes", "gzip_bytes"):
            _in_range(model["host"][key], 0, MAX_FILE_BYTES, f"{where}.host.{key}")
        for kind in ("inputs", "outputs"):
            for j, tensor in enumerate(model[kind]):
                _check_tensor(tensor, f"{where}.{kind}[{j}]")
        step = 1.01 * model["outputs"][0]["scale"]  # one quantization step; 0 for float outputs
        _in_range(model["self_test"]["atol"], 0, max(MAX_FLOAT_ATOL, step), f"{where}.self_test.atol")


def _check_tensor(tensor: dict, where: str) -> None:
    _in_range(tensor["scale"], 0, MAX_MAGNITUDE, f"{where}.scale")
    _in_range(tensor["zero_point"], -MAX_DIM, MAX_DIM - 1, f"{where}.zero_point")
    for k, dim in enumerate(tensor["shape"]):
        if type(dim) is not int:
            raise UserError(f"{MANIFEST}: {where}.shape[{k}]: expected an integer, got {_kind(dim)}")
        _in_range(dim, -1, MAX_DIM - 1, f"{where}.shape[{k}]")  # -1: a dynamic dimension


def _in_range(value: float, low: float, high: float, field: str) -> None:
    if not low <= value <= high:
        raise UserError(f"{MANIFEST}: {field}: {value!r} is out of range; expected {low:g} to {high:g}")


def _kind(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def _names(types: tuple) -> str:
    return " or ".join(
        {str: "a string", int: "an integer", float: "a number", dict: "an object", list: "a list"}[t] for t in types
    )
