"""Write labels and preprocessing into a .tflite file as TFLite model metadata.

The official writer (``tflite-support``) cannot be installed next to TensorFlow 2.21: it pins
protobuf < 4. So we write the two metadata entries ourselves (the reader, which must run on a
device without TensorFlow, is ``compressor.runtime.model_metadata``):

- ``compressor_metadata``: JSON (labels, preprocessing, raw input shape/dtype, model name);
- ``TFLITE_METADATA``: the standard TFLite Support ``ModelMetadata`` flatbuffer, built from
  metadata_schema.fbs (tflite-support 0.4.4) with the plain ``flatbuffers`` builder. Labels go
  to a ``labels.txt`` associated file in a zip appended to the model, as MetadataPopulator does.

Our preprocessing ``x = (raw * scale - mean) / std`` is written as the standard normalisation
``x = (raw - mean') / std'`` with ``mean' = mean / scale`` and ``std' = std / scale``.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import flatbuffers
import numpy as np

from compressor.runtime.atomic import write_bytes
from compressor.runtime.model_metadata import COMPRESSOR_ENTRY, STANDARD_ENTRY, read_metadata

__all__ = ["embed_metadata", "write_metadata", "read_metadata", "METADATA_SCHEMA"]

METADATA_SCHEMA = "compressor.tflite-metadata/1"
LABELS_FILE = "labels.txt"
_MIN_PARSER_VERSION = "1.0.0"  # the schema version that introduced every field written here
_TENSOR_AXIS_LABELS = 2  # AssociatedFileType
_FEATURE, _IMAGE = 1, 2  # ContentProperties union members
_RGB, _GRAYSCALE = 1, 2  # ColorSpaceType
_NORMALIZATION = 1  # ProcessUnitOptions union member


def write_metadata(src: str | Path, dst: str | Path, **fields) -> Path:
    """Copy ``src`` to ``dst`` (atomically) with metadata; see :func:`embed_metadata` for ``fields``."""
    return write_bytes(dst, embed_metadata(Path(src).read_bytes(), **fields))


def embed_metadata(
    model: bytes,
    labels: list[str],
    preprocessing: dict,
    name: str,
    version: str = "1",
    description: str = "",
    raw_input: dict | None = None,
    extra: dict | None = None,
) -> bytes:
    """Return ``model`` with both metadata entries; existing entries of the same names are replaced."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    tree = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    blob = {
        "schema": METADATA_SCHEMA,
        "name": name,
        "version": version,
        "labels": list(labels),
        "preprocessing": preprocessing,
        "raw_input": raw_input,
        **(extra or {}),
    }
    tensors = tree.subgraphs[0].tensors
    sig_in = tensors[tree.subgraphs[0].inputs[0]].name
    sig_out = tensors[tree.subgraphs[0].outputs[0]].name
    standard = _model_metadata(name, version, description, preprocessing, len(labels), _text(sig_in), _text(sig_out))
    new = {COMPRESSOR_ENTRY: json.dumps(blob, sort_keys=True).encode(), STANDARD_ENTRY: standard}
    tree.metadata = [m for m in (tree.metadata or []) if _text(m.name) not in new]
    for entry_name, data in new.items():
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(data, dtype=np.uint8)
        tree.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name, entry.buffer = entry_name, len(tree.buffers) - 1
        tree.metadata.append(entry)
    packed = bytes(flatbuffer_utils.convert_object_to_bytearray(tree))
    out = io.BytesIO(packed)
    # Mode "a" on bytes that are not a zip appends a new archive after them: the flatbuffer stays
    # untouched at offset 0. STORED, because Android's MetadataExtractor maps the files unpacked.
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(
            zipfile.ZipInfo(LABELS_FILE, date_time=(1980, 1, 1, 0, 0, 0)), "".join(f"{label}\n" for label in labels)
        )
    return out.getvalue()


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _model_metadata(
    name: str, version: str, description: str, prep: dict, num_classes: int, input_name: str, output_name: str
) -> bytes:
    """A ``ModelMetadata`` flatbuffer (file identifier M001) for a single-input classifier."""
    b = flatbuffers.Builder(1024)
    # Children first: a flatbuffer table can only refer to objects already in the builder.
    input_md = _input_metadata(b, input_name, prep)
    output_md = _output_metadata(b, output_name, num_classes)
    subgraph = _table(b, 10, offsets={2: _vector(b, [input_md]), 3: _vector(b, [output_md])})
    root = _table(
        b,
        8,
        offsets={
            0: b.CreateString(name),
            1: b.CreateString(description or name),
            2: b.CreateString(str(version)),
            3: _vector(b, [subgraph]),
            4: b.CreateString("compressor"),
            7: b.CreateString(_MIN_PARSER_VERSION),
        },
    )
    b.Finish(root, file_identifier=b"M001")
    return bytes(b.Output())


def _standard_normalisation(prep: dict) -> tuple[list[float], list[float], float, float]:
    """Our ``(raw * scale - mean) / std`` as ``(raw - mean') / std'``: (mean', std', raw low, raw high)."""
    scale = float(prep.get("scale", 1.0))
    mean = [float(m) / scale for m in prep.get("mean", [0.0])]
    std = [float(s) / scale for s in prep.get("std", [1.0])]
    low, high = (float(v) for v in prep.get("input_range", [0.0, 255.0]))
    if len(mean) != len(std):  # the standard wants one (mean, std) pair per channel
        mean, std = np.broadcast_arrays(np.asarray(mean), np.asarray(std))
        mean, std = mean.tolist(), std.tolist()
    return mean, std, low, high


def _input_metadata(b: flatbuffers.Builder, input_name: str, prep: dict) -> int:
    """TensorMetadata of the input: normalisation unit, value range stats, image or feature content."""
    mean, std, low, high = _standard_normalisation(prep)
    normalization = _table(b, 2, offsets={0: _floats(b, mean), 1: _floats(b, std)})
    unit = _table(b, 2, offsets={1: normalization}, u8={0: _NORMALIZATION})
    stats = _table(
        b,
        2,
        offsets={
            0: _floats(b, [(high - m) / s for m, s in zip(mean, std)]),
            1: _floats(b, [(low - m) / s for m, s in zip(mean, std)]),
        },
    )
    # The standard knows RGB and grayscale images only: 2 or 4+ channels are described as features.
    if prep.get("layout", "NHWC") == "NHWC" and prep.get("channel_order", "gray") in ("gray", "RGB"):
        colour = _RGB if prep.get("channel_order") == "RGB" else _GRAYSCALE
        props, kind = _table(b, 2, i8={0: colour}), _IMAGE
    else:
        props, kind = _table(b, 0), _FEATURE
    content_in = _table(b, 3, offsets={1: props}, u8={0: kind})
    return _table(
        b,
        7,
        offsets={
            0: b.CreateString(input_name),
            1: b.CreateString(f"raw values in [{low:g}, {high:g}], normalised as (raw - mean) / std"),
            3: content_in,
            4: _vector(b, [unit]),
            5: stats,
        },
    )


def _output_metadata(b: flatbuffers.Builder, output_name: str, num_classes: int) -> int:
    """TensorMetadata of the output: class probabilities, labels in the associated labels.txt."""
    labels = _table(
        b,
        5,
        offsets={0: b.CreateString(LABELS_FILE), 1: b.CreateString(f"{num_classes} class names, one per line")},
        i8={2: _TENSOR_AXIS_LABELS},
    )
    content_out = _table(b, 3, offsets={1: _table(b, 0)}, u8={0: _FEATURE})
    return _table(
        b,
        7,
        offsets={
            0: b.CreateString(output_name),
            1: b.CreateString("probability of each class"),
            3: content_out,
            6: _vector(b, [labels]),
        },
    )


def _floats(b: flatbuffers.Builder, values: list[float]) -> int:
    return b.CreateNumpyVector(np.asarray(values, dtype=np.float32))


def _vector(b: flatbuffers.Builder, offsets: list[int]) -> int:
    b.StartVector(4, len(offsets), 4)
    for off in reversed(offsets):  # flatbuffers are built back to front
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def _table(
    b: flatbuffers.Builder,
    slots: int,
    offsets: dict[int, int] | None = None,
    u8: dict[int, int] | None = None,
    i8: dict[int, int] | None = None,
) -> int:
    b.StartObject(slots)
    for slot, off in (offsets or {}).items():
        b.PrependUOffsetTRelativeSlot(slot, off, 0)
    for slot, value in (u8 or {}).items():
        b.PrependUint8Slot(slot, value, 0)
    for slot, value in (i8 or {}).items():
        b.PrependInt8Slot(slot, value, 0)
    return b.EndObject()
