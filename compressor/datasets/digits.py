"""scikit-learn's embedded handwritten digits: 1,797 8x8 grayscale images, raw values 0..16.

It ships inside scikit-learn, so it is the one real data set available offline.
"""

from __future__ import annotations

import numpy as np

from compressor.datasets.assemble import RawData
from compressor.datasets.preprocessing import Preprocessing


def read_digits() -> RawData:
    """All digits as one pool; :func:`assemble` splits off test and val."""
    # Imported here: scikit-learn costs ~1 s to import and only this loader needs it.
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # The values are integers 0..16 stored as float64; uint8 keeps raw_test small and exact.
    images = bunch.images.astype(np.uint8)[..., np.newaxis]
    return RawData(
        x_train=images,
        y_train=bunch.target.astype(np.int64),
        labels=[str(d) for d in range(10)],
        preprocessing=Preprocessing(scale=1 / 16, input_range=(0.0, 16.0)),
    )
