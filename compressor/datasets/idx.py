"""MNIST and Fashion-MNIST from their distribution files (IDX format) or Keras' cached mnist.npz.

IDX layout (http://yann.lecun.com/exdb/mnist/): a big-endian uint32 magic number
0x000008NN (0x08 = unsigned byte data, NN = number of dimensions), NN big-endian uint32
dimension sizes, then the data bytes in row-major order.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from compressor.datasets.assemble import RawData
from compressor.datasets.npz import read_npz
from compressor.datasets.preprocessing import Preprocessing
from compressor.runtime.errors import UserError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
MAX_IDX_BYTES = 4 << 30  # MNIST's largest file is 47 MB; a header announcing more is damage or a bomb
_CHUNK = 1 << 20
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FASHION_LABELS = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


def read_mnist(name: str, base: Path) -> RawData:
    """Read ``name`` ("mnist" or "fashion_mnist") from the folder ``base``.

    Keras caches Fashion-MNIST in a ``fashion-mnist`` subfolder, so that is searched too.
    """
    labels = FASHION_LABELS if name == "fashion_mnist" else [str(d) for d in range(10)]
    folders = [base, base / "fashion-mnist"] if name == "fashion_mnist" else [base]
    stems = [stem for pair in SPLIT_FILES.values() for stem in pair]
    for folder in folders:
        found = {stem: _find(folder, stem) for stem in stems}
        if all(found.values()):
            return _read_idx_splits(found, labels)
    if name == "mnist" and (base / "mnist.npz").is_file():
        raw = read_npz(base / "mnist.npz")
        raw.labels = labels
        return raw
    missing = [f"{stem}.gz" for stem in stems if not _find(base, stem)]
    alternative = " or mnist.npz" if name == "mnist" else ""
    raise UserError(
        f"{name} files not found in {base}: missing {', '.join(missing)} (gzipped or not){alternative}; "
        f"copy them there, or run keras.datasets.{name}.load_data() on an online machine to fill ~/.keras/datasets"
    )


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Return the uint8 array stored in the IDX file ``path``, checking its header against ``magic``.

    Streamed: the header is read first (from the gzip stream when gzipped) and checked against
    ``MAX_IDX_BYTES`` before anything is allocated; then exactly the announced bytes are read and
    one more byte must not exist. A gzip bomb (a tiny file that inflates to gigabytes) is thus
    refused after reading at most what its header announced, never decompressed whole.
    """
    kind = "image" if magic == IMAGES_MAGIC else "label"
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
            dims = _read_header(f, path, magic, kind)
            array = np.empty(math.prod(dims), dtype=np.uint8)
            got = _read_into(f, memoryview(array))
            trailing = f.read(1) if got == array.size else b""
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(f"{path} cannot be read ({e}); download it again") from None
    if got != array.size or trailing:
        problem = "truncated" if got < array.size else "longer than its header says"
        found = f"found {got}" if got < array.size else "found more"
        announced = f"header announces {dims} = {array.size} bytes"
        raise UserError(f"{path} is {problem}: {announced}, {found}; download it again")
    return array.reshape(dims)


def _read_header(f: BinaryIO, path: Path, magic: int, kind: str) -> tuple[int, ...]:
    head = f.read(4)
    got = struct.unpack(">I", head)[0] if len(head) == 4 else None
    if got != magic:
        found = "no header" if got is None else f"magic number 0x{got:08x}"
        raise UserError(f"{path} is not an IDX {kind} file ({found}, expected 0x{magic:08x}); download it again")
    ndim = magic & 0xFF
    raw = f.read(4 * ndim)
    if len(raw) < 4 * ndim:
        raise UserError(f"{path} is truncated inside its header; download it again")
    dims = struct.unpack(f">{ndim}I", raw)
    if math.prod(dims) > MAX_IDX_BYTES:
        raise UserError(
            f"{path} announces {dims} = {math.prod(dims)} bytes, more than the {MAX_IDX_BYTES >> 30} GiB an IDX "
            "file of this tool may hold; the file is damaged or not MNIST data"
        )
    return dims


def _read_into(f: BinaryIO, out: memoryview) -> int:
    """Fill ``out`` chunk by chunk; the count of bytes read (less than its size when the file is short)."""
    done = 0
    while done < len(out):
        chunk = f.read(min(_CHUNK, len(out) - done))
        if not chunk:
            break
        out[done : done + len(chunk)] = chunk
        done += len(chunk)
    return done


def _read_idx_splits(found: dict[str, Path], labels: list[str]) -> RawData:
    arrays = {}
    for split, (images_stem, labels_stem) in SPLIT_FILES.items():
        images = read_idx(found[images_stem], IMAGES_MAGIC)
        ids = read_idx(found[labels_stem], LABELS_MAGIC)
        if len(images) != len(ids):
            raise UserError(
                f"{found[images_stem]} holds {len(images)} images but {found[labels_stem]} holds {len(ids)} labels; "
                "both must come from the same distribution"
            )
        arrays[split] = (images[..., np.newaxis], ids.astype(np.int64))
    return RawData(
        x_train=arrays["train"][0],
        y_train=arrays["train"][1],
        x_test=arrays["test"][0],
        y_test=arrays["test"][1],
        labels=labels,
        preprocessing=Preprocessing(scale=1 / 255),
    )


def _find(folder: Path, stem: str) -> Path | None:
    """The gzipped or plain file for ``stem`` in ``folder``, gzipped preferred (Keras' naming)."""
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None
