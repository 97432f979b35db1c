"""``load_dataset``: one entry point from a spec string (a name, an .npz file or a folder) to a Dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compressor.datasets.assemble import RawData, assemble
from compressor.datasets.choice import parse_mode
from compressor.datasets.cifar import read_cifar10
from compressor.datasets.dataset import Dataset
from compressor.datasets.digits import read_digits
from compressor.datasets.idx import read_mnist
from compressor.datasets.image_folder import read_image_folder
from compressor.datasets.model_input import ModelInput, model_input
from compressor.datasets.npz import read_npz
from compressor.datasets.preprocessing import Preprocessing
from compressor.datasets.shards import is_shard_folder, read_shards
from compressor.runtime.errors import UserError
from compressor.runtime.suggest import unknown_name_message

DATASET_NAMES = ("digits", "mnist", "fashion_mnist", "cifar10")
VALID = ", ".join(DATASET_NAMES) + ", a .npz file or an image folder"


def load_dataset(
    spec: str = "digits",
    data_dir: str | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    normalize: bool = False,
    model: Any = None,
    preprocess: str | Preprocessing = "auto",
    image_fit: str = "resize",
) -> Dataset:
    """Load, check, split and preprocess the data set named by ``spec``.

    ``spec`` is one of DATASET_NAMES, a path to an .npz file or a path to an image folder.
    ``data_dir`` holds the files of mnist, fashion_mnist and cifar10 (default: Keras' cache,
    ~/.keras/datasets). Missing test/val splits are split off, stratified, with ``seed``: the
    same seed always gives the same splits.

    ``model`` (a LoadedModel or a :class:`ModelInput`) decides the layout (its input shape) and,
    with ``preprocess="auto"``, the preprocessing (see datasets/choice.py for the modes; a
    recorded :class:`Preprocessing` is replayed as it is). ``normalize`` is ``preprocess="mean-std"``.
    ``image_fit`` (resize | crop | pad) fits image files of any size to the model input.
    """
    if not 0 < val_fraction < 1:
        raise UserError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    if model is not None and not isinstance(model, ModelInput):
        model = model_input(model)
    if normalize and preprocess == "auto":
        preprocess = "mean-std"
    if isinstance(preprocess, str):
        preprocess = parse_mode(preprocess)  # a typo fails before any file is read
    fit = preprocess.image if isinstance(preprocess, Preprocessing) and preprocess.image else image_fit
    name, raw = _read(spec, data_dir, model.shape if model is not None else None, fit)
    return assemble(name, raw, seed=seed, val_fraction=val_fraction, model=model, preprocess=preprocess)


def _read(spec: str, data_dir: str | None, shape: tuple | None, fit: str | dict) -> tuple[str, RawData]:
    if spec == "digits":
        return spec, read_digits()
    if spec in ("mnist", "fashion_mnist"):
        return spec, read_mnist(spec, _data_dir(data_dir))
    if spec == "cifar10":
        return spec, read_cifar10(_data_dir(data_dir))
    path = Path(spec).expanduser()
    if path.exists() or spec.endswith(".npz") or "/" in spec or "\\" in spec:
        if not path.exists():
            raise UserError(f"data path {path} does not exist; give an existing .npz file or image folder")
        if path.is_dir() and is_shard_folder(path):
            return path.name, read_shards(path)
        if path.is_dir():
            return path.name, read_image_folder(path, shape, fit)
        if path.suffix == ".npz":
            return path.name, read_npz(path)
        raise UserError(f"data file {path} is not an .npz file; valid: {VALID}")
    raise UserError(unknown_name_message("dataset", spec, DATASET_NAMES, listed=VALID))


def _data_dir(data_dir: str | None) -> Path:
    """The folder holding the distribution files; Keras' download cache when not given."""
    if data_dir is None:
        return Path("~/.keras/datasets").expanduser()
    path = Path(data_dir).expanduser()
    if not path.exists():
        raise UserError(f"data path {path} does not exist; give the folder holding the data set files")
    return path
