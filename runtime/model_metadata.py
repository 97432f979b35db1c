"""Read the labels and preprocessing a .tflite file carries as TFLite model metadata.

A mobile app may receive only the model file, so ``compressor package`` writes two entries into
the flatbuffer's ``metadata`` vector (see compressor/bundle/tflite_metadata.py):

- ``compressor_metadata``: a JSON blob (labels, preprocessing, raw input shape) that this
  runtime reads;
- ``TFLITE_METADATA``: the standard TFLite Support ``ModelMetadata`` flatbuffer (file identifier
  M001: normalization mean/std, colour space, a labels.txt associated file in a zip appended to
  the model), which Android's MetadataExtractor and the Task Library understand.

The device has no TensorFlow and may lack the generated schema classes, so this is a small
bounds-checked flatbuffer reader (flatbuffer.py): a corrupt file ends in a ``UserError``.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from .errors import UserError
from .flatbuffer import Corrupt, Table, root
from .safe_load import parse_json

COMPRESSOR_ENTRY = "compressor_metadata"
STANDARD_ENTRY = "TFLITE_METADATA"
_MAX_LABELS_BYTES = 16 * 1024 * 1024


def metadata_entries(model: bytes) -> dict[str, bytes]:
    """Every (name -> buffer bytes) entry of a TFLite model's ``metadata`` vector."""
    if model[4:8] != b"TFL3":
        raise Corrupt(f"file identifier is {bytes(model[4:8])!r}, expected TFL3")
    model_root = root(model)
    buffers = model_root.tables(4)  # Model.buffers
    entries = {}
    for meta in model_root.tables(6):  # Model.metadata: (name, buffer index)
        name, index = meta.string(0), meta.scalar(1, "<I")
        if name is None or index >= len(buffers):
            raise Corrupt(f"metadata entry {name!r} points at buffer {index} of {len(buffers)}")
        buffer = buffers[index]
        offset, size = buffer.scalar(1, "<Q"), buffer.scalar(2, "<Q")
        # Large models keep buffer bytes after the flatbuffer, addressed by (offset, size).
        entries[name] = bytes(model[offset : offset + size]) if offset > 1 else buffer.bytes(0)
    return entries


def compressor_metadata(path: str | Path) -> dict | None:
    """Only the ``compressor_metadata`` JSON (None when absent): what the runtime needs to feed a model.

    Other tools' metadata entries are not parsed here, so an unusual but valid entry written by
    another tool never stops a model from being validated.
    """
    path = Path(path)
    try:
        blob = metadata_entries(path.read_bytes()).get(COMPRESSOR_ENTRY)
        return parse_json(blob, "compressor metadata in the model") if blob is not None else None
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    except (Corrupt, ValueError) as e:
        raise UserError(f"{path} has corrupt TFLite metadata: {e}") from None


def read_metadata(path: str | Path) -> dict:
    """Return ``{"compressor": dict | None, "standard": dict | None}`` read from a .tflite file."""
    path = Path(path)
    try:
        model = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    try:
        entries = metadata_entries(model)
        blob = entries.get(COMPRESSOR_ENTRY)
        standard = entries.get(STANDARD_ENTRY)
        return {
            "compressor": parse_json(blob, "compressor metadata in the model") if blob is not None else None,
            "standard": _standard(standard, model) if standard is not None else None,
        }
    except (Corrupt, ValueError, RecursionError) as e:  # json/utf-8 errors are ValueErrors
        raise UserError(f"{path} has corrupt TFLite metadata: {e}") from None


def _standard(blob: bytes, model: bytes) -> dict:
    """The parts of a TFLite Support ``ModelMetadata`` that describe a classifier's input and output."""
    if blob[4:8] != b"M001":
        raise Corrupt(f"TFLITE_METADATA identifier is {blob[4:8]!r}, expected M001")
    root_table = root(blob)
    result: dict = {
        "name": root_table.string(0),
        "description": root_table.string(1),
        "version": root_table.string(2),
        "min_parser_version": root_table.string(7),
    }
    subgraphs = root_table.tables(3)
    if not subgraphs:
        return result
    graph = subgraphs[0]
    inputs, outputs = graph.tables(2), graph.tables(3)
    if inputs:
        result["input"] = _tensor(inputs[0])
    if outputs:
        result["output"] = _tensor(outputs[0])
        label_files = [f["name"] for f in result["output"]["associated_files"] if f["type"] == 2]
        if label_files:  # TENSOR_AXIS_LABELS: one label per line, in the zip appended to the model
            result["labels"] = _zipped_text(model, label_files[0]).splitlines()
    return result


def _tensor(t: Table) -> dict:
    info: dict = {"name": t.string(0), "description": t.string(1)}
    content = t.table(3)
    if content is not None:
        kind = content.scalar(0, "<B")  # ContentProperties union: 1 Feature, 2 Image
        props = content.table(1)
        info["content"] = {1: "feature", 2: "image"}.get(kind, str(kind))
        if kind == 2 and props is not None:
            info["color_space"] = {1: "RGB", 2: "GRAYSCALE"}.get(props.scalar(0, "<b"), "UNKNOWN")
    for unit in t.tables(4):  # process_units
        options = unit.table(1)
        if unit.scalar(0, "<B") == 1 and options is not None:  # NormalizationOptions
            info["normalization"] = {"mean": options.floats(0), "std": options.floats(1)}
    stats = t.table(5)
    if stats is not None:
        info["stats"] = {"max": stats.floats(0), "min": stats.floats(1)}
    info["associated_files"] = [{"name": f.string(0), "type": f.scalar(2, "<b")} for f in t.tables(6)]
    return info


def _zipped_text(model: bytes, name: str) -> str:
    try:
        with zipfile.ZipFile(io.BytesIO(model)) as archive:
            entry = archive.getinfo(name)
            if entry.file_size > _MAX_LABELS_BYTES:
                raise Corrupt(f"associated file {name} is {entry.file_size} bytes")
            return archive.read(entry).decode("utf-8")
    except (zipfile.BadZipFile, KeyError) as e:
        raise Corrupt(f"associated file {name} is missing from the model's appended zip ({e})") from None
