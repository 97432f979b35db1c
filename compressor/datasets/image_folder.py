"""Image folders: one subfolder per class (sorted names are the labels), images of one size inside."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from compressor.datasets.assemble import RawData
from compressor.datasets.preprocessing import Preprocessing
from compressor.runtime.errors import UserError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def read_image_folder(root: Path) -> RawData:
    """Read every image below ``root``/<class>/; all of them become the pool that is split.

    The result is grayscale (1 channel) only if every image is mode "L"; otherwise all images
    are converted to RGB so that one model input shape fits them all.
    """
    files, class_ids, classes = _list_images(root)
    headers = [_read_header(path) for path in files]
    size = headers[0][0]
    for path, (other, _) in zip(files, headers):
        if other != size:
            raise UserError(
                f"image {path} is {other[0]}x{other[1]} pixels but {files[0]} is {size[0]}x{size[1]} (width x height); "
                "resize all images to the same size"
            )
    gray = all(mode == "L" for _, mode in headers)
    images = np.empty((len(files), size[1], size[0], 1 if gray else 3), dtype=np.uint8)
    for i, path in enumerate(files):
        pixels = _read_pixels(path, "L" if gray else "RGB")
        images[i] = pixels[..., np.newaxis] if gray else pixels
    return RawData(
        x_train=images,
        y_train=np.asarray(class_ids, dtype=np.int64),
        labels=classes,
        preprocessing=Preprocessing(scale=1 / 255, channel_order="gray" if gray else "RGB"),
    )


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


def _read_pixels(path: Path, mode: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert(mode), dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise UserError(f"image {path} cannot be read ({e}); fix or remove it") from None
