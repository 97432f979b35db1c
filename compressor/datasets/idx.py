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

import numpy as np

from compressor.datasets.assemble import RawData
from compressor.datasets.npz import read_npz
from compressor.datasets.preprocessing import Preprocessing
from compressor.runtime.errors import UserError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
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
    """Return the uint8 array stored in the IDX file ``path``, checking its header against ``magic``."""
    data = _read_bytes(path)
    kind = "image" if magic == IMAGES_MAGIC else "label"
    got = struct.unpack(">I", data[:4])[0] if len(data) >= 4 else None
    if got != magic:
        found = "no header" if got is None else f"magic number 0x{got:08x}"
        raise UserError(f"{path} is not an IDX {kind} file ({found}, expected 0x{magic:08x}); download it again")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(f"{path} is truncated inside its header; download it again")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    body = len(data) - header
    if body != math.prod(dims):
        problem = "truncated" if body < math.prod(dims) else "longer than its header says"
        raise UserError(
            f"{path} is {problem}: header announces {dims} = {math.prod(dims)} bytes, found {body}; download it again"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


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


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(f"{path} cannot be read ({e}); download it again") from None
