"""compressor.datasets: real parsers on tiny files written in the real distribution formats."""

from __future__ import annotations

import gzip
import io
import json
import re
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from compressor.datasets import DATASET_NAMES, Dataset, Preprocessing, load_dataset
from compressor.runtime.errors import UserError

IDX_IMAGES, IDX_LABELS = 0x00000803, 0x00000801
CIFAR_RECORD = 1 + 3072


@pytest.fixture
def seed() -> int:
    return 1234


@pytest.fixture
def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


# ---------------------------------------------------------------- writers of the real formats


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """IDX: big-endian uint32 magic, big-endian uint32 dims, then raw uint8 data."""
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    data = idx_bytes(array, magic)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def indexed_images(n: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Random uint8 images whose pixel (0, 0) holds the image's index, to trace samples through splits."""
    images = rng.integers(0, 256, size=(n, h, w), dtype=np.uint8)
    images[:, 0, 0] = np.arange(n)
    return images


def write_mnist(folder: Path, rng: np.random.Generator, gz: bool = True, n_train: int = 30, n_test: int = 10):
    """Write the four MNIST distribution files with 4x5 images; return what was written."""
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    data = {
        "x_train": indexed_images(n_train, 4, 5, rng),
        "y_train": np.arange(n_train) % 10,
        "x_test": indexed_images(n_test, 4, 5, rng),
        "y_test": (np.arange(n_test) * 3) % 10,
    }
    write_idx(folder / f"train-images-idx3-ubyte{ext}", data["x_train"], IDX_IMAGES)
    write_idx(folder / f"train-labels-idx1-ubyte{ext}", data["y_train"], IDX_LABELS)
    write_idx(folder / f"t10k-images-idx3-ubyte{ext}", data["x_test"], IDX_IMAGES)
    write_idx(folder / f"t10k-labels-idx1-ubyte{ext}", data["y_test"], IDX_LABELS)
    return data


def cifar_batch(labels: list[int], rng: np.random.Generator) -> tuple[bytes, np.ndarray]:
    """CIFAR-10 binary records (label byte + R plane + G plane + B plane); also the NHWC images."""
    planes = rng.integers(0, 256, size=(len(labels), 3, 32, 32), dtype=np.uint8)
    records = np.concatenate([np.asarray(labels, np.uint8)[:, None], planes.reshape(len(labels), -1)], axis=1)
    return records.tobytes(), planes.transpose(0, 2, 3, 1)


CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def cifar_files(rng: np.random.Generator) -> tuple[dict[str, bytes], np.ndarray]:
    """Two batches (train, test) plus batches.meta.txt; test record 0 is pure red."""
    train, _ = cifar_batch([i % 10 for i in range(20)], rng)
    test, test_images = cifar_batch([3, 1, 4, 1, 5, 9, 2, 6], rng)
    red = np.zeros(3072, np.uint8)
    red[:1024] = 255
    test = bytes([3]) + red.tobytes() + test[CIFAR_RECORD:]
    test_images[0] = 0
    test_images[0, ..., 0] = 255
    meta = ("\n".join(CIFAR_NAMES) + "\n\n").encode()
    return {"data_batch_1.bin": train, "test_batch.bin": test, "batches.meta.txt": meta}, test_images


def write_tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def write_png(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def reproduces(ds: Dataset) -> bool:
    return np.allclose(ds.preprocessing.apply(ds.raw_test), ds.x_test)


# ---------------------------------------------------------------- digits and splitting


def test_digits_shapes_splits_and_preprocessing(digits: Dataset):
    assert digits.input_shape == (8, 8, 1) and digits.num_classes == 10
    assert (len(digits.y_train), len(digits.y_val), len(digits.y_test)) == (1294, 144, 359)
    assert digits.x_train.dtype == np.float32 and digits.y_train.dtype == np.int64
    assert digits.preprocessing.scale == 1 / 16 and digits.preprocessing.input_range == (0.0, 16.0)
    assert digits.raw_test.max() == 16 and digits.x_test.max() == 1.0
    assert reproduces(digits)
    # Stratified: each class holds ~20% of its samples in test (digits classes have ~180 each).
    assert np.all(np.abs(np.bincount(digits.y_test) - 36) <= 1)


def test_digits_split_is_seeded(digits: Dataset):
    again = load_dataset("digits", seed=0)
    other = load_dataset("digits", seed=1)
    np.testing.assert_array_equal(again.x_train, digits.x_train)
    np.testing.assert_array_equal(again.y_val, digits.y_val)
    assert not np.array_equal(other.x_test, digits.x_test)
    # The test split is carved out first, so val_fraction does not change it.
    np.testing.assert_array_equal(load_dataset("digits", val_fraction=0.3).x_test, digits.x_test)


def test_normalize_records_train_statistics():
    ds = load_dataset("digits", normalize=True)
    assert abs(float(ds.x_train.mean())) < 1e-5 and abs(float(ds.x_train.std()) - 1) < 1e-5
    assert ds.preprocessing.mean != (0.0,) and reproduces(ds)


def test_summary_is_json(digits: Dataset):
    summary = json.loads(json.dumps(digits.summary()))
    assert summary["splits"] == {"train": 1294, "val": 144, "test": 359}
    assert summary["shapes"]["test"] == [359, 8, 8, 1] and summary["num_classes"] == 10
    assert Preprocessing.from_dict(summary["preprocessing"]) == digits.preprocessing


def test_preprocessing_per_channel_formula():
    p = Preprocessing(scale=0.5, mean=(1.0, 2.0, 3.0), std=(2.0, 4.0, 1.0), channel_order="RGB")
    out = p.apply(np.full((1, 2, 2, 3), 10, np.uint8))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0, 0], [(5 - 1) / 2, (5 - 2) / 4, (5 - 3) / 1])
    with pytest.raises(UserError, match="4 channels"):
        p.apply(np.zeros((1, 2, 2, 4)))
    with pytest.raises(UserError, match="unknown preprocessing field"):
        Preprocessing.from_dict({**p.to_dict(), "gamma": 2})


def test_package_does_not_import_tensorflow():
    heavy = "('tensorflow', 'keras', 'tf_keras', 'sklearn', 'PIL')"
    code = f"import sys, compressor.datasets; print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    "spec, message",
    [
        (
            "digts",
            "unknown dataset 'digts'; did you mean 'digits'? "
            "Valid: digits, mnist, fashion_mnist, cifar10, a .npz file or an image folder",
        ),
        ("fashion-mnist", "did you mean 'fashion_mnist'"),
        ("nothing/here.npz", "data path nothing/here.npz does not exist"),
        ("no/such/folder", "does not exist"),
    ],
)
def test_bad_specs(spec: str, message: str):
    with pytest.raises(UserError, match=re.escape(message)):
        load_dataset(spec)


def test_bad_val_fraction():
    with pytest.raises(UserError, match="val_fraction"):
        load_dataset("digits", val_fraction=1.0)


def test_names():
    assert DATASET_NAMES == ("digits", "mnist", "fashion_mnist", "cifar10")


# ---------------------------------------------------------------- .npz files


def test_npz_uint8_images_get_channel_axis_and_val_split(tmp_path: Path, rng: np.random.Generator):
    x_train = indexed_images(40, 6, 7, rng)
    y_train = np.arange(40) % 4
    x_test = indexed_images(8, 6, 7, rng)
    path = tmp_path / "data.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=np.arange(8) % 4)
    ds = load_dataset(str(path), seed=3)
    assert ds.input_shape == (6, 7, 1) and ds.num_classes == 4 and ds.labels == ["0", "1", "2", "3"]
    assert ds.preprocessing.scale == 1 / 255 and ds.preprocessing.input_range == (0.0, 255.0)
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (36, 4, 8)
    # Trace every sample through the split by the index stored in pixel (0, 0).
    ids = np.round(np.concatenate([ds.x_train, ds.x_val])[:, 0, 0, 0] * 255).astype(int)
    assert sorted(ids) == list(range(40))
    np.testing.assert_array_equal(np.concatenate([ds.y_train, ds.y_val]), y_train[ids])
    assert ds.x_test[5, 2, 3, 0] == pytest.approx(x_test[5, 2, 3] / 255)
    assert reproduces(ds)


def test_npz_float_vectors_one_hot_and_explicit_val(tmp_path: Path, rng: np.random.Generator):
    x = rng.normal(size=(30, 5)).astype(np.float32) * 3
    y = np.eye(3)[np.arange(30) % 3]
    path = tmp_path / "vec.npz"
    np.savez(path, x_train=x[:20], y_train=y[:20], x_val=x[20:25], y_val=y[20:25], x_test=x[25:], y_test=y[25:])
    ds = load_dataset(str(path), normalize=True)
    assert ds.preprocessing.layout == "NC" and ds.input_shape == (5,) and ds.num_classes == 3
    assert ds.preprocessing.scale == 1.0
    assert ds.preprocessing.input_range == (float(x.min()), float(x.max()))
    assert len(ds.preprocessing.mean) == 5  # per feature
    np.testing.assert_array_equal(ds.y_val, np.arange(20, 25) % 3)
    np.testing.assert_array_equal(ds.raw_test, x[25:])
    assert reproduces(ds)


def npz_error(tmp_path: Path, **arrays) -> str:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(UserError) as info:
        load_dataset(str(path))
    return str(info.value)


def test_npz_errors(tmp_path: Path, rng: np.random.Generator):
    x = rng.integers(0, 256, size=(10, 4, 4), dtype=np.uint8)
    y = np.arange(10) % 2
    ok = dict(x_train=x, y_train=y, x_test=x, y_test=y)
    assert npz_error(tmp_path, x_train=x, y_train=y, x_test=x) == (
        f"data file {tmp_path / 'bad.npz'} has no array 'y_test'; "
        "expected x_train, y_train, x_test, y_test [, x_val, y_val]"
    )
    assert "object array" in npz_error(tmp_path, **{**ok, "x_test": np.array([x[0], None], dtype=object)})
    nan = x.astype(np.float32)
    nan[7, 1, 2] = np.nan
    assert npz_error(tmp_path, **{**ok, "x_train": nan}) == (
        "x_train contains NaN/inf values (first at index 7); clean the data before compressing"
    )
    assert "has x_val but no y_val" in npz_error(tmp_path, **ok, x_val=x)
    assert "x_test has 10 samples but y_test has 9" in npz_error(tmp_path, **{**ok, "y_test": y[:9]})
    assert "label -1 at index 0" in npz_error(tmp_path, **{**ok, "y_test": y - 1})
    assert "not one-hot" in npz_error(tmp_path, **{**ok, "y_train": np.ones((10, 2))})
    assert "channels-first" in npz_error(tmp_path, **{**ok, "x_train": np.zeros((10, 3, 8, 8), np.uint8)})
    assert "per-sample shape" in npz_error(tmp_path, **{**ok, "x_test": x[:, :3]})
    assert "train split is empty" in npz_error(tmp_path, **{**ok, "x_train": x[:0], "y_train": y[:0]})


def test_npz_labels_beyond_the_class_limit(tmp_path: Path):
    """Checked on the ids as stored, before the cast to int64 or the labels list they would size."""
    x = np.zeros((4, 2), np.float32)
    ok = dict(x_train=x, y_train=np.arange(4) % 2, x_test=x, y_test=np.arange(4) % 2)
    huge = np.array([0, 1, 2**63, 0], dtype=np.uint64)  # wraps to a negative int64 if cast first
    assert "y_train has label 9223372036854775808 at index 2; labels must be integer class ids from 0 to 65535" in (
        npz_error(tmp_path, **{**ok, "y_train": huge})
    )
    assert "label 65536 at index 3" in npz_error(tmp_path, **{**ok, "y_test": np.array([0, 1, 0, 65536])})
    assert "label 1.5 at index 1" in npz_error(tmp_path, **{**ok, "y_test": np.array([0, 1.5, 0, 1])})
    assert "label nan at index 0" in npz_error(tmp_path, **{**ok, "y_test": np.array([np.nan, 1, 0, 1])})
    wide = np.eye(4, 70_000, dtype=np.uint8)
    assert "one-hot rows of 70000 classes; at most 65536" in npz_error(tmp_path, **{**ok, "y_train": wide})


def test_npz_garbage_and_truncated_files(tmp_path: Path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"this is not a zip archive")
    with pytest.raises(UserError, match="neither an .npz archive nor a .npy array"):
        load_dataset(str(path))
    np.savez(path, x_train=np.zeros((50, 8, 8), np.uint8))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(UserError, match="damaged .npz archive"):
        load_dataset(str(path))


# ---------------------------------------------------------------- IDX (mnist / fashion_mnist)


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_values(tmp_path: Path, rng: np.random.Generator, gz: bool):
    written = write_mnist(tmp_path, rng, gz=gz)
    ds = load_dataset("mnist", data_dir=str(tmp_path))
    assert ds.labels == [str(d) for d in range(10)] and ds.input_shape == (4, 5, 1)
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (27, 3, 10)
    np.testing.assert_array_equal(ds.raw_test[..., 0], written["x_test"])
    np.testing.assert_array_equal(ds.y_test, written["y_test"])
    assert ds.x_test[4, 3, 2, 0] == pytest.approx(written["x_test"][4, 3, 2] / 255)
    ids = np.round(np.concatenate([ds.x_train, ds.x_val])[:, 0, 0, 0] * 255).astype(int)
    assert sorted(ids) == list(range(30))
    np.testing.assert_array_equal(np.concatenate([ds.y_train, ds.y_val]), written["y_train"][ids])
    assert reproduces(ds)


def test_fashion_mnist_from_keras_cache(tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    write_mnist(tmp_path / ".keras" / "datasets" / "fashion-mnist", rng)
    ds = load_dataset("fashion_mnist")
    assert ds.labels[0] == "T-shirt/top" and ds.labels[9] == "Ankle boot" and ds.num_classes == 10


def test_mnist_from_keras_npz(tmp_path: Path, rng: np.random.Generator):
    x = rng.integers(0, 256, size=(20, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "mnist.npz", x_train=x, y_train=np.arange(20) % 10, x_test=x[:5], y_test=np.arange(5))
    ds = load_dataset("mnist", data_dir=str(tmp_path))
    assert ds.input_shape == (28, 28, 1) and ds.labels[3] == "3"
    np.testing.assert_array_equal(ds.raw_test[..., 0], x[:5])


def test_idx_wrong_magic(tmp_path: Path, rng: np.random.Generator):
    written = write_mnist(tmp_path, rng)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", written["x_test"][:, 0, 0], IDX_LABELS)
    expected = r"t10k-images-idx3-ubyte.gz is not an IDX image file \(magic number 0x00000801, expected 0x00000803"
    with pytest.raises(UserError, match=expected):
        load_dataset("mnist", data_dir=str(tmp_path))


def test_idx_truncated(tmp_path: Path, rng: np.random.Generator):
    written = write_mnist(tmp_path, rng)
    data = idx_bytes(written["x_train"], IDX_IMAGES)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(data[:-7]))
    with pytest.raises(UserError, match=r"train-images-idx3-ubyte.gz is truncated: header announces \(30, 4, 5\)"):
        load_dataset("mnist", data_dir=str(tmp_path))


def test_idx_damaged_gzip_and_count_mismatch(tmp_path: Path, rng: np.random.Generator):
    write_mnist(tmp_path, rng)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(9), IDX_LABELS)
    with pytest.raises(UserError, match="holds 10 images but .* holds 9 labels"):
        load_dataset("mnist", data_dir=str(tmp_path))
    # Cut inside the deflate stream: the header still reads (it is streamed), the end of the stream does not.
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.arange(10), IDX_LABELS))[:-10])
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte.gz cannot be read"):
        load_dataset("mnist", data_dir=str(tmp_path))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"x" * 100)[:20])
    with pytest.raises(UserError, match=r"labels-idx1-ubyte.gz is not an IDX label file \(magic number 0x78787878"):
        load_dataset("mnist", data_dir=str(tmp_path))


def test_mnist_missing_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with pytest.raises(UserError, match=r"missing train-images-idx3-ubyte.gz.*keras.datasets.mnist.load_data\(\)"):
        load_dataset("mnist", data_dir=str(tmp_path))
    with pytest.raises(UserError, match="data path .* does not exist"):
        load_dataset("mnist", data_dir=str(tmp_path / "absent"))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(UserError, match=r"fashion_mnist files not found in .*\.keras/datasets"):
        load_dataset("fashion_mnist")


# ---------------------------------------------------------------- CIFAR-10 binary


def test_cifar_tar_values_channel_order_and_no_extraction(tmp_path: Path, rng: np.random.Generator):
    files, test_images = cifar_files(rng)
    members = {f"cifar-10-batches-bin/{name}": data for name, data in files.items()}
    # A member outside the expected names must be ignored, never read or written anywhere.
    members["../outside.bin"] = b"x" * CIFAR_RECORD
    write_tar(tmp_path / "cifar-10-binary.tar.gz", members)
    ds = load_dataset("cifar10", data_dir=str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar-10-binary.tar.gz"]
    assert ds.labels == CIFAR_NAMES and ds.input_shape == (32, 32, 3)
    assert ds.preprocessing.channel_order == "RGB"
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (18, 2, 8)
    assert np.all(ds.x_test[0, ..., 0] == 1.0) and np.all(ds.x_test[0, ..., 1:] == 0.0)
    np.testing.assert_array_equal(ds.y_test, [3, 1, 4, 1, 5, 9, 2, 6])
    np.testing.assert_array_equal(ds.raw_test, test_images)
    assert reproduces(ds)


def test_cifar_extracted_folder_and_tar_path(tmp_path: Path, rng: np.random.Generator):
    files, test_images = cifar_files(rng)
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    np.testing.assert_array_equal(load_dataset("cifar10", data_dir=str(tmp_path)).raw_test, test_images)
    archive = tmp_path / "elsewhere.tar.gz"
    write_tar(archive, {f"cifar-10-batches-bin/{name}": data for name, data in files.items()})
    assert load_dataset("cifar10", data_dir=str(archive)).labels == CIFAR_NAMES


def test_cifar_bad_record_size(tmp_path: Path, rng: np.random.Generator):
    files, _ = cifar_files(rng)
    files["test_batch.bin"] = files["test_batch.bin"][:-5]
    write_tar(tmp_path / "cifar-10-binary.tar.gz", {f"cifar-10-batches-bin/{n}": d for n, d in files.items()})
    with pytest.raises(UserError, match="test_batch.bin is 24579 bytes, not a positive multiple of 3073"):
        load_dataset("cifar10", data_dir=str(tmp_path))


def test_cifar_pickle_version_is_refused(tmp_path: Path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(b"\x80\x04N.")  # a pickle; it must never be loaded
    with pytest.raises(UserError, match="Python \\(pickle\\) version of CIFAR-10.*binary version"):
        load_dataset("cifar10", data_dir=str(tmp_path))


# ---------------------------------------------------------------- image folders


def test_image_folder_gray(tmp_path: Path, rng: np.random.Generator):
    root = tmp_path / "shapes"
    for c, name in enumerate(["square", "circle"]):  # labels come out sorted: circle=0, square=1
        for i in range(10):
            pixels = rng.integers(0, 256, size=(4, 6), dtype=np.uint8)
            pixels[0, 0] = c * 100 + i
            write_png(root / name / f"{i:02d}.png", pixels)
    (root / "square" / "notes.txt").write_text("not an image")
    ds = load_dataset(str(root), seed=5)
    assert ds.labels == ["circle", "square"] and ds.input_shape == (4, 6, 1)
    assert ds.preprocessing.channel_order == "gray" and ds.name == "shapes"
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (14, 2, 4)
    assert list(np.bincount(ds.y_test)) == [2, 2]
    # Pixel (0, 0) encodes class*100 + index: every sample keeps its own label.
    for x, y in ((ds.x_train, ds.y_train), (ds.x_val, ds.y_val), (ds.x_test, ds.y_test)):
        codes = np.round(x[:, 0, 0, 0] * 255).astype(int)
        np.testing.assert_array_equal(y, np.where(codes >= 100, 0, 1))
    assert reproduces(ds)


def test_image_folder_rgb_channel_order(tmp_path: Path):
    red = np.zeros((3, 3, 3), np.uint8)
    red[..., 0] = 255
    for c in ("a", "b"):
        for i in range(5):
            write_png(tmp_path / c / f"{i}.png", red)
    write_png(tmp_path / "b" / "5.png", np.full((3, 3), 7, np.uint8))  # mode L mixes in: all become RGB
    ds = load_dataset(str(tmp_path))
    assert ds.input_shape == (3, 3, 3) and ds.preprocessing.channel_order == "RGB"
    all_x = np.concatenate([ds.x_train, ds.x_val, ds.x_test])
    assert np.sum(np.all(all_x[..., 0] == 1.0, axis=(1, 2)) & np.all(all_x[..., 1:] == 0.0, axis=(1, 2, 3))) == 10


def test_image_folder_errors(tmp_path: Path):
    for i in range(3):
        write_png(tmp_path / "a" / f"{i}.png", np.zeros((4, 4), np.uint8))
        write_png(tmp_path / "b" / f"{i}.png", np.zeros((4, 4), np.uint8))
    write_png(tmp_path / "b" / "1x.png", np.zeros((5, 4), np.uint8))
    # Sizes differ: without a model the most common size wins, and the odd one is fitted to it.
    ds = load_dataset(str(tmp_path))
    assert ds.input_shape == (4, 4, 1) and ds.preprocessing.image["size"] == [4, 4]
    (tmp_path / "b" / "1x.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(UserError, match=r"image .*b/1x.png cannot be read"):
        load_dataset(str(tmp_path))


# ---------------------------------------------------------------- .npy shards and streaming


def write_shards(folder: Path, x: np.ndarray, y: np.ndarray, split: str, shards: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, (xs, ys) in enumerate(zip(np.array_split(x, shards), np.array_split(y, shards))):
        np.save(folder / f"x_{split}-{i:05d}.npy", xs)
        np.save(folder / f"y_{split}-{i:05d}.npy", ys)


def concat(split, batch_size=7, **kw):
    xs, ys = zip(*split.batches(batch_size, **kw))
    return np.concatenate(xs), np.concatenate(ys)


def test_shard_folder_reads_like_the_same_npz(tmp_path: Path, rng: np.random.Generator):
    x = rng.integers(0, 256, size=(50, 6, 6), dtype=np.uint8)
    y = np.arange(50) % 3
    write_shards(tmp_path / "shards", x, y, "train", shards=4)
    np.savez(tmp_path / "same.npz", x_train=x, y_train=y, x_test=x[:10], y_test=y[:10])
    write_shards(tmp_path / "shards", x[:10], y[:10], "test", shards=1)
    a, b = load_dataset(str(tmp_path / "shards"), seed=2), load_dataset(str(tmp_path / "same.npz"), seed=2)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_val, b.y_val)
    assert a.preprocessing == b.preprocessing and a.input_shape == (6, 6, 1)
    np.save(tmp_path / "shards" / "x_train-00009.npy", np.zeros((3, 5, 5), np.uint8))
    with pytest.raises(UserError, match="all shards of a split need one shape and dtype"):
        load_dataset(str(tmp_path / "shards"))
    (tmp_path / "shards" / "x_train-00009.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(UserError, match="x_train-00009.npy is not a plain numeric .npy array"):
        load_dataset(str(tmp_path / "shards"))
    (tmp_path / "shards" / "x_train-00009.npy").unlink()
    with open(tmp_path / "shards" / "y_train-00003.npy", "wb") as f:  # a header announcing 8 TB
        np.lib.format.write_array_header_1_0(f, {"descr": "<i8", "fortran_order": False, "shape": (10**12,)})
        f.write(bytes(80))
    with pytest.raises(UserError, match="y_train-00003.npy is not a plain numeric .npy array"):
        load_dataset(str(tmp_path / "shards"))


@pytest.mark.parametrize("kind", ["npz", "shards", "images"])
def test_streaming_gives_the_in_memory_splits(tmp_path: Path, rng: np.random.Generator, kind: str):
    from compressor.datasets.stream import open_stream

    x = rng.integers(0, 256, size=(40, 5, 4, 3), dtype=np.uint8)
    y = np.arange(40) % 4
    if kind == "npz":
        spec = tmp_path / "d.npz"
        np.savez(spec, x_train=x[:30], y_train=y[:30], x_test=x[30:], y_test=y[30:])
    elif kind == "shards":
        spec = tmp_path / "d"
        write_shards(spec, x, y, "train", shards=3)
    else:
        spec = tmp_path / "photos"
        for i in range(40):
            write_png(spec / f"c{y[i]}" / f"{i:02d}.png", x[i])
    for mode in ("auto", "mean-std"):
        memory = load_dataset(str(spec), seed=4, preprocess=mode)
        stream = open_stream(str(spec), seed=4, preprocess=mode)
        assert stream.input_shape == memory.input_shape and stream.preprocessing.mode == memory.preprocessing.mode
        if mode == "auto":
            assert stream.preprocessing == memory.preprocessing
        # mean-std: summed a batch at a time here, by numpy's pairwise sums in memory.
        np.testing.assert_allclose(stream.preprocessing.std, memory.preprocessing.std, rtol=1e-9)
        np.testing.assert_allclose(stream.preprocessing.mean, memory.preprocessing.mean, rtol=1e-9)
        for split in ("train", "val", "test"):
            got_x, got_y = concat(getattr(stream, split))
            np.testing.assert_allclose(got_x, getattr(memory, f"x_{split}"), rtol=1e-6, atol=1e-6)
            np.testing.assert_array_equal(got_y, getattr(memory, f"y_{split}"))
    shuffled_x, shuffled_y = concat(stream.train, shuffle=True, seed=1)
    assert sorted(shuffled_y.tolist()) == sorted(memory.y_train.tolist())
    assert not np.array_equal(shuffled_y, memory.y_train)
    sub_x, sub_y = stream.train.take(5, seed=9)
    again_x, _ = stream.train.take(5, seed=9)
    assert len(sub_x) == 5 and np.array_equal(sub_x, again_x)  # bounded and reproducible


def test_streamed_split_feeds_tf_data_with_prefetch(tmp_path: Path, rng: np.random.Generator):
    from compressor.datasets.stream import open_stream

    x = rng.integers(0, 256, size=(30, 4, 4, 1), dtype=np.uint8)
    write_shards(tmp_path / "d", x, np.arange(30) % 2, "train", shards=2)
    split = open_stream(str(tmp_path / "d"), seed=0).train
    data = split.to_tf(batch_size=8, shuffle=True, seed=5)
    first = np.concatenate([b[1].numpy() for b in data])
    second = np.concatenate([b[1].numpy() for b in data])
    assert sorted(first.tolist()) == sorted(split.y.tolist()) and not np.array_equal(first, second)
    xs = np.concatenate([b[0].numpy() for b in split.to_tf(batch_size=8)])
    np.testing.assert_array_equal(xs, concat(split)[0])


def test_streaming_a_shard_folder_stays_within_a_bounded_memory(tmp_path: Path):
    """96 MiB of uint8 shards (384 MiB as float32 model inputs) streamed in batches of 64: the
    process grows by less than the float32 data (measured in a child, whose peak RSS is its own)."""
    folder = tmp_path / "big"
    folder.mkdir()
    for i in range(4):
        np.save(folder / f"x_train-{i:05d}.npy", np.full((512, 128, 128, 3), i, np.uint8))
        np.save(folder / f"y_train-{i:05d}.npy", np.arange(512) % 2)
    code = f"""
import resource
from compressor.datasets.stream import open_stream
stream = open_stream({str(folder)!r}, seed=0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
total = sum(len(y) for _, y in stream.train.batches(64))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(total, (peak - before) // 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    from compressor.datasets.stream import open_stream

    assert int(out[0]) == len(open_stream(str(folder), seed=0).train) == 2048 - 410 - 164
    # Loaded into memory the same folder grows the process by ~970 MiB (measured); streamed by ~30 MiB,
    # up to the 96 MiB of file pages the memory map may keep resident.
    assert int(out[1]) < 200, f"streaming grew the process by {out[1]} MiB"
