"""Image folders: one subfolder per class (sorted names are the labels), images of any size inside.

Every image is fitted to the model's input (runtime/image_fit.py: EXIF orientation, colour mode,
resize / centre crop / pad) and the settings are recorded in ``preprocessing.image``, so a device
reproduces the same pixels. Without a model (``compressor train``) images keep their size when all
share one, else they are fitted to the most common size.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from compressor.datasets.assemble import RawData
from compressor.datasets.preprocessing import Preprocessing
from compressor.datasets.reading import reading
from compressor.runtime.errors import UserError
from compressor.runtime.image_fit import image_spec, load_image

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def read_image_folder(
    root: Path, model_shape: tuple | None = None, fit: str | dict = "resize", lazy: bool = False
) -> RawData:
    """Read every image below ``root``/<class>/; all of them become the pool that is split.

    ``model_shape`` (height, width, channels) is what images are fitted to; ``fit`` is resize,
    crop or pad, or a recorded spec (``compressor package`` replays the run's). ``lazy``: x_train is
    an :class:`ImageFiles` that decodes images only when rows are taken (streaming).
    """
    files, class_ids, classes = _list_images(root)
    spec = fit if isinstance(fit, dict) else _spec(files, model_shape, fit)
    images = ImageFiles(files, spec, f"reading {root.name}")
    order = {"L": "gray", "RGB": "RGB", "RGBA": "RGBA"}[spec["color"]]
    return RawData(
        x_train=images if lazy else images.take(np.arange(len(files))),
        y_train=np.asarray(class_ids, dtype=np.int64),
        labels=classes,
        preprocessing=Preprocessing(scale=1 / 255, channel_order=order, image=spec),
        files=[str(path) for path in files],
    )


class ImageFiles:
    """Image files seen as a uint8 (N, height, width, channels) array, decoded and fitted when taken."""

    def __init__(self, files: list[Path], spec: dict, what: str = "reading images"):
        self.files, self.spec, self.what = files, spec, what
        channels = len(spec["color"])  # "L", "RGB", "RGBA": one letter a channel
        self.shape = (len(files), *spec["size"], channels)
        self.dtype, self.ndim = np.dtype(np.uint8), 4

    def __len__(self) -> int:
        return len(self.files)

    def take(self, indices: np.ndarray) -> np.ndarray:
        out = np.empty((len(indices), *self.shape[1:]), dtype=np.uint8)
        for j, i in enumerate(reading(list(indices), self.what)):
            out[j] = load_image(self.files[int(i)], self.spec)
        return out


def _spec(files: list[Path], model_shape: tuple | None, fit: str) -> dict:
    """Fit to the model's (height, width, channels); what the model leaves open, the images say."""
    shape = tuple(model_shape) if model_shape is not None else (None, None, None)
    if len(shape) != 3:
        raise UserError(
            f"the model takes inputs of shape {shape} but image folders give (height, width, channels) images; "
            "pass the data as an .npz instead"
        )
    height, width, channels = shape
    headers = None
    if height is None or width is None or channels is None:
        headers = [_read_header(path) for path in files]
    if height is None or width is None:
        sizes = Counter(size for size, _ in headers)
        (width, height), _ = max(sizes.items(), key=lambda item: (item[1], item[0]))
    if channels is None:
        channels = 1 if all(mode == "L" for _, mode in headers) else 3
    return image_spec(fit, height, width, channels)


def _list_images(root: Path) -> tuple[list[Path], list[int], list[str]]:
    """Image paths in a stable order (class, then file name), their class ids, the class names."""
    # Hidden entries are skipped: macOS "._x.png" resource forks and .git folders are not data.
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise UserError(f"image folder {root} has no class subfolders; put each class's images in {root}/<class name>/")
    files: list[Path] = []
    class_ids: list[int] = []
    for class_id, folder in enumerate(classes):
        images = sorted(
            p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS and not p.name.startswith(".")
        )
        if not images:
            kinds = ", ".join(e[1:] for e in EXTENSIONS)
            raise UserError(f"class folder {folder} has no images ({kinds}); add some or remove the folder")
        files += images
        class_ids += [class_id] * len(images)
    return files, class_ids, [folder.name for folder in classes]


def _read_header(path: Path) -> tuple[tuple[int, int], str]:
    """(width, height) and mode, from the header only, so size errors surface before decoding."""
    # Pillow is imported lazily: only this format needs it.
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size, im.mode
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise UserError(f"image {path} cannot be read ({e}); fix or remove it") from None
