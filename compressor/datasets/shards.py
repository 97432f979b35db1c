"""A folder of .npy shards: arrays too large for one .npz, memory-mapped instead of read.

Files are named ``x_train.npy`` / ``y_train.npy`` or sharded ``x_train-00000.npy``,
``x_train-00001.npy``, ... (same for val and test; shards of a split are joined in name order).
x shards are memory-mapped (``np.load(mmap_mode="r")``): only the rows asked for are read, so a
streamed split never sits in RAM. .npy files hold no pickles once ``allow_pickle=False``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from compressor.datasets.assemble import RawData, check_finite
from compressor.datasets.npz import _class_ids, _numeric
from compressor.datasets.preprocessing import Preprocessing
from compressor.runtime.errors import UserError

CHUNK_ROWS = 4096
SHARD = re.compile(r"^([xy])_(train|val|test)(?:-(\d+))?\.npy$")


def is_shard_folder(path: Path) -> bool:
    return path.is_dir() and any(SHARD.match(p.name) for p in path.iterdir())


class ShardedArray:
    """Memory-mapped .npy files seen as one array along axis 0; rows are read when taken."""

    def __init__(self, paths: list[Path]):
        self.parts = [_open(p) for p in paths]
        first = self.parts[0]
        for path, part in zip(paths, self.parts):
            if part.shape[1:] != first.shape[1:] or part.dtype != first.dtype:
                raise UserError(
                    f"shard {path} holds {part.dtype} samples of shape {part.shape[1:]} but {paths[0]} holds "
                    f"{first.dtype} {first.shape[1:]}; all shards of a split need one shape and dtype"
                )
        self.ends = np.cumsum([len(p) for p in self.parts])
        self.shape = (int(self.ends[-1]), *first.shape[1:])
        self.dtype, self.ndim = first.dtype, first.ndim

    def __len__(self) -> int:
        return self.shape[0]

    def take(self, indices: np.ndarray) -> np.ndarray:
        """Rows ``indices`` (in that order) as an in-memory array."""
        indices = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(indices), *self.shape[1:]), dtype=self.dtype)
        shard = np.searchsorted(self.ends, indices, side="right")
        starts = np.concatenate([[0], self.ends[:-1]])
        for s in np.unique(shard):
            rows = np.flatnonzero(shard == s)
            out[rows] = self.parts[s][indices[rows] - starts[s]]
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = np.concatenate([np.asarray(p) for p in self.parts])
        return whole if dtype is None else whole.astype(dtype)


def read_shards(folder: Path, lazy: bool = False) -> RawData:
    """x as ShardedArray (``lazy``) or read into memory; y always in memory (one int per sample)."""
    groups: dict[tuple[str, str], list[Path]] = {}
    for path in sorted(folder.iterdir()):
        m = SHARD.match(path.name)
        if m:
            groups.setdefault((m.group(1), m.group(2)), []).append(path)
    xs, ys = {}, {}
    for split in ("train", "val", "test"):
        has_x, has_y = ("x", split) in groups, ("y", split) in groups
        if has_x != has_y:
            raise UserError(
                f"{folder} has {'x' if has_x else 'y'}_{split} shards but no {'y' if has_x else 'x'}_{split}"
            )
        if has_x:
            sharded = ShardedArray(groups[("x", split)])
            _numeric(f"x_{split}", np.empty((0, *sharded.shape[1:]), sharded.dtype))
            xs[split] = sharded if lazy else np.asarray(sharded)
            ys[split] = _class_ids(f"y_{split}", np.concatenate([np.array(_open(p)) for p in groups[("y", split)]]))
    if "train" not in xs:
        raise UserError(
            f"{folder} has no x_train*.npy / y_train*.npy; name shards x_train-00000.npy, y_train-00000.npy"
        )
    num_classes = max(
        max((int(y.max()) + 1 for y, _ in ys.values() if y.size), default=0), *(w for _, w in ys.values())
    )
    eight_bit = all(x.dtype == np.uint8 for x in xs.values())
    prep = Preprocessing(scale=1 / 255) if eight_bit else Preprocessing(input_range=_value_range(xs))
    return RawData(
        x_train=xs["train"],
        y_train=ys["train"][0],
        x_val=xs.get("val"),
        y_val=ys["val"][0] if "val" in ys else None,
        x_test=xs.get("test"),
        y_test=ys["test"][0] if "test" in ys else None,
        labels=[str(i) for i in range(num_classes)],
        preprocessing=prep,
    )


def _value_range(xs: dict) -> tuple[float, float]:
    """(min, max) of every value, one chunk of rows at a time; NaN/inf refused on the way."""
    low, high = np.inf, -np.inf
    for split, x in xs.items():
        parts = x.parts if isinstance(x, ShardedArray) else [x]
        for part in parts:
            for start in range(0, len(part), CHUNK_ROWS):
                chunk = np.asarray(part[start : start + CHUNK_ROWS])
                check_finite(f"x_{split}", chunk)
                if chunk.size:
                    low, high = min(low, float(chunk.min())), max(high, float(chunk.max()))
    return (low, high) if low <= high else (0.0, 0.0)


def _open(path: Path) -> np.ndarray:
    """Memory-mapped: a header announcing more bytes than the file holds fails here, before any allocation."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as e:
        raise UserError(f"{path} is not a plain numeric .npy array ({e}); save it with np.save") from None
    except OSError as e:
        raise UserError(f"{path} cannot be read ({e}); the file is damaged or truncated") from None
