"""Structure-aware mutations of a bundle zip: its manifest, one entry's bytes, entry names, header fields.

``mutated_bundle(seeds)`` returns (zip bytes, description). The interesting cases keep the bundle
self-consistent where the runtime checks it (an entry's bytes mutated AND its sha256/size updated in
the manifest), so the mutation reaches what comes after the checks: np.load, the interpreter.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zipfile
from io import BytesIO

from hypothesis import strategies as st

from .flatbuf import mutated_tflite
from .mutators import mutated_bytes
from .trees import mutated_tree, to_json

BAD_NAMES = [
    "../escape.txt",
    "../../escape.txt",
    "/abs.txt",
    "C:/win.txt",
    "a\\..\\..\\escape.txt",
    "sub/dir/file.txt",
    "./model.tflite",
    "manifest.json",
    "model.tflite",
    ".hidden",
    "x" * 300,
    "名前.txt",
]
# Offsets of fields in a local file header (PK\3\4) and a central directory entry (PK\1\2).
LOCAL_FIELDS = {"flags": (6, "<H"), "method": (8, "<H"), "crc": (14, "<I"), "csize": (18, "<I"), "usize": (22, "<I")}
CENTRAL_FIELDS = {
    "flags": (8, "<H"),
    "method": (10, "<H"),
    "crc": (16, "<I"),
    "csize": (20, "<I"),
    "usize": (24, "<I"),
    "name_len": (28, "<H"),
    "extra_len": (30, "<H"),
    "external_attr": (38, "<I"),
    "local_offset": (42, "<I"),
}
FIELD_VALUES = [0, 1, 8, 9, 12, 14, 99, 0x0800, 0x0008, 0x0041, 0xFFFF, 0xA1FF0000, 2**31, 2**32 - 1]


def build_zip(entries: list[tuple[str, bytes]], symlink: str | None = None) -> bytes:
    out = BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o120777 if name == symlink else 0o100644) << 16
            z.writestr(info, data)
    return out.getvalue()


def rehashed(manifest: dict, files: dict[str, bytes]) -> dict:
    """``manifest`` with each listed file's sha256 and size matching ``files``."""
    listed = manifest.get("files") if isinstance(manifest, dict) else None
    if isinstance(listed, dict):
        for name, data in files.items():
            if isinstance(listed.get(name), dict):
                listed[name] = {**listed[name], "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    return manifest


def _zip_of(manifest: dict | str, files: dict[str, bytes]) -> bytes:
    text = manifest if isinstance(manifest, str) else json.dumps(manifest, indent=1)
    return build_zip([("manifest.json", text.encode()), *files.items()])


@st.composite
def _manifest_mutation(draw, seeds, files):
    tree, raws, done = draw(mutated_tree(seeds.manifest))
    return _zip_of(to_json(tree, raws), files), ["manifest: " + "; ".join(done)]


@st.composite
def _entry_mutation(draw, seeds, files, model_slots):
    name = draw(st.sampled_from(sorted(files)))
    if name == "model.tflite" and draw(st.booleans()):
        data, done = draw(mutated_tflite(files[name], model_slots))
    else:
        data, done = draw(mutated_bytes(files[name], seeds.all_bytes())), ["bytes"]
    files = {**files, name: data}
    fix = draw(st.booleans())  # True: the manifest follows, so the checksums pass and the bytes are used
    manifest = rehashed(seeds.manifest, files) if fix else seeds.manifest
    return _zip_of(manifest, files), [f"{name} ({'rehashed' if fix else 'stale sha256'}): " + "; ".join(done)]


@st.composite
def _name_mutation(draw, seeds, files):
    name = draw(st.sampled_from(BAD_NAMES))
    data = draw(st.sampled_from([b"", b"evil", files["labels.txt"]]))
    manifest = seeds.manifest
    listed = draw(st.booleans())
    if listed:  # also listed in the manifest, with a matching sha256: only the name checks stand in the way
        manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    entries = [("manifest.json", json.dumps(manifest).encode()), *files.items(), (name, data)]
    symlink = name if draw(st.integers(0, 3)) == 0 else None
    return build_zip(entries, symlink), [f"extra entry {name!r} (listed={listed}, symlink={bool(symlink)})"]


@st.composite
def _header_mutation(draw, seeds, files):
    buf = bytearray(seeds.bundle)
    signature, fields = draw(st.sampled_from([(b"PK\x03\x04", LOCAL_FIELDS), (b"PK\x01\x02", CENTRAL_FIELDS)]))
    starts = [i for i in range(len(buf) - 4) if buf[i : i + 4] == signature]
    at = draw(st.sampled_from(starts))
    field = draw(st.sampled_from(sorted(fields)))
    offset, fmt = fields[field]
    value = draw(st.sampled_from(FIELD_VALUES)) % (1 << (8 * struct.calcsize(fmt)))
    struct.pack_into(fmt, buf, at + offset, value)
    return bytes(buf), [f"{signature[2:]!r} header at {at}: {field} = {value:#x}"]


@st.composite
def mutated_bundle(draw, seeds, model_slots):
    """(mutated bundle zip bytes, what was done)."""
    files = {n: d for n, d in seeds.entries.items() if n != "manifest.json"}
    kind = draw(st.sampled_from(["manifest", "entry", "entry", "name", "header", "raw"]))
    if kind == "manifest":
        return draw(_manifest_mutation(seeds, files))
    if kind == "entry":
        return draw(_entry_mutation(seeds, files, model_slots))
    if kind == "name":
        return draw(_name_mutation(seeds, files))
    if kind == "header":
        return draw(_header_mutation(seeds, files))
    return draw(mutated_bytes(seeds.bundle, seeds.all_bytes())), ["raw zip bytes"]
