"""Every training preset on each architecture family (issue 16), at a small input size, on tiny data,
one epoch per step: the training steps run without an internal error and hand on a model the int8
converter turns into a full-integer file.

`make test` runs each preset once, each family twice (6 cases, ~1 min on 2 idle cores); the whole
matrix (18 cases, ~2-3 min idle, 7 min on a loaded machine) with COMPRESSOR_FULL_MATRIX=1."""

from __future__ import annotations

import dataclasses
import itertools
import os

import architectures as arch
import numpy as np
import pytest

from compressor.recipes import get_step, load_recipe

TRAINING_PRESETS = ("qat-int8", "prune-int8", "prune-qat-int8", "cluster-qat-int8", "regularize-int8", "distill-int8")
FAMILIES = ("residual_separable", "conv1d_net", "hard_swish_net")
REPRESENTATIVE = [
    ("qat-int8", "hard_swish_net"),
    ("prune-qat-int8", "residual_separable"),
    ("cluster-qat-int8", "conv1d_net"),
    ("distill-int8", "residual_separable"),
    ("prune-int8", "conv1d_net"),
    ("regularize-int8", "hard_swish_net"),
]
CASES = (
    list(itertools.product(TRAINING_PRESETS, FAMILIES)) if os.environ.get("COMPRESSOR_FULL_MATRIX") else REPRESENTATIVE
)


@pytest.fixture(scope="module")
def tiny_data():
    """256 training, 64 validation and 64 test digits."""
    from compressor.datasets import load_dataset

    data = load_dataset("digits", seed=0)
    cut = {"train": 256, "val": 64, "test": 64}
    return dataclasses.replace(
        data, **{f"{k}_{s}": getattr(data, f"{k}_{s}")[:n] for s, n in cut.items() for k in "xy"}
    )


@pytest.fixture(scope="module")
def teachers(tiny_data):
    out = {}
    for family in sorted({family for _, family in CASES}):
        data = arch.as_sequences(tiny_data) if family == "conv1d_net" else tiny_data
        out[family] = (arch.trained(getattr(arch, family)(), data, epochs=2), data)
    return out


@pytest.mark.parametrize("preset, family", CASES)
def test_training_preset_on_family(preset, family, teachers, tmp_path):
    model, data = teachers[family]
    recipe = load_recipe(preset)
    for i, spec in enumerate(recipe.steps[:-1]):
        step = get_step(spec.type)
        params = spec.params.model_copy(update={"epochs": 1, **({"max_start_gap": 1.0} if spec.type == "qat" else {})})
        workdir = tmp_path / f"{i:02d}-{spec.type}"
        workdir.mkdir()
        model = step.apply(model, data, params, workdir)
    assert model.predict(data.x_test[:4], verbose=0).shape == (4, 10)
    if "qat" in preset:  # the converter reads QAT's ranges: the whole file is int8
        from compressor.export.tflite import convert
        from compressor.pipeline.model_io import LoadedModel
        from compressor.runtime.interpreters import open_model

        loaded = LoadedModel(
            path=tmp_path,
            kind="keras-savedmodel",
            keras=model,
            input_shape=data.input_shape,
            output_shape=(10,),
        )
        (tmp_path / "m.tflite").write_bytes(convert(loaded, "int8", data.x_train[:32], "int8"))
        runner = open_model(tmp_path / "m.tflite")
        assert runner.inputs[0].dtype == "int8"
        assert runner.run(np.zeros((1, *data.input_shape), np.int8)).shape == (1, 10)
