"""Refuse a Keras model whose saved config would run Python code, before Keras reads the config.

A Lambda layer stores marshalled bytecode that the SavedModel and H5 loaders run without
consulting safe mode, and a config entry naming a non-Keras ``module`` makes Keras import it.
Matching text misses the same config written as compact JSON or with escapes, so the config is
parsed (H5: the ``model_config`` attribute; .keras: ``config.json`` in the zip; SavedModel: the
JSON strings inside ``keras_metadata.pb``, a SavedMetadata protobuf decoded here by hand, without
TensorFlow) and every nested object is walked: Functional/Sequential sub-models, wrappers'
inner layers (TimeDistributed, Bidirectional), activations, initializers.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from compressor.runtime.errors import UserError

# Modules Keras may import to rebuild an object; anything else is the file choosing code to run.
_KERAS_MODULES = ("keras", "tf_keras", "tensorflow")
_MAX_CONFIG_BYTES = 256 * 1024 * 1024  # a .keras config.json larger than this is not a model config


def refuse_untrusted_code(path: str | Path, trust_code: bool = False) -> None:
    """Raise the one-line ``--trust-code`` UserError when the Keras model at ``path`` would run code.

    ``path``: a tf_keras SavedModel folder, a .keras or a .h5 file (a step folder's ``model``
    or ``model.h5``). A plain SavedModel (no keras_metadata.pb) runs graphs only and passes.
    A file too damaged to parse is a "corrupt model" UserError.
    """
    if trust_code:
        return
    path = Path(path)
    found = next((hit for config in saved_configs(path) for hit in code_in_config(config)), None)
    if found:
        raise UserError(
            f"{path} contains {found} (arbitrary Python code); loading it is refused. "
            "If you trust this file, pass --trust-code"
        )


def saved_configs(path: Path) -> Iterator[Any]:
    """Every JSON config the Keras loader will read for ``path``, parsed."""
    try:
        for text in _config_texts(path):
            yield json.loads(text)
    except (ValueError, RecursionError) as e:  # JSON and UTF-8 errors are ValueErrors
        raise corrupt_model(path, f"its saved config is not valid JSON: {e}") from None


def code_in_config(config: Any) -> Iterator[str]:
    """What in ``config`` would run code: Lambda layers, serialized functions, non-Keras modules."""
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        inner = node.get("config")
        name = node.get("name") or (inner.get("name") if isinstance(inner, dict) else None)
        label = f" ({name!r})" if isinstance(name, str) else ""
        module = node.get("module")
        if node.get("class_name") == "Lambda":
            yield f"a Lambda layer{label}"
        elif node.get("class_name") == "__lambda__" or node.get("function_type") == "lambda":
            yield f"a serialized Python function{label}"
        elif isinstance(module, str) and not any(module == m or module.startswith(m + ".") for m in _KERAS_MODULES):
            yield f"an object from module {module!r}{label}"
        stack.extend(node.values())


def corrupt_model(path: Path, detail: str) -> UserError:
    return UserError(f"{path} is a corrupt model ({detail[:200]}); re-save it or use the original file")


def _config_texts(path: Path) -> Iterator[str | bytes]:
    if path.is_dir():
        metadata = path / "keras_metadata.pb"
        if metadata.is_file():
            yield from _saved_metadata_strings(path, metadata.read_bytes())
    elif path.suffix.lower() == ".keras":
        yield _keras_v3_config(path)
    elif path.suffix.lower() in (".h5", ".hdf5"):
        config = h5_attribute(path, "model_config")
        if config is not None:
            yield config


def h5_attribute(path: Path, name: str) -> Any:
    """One root attribute of an HDF5 file; a damaged or truncated file is a "corrupt model" UserError."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get(name)
    except (OSError, ValueError, KeyError, RuntimeError) as e:  # h5py maps HDF5 errors onto these
        lines = str(e).strip().splitlines()
        raise corrupt_model(path, f"HDF5: {lines[0] if lines else type(e).__name__}") from None


def _keras_v3_config(path: Path) -> bytes:
    try:
        with zipfile.ZipFile(path) as archive:
            entry = archive.getinfo("config.json")
            if entry.file_size > _MAX_CONFIG_BYTES:
                raise corrupt_model(path, f"config.json is {entry.file_size} bytes")
            return archive.read(entry)
    except KeyError:
        raise corrupt_model(path, "no config.json in the archive") from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as e:  # a damaged archive or member
        raise corrupt_model(path, f"zip: {type(e).__name__}: {e}") from None


def _saved_metadata_strings(path: Path, data: bytes) -> Iterator[bytes]:
    """The ``metadata`` JSON of every node: SavedMetadata { repeated SavedObject nodes = 1 },
    SavedObject { ... string metadata = 5 } (tf_keras/protobuf/saved_metadata.proto)."""
    try:
        for number, node in proto_fields(data):
            if number == 1 and isinstance(node, bytes):
                for field, value in proto_fields(node):
                    if field == 5 and isinstance(value, bytes) and value:
                        yield value
    except _BadProto as e:
        raise corrupt_model(path, f"keras_metadata.pb: {e}") from None


class _BadProto(Exception):
    """keras_metadata.pb is not the protobuf it claims to be; reported as a corrupt model."""


def proto_fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of a protobuf message: varints as ints, length-delimited as bytes."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        wire = key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
            value = 0
        elif wire == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos : pos + size], pos + size
        else:
            raise _BadProto(f"wire type {wire} at byte {pos}")
        if pos > len(data):
            raise _BadProto("truncated message")
        yield key >> 3, value


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for shift in range(0, 70, 7):
        if pos >= len(data):
            raise _BadProto("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
    raise _BadProto("varint longer than 10 bytes")
