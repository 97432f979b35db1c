"""Data sets for compression, calibration and on-device validation, without TensorFlow.

``load_dataset(spec)`` reads scikit-learn's digits, MNIST/Fashion-MNIST (IDX files),
CIFAR-10 (binary version), .npz files, folders of .npy shards and image folders into a checked,
split, preprocessed :class:`Dataset`; ``open_stream(spec)`` gives the same splits read batch by
batch (data larger than memory). Only numpy and the standard library are imported eagerly;
scikit-learn and Pillow only by the loaders that need them. User files are never unpickled.
"""

from compressor.datasets.dataset import Dataset
from compressor.datasets.load import DATASET_NAMES, load_dataset
from compressor.datasets.preprocessing import Preprocessing
from compressor.datasets.stream import StreamingDataset, open_stream

__all__ = ["DATASET_NAMES", "Dataset", "Preprocessing", "StreamingDataset", "load_dataset", "open_stream"]
