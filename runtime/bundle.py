"""Open a model bundle (.zip) safely: check every entry, the manifest and every sha256 before use.

Order matters: entry names are checked before any byte is read (a ``../`` or absolute entry, a
symlink or a duplicate name refuses the whole bundle), then the manifest schema, then each listed
file is extracted into a fresh temporary folder while its sha256 is computed, so the bytes that
run are exactly the bytes that were checked. Files are never unpickled (.npz with
``allow_pickle=False``).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from .errors import UserError
from .manifest import MANIFEST, check_manifest
from .safe_load import parse_json
from .signing import SIGNATURE, SIGNATURE_BYTES, key_id, verify_signature

_MAX_MANIFEST_BYTES = 1 << 20
_MAX_TOTAL_BYTES = 4 << 30  # a bundle for a phone app is far smaller; refuse zip bombs
_CHUNK = 1 << 20
# Stored and deflate only: what zipfile writes, and what every app's unzip reads. Anything else
# (deflate64, bzip2, lzma...) would be an internal error or an extra decoder on the device.
_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
# What a damaged entry can raise while it is read: bad headers, CRC mismatch, a corrupt deflate
# stream (zlib.error), a truncated one (EOFError), and what zipfile raises for features we refused
# up front (RuntimeError: encrypted; NotImplementedError: method), kept here as belt and braces.
# OSError is left out: while extracting it is the disk (full, read-only), not the bundle.
_DAMAGED = (zipfile.BadZipFile, EOFError, zlib.error, RuntimeError, NotImplementedError, ValueError)


@dataclass
class Bundle:
    """An extracted, verified bundle. Use as a context manager: the temporary folder goes on exit."""

    path: Path
    dir: Path
    manifest: dict
    # {"key_id", "verified"}: verified is True once checked against the caller's key; None if unsigned
    signature: dict | None = None

    def file(self, name: str) -> Path:
        return self.dir / name

    def model(self, fmt: str | None = None) -> dict:
        """The manifest entry of the model to run: ``fmt`` ("tflite"/"onnx"), default the first listed."""
        models = self.manifest["models"]
        if fmt is None:
            return models[0]
        for model in models:
            if model["format"] == fmt:
                return model
        have = ", ".join(m["format"] for m in models)
        raise UserError(f"bundle {self.path.name} has no {fmt} model (it has: {have})")

    def samples(self) -> dict[str, np.ndarray]:
        """The self-test arrays (raw inputs, preprocessed inputs, labels, expected outputs per model)."""
        path = self.file(self.manifest["samples"]["file"])
        try:
            with np.load(path, allow_pickle=False) as archive:
                return {k: archive[k] for k in archive.files}
        except (ValueError, OSError, zipfile.BadZipFile) as e:
            raise UserError(f"self-test samples {path.name} in {self.path.name} cannot be read: {e}") from None

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Bundle:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_bundle(path: str | os.PathLike, workdir: str | os.PathLike | None = None, key: Any = None) -> Bundle:
    """Check and extract ``path``; raises ``UserError`` naming the first problem found.

    With ``key`` (an Ed25519 public key, see signing.load_public_key) the bundle must carry that
    key's signature of its manifest: it is checked on the manifest's raw bytes before they are parsed."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"bundle {path} does not exist" if not path.exists() else f"bundle {path} is not a file")
    try:
        archive = zipfile.ZipFile(path)
    except (*_DAMAGED, OSError) as e:
        raise UserError(f"{path} is not a bundle: not a readable zip archive ({e})") from None
    with archive:
        entries = _checked_entries(archive, path)
        manifest, signature = _read_manifest(archive, entries, path, key)
        files = manifest["files"]
        unlisted = sorted(set(entries) - set(files) - {MANIFEST} - ({SIGNATURE} if signature else set()))
        if unlisted:
            raise UserError(
                f"bundle {path.name} contains {unlisted[0]}, which manifest.json does not list; "
                "refusing a bundle with unaccounted files"
            )
        missing = sorted(set(files) - set(entries))
        if missing:
            raise UserError(f"bundle {path.name} is missing {missing[0]}, listed in manifest.json")
        if sum(files[n]["bytes"] for n in files) > _MAX_TOTAL_BYTES:
            raise UserError(f"bundle {path.name} declares more than {_MAX_TOTAL_BYTES >> 30} GiB of files; refusing it")
        dest = Path(tempfile.mkdtemp(prefix="compressor-bundle-", dir=workdir))
        try:
            for name in sorted(files):
                _extract_checked(archive, entries[name], dest, files[name], path)
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise
    return Bundle(path, dest, manifest, signature)


def _checked_entries(archive: zipfile.ZipFile, path: Path) -> dict[str, zipfile.ZipInfo]:
    """Name -> entry; refuses anything that could land outside the extraction folder."""
    entries: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        name = info.filename
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
            raise UserError(f"bundle {path.name} has an entry with an absolute path ({name!r}); refusing it")
        if ".." in parts:
            raise UserError(
                f"bundle {path.name} has an entry that escapes the extraction folder ({name!r}); refusing it"
            )
        if stat.S_ISLNK(info.external_attr >> 16):
            raise UserError(f"bundle {path.name} has a symbolic link entry ({name!r}); refusing it")
        if name in entries:
            raise UserError(f"bundle {path.name} has two entries named {name!r}; refusing an ambiguous bundle")
        _check_readable(info, path)
        entries[name] = info
    if sum(info.file_size for info in entries.values()) > _MAX_TOTAL_BYTES:
        raise UserError(f"bundle {path.name} is corrupt: its entries expand to more than {_MAX_TOTAL_BYTES >> 30} GiB")
    return entries


def _check_readable(info: zipfile.ZipInfo, path: Path) -> None:
    """Refuse, before reading a byte, an entry zipfile could not read or that expands beyond any bundle."""
    name = info.filename
    if info.flag_bits & 0x1:
        raise UserError(f"bundle {path.name} is corrupt: entry {name!r} is encrypted; bundles are never encrypted")
    if info.compress_type not in _METHODS:
        raise UserError(
            f"bundle {path.name} is corrupt: entry {name!r} uses compression method {info.compress_type}; "
            "bundles use stored or deflate only (re-create it with compressor package)"
        )
    if info.file_size > _MAX_TOTAL_BYTES:
        raise UserError(f"bundle {path.name} is corrupt: entry {name!r} expands to {info.file_size} bytes")


def _read_manifest(
    archive: zipfile.ZipFile, entries: dict[str, zipfile.ZipInfo], path: Path, key: Any
) -> tuple[dict, dict | None]:
    """The checked manifest and its signature state; with ``key``, only a manifest that key signed."""
    info = entries.get(MANIFEST)
    if info is None:
        raise UserError(f"{path.name} is not a bundle: it has no {MANIFEST}")
    if info.file_size > _MAX_MANIFEST_BYTES:
        raise UserError(f"{MANIFEST} in {path.name} is {info.file_size} bytes; refusing more than 1 MiB")
    raw = _read_limited(archive, info, _MAX_MANIFEST_BYTES)
    if key is not None:
        if SIGNATURE not in entries:
            raise UserError(
                f"bundle {path.name} is not signed and a key was given; refusing it "
                "(sign it with `compressor package --sign KEY`)"
            )
        verify_signature(key, raw, _read_limited(archive, entries[SIGNATURE], SIGNATURE_BYTES), path.name)
    manifest = check_manifest(parse_json(raw, f"{MANIFEST} in {path.name}"))
    block = manifest.get("signature")  # /1 manifests have none
    if block is None:
        if key is not None:
            raise UserError(f"bundle {path.name}: {MANIFEST} declares no signature; refusing it")
        return manifest, None
    if SIGNATURE not in entries:
        raise UserError(f"bundle {path.name} is damaged: {MANIFEST} declares a signature but {SIGNATURE} is missing")
    if key is not None and block["key_id"] != key_id(key):
        raise UserError(f"bundle {path.name}: {MANIFEST} names signing key {block['key_id']}, not {key_id(key)}")
    return manifest, {"key_id": block["key_id"], "verified": key is not None}


def _read_limited(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    try:
        with archive.open(info) as f:
            data = f.read(limit + 1)
    except (*_DAMAGED, OSError) as e:
        raise UserError(f"bundle is corrupt: entry {info.filename} cannot be read ({e})") from None
    if len(data) > limit:
        raise UserError(f"bundle entry {info.filename} is larger than {limit} bytes")
    return data


def _extract_checked(archive: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, expected: dict, path: Path) -> None:
    target = (dest / info.filename).resolve()
    if target.parent != dest.resolve():  # the manifest allows plain names only; belt and braces
        raise UserError(f"bundle entry {info.filename!r} would be written outside the extraction folder")
    digest, size = hashlib.sha256(), 0
    try:
        with archive.open(info) as src, open(target, "xb") as out:
            while chunk := src.read(_CHUNK):
                size += len(chunk)
                if size > expected["bytes"]:
                    break  # more bytes than declared: tampered; stop before filling the disk
                digest.update(chunk)
                out.write(chunk)
    except _DAMAGED as e:
        raise UserError(f"bundle is corrupt: file {info.filename} cannot be read ({e})") from None
    except OSError as e:
        raise UserError(
            f"cannot extract bundle file {info.filename} into {dest} ({e.strerror or e}); "
            "free disk space or check the work directory"
        ) from None
    if size != expected["bytes"] or digest.hexdigest() != expected["sha256"]:
        raise UserError(
            f"bundle file {info.filename} does not match its sha256 in manifest.json "
            "(tampered or corrupt); refusing the bundle"
        )


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in chunks (models can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
