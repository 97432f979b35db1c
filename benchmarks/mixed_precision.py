"""Mixed precision measured: wall time of one fine-tuning epoch, float32 vs mixed_bfloat16 (vs mixed_float16).

The recipes' own option (``mixed_precision`` of the shared fine-tuning, recipes/finetune.py) drives
the shared fit loop that regularize and distill train through (prune/qat/cluster refuse it: their
tfmot wrappers stay float32). The model is the reference ``cifar_resnet`` (depth 8) on the embedded
digits upsampled to 32x32x3, sized so an epoch takes seconds on 2 cores. Per policy: one warm-up
epoch (tracing, allocation), then the median of 3 epochs; ratio = policy / float32 (< 1 is faster).

    python -m benchmarks.job benchmarks.mixed_precision:epoch_times '{"work": "/tmp/mp"}'

The shim sets TF_ENABLE_ONEDNN_OPTS=0 unless the environment sets it (bit-stable float results);
TensorFlow's CPU bfloat16 kernels are fast only through oneDNN, so the figure depends on it: on an
AMD EPYC (avx512_bf16), 2 cores, one run each: oneDNN off 1.58 s vs 16.6 s (10.5x slower),
TF_ENABLE_ONEDNN_OPTS=1 1.33 s vs 1.08 s (0.81x). The result names the setting it ran with.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

WARMUP, TIMED = 1, 3


def epoch_times(work: str) -> dict:
    """Median epoch seconds per policy and each policy's ratio to float32, measured in this process."""
    from compressor.keras_shim import tf

    data = digits_32x32()
    gpu = bool(tf.config.list_physical_devices("GPU"))
    policies = ["float32", "mixed_bfloat16"] + (["mixed_float16"] if gpu else [])
    seconds = {policy: median_epoch(policy, data, Path(work) / policy) for policy in policies}
    return {
        "model": "cifar_resnet depth 8 (width 1), 32x32x3",
        "train_samples": int(len(data.x_train)),
        "batch_size": 32,
        "epoch_s": {k: round(v, 3) for k, v in seconds.items()},
        "ratio_to_float32": {k: round(v / seconds["float32"], 3) for k, v in seconds.items() if k != "float32"},
        "mixed_float16": "measured" if gpu else "not measured: no GPU (float16 matmuls on a CPU are emulated)",
        "cpu": _cpu(),
        # the shim turns oneDNN off for bit-stable results; TensorFlow's bfloat16 kernels then run on Eigen
        "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
        "epochs": f"{WARMUP} warm-up + median of {TIMED}",
    }


def _cpu() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def digits_32x32():
    """The digits (real images, fixed split), each 8x8 pixel a 4x4 block, grey copied to 3 channels."""
    from compressor.datasets import load_dataset

    digits = load_dataset("digits", seed=0)

    def upsample(x: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(np.repeat(x, 4, axis=1), 4, axis=2), 3, axis=3).astype(np.float32)

    return dataclasses.replace(
        digits, x_train=upsample(digits.x_train), x_val=upsample(digits.x_val), x_test=upsample(digits.x_test)
    )


def median_epoch(policy: str, data, workdir: Path) -> float:
    """Fits WARMUP + TIMED epochs through the shared fit loop, timing each epoch with a callback."""
    from compressor.keras_shim import keras
    from compressor.models import build_model
    from compressor.recipes import distribute
    from compressor.recipes.finetune import FineTuneParams, fit

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._t0)

    keras.utils.set_random_seed(0)
    with distribute.scope():  # replicated when benchmarks/replicas_bench.py set up a strategy
        model = build_model("cifar_resnet", input_shape=(32, 32, 3), depth=8)
    timer = EpochTimer()
    params = FineTuneParams(epochs=WARMUP + TIMED, batch_size=32, learning_rate=1e-3, mixed_precision=policy)
    workdir.mkdir(parents=True, exist_ok=True)
    fit(model, data, params, workdir, extra_callbacks=[timer])
    return statistics.median(timer.seconds[WARMUP:])
