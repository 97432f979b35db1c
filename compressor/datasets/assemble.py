"""Turn what a format reader returns into a checked, split and preprocessed :class:`Dataset`.

Every format goes through :func:`assemble`, so splitting, normalisation and the sanity checks
behave identically whether the data came from digits, an .npz file, IDX, CIFAR or image folders.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from compressor.datasets.choice import choose
from compressor.datasets.dataset import Dataset
from compressor.datasets.layout import arrange, channel_order_of, layout_of
from compressor.datasets.model_input import ModelInput
from compressor.datasets.preprocessing import Preprocessing
from compressor.datasets.split import holdout_indices
from compressor.runtime.errors import UserError

TEST_FRACTION = 0.2
# Class ids index a labels list, a confusion matrix (classes**2 cells) and one-hot rows, so a
# hostile label (2**40) would allocate without end; no classifier we compress has this many classes.
MAX_CLASSES = 65_536
SPLITS = ("train", "val", "test")


def fractions(val_fraction: float) -> tuple[tuple[str, float], ...]:
    """The holdouts split off a pool, in order: test first, then validation."""
    return (("test", TEST_FRACTION), ("val", val_fraction))


@dataclass
class RawData:
    """Raw inputs as read (before preprocessing), int64 class ids, class names, base preprocessing.

    Readers leave test and/or val as None when the format has no such split; :func:`assemble`
    then splits them off, seeded and stratified.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    labels: list[str]
    preprocessing: Preprocessing
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    files: list[str] | None = None  # the file of each x_train sample (image folders: one pool)


def assemble(
    name: str,
    raw: RawData,
    seed: int,
    val_fraction: float,
    model: ModelInput | None = None,
    preprocess: str | Preprocessing = "auto",
) -> Dataset:
    """Arrange the arrays as the model reads them, split off missing test/val sets, check
    everything, choose the preprocessing (a --preprocess mode, or a recorded Preprocessing that is
    replayed as it is) and apply it."""
    shape = model.shape if model is not None else None
    x = {
        s: None if a is None else arrange(f"x_{s}", a, shape)
        for s, a in zip(SPLITS, (raw.x_train, raw.x_val, raw.x_test))
    }
    y = {"train": raw.y_train, "val": raw.y_val, "test": raw.y_test}
    for split in SPLITS:
        if x[split] is not None:
            _check_pair(split, x[split], y[split])
            check_class_ids(f"y_{split}", y[split])
    files = {"train": np.asarray(raw.files if raw.files is not None else [""] * len(x["train"]), dtype=object)}
    missing = [s for s in ("test", "val") if x[s] is None]
    if missing:
        pool = x["train"], y["train"], files["train"]
        for split, idx in holdout_indices(y["train"], missing, seed, fractions(val_fraction)).items():
            x[split], y[split], files[split] = (a[idx] for a in pool)
    _check_shapes(x)
    for split in SPLITS:
        check_labels(split, y[split], len(raw.labels))
    if isinstance(preprocess, Preprocessing):
        preprocessing, reason = preprocess, "replayed as recorded"
    else:
        preprocessing, reason = choose(preprocess, laid_out(raw.preprocessing, x["train"]), model, x["train"])
    xs = {}
    for split in SPLITS:
        xs[split] = preprocessing.apply(x[split])
        check_finite(f"x_{split}", xs[split])
    return Dataset(
        name=name,
        x_train=xs["train"],
        y_train=y["train"].astype(np.int64),
        x_val=xs["val"],
        y_val=y["val"].astype(np.int64),
        x_test=xs["test"],
        y_test=y["test"].astype(np.int64),
        labels=list(raw.labels),
        preprocessing=preprocessing,
        raw_test=x["test"],
        preprocess_reason=reason,
        test_files=[str(f) for f in files["test"]] if raw.files is not None and "test" in files else None,
    )


def laid_out(base: Preprocessing, x_train: np.ndarray) -> Preprocessing:
    """The reader's preprocessing with the layout and channel order of the arrays as arranged."""
    layout = layout_of(x_train.shape[1:])
    return replace(base, layout=layout, channel_order=channel_order_of(layout, x_train.shape[-1], base.channel_order))


def _check_pair(split: str, x: np.ndarray, y: np.ndarray | None) -> None:
    if y is None:
        raise UserError(f"x_{split} is given without y_{split}; provide both or neither")
    if len(x) == 0:
        raise UserError(f"the {split} split is empty; provide at least one sample")
    if len(x) != len(y):
        raise UserError(f"x_{split} has {len(x)} samples but y_{split} has {len(y)}; they must match")


def _check_shapes(x: dict[str, np.ndarray]) -> None:
    expected = x["train"].shape[1:]
    for split in ("val", "test"):
        if x[split].shape[1:] != expected:
            raise UserError(
                f"x_{split} samples have shape {x[split].shape[1:]} but x_train samples have {expected}; "
                "all splits need the same per-sample shape"
            )


def check_labels(split: str, y: np.ndarray, num_classes: int) -> None:
    bad = np.flatnonzero((y < 0) | (y >= num_classes))
    if bad.size:
        i = int(bad[0])
        raise UserError(f"y_{split} has label {y[i]} at index {i}; labels must be class ids in [0, {num_classes})")


def check_class_ids(name: str, y: np.ndarray) -> None:
    """Refuse labels outside [0, MAX_CLASSES) (or fractional ones) BEFORE anything is sized by them.

    ``y`` is 1-D, integer or float, as read from the file: checked before any cast to int64, so a
    uint64 of 2**63 or a float 1e30 cannot wrap around into a plausible id.
    """
    if y.dtype.kind == "b" or not y.size:
        return
    bad = (y < 0) | (y >= MAX_CLASSES)
    if y.dtype.kind == "f":
        bad |= ~np.isfinite(y) | (y != np.round(y))
    first = np.flatnonzero(bad)
    if first.size:
        i = int(first[0])
        raise UserError(
            f"{name} has label {y[i]} at index {i}; labels must be integer class ids from 0 to {MAX_CLASSES - 1}"
        )


def check_finite(array_name: str, x: np.ndarray) -> None:
    """Raise a UserError naming the first sample of ``x`` that holds a NaN or inf value."""
    bad = ~np.isfinite(x).reshape(len(x), -1).all(axis=1)
    if bad.any():
        raise UserError(
            f"{array_name} contains NaN/inf values (first at index {int(np.argmax(bad))}); "
            "clean the data before compressing"
        )
