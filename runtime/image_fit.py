"""Fit an image file of any size to the model input: the one implementation, host and device alike.

The host reads image folders with it and records the settings (``preprocessing.image`` in the
bundle manifest); a device with Pillow calls :func:`load_image` with that record and gets the very
same pixels (same code, same Pillow operations). Steps, in order: EXIF orientation applied (a
phone photo taken upright is stored rotated, with a tag saying so), converted to the model's
colour mode (L, RGB or RGBA), then fitted to (height, width):

- ``resize``: stretched to the size, aspect ratio not kept;
- ``crop``: shorter side scaled to the target, then the centre cut out (Keras' and torchvision's
  usual evaluation transform);
- ``pad``: longer side scaled to the target, the rest filled with zeros, image centred.

Resampling is bilinear (Pillow's, antialiased when shrinking). Pillow is imported on first use:
the runtime needs it only for image files.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .errors import UserError

FITS = ("resize", "crop", "pad")
COLOR_BY_CHANNELS = {1: "L", 3: "RGB", 4: "RGBA"}


def image_spec(fit: str, height: int, width: int, channels: int) -> dict:
    """The record of how images are fitted; what :func:`fit_image` and the manifest read."""
    if fit not in FITS:
        raise UserError(f"--image-fit {fit!r} is not a mode; valid: {', '.join(FITS)}")
    if channels not in COLOR_BY_CHANNELS:
        raise UserError(
            f"the model takes {channels} channels per pixel but image files give 1 (gray), 3 (RGB) or 4 (RGBA); "
            "pass the data as an .npz instead"
        )
    if not (0 < height <= 65_536 and 0 < width <= 65_536):
        raise UserError(f"cannot fit images to {height}x{width} pixels; the model input needs a fixed size")
    return {
        "fit": fit,
        "size": [int(height), int(width)],
        "color": COLOR_BY_CHANNELS[channels],
        "resample": "bilinear",
        "exif_orientation": True,
    }


def check_image_spec(spec: object, where: str) -> None:
    """Refuse a recorded spec (an unauthenticated manifest) that fit_image could not follow exactly."""
    expected = f'{{"fit": one of {", ".join(FITS)}, "size": [height, width] in 1..65536, "color": L|RGB|RGBA}}'
    if not isinstance(spec, dict):
        raise UserError(f"{where}: expected {expected}")
    size = spec.get("size")
    if (
        spec.get("fit") not in FITS
        or spec.get("color") not in COLOR_BY_CHANNELS.values()
        or not isinstance(size, list)
        or len(size) != 2
        or not all(type(v) is int and 0 < v <= 65_536 for v in size)
        or spec.get("resample", "bilinear") != "bilinear"
        or not isinstance(spec.get("exif_orientation", True), bool)
    ):
        raise UserError(f"{where}: expected {expected}")


def fit_image(image, spec: dict) -> np.ndarray:
    """(height, width, channels) uint8 pixels of a PIL image, fitted as ``spec`` says."""
    from PIL import Image, ImageOps

    height, width = (int(v) for v in spec["size"])
    image = ImageOps.exif_transpose(image) if spec.get("exif_orientation", True) else image
    image = image.convert(spec["color"])
    if spec["fit"] == "resize":
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    elif spec["fit"] == "crop":
        ratio = max(width / image.width, height / image.height)
        scaled = (max(width, round(image.width * ratio)), max(height, round(image.height * ratio)))
        image = image.resize(scaled, Image.Resampling.BILINEAR)
        left, top = (scaled[0] - width) // 2, (scaled[1] - height) // 2
        image = image.crop((left, top, left + width, top + height))
    elif spec["fit"] == "pad":
        ratio = min(width / image.width, height / image.height)
        scaled = (min(width, max(1, round(image.width * ratio))), min(height, max(1, round(image.height * ratio))))
        canvas = Image.new(spec["color"], (width, height))
        canvas.paste(
            image.resize(scaled, Image.Resampling.BILINEAR), ((width - scaled[0]) // 2, (height - scaled[1]) // 2)
        )
        image = canvas
    else:
        raise UserError(f"image fit {spec['fit']!r} is not one of {', '.join(FITS)}")
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels[..., np.newaxis] if pixels.ndim == 2 else pixels


def load_image(path: str | Path, spec: dict) -> np.ndarray:
    """Decode ``path`` and fit it; a broken or unreadable file is a one-line error naming it."""
    try:
        from PIL import Image
    except ImportError:
        raise UserError("reading image files needs Pillow: pip install pillow") from None
    try:
        with Image.open(path) as image:
            return fit_image(image, spec)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise UserError(f"image {path} cannot be read ({e}); fix or remove it") from None


def refit_check(spec: dict | None, names: list, arrays: dict, raw: np.ndarray) -> dict:
    """Self-test of the image fitting: the bundled original files (``image_i``), fitted here, must
    give the host's raw sample i exactly. {} when the bundle carries no image files."""
    if not spec or not names:
        return {}
    try:
        from PIL import Image
    except ImportError:
        return {"checked": 0, "note": "image fitting not checked: Pillow is not installed (pip install pillow)"}
    failures = []
    for name in names:
        index = name[len("image_") :] if isinstance(name, str) and name.startswith("image_") else ""
        if not index.isdigit() or int(index) >= len(raw) or name not in arrays:
            raise UserError(f"self-test image {name!r} is not an image_<i> array of samples.npz with i < {len(raw)}")
        try:
            with Image.open(io.BytesIO(np.asarray(arrays[name], dtype=np.uint8).tobytes())) as image:
                pixels = fit_image(image, spec)
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            failures.append(f"image {name} cannot be decoded here ({e})")
            continue
        if pixels.shape != raw[int(index)].shape or not np.array_equal(pixels, raw[int(index)]):
            failures.append(f"image {name} fitted here differs from the host's raw sample {index}")
    return {"checked": len(names), "failures": failures}
