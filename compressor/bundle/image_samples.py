"""Original image files in a bundle, so the device checks its own image fitting, not only the model.

A run on an image folder records how images were fitted to the model input (``preprocessing.image``,
runtime/image_fit.py). The bundle carries the first few test images as their original file bytes
(``image_0``, ... in samples.npz, each a uint8 array of the file); the device self-test decodes and
fits them again and must get the very ``raw`` samples the host got, pixel for pixel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MAX_IMAGES = 4
MAX_IMAGE_BYTES = 2 << 20  # a phone photo; larger files are left out rather than bloating the bundle


def image_samples(prep: dict, dataset, n: int) -> dict[str, np.ndarray]:
    """{"image_i": file bytes} for test samples i < n whose image file is small enough; {} otherwise."""
    files = getattr(dataset, "test_files", None)
    if not prep.get("image") or not files:
        return {}
    out = {}
    for i, name in enumerate(files[: min(n, MAX_IMAGES)]):
        path = Path(name)
        if path.is_file() and path.stat().st_size <= MAX_IMAGE_BYTES:
            out[f"image_{i}"] = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    return out
