"""Shared fixtures: a seed, and one tiny model trained once per session by the real train path."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest


@pytest.fixture
def seed() -> int:
    np.random.seed(0)
    return 0


@pytest.fixture(scope="session")
def digits():
    """The embedded digits, split with seed 0 (read-only: tests must not modify its arrays)."""
    from compressor.datasets import load_dataset

    return load_dataset("digits", seed=0)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """digits_cnn at small width, trained 3 epochs on the embedded digits: (run folder, card)."""
    from compressor.pipeline.train import train

    out = tmp_path_factory.mktemp("tiny") / "base"
    card = train(
        "digits_cnn",
        out,
        data="digits",
        epochs=3,
        batch_size=64,
        model_params={"filters": 8, "dense_units": 32},
        seed=0,
    )
    return out, card


@pytest.fixture(scope="session")
def tiny_model_path(tiny_run) -> str:
    return tiny_run[1]["model_path"]


@pytest.fixture(scope="session")
def int8_run(tiny_model_path, tmp_path_factory):
    """A `compress` run of the tiny model with the int8 recipe (float32 + int8, TFLite + ONNX).

    Shared read-only: modules that package it write their bundles under their own names."""
    from compressor.pipeline.compress import compress

    out = tmp_path_factory.mktemp("int8-run") / "run"
    compress(tiny_model_path, ["int8"], out, latency_runs=5)
    return out


@pytest.fixture(scope="session")
def pcq_run(tiny_model_path, tmp_path_factory):
    """prune-qat-int8 and cluster-qat-int8 in one `compress` run of the tiny model, the presets' parameters
    but 1 epoch per training step, TFLite only: (run folder, report). One run for every module that reads
    these chains' exported files (test_prune_cluster_qat, test_mcu_weight_compression); shared read-only."""
    from compressor.pipeline.compress import compress

    out = tmp_path_factory.mktemp("pcq") / "run"
    report = compress(
        tiny_model_path,
        ["prune-qat-int8", "cluster-qat-int8"],
        out,
        latency_runs=5,
        overrides=["steps.0.params.epochs=1", "steps.1.params.epochs=1", "export.formats=[tflite]"],
    )
    return out, report
