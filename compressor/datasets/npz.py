"""NumPy .npz archives: x_train, y_train, x_test, y_test and optionally x_val, y_val.

Files are always opened with ``allow_pickle=False``: an .npz can carry pickled object arrays,
and unpickling a user's file can run arbitrary code.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

from compressor.datasets.assemble import MAX_CLASSES, RawData, check_class_ids, check_finite
from compressor.datasets.preprocessing import Preprocessing
from compressor.runtime.errors import UserError

REQUIRED = ("x_train", "y_train", "x_test", "y_test")
EXPECTED = "expected x_train, y_train, x_test, y_test [, x_val, y_val]"
NUMERIC_KINDS = "biuf"  # bool, signed int, unsigned int, float


def _read_arrays(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Load the arrays named in ``keys`` that the archive has, refusing pickled content."""
    try:
        archive = np.load(path, allow_pickle=False)
    except ValueError:
        # np.load treats anything that is neither a zip nor a .npy file as a pickle.
        raise UserError(
            f"data file {path} is neither an .npz archive nor a .npy array (pickles are never loaded); "
            "save the arrays with np.savez"
        ) from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise UserError(f"data file {path} is a damaged .npz archive ({e}); save it again with np.savez") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise UserError(
            f"data file {path} holds a single array, not an .npz archive; save it with np.savez(path, x_train=..., ...)"
        )
    with archive:
        arrays = {}
        for key in keys:
            if key not in archive.files:
                continue
            try:
                _check_declared_size(archive, key, path)
                arrays[key] = archive[key]
            except MemoryError:
                raise UserError(f"array {key!r} in {path} does not fit in memory; use a smaller data file") from None
            except ValueError:
                raise UserError(
                    f"array {key!r} in {path} is an object array, which would need unpickling; "
                    "save plain numeric arrays instead"
                ) from None
            except (OSError, EOFError, zipfile.BadZipFile) as e:
                raise UserError(f"array {key!r} in {path} cannot be read ({e}); the file is damaged") from None
    return arrays


def _check_declared_size(archive: np.lib.npyio.NpzFile, key: str, path: Path) -> None:
    """Refuse an array whose .npy header announces more bytes than its zip member holds, before
    numpy allocates what the header says (a 100-byte header can announce terabytes)."""
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    info = archive.zip.getinfo(f"{key}.npy")
    with archive.zip.open(info) as f:
        reader = readers.get(np.lib.format.read_magic(f))
        if reader is None:  # another .npy version: numpy's own reader checks it
            return
        shape, _, dtype = reader(f)
    if not dtype.hasobject and math.prod(shape) * dtype.itemsize > info.file_size:
        raise UserError(
            f"array {key!r} in {path} announces shape {shape} ({math.prod(shape) * dtype.itemsize} bytes) but holds "
            f"{info.file_size} bytes; the file is damaged, save it again with np.savez"
        )


def read_npz(path: Path) -> RawData:
    """Read an .npz data file; a missing val split is left for :func:`assemble` to split off."""
    arrays = _read_arrays(path, REQUIRED + ("x_val", "y_val"))
    for key in REQUIRED:
        if key not in arrays:
            raise UserError(f"data file {path} has no array {key!r}; {EXPECTED}")
    if ("x_val" in arrays) != ("y_val" in arrays):
        has, lacks = ("x_val", "y_val") if "x_val" in arrays else ("y_val", "x_val")
        raise UserError(f"data file {path} has {has} but no {lacks}; provide both or neither")
    return _from_arrays(arrays)


def _from_arrays(arrays: dict[str, np.ndarray]) -> RawData:
    """Build RawData from x_*/y_* arrays in any of the accepted shapes and label encodings."""
    splits = [s for s in ("train", "val", "test") if f"x_{s}" in arrays]
    xs = {s: _numeric(f"x_{s}", arrays[f"x_{s}"]) for s in splits}
    ys = {s: _class_ids(f"y_{s}", arrays[f"y_{s}"]) for s in splits}
    # Layout and channel order are set by assemble(), which knows the model's input shape.
    if all(x.dtype == np.uint8 for x in xs.values()):
        preprocessing = Preprocessing(scale=1 / 255)
    else:
        # Checked here already because NaN would poison the observed input range.
        for s, x in xs.items():
            check_finite(f"x_{s}", x)
        nonempty = [x for x in xs.values() if x.size]
        low = min((float(x.min()) for x in nonempty), default=0.0)
        high = max((float(x.max()) for x in nonempty), default=0.0)
        preprocessing = Preprocessing(input_range=(low, high))
    num_classes = max((int(y.max()) + 1 for y, _ in ys.values() if y.size), default=0)
    # One-hot rows also tell the class count, even if the last classes never occur.
    num_classes = max([num_classes] + [width for _, width in ys.values()])
    return RawData(
        x_train=xs["train"],
        y_train=ys["train"][0],
        x_val=xs.get("val"),
        y_val=ys["val"][0] if "val" in ys else None,
        x_test=xs["test"],
        y_test=ys["test"][0],
        labels=[str(i) for i in range(num_classes)],
        preprocessing=preprocessing,
    )


def _numeric(name: str, x: np.ndarray) -> np.ndarray:
    if x.dtype.kind not in NUMERIC_KINDS:
        raise UserError(f"{name} has dtype {x.dtype}; inputs must be numeric (uint8 or float)")
    if x.ndim < 2:
        raise UserError(f"{name} has shape {x.shape}; expected (N, features), (N, steps, channels) or (N, H, W, C)")
    return x


def _class_ids(name: str, y: np.ndarray) -> tuple[np.ndarray, int]:
    """Return (int64 class ids, one-hot width or 0) for ids of shape (N,)/(N, 1) or one-hot rows."""
    if y.dtype.kind not in NUMERIC_KINDS:
        raise UserError(f"{name} has dtype {y.dtype}; labels must be integer class ids or one-hot rows")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 2:
        if y.shape[1] > MAX_CLASSES:
            raise UserError(f"{name} has one-hot rows of {y.shape[1]} classes; at most {MAX_CLASSES} are supported")
        if not (np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all()):
            raise UserError(
                f"{name} has shape {y.shape} but is not one-hot; give class ids (N,) or one-hot rows (N, classes)"
            )
        return np.argmax(y, axis=1).astype(np.int64), y.shape[1]
    if y.ndim != 1:
        raise UserError(f"{name} has shape {y.shape}; expected class ids (N,) or one-hot rows (N, classes)")
    check_class_ids(name, y)  # before the ids size anything (the labels list below, confusion matrices)
    return y.astype(np.int64), 0
