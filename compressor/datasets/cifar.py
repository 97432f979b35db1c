"""CIFAR-10 from its binary distribution (https://www.cs.toronto.edu/~kriz/cifar.html).

Each record is 1 label byte followed by 3072 pixel bytes: the 1024 red values, then the 1024
green, then the 1024 blue values, each plane a row-major 32x32 image. The Python distribution
(cifar-10-batches-py) is pickled, and we never unpickle user files, so it is refused.
"""

from __future__ import annotations

import tarfile
import zlib
from pathlib import Path

import numpy as np

from compressor.datasets.assemble import RawData
from compressor.datasets.preprocessing import Preprocessing
from compressor.runtime.errors import UserError

SIDE = 32
RECORD = 1 + 3 * SIDE * SIDE
FOLDER = "cifar-10-batches-bin"
ARCHIVE = "cifar-10-binary.tar.gz"
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"
META_FILE = "batches.meta.txt"
# Used only when batches.meta.txt was not copied along with the batches.
CIFAR10_LABELS = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# A batch is 10,000 records (30,730,000 bytes); read nothing a tar header announces beyond that.
MAX_MEMBER_BYTES = 2 * 10_000 * RECORD
DOWNLOAD_HINT = f"download {ARCHIVE} from https://www.cs.toronto.edu/~kriz/cifar.html"


def read_cifar10(base: Path) -> RawData:
    """Read CIFAR-10 from ``base``: the .tar.gz itself, a folder holding it, or its extracted batches.

    data_batch_1.bin and test_batch.bin are required; data_batch_2..5.bin are used when present.
    """
    where, files = _read_files(base)
    for required in (TRAIN_FILES[0], TEST_FILE):
        if required not in files:
            raise UserError(f"{where} has no {required}; {DOWNLOAD_HINT} again")
    train = [_parse_batch(f"{where}/{name}", files[name]) for name in TRAIN_FILES if name in files]
    x_test, y_test = _parse_batch(f"{where}/{TEST_FILE}", files[TEST_FILE])
    labels = CIFAR10_LABELS
    if META_FILE in files:
        labels = [line.strip() for line in files[META_FILE].decode("utf-8", "replace").splitlines() if line.strip()]
    return RawData(
        x_train=np.concatenate([x for x, _ in train]),
        y_train=np.concatenate([y for _, y in train]),
        x_test=x_test,
        y_test=y_test,
        labels=labels,
        preprocessing=Preprocessing(scale=1 / 255, channel_order="RGB"),
    )


def _read_files(base: Path) -> tuple[str, dict[str, bytes]]:
    """Return (description for messages, {file name: content}) for the expected files found."""
    names = TRAIN_FILES + (TEST_FILE, META_FILE)
    if base.is_file() and base.name.endswith(".tar.gz"):
        return str(base), _read_archive(base, names)
    for folder in (base / FOLDER, base):
        if (folder / TRAIN_FILES[0]).is_file() or (folder / TEST_FILE).is_file():
            return str(folder), _read_folder(folder, names)
    if (base / ARCHIVE).is_file():
        return str(base / ARCHIVE), _read_archive(base / ARCHIVE, names)
    pickle_paths = (base / "cifar-10-batches-py", base / "cifar-10-python.tar.gz", base / "data_batch_1")
    pickled = [p for p in pickle_paths if p.exists()]
    if pickled:
        raise UserError(
            f"{pickled[0]} is the Python (pickle) version of CIFAR-10, which compressor never unpickles; "
            f"{DOWNLOAD_HINT} (the binary version) into {base}"
        )
    raise UserError(f"CIFAR-10 not found in {base}: expected {ARCHIVE} or {FOLDER}/; {DOWNLOAD_HINT} into {base}")


def _read_folder(folder: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    try:
        return {name: (folder / name).read_bytes() for name in names if (folder / name).is_file()}
    except OSError as e:
        raise UserError(f"cannot read CIFAR-10 files in {folder} ({e}); check the file permissions") from None


def _read_archive(path: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    """Read only the expected members, straight from the archive: nothing is extracted to disk."""
    files = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            members = {m.name: m for m in tar.getmembers() if m.isfile()}
            for name in names:
                member = members.get(f"{FOLDER}/{name}")
                if member is not None and member.size > MAX_MEMBER_BYTES:
                    raise UserError(
                        f"{path}: {member.name} is {member.size} bytes, more than any CIFAR-10 file "
                        f"({MAX_MEMBER_BYTES} at most); {DOWNLOAD_HINT} again"
                    )
                if member is not None:
                    files[name] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise UserError(f"{path} is not a readable .tar.gz archive ({e}); {DOWNLOAD_HINT} again") from None
    return files


def _parse_batch(where: str, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Return (uint8 NHWC images, int64 labels) of one batch file."""
    if not data or len(data) % RECORD:
        raise UserError(
            f"{where} is {len(data)} bytes, not a positive multiple of {RECORD} (1 label + 3072 pixel bytes "
            "per image); it is truncated or not the CIFAR-10 binary version"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD)
    # Planes are stored channel-first (all R, then G, then B); models want NHWC.
    images = records[:, 1:].reshape(-1, 3, SIDE, SIDE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), records[:, 0].astype(np.int64)
