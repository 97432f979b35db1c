"""Loaded or streamed: which form a run's data takes.

A folder of .npy shards or an image folder is streamed (stream.py) once its model inputs, float32
over all splits, would exceed ``STREAM_ABOVE_BYTES``: then no split is ever held in RAM. Smaller
folders, .npz files and the named data sets are loaded (load.py): faster, as images are decoded once
instead of on every pass, and at that size the arrays are small beside TensorFlow itself. Both forms
give the same splits for the same seed and are read through one interface (splits.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from compressor.datasets.dataset import SPLITS, Dataset
from compressor.datasets.load import DATASET_NAMES, load_dataset
from compressor.datasets.model_input import ModelInput
from compressor.datasets.preprocessing import Preprocessing
from compressor.datasets.stream import StreamingDataset, open_stream
from compressor.runtime.errors import UserError

STREAM_ABOVE_BYTES = 64 << 20  # 64 MiB of float32 inputs: ~5,500 RGB images of 32x32, 110 of 224x224


def load_or_stream(
    spec: str,
    data_dir: str | None = None,
    seed: int = 0,
    model: Any = None,
    preprocess: Any = "auto",
    image_fit: str = "resize",
    stream: bool | None = None,
    blocker: str | None = None,
    progress: Callable[[str], None] = lambda msg: None,
) -> Dataset | StreamingDataset:
    """The data of ``spec``: streamed when ``stream`` is True, or None (auto) and the folder is large.

    ``blocker`` says why the consumer cannot read streamed data (a step that needs arrays): auto
    then loads the data (saying so when it is large); ``stream=True`` refuses in one line.
    """

    def load() -> Dataset:
        return load_dataset(spec, data_dir=data_dir, seed=seed, model=model, preprocess=preprocess, image_fit=image_fit)

    path = Path(spec).expanduser()
    streamable = spec not in DATASET_NAMES and path.is_dir()
    if stream is False or (stream is None and not streamable):
        return load()
    if not streamable:
        raise UserError(f"cannot stream {spec}: streaming reads a folder of .npy shards or an image folder")
    if stream and blocker:
        raise UserError(f"cannot stream {spec}: {blocker}; leave streaming to auto or remove that step")
    streamed = open_stream(str(path), seed=seed, model=model, preprocess=preprocess, image_fit=image_fit)
    mib = input_bytes(streamed) / 2**20
    if stream is None and mib * 2**20 <= STREAM_ABOVE_BYTES:
        return load()
    if stream is None and blocker:
        progress(f"data held in memory ({mib:,.1f} MiB of model inputs), not streamed: {blocker}")
        return load()
    progress(f"data streamed ({mib:,.1f} MiB of model inputs): read batch by batch, never whole")
    return streamed


def input_bytes(data: Dataset | StreamingDataset) -> int:
    """Bytes of all splits' model inputs as float32 arrays."""
    samples = sum(len(data.split(split)) for split in SPLITS)
    return samples * int(np.prod(data.input_shape)) * 4


def data_arguments(settings: dict) -> dict:
    """load_or_stream's/compress's data arguments from what a tune/search study recorded."""
    return {
        "data": settings["data"],
        "data_dir": settings.get("data_dir"),
        "preprocess": settings.get("preprocess", "auto"),
        "image_fit": settings.get("image_fit", "resize"),
        "stream": settings.get("stream"),
    }


def load_from_settings(settings: dict, seed: int, model: Any = None) -> Dataset | StreamingDataset:
    """The data a tune/search study records (data, data_dir, preprocess, image_fit, stream), for its
    workers: loaded, or streamed as ``stream`` says (None: streamed when the folder is large)."""
    args = data_arguments(settings)
    return load_or_stream(args.pop("data"), seed=seed, model=model, **args)


def load_recorded(
    spec: str,
    data_dir: str | None,
    seed: int,
    preprocessing: dict,
    input_shape: Any,
    stream: bool | None = None,
    progress: Callable[[str], None] = lambda msg: None,
) -> Dataset | StreamingDataset:
    """A run's data again (``compressor package``): its recorded preprocessing and image fitting are
    replayed as they are, laid out for the recorded input shape (when one was recorded); loaded or
    streamed as ``stream`` says (None: streamed when the folder is large)."""
    shape = ModelInput(shape=tuple(input_shape)) if input_shape else None
    prep = Preprocessing.from_dict(preprocessing)
    return load_or_stream(spec, data_dir, seed, shape, prep, stream=stream, progress=progress)
