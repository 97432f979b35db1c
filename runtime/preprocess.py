"""Raw inputs on the device: load them, check them against the bundle, preprocess them.

The formula is the one recorded at training time (compressor.datasets.Preprocessing, which the
device cannot import): ``x = (raw * scale - mean) / std``, per channel on the last axis, computed
in float32 in the same order so the device reproduces the host's model inputs bit for bit.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .errors import UserError
from .image_fit import check_image_spec, load_image

_NUMERIC = "iuf"  # signed, unsigned, float; bool/str/object/complex raw inputs are mistakes


def apply(prep: dict, raw: np.ndarray) -> np.ndarray:
    """Model inputs (float32) for ``raw`` using the manifest's ``preprocessing`` dict."""
    x = np.asarray(raw, dtype=np.float32)
    mean = np.asarray(prep["mean"], dtype=np.float32)
    std = np.asarray(prep["std"], dtype=np.float32)
    channels = max(mean.size, std.size)
    if channels > 1 and (x.ndim == 0 or x.shape[-1] != channels):
        raise UserError(
            f"raw inputs have {x.shape[-1] if x.ndim else 0} values on their last axis but the "
            f"preprocessing has {channels} per-channel values ({prep.get('layout', 'NHWC')} layout)"
        )
    return (x * np.float32(prep["scale"]) - mean) / std


def check_raw(x: np.ndarray, raw_input: dict, prep: dict, name: str = "x_test") -> None:
    """Refuse raw inputs whose sample shape, dtype or value range cannot be what the model was trained on."""
    want = tuple(raw_input["shape"])
    if x.dtype.kind not in _NUMERIC:
        raise UserError(
            f"{name} has dtype {x.dtype}; raw inputs must be numbers "
            f"(the model was trained on {raw_input['dtype']} samples)"
        )
    if x.ndim < 1 or tuple(x.shape[1:]) != want:
        raise UserError(
            f"{name} has samples of shape {tuple(x.shape[1:])} but the model takes raw samples of shape "
            f"{want}; pass an array shaped (N, {', '.join(map(str, want))})"
        )
    if len(x) == 0:
        raise UserError(f"{name} holds no samples")
    finite = np.isfinite(x) if x.dtype.kind == "f" else np.ones(x.shape, bool)
    if not finite.all():
        first = int(np.argmin(finite.reshape(len(x), -1).all(1)))
        raise UserError(f"{name} contains NaN or infinite values (first in sample {first})")
    if np.dtype(raw_input["dtype"]).kind in "iu" and x.dtype.kind == "f" and not np.array_equal(x, np.round(x)):
        # Fractions where the training data had integers: almost always inputs that were already
        # scaled or normalised, which the range check below cannot catch when they fall inside it.
        raise UserError(
            f"{name} holds fractional values but the model's raw inputs are {raw_input['dtype']} "
            "integers; pass RAW inputs (the runtime applies the preprocessing itself)"
        )
    low, high = prep["input_range"]
    lo, hi = float(x.min()), float(x.max())
    if lo < low or hi > high:
        # Values outside the recorded raw range usually mean the data is already preprocessed,
        # or scaled differently (0..1 instead of 0..255): accuracy would be silently wrong.
        raise UserError(
            f"{name} values span [{lo:g}, {hi:g}] but the model's raw inputs lie in [{low:g}, {high:g}]; "
            "pass RAW inputs (the runtime applies the preprocessing itself)"
        )


def check_labels(y: np.ndarray, n: int, classes: int, name: str = "y_test") -> np.ndarray:
    """Class ids as int64; one per sample, each in [0, classes)."""
    if y.ndim == 2 and y.shape[1] == classes:
        y = y.argmax(axis=1)  # one-hot
    if y.dtype.kind == "f" and np.array_equal(y, np.round(y)):
        y = y.astype(np.int64)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise UserError(f"{name} must hold class ids (N,) or one-hot rows (N, {classes}); got {y.dtype} {y.shape}")
    if len(y) != n:
        raise UserError(f"{name} has {len(y)} labels for {n} samples; they must match")
    if len(y) and (y.min() < 0 or y.max() >= classes):
        raise UserError(
            f"{name} labels must be in [0, {classes}) for this {classes}-class model; found {y.min()}..{y.max()}"
        )
    return y.astype(np.int64)


def load_data(path: str | Path, info: dict | None) -> tuple[np.ndarray, np.ndarray]:
    """(raw x, y) from an .npz, or from an image folder (one subfolder per class label) fitted to
    the model input as the bundle's ``preprocessing.image`` records it."""
    path = Path(path)
    if not path.is_dir():
        return load_npz(path)
    spec = ((info or {}).get("preprocessing") or {}).get("image")
    if not spec:
        raise UserError(f"{path} is a folder, but this model was not made from image files; pass an .npz")
    check_image_spec(spec, "the model's preprocessing.image")  # a bare .tflite's metadata is unchecked
    labels = list((info or {}).get("labels") or [])
    xs, ys = [], []
    for folder in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if folder.name not in labels:
            raise UserError(f"folder {folder} is not one of the model's labels ({', '.join(labels[:10])}...)")
        for file in sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".")):
            xs.append(load_image(file, spec))
            ys.append(labels.index(folder.name))
    if not xs:
        raise UserError(f"image folder {path} holds no images in class subfolders named after the labels")
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def load_npz(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) from an .npz holding ``x_test`` and ``y_test`` (or ``x`` and ``y``); never unpickles."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"data file {path} does not exist")
    try:
        archive = np.load(path, allow_pickle=False)
    except ValueError:
        raise UserError(
            f"data file {path} is not an .npz archive (pickles are never loaded); "
            "save it with np.savez(path, x_test=..., y_test=...)"
        ) from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise UserError(f"data file {path} is a damaged .npz archive ({e})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise UserError(f"data file {path} holds a single array; save x_test and y_test with np.savez")
    with archive:
        for xk, yk in (("x_test", "y_test"), ("x", "y")):
            if xk in archive.files and yk in archive.files:
                try:
                    return archive[xk], archive[yk]
                except ValueError:
                    raise UserError(
                        f"data file {path} holds object arrays, which would need unpickling; save plain numeric arrays"
                    ) from None
    raise UserError(f"data file {path} has arrays {', '.join(archive.files) or 'none'}; expected x_test and y_test")
