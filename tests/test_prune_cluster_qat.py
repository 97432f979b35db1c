"""prune, cluster and qat: parameters, errors, and what survives into the exported int8 .tflite.

The chains run once (a session fixture in conftest.py) on the session's tiny digits CNN through
``compress``; every assertion on sparsity, clusters and the 2:4 pattern reads the kernels back out of
the exported file.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from click.testing import CliRunner

from compressor.commands.cli import cli
from compressor.inspection.weights import m_by_n_holds, sparsity, tflite_kernels, unique_values
from compressor.recipes import get_step, load_recipe
from compressor.recipes.prune import PruneParams, schedule_steps
from compressor.runtime.errors import UserError
from compressor.runtime.interpreters import open_model


@pytest.fixture(scope="module")
def chains(pcq_run):
    """prune->qat->int8 and cluster->qat->int8 with the presets' parameters, but 1 epoch per step
    (conftest.py's session run, which test_mcu_weight_compression reads too)."""
    return pcq_run


def _info(report, recipe, index):
    return report["steps"][recipe][index]["info"]


def _accuracy(report, name):
    return next(r["accuracy"] for r in report["artifacts"] if r["artifact"] == name and r["format"] == "tflite")


def test_pruned_sparsity_survives_qat_and_int8_export(chains):
    out, report = chains
    pruned = _info(report, "prune-qat-int8", 0)["sparsity_per_layer"]
    assert set(pruned) == {"conv1", "conv2", "dense", "probs"}
    assert _info(report, "prune-qat-int8", 1)["scheme"] == "PQAT"
    kernels = tflite_kernels(out / "prune-qat-int8" / "model.tflite")
    for name in pruned:
        assert kernels[name].dtype == np.int8
        assert sparsity(kernels[name]) >= 0.49, (name, sparsity(kernels[name]))
    runner = open_model(out / "prune-qat-int8" / "model.tflite")
    assert runner.inputs[0].dtype == "int8" and runner.outputs[0].dtype == "int8"
    assert _accuracy(report, "prune-qat-int8") > 0.5  # the tiny float model: ~0.64 after 3 epochs


def test_clusters_survive_cqat_and_int8_export(chains):
    out, report = chains
    assert _info(report, "cluster-qat-int8", 1)["scheme"] == "CQAT"
    clustered = _info(report, "cluster-qat-int8", 0)["clustered_layers"]
    assert all(s["unique_values"] <= 16 for s in clustered.values())
    kernels = tflite_kernels(out / "cluster-qat-int8" / "model.tflite")
    for name in clustered:
        k = kernels[name]
        # A Dense kernel has one QAT range (per tensor): <= 16 codes in the whole kernel. A conv kernel
        # carries BatchNorm's folded gamma/sigma and one scale per output channel (axis 0): <= 16 per channel.
        count = unique_values(k) if k.ndim == 2 else unique_values(k, axis=0)
        assert count <= 16, (name, unique_values(k), unique_values(k, axis=0))
    plain = tflite_kernels(out / "prune-qat-int8" / "model.tflite")
    assert unique_values(plain["dense"]) > 16  # the check above can fail


def test_bench_cluster_row_counts_per_conv_channel(chains):
    """make bench's cluster row reads the exported file the way the check above does."""
    from benchmarks.sections import Context, exported_structure

    out, _ = chains
    path = out / "cluster-qat-int8" / "model.tflite"
    ctx = Context(work=out, quick=True, bench={})
    ctx.runs[("digits_cnn", "cluster-qat-int8")] = {
        "result": {"artifacts": [{"artifact": "cluster-qat-int8", "format": "tflite", "path": str(path)}]}
    }
    counts = exported_structure(ctx)["cluster_values_per_kernel"]
    kernels = tflite_kernels(path)
    assert counts == {
        name: unique_values(k) if k.ndim == 2 else unique_values(k, axis=0) for name, k in kernels.items()
    }
    assert max(counts.values()) <= 16


def test_bench_cluster_values():
    from benchmarks.sections import cluster_values

    codes = np.arange(16, dtype=np.float32).reshape(1, 2, 2, 4)
    conv = np.concatenate([codes, 3 * codes])  # [out=2, h, w, in]: one scale per output channel
    assert unique_values(conv) > 16 and cluster_values(conv) == 16
    depthwise = np.moveaxis(conv[..., 0], 0, -1)[None]  # [1, h, w, out=2]
    assert cluster_values(depthwise) == 4
    dense = np.concatenate([codes.reshape(2, 8), 3 * codes.reshape(2, 8)])  # [out, in]: the whole kernel
    assert cluster_values(dense) == unique_values(dense) > 16


def test_qat_step_model_reloads_for_resume(chains):
    from compressor.recipes.stepio import load_step_model
    from compressor.recipes.structure import kernel_stats

    out, _ = chains
    model = load_step_model(out / "cluster-qat-int8" / "steps" / "01-qat")
    assert kernel_stats(model)["dense"]["unique_values"] <= 16


def test_layers_without_a_qat_config_stay_float_in_one_pass(tmp_path, seed):
    """PReLU and LayerNormalization have no 8-bit config: QAT leaves them float, lists them with the
    reason, and the int8 step still makes a full-integer model (they used to be one error each)."""
    import time

    from compressor.datasets import load_dataset
    from compressor.export.tflite import convert
    from compressor.keras_shim import keras
    from compressor.pipeline.model_io import LoadedModel

    inputs = keras.Input((8, 8, 1), name="input")
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.PReLU(name="prelu")(x)  # standard layers tfmot's 8-bit registry lacks
    x = keras.layers.Flatten(name="flat")(x)
    x = keras.layers.LayerNormalization(name="norm")(keras.layers.Dense(16, name="dense")(x))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="probs")(x))
    data = load_dataset("digits", seed=seed)
    qat = get_step("qat")
    started = time.time()
    quantized = qat.apply(model, data, qat.params(epochs=1), tmp_path)
    assert time.time() - started < 60
    layers = json.loads((tmp_path / "info.json").read_text())["layers"]
    assert {n for n, d in layers.items() if d["qat"] == "float"} == {"prelu", "norm"}
    assert layers["prelu"]["reason"] == "tfmot has no 8-bit config for PReLU"
    assert layers["conv"]["qat"] == layers["probs"]["qat"] == "tfmot"
    loaded = LoadedModel(
        path=tmp_path, kind="keras-savedmodel", keras=quantized, input_shape=(8, 8, 1), output_shape=(10,)
    )
    (tmp_path / "m.tflite").write_bytes(convert(loaded, "int8", data.x_train[:50], "int8"))
    runner = open_model(tmp_path / "m.tflite")
    assert runner.inputs[0].dtype == "int8"
    assert runner.run(np.zeros((2, 8, 8, 1), np.int8)).shape == (2, 10)


@pytest.mark.parametrize("step", ["prune", "cluster", "qat"])
def test_unknown_skip_layer_names_the_valid_ones(step, tiny_model_path, tmp_path):
    from compressor.pipeline.model_io import load_model

    model = load_model(tiny_model_path).keras
    step_type = get_step(step)
    with pytest.raises(UserError, match=r"skip_layers: unknown layer 'conv9'; the model's layers are: input, conv1"):
        step_type.apply(model, None, step_type.params(skip_layers=["conv9"]), tmp_path)


def test_2_of_4_pruning_in_the_exported_file_and_input_model_untouched(tiny_model_path, tmp_path):
    from compressor.datasets import load_dataset
    from compressor.export.tflite import convert
    from compressor.pipeline.model_io import load_model
    from compressor.recipes.ptq import calibration_sample
    from compressor.recipes.qat import detect, scheme_for

    loaded = load_model(tiny_model_path)
    before = [w.copy() for w in loaded.keras.get_weights()]
    data = load_dataset("digits")
    prune = get_step("prune")
    pruned = prune.apply(loaded.keras, data, prune.params(epochs=1, m_by_n="2:4", skip_layers=["probs"]), tmp_path)
    assert all(np.array_equal(a, b) for a, b in zip(before, loaded.keras.get_weights()))
    info = json.loads((tmp_path / "info.json").read_text())
    assert info["left_dense"] == {"probs": "skip_layers", "conv1": "1 input channel(s), not a multiple of 4"}
    assert info["m_by_n_holds"] == {"conv2": True, "dense": True}
    found = detect(pruned)  # what a following qat step sees
    assert found["sparse_layers"] == ["conv2", "dense"] and scheme_for("auto", found)[0] == "PQAT"
    path = tmp_path / "m.tflite"
    path.write_bytes(convert(dataclasses.replace(loaded, keras=pruned), "int8", calibration_sample(data, 50), "int8"))
    kernels = tflite_kernels(path)
    for name in ("conv2", "dense"):  # TFLite layout [out, (h, w,) in]: groups of 4 along the input dim
        assert m_by_n_holds(kernels[name], 2, 4) and sparsity(kernels[name]) >= 0.5, name
    assert sparsity(kernels["conv1"]) < 0.3 and sparsity(kernels["probs"]) < 0.05
    assert not m_by_n_holds(kernels["probs"], 2, 4)


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("steps.0.params.sparsity=1.5", "steps[0].params.sparsity: must be less than 1"),
        ("steps.0.params.sparsty=0.6", "steps[0].params.sparsty: unknown key 'sparsty'; did you mean 'sparsity'?"),
        (
            "steps.0.params.m_by_n=1:4",
            "steps[0].params.m_by_n: 1:4 prunes exactly 1 of every 4 weights; set sparsity to 0.25",
        ),
        (
            "steps.1.params.preserve=cluster",
            "steps[1].params.preserve: must be 'auto', 'sparsity', 'clusters' or 'none'",
        ),
    ],
)
def test_cli_schema_errors_exit_2(override, fragment, tiny_model_path, tmp_path):
    result = CliRunner().invoke(
        cli,
        ["compress", tiny_model_path, "--recipe", "prune-qat-int8", "--out", str(tmp_path / "o"), "--set", override],
    )
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.output


def test_presets_resolve():
    for name, first in [
        ("prune-int8", "prune"),
        ("qat-int8", "qat"),
        ("prune-qat-int8", "prune"),
        ("cluster-qat-int8", "cluster"),
    ]:
        recipe = load_recipe(name)
        assert recipe.description and recipe.steps[0].type == first and recipe.steps[-1].type == "int8"
    assert load_recipe("prune-int8", ["steps.0.params.m_by_n=2:4"]).steps[0].params.m_by_n == "2:4"  # YAML base 60


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"early_stopping": 2}, "early_stopping"),
        ({"begin_fraction": 0.8}, "end_fraction"),
        ({"initial_sparsity": 0.6}, "initial_sparsity"),
        ({"mixed_precision": "mixed_float16"}, "mixed_precision"),
    ],
)
def test_prune_params_rejected(fields, message):
    with pytest.raises(ValueError, match=message):
        PruneParams(**fields)


@pytest.mark.parametrize("epochs, batches, frequency", [(1, 41, 10), (3, 41, 7), (1, 5, 100), (2, 1, 1)])
def test_schedule_reaches_target_on_the_update_grid(epochs, batches, frequency):
    params = PruneParams(epochs=epochs, frequency=frequency)
    begin, end, freq = schedule_steps(params, epochs * batches)
    assert 0 <= begin <= end <= epochs * batches - 1
    assert (end - begin) % freq == 0  # tfmot only updates the mask on this grid


def test_weight_statistics():
    k = np.array([[0, 1, 0, 2, 3, 0, 0, 4, 5], [0, 0, 7, 7, 0, 0, 0, 0, 1]], dtype=np.int8)
    assert sparsity(k) == pytest.approx(10 / 18)
    assert unique_values(k) == 7 and unique_values(k, axis=0) == 6
    assert m_by_n_holds(k, 2, 4)  # the trailing 1-wide group counts as zero-padded
    assert not m_by_n_holds(k[:, :8] + 1, 2, 4)
    assert not m_by_n_holds(np.array([[1, 2, 0, 3]]), 2, 4)
