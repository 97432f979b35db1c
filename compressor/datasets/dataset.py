"""The Dataset container handed to recipes, exporters (int8 calibration) and validation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from compressor.datasets.preprocessing import Preprocessing


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

    def summary(self) -> dict[str, Any]:
        """A JSON-serialisable description for reports and meta.json files."""
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "labels": list(self.labels),
            "splits": {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)},
            "shapes": {split: list(getattr(self, f"x_{split}").shape) for split in ("train", "val", "test")},
            "preprocessing": self.preprocessing.to_dict(),
            "preprocess_reason": self.preprocess_reason,
        }
