"""Streaming: the splits of a data set read batch by batch, for data larger than memory.

``open_stream`` takes the same spec and options as ``load_dataset`` and gives the very same
splits (same seed, same indices, same preprocessing), but holds only labels and indices: image
folders are decoded and fitted when a batch is taken, a folder of .npy shards is memory-mapped.
A split yields preprocessed float32 batches (``batches``), a ``tf.data`` pipeline with prefetch
(``to_tf``: training and evaluation), or a bounded, seeded subset in memory (``take``: calibration
and validation). mean-std statistics are summed over the training split a batch at a time (float64).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from compressor.datasets.assemble import check_class_ids, check_labels, fractions, laid_out
from compressor.datasets.choice import choose, parse_mode
from compressor.datasets.dataset import SPLITS, Dataset, summary_of
from compressor.datasets.image_folder import read_image_folder
from compressor.datasets.layout import arrange
from compressor.datasets.model_input import ModelInput, model_input
from compressor.datasets.preprocessing import Preprocessing
from compressor.datasets.reading import batch_bar
from compressor.datasets.shards import is_shard_folder, read_shards
from compressor.datasets.split import holdout_indices
from compressor.datasets.splits import IndexedSplit, batch_positions
from compressor.runtime.errors import UserError

SAMPLE = 256  # training samples that tell the layout and --preprocess auto's checks
STATS_BATCH = 256


@dataclass
class StreamSplit(IndexedSplit):
    """One split: rows ``indices`` of a pool (array, ShardedArray or ImageFiles), read on demand;
    take, head and to_tf come from IndexedSplit (splits.py)."""

    name: str
    pool: Any
    indices: np.ndarray
    y: np.ndarray
    preprocessing: Preprocessing
    model_shape: tuple | None

    def __len__(self) -> int:
        return len(self.indices)

    def raw(self, positions: np.ndarray) -> np.ndarray:
        """Raw samples at ``positions`` of this split, read in row order (sequential on disk)."""
        rows = self.indices[np.asarray(positions, dtype=np.int64)]
        order = np.argsort(rows, kind="stable")
        wanted = rows[order]
        got = self.pool[wanted] if isinstance(self.pool, np.ndarray) else self.pool.take(wanted)
        out = np.empty_like(got)
        out[order] = got
        return arrange(f"x_{self.name}", out, self.model_shape)

    def inputs(self, positions: np.ndarray) -> np.ndarray:
        """Model inputs (preprocessed) at ``positions`` of this split."""
        return self.preprocessing.apply(self.raw(positions))

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(model inputs, class ids) batches; ``shuffle`` permutes with ``seed``. A pass over many samples
        draws a progress bar on a terminal (datasets/reading.py): reading from disk is the slow part."""
        every = batch_positions(len(self), batch_size, shuffle, seed)
        for positions in batch_bar(every, len(self), f"{self.name} split"):
            yield self.inputs(positions), self.y[positions]


@dataclass
class StreamingDataset:
    """A data set's splits, streamed: what a Dataset offers except its x arrays (see splits.py)."""

    name: str
    train: StreamSplit
    val: StreamSplit
    test: StreamSplit
    labels: list[str]
    preprocessing: Preprocessing
    preprocess_reason: str

    @cached_property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.train.head(1).shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def y_train(self) -> np.ndarray:
        return self.train.y

    @property
    def y_val(self) -> np.ndarray:
        return self.val.y

    @property
    def y_test(self) -> np.ndarray:
        return self.test.y

    @property
    def test_files(self) -> list[str] | None:
        """The image file of each test sample (image folders; None otherwise), as Dataset has them."""
        files = getattr(self.test.pool, "files", None)
        return None if files is None else [str(files[int(i)]) for i in self.test.indices]

    def split(self, name: str) -> StreamSplit:
        return {"train": self.train, "val": self.val, "test": self.test}[name]

    def with_split(self, name: str, split: Any) -> StreamingDataset:
        """These splits with ``name`` replaced by ``split`` (e.g. a JoinedSplit of train and val)."""
        return replace(self, **{name: split})

    def with_targets(self, targets: dict[str, np.ndarray]) -> StreamingDataset:
        """These splits with other targets as y (splits.with_targets): only the labels are replaced."""
        return replace(self, **{name: replace(self.split(name), y=np.asarray(y)) for name, y in targets.items()})

    def arrays(self, limit: int, seed: int = 0, splits: tuple[str, ...] = SPLITS) -> Dataset:
        """In memory, each of ``splits`` a seeded subset of at most ``limit`` samples (the others
        empty): for the few consumers that need arrays (export/selective.py's float-layer search)."""
        parts = {s: self.split(s).take(limit if s in splits else 0, seed) for s in SPLITS}
        arrays = {f"{k}_{s}": v for s, pair in parts.items() for k, v in zip("xy", pair)}
        return Dataset(self.name, **arrays, labels=self.labels, preprocessing=self.preprocessing)

    def summary(self) -> dict[str, Any]:
        return {**summary_of(self), "streamed": True}


def open_stream(
    spec: str,
    seed: int = 0,
    val_fraction: float = 0.1,
    model: Any = None,
    preprocess: str | Preprocessing = "auto",
    image_fit: str = "resize",
) -> StreamingDataset:
    """The splits of an image folder, a folder of .npy shards or an .npz, streamed (see the module)."""
    if model is not None and not isinstance(model, ModelInput):
        model = model_input(model)
    shape = model.shape if model is not None else None
    preprocess = parse_mode(preprocess) if isinstance(preprocess, str) else preprocess
    name, raw = _read_lazy(Path(spec).expanduser(), shape, preprocess, image_fit)
    pools = {"train": raw.x_train, "val": raw.x_val, "test": raw.x_test}
    ys = {"train": raw.y_train, "val": raw.y_val, "test": raw.y_test}
    rows = {s: np.arange(len(p)) for s, p in pools.items() if p is not None}
    missing = [s for s in ("test", "val") if pools[s] is None]
    for split, idx in holdout_indices(ys["train"], missing, seed, fractions(val_fraction)).items():
        pools[split], rows[split], ys[split] = raw.x_train, idx, raw.y_train[idx]
    for split in rows:
        check_class_ids(f"y_{split}", ys[split])
        check_labels(split, ys[split], len(raw.labels))
    splits = {s: StreamSplit(s, pools[s], rows[s], ys[s].astype(np.int64), Preprocessing(), shape) for s in rows}
    sample = splits["train"].raw(np.sort(np.random.default_rng(seed).permutation(len(rows["train"]))[:SAMPLE]))
    if isinstance(preprocess, Preprocessing):
        prep, reason = preprocess, "replayed as recorded"
    else:
        base = laid_out(raw.preprocessing, sample)
        prep, reason = choose(preprocess, base, model, sample)
        if prep.mode == "mean-std":  # over the whole training split, a batch at a time
            splits["train"].preprocessing = base
            prep = replace(prep, **_streamed_stats(splits["train"]))
    for split in splits.values():
        split.preprocessing = prep
    return StreamingDataset(name, splits["train"], splits["val"], splits["test"], list(raw.labels), prep, reason)


def _streamed_stats(train: StreamSplit) -> dict:
    """Per-channel mean and std of the (scaled) training split, without holding it: float64 sums."""
    count, total, squares = 0, 0.0, 0.0
    for x, _ in train.batches(STATS_BATCH):
        flat = x.reshape(-1, x.shape[-1]).astype(np.float64)
        count, total, squares = count + len(flat), total + flat.sum(axis=0), squares + (flat * flat).sum(axis=0)
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean * mean, 0.0))
    std = np.where(std > 0, std, 1.0)  # a constant channel would divide by zero
    return {"mean": tuple(np.atleast_1d(mean)), "std": tuple(np.atleast_1d(std))}


def _read_lazy(path: Path, shape: tuple | None, preprocess: Any, image_fit: str):
    if path.is_dir() and is_shard_folder(path):
        return path.name, read_shards(path, lazy=True)
    if path.is_dir():
        fit = preprocess.image if isinstance(preprocess, Preprocessing) and preprocess.image else image_fit
        return path.name, read_image_folder(path, shape, fit, lazy=True)
    if path.suffix == ".npz" and path.is_file():
        from compressor.datasets.npz import read_npz

        return path.name, read_npz(path)  # compressed zip members cannot be memory-mapped
    raise UserError(f"cannot stream {path}: give an image folder, a folder of .npy shards or an .npz file")
