"""compress on streamed data: the same splits, batches and results as on the same data loaded,
while no split is held in memory (datasets/splits.py, datasets/source.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from compressor.datasets import load_dataset, open_stream
from compressor.datasets.source import STREAM_ABOVE_BYTES, load_or_stream
from compressor.runtime.errors import UserError

QAT_1_EPOCH = ["steps.0.params.epochs=1", "steps.1.params.calibration_samples=64", "export.formats=[tflite]"]


def write_shards(folder: Path, x: np.ndarray, y: np.ndarray, split: str, shards: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, (xs, ys) in enumerate(zip(np.array_split(x, shards), np.array_split(y, shards))):
        np.save(folder / f"x_{split}-{i:05d}.npy", xs)
        np.save(folder / f"y_{split}-{i:05d}.npy", ys)


@pytest.fixture(scope="module")
def digit_shards(tmp_path_factory) -> Path:
    """The embedded digits as uint8 shards (0..16 stretched to 0..255): what the tiny model reads."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = np.clip(digits.images * 16, 0, 255).astype(np.uint8)
    folder = tmp_path_factory.mktemp("shards") / "digits"
    write_shards(folder, x, digits.target.astype(np.int64), "train", shards=3)
    return folder


def test_both_forms_read_through_one_interface(digit_shards: Path):
    loaded, streamed = load_dataset(str(digit_shards), seed=3), open_stream(str(digit_shards), seed=3)
    for name in ("train", "val", "test"):
        a, b = loaded.split(name), streamed.split(name)
        assert len(a) == len(b) and np.array_equal(a.y, b.y)
        for (xa, ya), (xb, yb) in zip(a.batches(50, shuffle=True, seed=7), b.batches(50, shuffle=True, seed=7)):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
        np.testing.assert_array_equal(a.take(40, seed=2)[0], b.take(40, seed=2)[0])
        np.testing.assert_array_equal(a.head(3), b.head(3))
    assert loaded.summary() == {k: v for k, v in streamed.summary().items() if k != "streamed"}
    held = streamed.arrays(100, splits=("val",))
    assert len(held.y_val) == 100 and len(held.y_train) == 0 and held.x_val.shape == (100, 8, 8, 1)


def test_when_data_is_streamed(digit_shards: Path, tmp_path: Path):
    said: list[str] = []
    assert not hasattr(load_or_stream(str(digit_shards), progress=said.append), "train")  # small: loaded
    assert hasattr(load_or_stream(str(digit_shards), stream=True, progress=said.append), "train")
    assert STREAM_ABOVE_BYTES > 1797 * 64 * 4  # the digits are far below the threshold: auto loads them
    assert said == ["data streamed (0.4 MiB of model inputs): read batch by batch, never whole"]
    with pytest.raises(UserError, match="cannot stream digits: streaming reads a folder of .npy shards"):
        load_or_stream("digits", stream=True)
    with pytest.raises(UserError, match=r"cannot stream .*: step prune \(recipe p\) reads whole arrays"):
        load_or_stream(str(digit_shards), stream=True, blocker="step prune (recipe p) reads whole arrays")


def _artifacts(report: dict) -> dict:
    keys = ("accuracy", "agreement", "size_bytes", "confusion_matrix")
    return {(r["artifact"], r["format"]): {k: r[k] for k in keys} for r in report["artifacts"]}


def test_qat_compress_streamed_equals_loaded(tiny_model_path: str, digit_shards: Path, tmp_path: Path):
    """One epoch of QAT and an int8 export on the same shards, streamed and loaded: the same batches
    in the same order, hence the same training and the same figures (float summation order aside)."""
    from compressor.pipeline.compress import compress

    reports, lines = {}, []
    for stream in (True, False):
        out = tmp_path / f"stream-{stream}"
        reports[stream] = compress(
            tiny_model_path,
            ["qat-int8"],
            out,
            data=str(digit_shards),
            overrides=QAT_1_EPOCH,
            latency_runs=2,
            stream=stream,
            progress=lines.append,
        )
        run = json.loads((out / "run.json").read_text())
        assert run["data"].get("streamed", False) is stream
    assert sum("data streamed" in line for line in lines) == 1
    streamed, loaded = reports[True], reports[False]
    assert streamed["reference_accuracy"] == loaded["reference_accuracy"]
    assert streamed["data"] == loaded["data"]
    a, b = _artifacts(streamed), _artifacts(loaded)
    assert a.keys() == b.keys() == {("float32", "tflite"), ("qat-int8", "tflite")}
    for key in a:
        assert a[key]["confusion_matrix"] == b[key]["confusion_matrix"], key
        assert a[key]["accuracy"] == b[key]["accuracy"], key
        assert a[key]["size_bytes"] == b[key]["size_bytes"], key
        assert abs(a[key]["agreement"]["max_abs_diff"] - b[key]["agreement"]["max_abs_diff"]) < 1e-5, key
    history = [r["steps"]["qat-int8"][0]["history"] for r in (streamed, loaded)]
    assert history[0]["optimizer_updates"] == history[1]["optimizer_updates"] > 0
    np.testing.assert_allclose(history[0]["loss"], history[1]["loss"], rtol=1e-5)
    np.testing.assert_allclose(history[0]["val_accuracy"], history[1]["val_accuracy"], rtol=1e-6)
    start = [r["steps"]["qat-int8"][0]["info"]["start"] for r in (streamed, loaded)]
    assert start[0] == start[1]


MEMORY_CHILD = """
import resource, sys
import numpy as np
from compressor.datasets.stream import open_stream
from compressor.keras_shim import keras
from compressor.pipeline.validation import keras_outputs
from compressor.recipes.finetune import FineTuneParams, fit
from pathlib import Path

def model():
    inp = keras.Input((128, 128, 3))
    x = keras.layers.Conv2D(4, 8, strides=8, activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(2, activation="softmax")(x))

stream = open_stream(sys.argv[1], seed=0)
warm = model()  # TensorFlow's own first-fit allocations are not the data's
warm_data = open_stream(sys.argv[2], seed=0)
fit(warm, warm_data, FineTuneParams(epochs=1, batch_size=64), Path(sys.argv[3]))
keras_outputs(warm, warm_data.split("test"))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
net = model()
record = fit(net, stream, FineTuneParams(epochs=1, batch_size=64), Path(sys.argv[3]))
outputs = keras_outputs(net, stream.split("test"))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(record["optimizer_updates"], len(outputs), (peak - before) // 1024, flush=True)
"""


def test_streamed_fit_and_predictions_stay_within_a_bounded_memory(tmp_path: Path):
    """96 MiB of uint8 shards (384 MiB as float32 model inputs): one epoch of fit() plus test
    predictions grow a process by less than the float32 data (measured in a child)."""
    big, small = tmp_path / "big", tmp_path / "small"
    rng = np.random.default_rng(0)
    for folder, shards, rows in ((big, 4, 512), (small, 1, 64)):
        folder.mkdir()
        for i in range(shards):
            np.save(folder / f"x_train-{i:05d}.npy", rng.integers(0, 256, size=(rows, 128, 128, 3), dtype=np.uint8))
            np.save(folder / f"y_train-{i:05d}.npy", np.arange(rows) % 2)
    args = [sys.executable, "-c", MEMORY_CHILD, str(big), str(small), str(tmp_path)]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout.split()
    train, test = 2048 - 410 - 164, 410
    assert int(out[0]) == -(-train // 64) and int(out[1]) == test
    # Loaded, the same folder grows the process by ~1,000 MiB (measured: 384 MiB of float32 splits, the
    # uint8 copy, Keras' own slices); streamed by ~180 MiB: the memory map's resident file pages (up to
    # 96 MiB) and the prefetched batches.
    assert int(out[2]) < 300, f"a streamed epoch and test predictions grew the process by {out[2]} MiB"


def test_cli_stream_flag_reaches_compress(tiny_model_path, tmp_path):
    """--stream on data that cannot stream is the library's one-line refusal, exit 2, nothing written."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "compressor", "compress", tiny_model_path, "--stream", "--out", str(out)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=Path(__file__).parents[1], timeout=300)
    assert r.returncode == 2 and "cannot stream digits" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()
