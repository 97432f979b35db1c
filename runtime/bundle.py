"""Open a model bundle (.zip) safely: check every entry, the manifest and every sha256 before use.

Order matters: entry names are checked before any byte is read (a ``../`` or absolute entry, a
symlink or a duplicate name refuses the whole bundle), then the manifest schema, then each listed
file is extracted into a fresh temporary folder while its sha256 is computed, so the bytes that
run are exactly the bytes that were checked. Files are never unpickled (.npz with
``allow_pickle=False``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from .errors import UserError
from .manifest import MANIFEST, check_manifest

_MAX_MANIFEST_BYTES = 1 << 20
_MAX_TOTAL_BYTES = 4 << 30  # a bundle for a phone app is far smaller; refuse zip bombs
_CHUNK = 1 << 20


@dataclass
class Bundle:
    """An extracted, verified bundle. Use as a context manager: the temporary folder goes on exit."""

    path: Path
    dir: Path
    manifest: dict

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


def open_bundle(path: str | os.PathLike, workdir: str | os.PathLike | None = None) -> Bundle:
    """Check and extract ``path``; raises ``UserError`` naming the first problem found."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"bundle {path} does not exist" if not path.exists() else f"bundle {path} is not a file")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise UserError(f"{path} is not a bundle: not a readable zip archive ({e})") from None
    with archive:
        entries = _checked_entries(archive, path)
        manifest = _read_manifest(archive, entries, path)
        files = manifest["files"]
        unlisted = sorted(set(entries) - set(files) - {MANIFEST})
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
    return Bundle(path, dest, manifest)


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
        entries[name] = info
    return entries


def _read_manifest(archive: zipfile.ZipFile, entries: dict[str, zipfile.ZipInfo], path: Path) -> dict:
    info = entries.get(MANIFEST)
    if info is None:
        raise UserError(f"{path.name} is not a bundle: it has no {MANIFEST}")
    if info.file_size > _MAX_MANIFEST_BYTES:
        raise UserError(f"{MANIFEST} in {path.name} is {info.file_size} bytes; refusing more than 1 MiB")
    try:
        return check_manifest(json.loads(_read_limited(archive, info, _MAX_MANIFEST_BYTES)))
    except ValueError as e:  # bad JSON or bad UTF-8
        raise UserError(f"{MANIFEST} in {path.name} is not valid JSON: {e}") from None


def _read_limited(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    try:
        with archive.open(info) as f:
            data = f.read(limit + 1)
    except (zipfile.BadZipFile, OSError, EOFError) as e:  # also CRC mismatches
        raise UserError(f"bundle entry {info.filename} is damaged: {e}") from None
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
    except (zipfile.BadZipFile, EOFError) as e:
        raise UserError(f"bundle file {info.filename} is damaged ({e}); the bundle is corrupt") from None
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
