"""Data sets for compression, calibration and on-device validation, without TensorFlow.

``load_dataset(spec)`` reads scikit-learn's digits, MNIST/Fashion-MNIST (IDX files),
CIFAR-10 (binary version), .npz files and image folders into a checked, split, preprocessed
:class:`Dataset`. Only numpy and the standard library are imported eagerly; scikit-learn and
Pillow only by the loaders that need them. User files are never unpickled.
"""

from compressor.datasets.dataset import Dataset
from compressor.datasets.load import DATASET_NAMES, load_dataset
from compressor.datasets.preprocessing import Preprocessing

__all__ = ["DATASET_NAMES", "Dataset", "Preprocessing", "load_dataset"]
