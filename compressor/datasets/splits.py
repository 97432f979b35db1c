"""One way to read a split, whether its arrays are in memory or it is streamed (stream.py).

Fitting, calibration and measurement ask a data set for ``data.split(name)`` and use only what
both kinds of split offer: ``len()``, ``y`` (class ids, always in memory: one int a sample),
``batches(batch_size, shuffle, seed)``, ``take(n, seed)`` (a bounded, seeded subset),
``head(n)`` (the first n inputs) and ``to_tf(batch_size, shuffle, seed)``. Shuffles and subsets are
drawn by the same numpy generator for both kinds, so one seed gives the very same batches whether
the data was loaded or streamed, and in-memory results are what streamed ones are compared with.
A step that trains on other targets than the class ids (distillation's teacher log-probs) swaps a
split's y with ``with_targets``.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np


def batch_positions(n: int, batch_size: int, shuffle: bool, seed: int) -> Iterator[np.ndarray]:
    """Positions of each batch of a split of ``n`` samples; ``shuffle`` permutes with ``seed``."""
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def subset_positions(n: int, size: int, seed: int) -> np.ndarray:
    """``size`` seeded positions out of ``n`` (all of them, in order, when size >= n), sorted."""
    return np.sort(np.random.default_rng(seed).permutation(n)[:size])


class IndexedSplit:
    """What every kind of split offers, from two things it defines: ``inputs(positions)`` (model
    inputs at those positions) and ``y`` (targets, or None), plus ``len()``."""

    y: Any

    def __len__(self) -> int:
        raise NotImplementedError

    def inputs(self, positions: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def targets(self, positions: np.ndarray) -> Any:
        return None if self.y is None else self.y[positions]

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0) -> Iterator[tuple[np.ndarray, Any]]:
        for positions in batch_positions(len(self), batch_size, shuffle, seed):
            yield self.inputs(positions), self.targets(positions)

    def take(self, n: int, seed: int = 0) -> tuple[np.ndarray, Any]:
        """At most ``n`` samples, chosen with ``seed``, in memory: a calibration or validation subset."""
        positions = subset_positions(len(self), n, seed)
        return self.inputs(positions), self.targets(positions)

    def head(self, n: int) -> np.ndarray:
        """The first ``n`` model inputs of the split, in memory."""
        return self.inputs(np.arange(min(n, len(self))))

    def to_tf(self, batch_size: int, shuffle: bool = False, seed: int = 0) -> Any:
        """A tf.data pipeline of the batches, prefetched; each pass reshuffles (seed, seed+1, ...)."""
        return tf_batches(self, batch_size, shuffle, seed)


class ArraySplit(IndexedSplit):
    """A split held as arrays: x (preprocessed model inputs) and y (class ids)."""

    def __init__(self, name: str, x: np.ndarray, y: np.ndarray | None):
        self.name, self.x, self.y = name, x, y

    def __len__(self) -> int:
        return len(self.x)

    def inputs(self, positions: np.ndarray) -> np.ndarray:
        return self.x[positions]

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0) -> Iterator[tuple[np.ndarray, Any]]:
        for positions in batch_positions(len(self), batch_size, shuffle, seed):
            rows = positions if shuffle else slice(int(positions[0]), int(positions[-1]) + 1)  # a view, no copy
            yield self.x[rows], None if self.y is None else self.y[rows]

    def head(self, n: int) -> np.ndarray:
        return self.x[:n]


class JoinedSplit(IndexedSplit):
    """Splits read one after the other as one (tune's final refit trains on train + val): loaded or
    streamed parts, nothing copied; a batch gathers its rows from the parts it spans."""

    def __init__(self, name: str, parts: list[Any]):
        self.name, self.parts = name, parts
        self.y = np.concatenate([np.asarray(part.y) for part in parts])
        self.ends = np.cumsum([len(part) for part in parts])

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def inputs(self, positions: np.ndarray) -> np.ndarray:
        positions = np.asarray(positions, dtype=np.int64)
        part = np.searchsorted(self.ends, positions, side="right")
        starts = np.concatenate([[0], self.ends[:-1]])
        out = None
        for p in np.unique(part):
            rows = np.flatnonzero(part == p)
            x = self.parts[p].inputs(positions[rows] - starts[p])
            out = np.empty((len(positions), *x.shape[1:]), dtype=x.dtype) if out is None else out
            out[rows] = x
        return out


def split_of(data: Any, name: str) -> Any:
    """``data.split(name)``; any object with x_<name>/y_<name> arrays is read as an ArraySplit."""
    if hasattr(data, "split"):
        return data.split(name)
    return ArraySplit(name, getattr(data, f"x_{name}"), getattr(data, f"y_{name}", None))


def with_targets(data: Any, targets: dict[str, np.ndarray]) -> Any:
    """``data`` with the y of each split named in ``targets`` replaced (one row a sample, any shape,
    e.g. [class id, teacher log-probs...]); the inputs are untouched, loaded or streamed."""
    if hasattr(data, "with_targets"):
        return data.with_targets(targets)
    return dataclasses.replace(data, **{f"y_{name}": y for name, y in targets.items()})


def as_split(x: Any, y: np.ndarray | None = None, name: str = "test") -> Any:
    """``x`` when it is a split already, else the arrays ``x``, ``y`` as an :class:`ArraySplit`."""
    return x if hasattr(x, "batches") else ArraySplit(name, np.asarray(x), y)


def tf_batches(split: Any, batch_size: int, shuffle: bool = False, seed: int = 0) -> Any:
    """A tf.data pipeline of ``split.batches``, prefetched; each pass reshuffles (seed, seed+1, ...)."""
    from compressor.keras_shim import tf

    x0, y0 = split.head(1), np.asarray(split.y[:1])  # y: class ids, or a step's packed soft targets
    signature = (
        tf.TensorSpec((None, *x0.shape[1:]), tf.float32),
        tf.TensorSpec((None, *y0.shape[1:]), tf.as_dtype(y0.dtype)),
    )
    passes = itertools.count(seed)

    def generate() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for x, y in split.batches(batch_size, shuffle, next(passes)):
            yield np.asarray(x, dtype=np.float32), np.asarray(y)

    data = tf.data.Dataset.from_generator(generate, output_signature=signature)
    # A known length: Keras then ends each epoch on its last batch instead of on an end-of-data
    # error, which also counts one optimizer iteration more than the updates made.
    data = data.apply(tf.data.experimental.assert_cardinality(-(-len(split) // batch_size)))
    return data.prefetch(tf.data.AUTOTUNE)
