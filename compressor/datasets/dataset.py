"""The Dataset container handed to recipes, exporters (int8 calibration) and validation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from compressor.datasets.preprocessing import Preprocessing
from compressor.datasets.splits import ArraySplit

SPLITS = ("train", "val", "test")


@dataclass
class Dataset:
    """Preprocessed train/val/test splits plus what is needed to reproduce them on a device.

    x arrays are float32 and already preprocessed (NHWC for images, NC for flat vectors);
    y arrays are int64 class ids indexing ``labels``. ``raw_test`` keeps the test inputs as
    they were read, so a device self-test can run ``preprocessing.apply(raw_test)`` itself.
    ``preprocess_reason`` says why this preprocessing was chosen (printed, recorded in run.json);
    ``test_files`` the image file of each test sample (image folders), for the device self-test.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    labels: list[str]
    preprocessing: Preprocessing
    raw_test: np.ndarray | None = None
    preprocess_reason: str = ""
    test_files: list[str] | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample, e.g. (8, 8, 1)."""
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def split(self, name: str) -> ArraySplit:
        """The split ``name`` (train, val, test) as fitting, calibration and measurement read it (splits.py)."""
        return ArraySplit(name, getattr(self, f"x_{name}"), getattr(self, f"y_{name}"))

    def arrays(self, limit: int, seed: int = 0, splits: tuple[str, ...] = SPLITS) -> Dataset:
        """The data as arrays: already so (a streamed data set gives bounded subsets here)."""
        return self

    def summary(self) -> dict[str, Any]:
        """A JSON-serialisable description for reports and meta.json files."""
        return summary_of(self)


def summary_of(data: Any) -> dict[str, Any]:
    """What a data set is, in memory or streamed (both offer split(), input_shape, labels...)."""
    sizes = {split: len(data.split(split)) for split in SPLITS}
    return {
        "name": data.name,
        "input_shape": list(data.input_shape),
        "num_classes": data.num_classes,
        "labels": list(data.labels),
        "splits": sizes,
        "shapes": {split: [n, *data.input_shape] for split, n in sizes.items()},
        "preprocessing": data.preprocessing.to_dict(),
        "preprocess_reason": data.preprocess_reason,
    }
