"""Loading user models: formats, safe mode for Lambda layers, and corrupt inputs."""

from __future__ import annotations

import pytest

from compressor.pipeline.model_io import detect_kind, load_model
from compressor.runtime.errors import UserError


@pytest.fixture(scope="module")
def lambda_files(tmp_path_factory):
    from compressor.keras_shim import keras

    root = tmp_path_factory.mktemp("lambda")
    inp = keras.Input((4,))
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.Lambda(lambda t: t * 2.0)(inp))
    model = keras.Model(inp, out)
    paths = {"savedmodel": root / "sm", "h5": root / "m.h5", "keras": root / "m.keras"}
    for p in paths.values():
        model.save(p)
    return paths


@pytest.mark.parametrize("fmt", ["savedmodel", "h5", "keras"])
def test_lambda_refused_without_trust(lambda_files, fmt):
    with pytest.raises(UserError, match="contains a Lambda layer.*--trust-code"):
        load_model(lambda_files[fmt])
    assert load_model(lambda_files[fmt], trust_code=True).input_shape == (4,)


def test_training_run_loads_with_its_card(tiny_run):
    out, card = tiny_run
    model = load_model(card["model_path"])
    assert model.kind == "keras-savedmodel" and model.trainable
    assert model.card["data"] == "digits" and model.card["preprocessing"]["scale"] == pytest.approx(1 / 16)
    assert model.output_shape == (10,)


def test_bad_inputs(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        detect_kind(tmp_path / "nope")
    with pytest.raises(UserError, match="not a SavedModel"):
        detect_kind(tmp_path)
    junk = tmp_path / "m.keras"
    junk.write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a valid .keras file"):
        detect_kind(junk)
    h5 = tmp_path / "m.h5"
    h5.write_bytes(b"garbage!" * 4)
    with pytest.raises(UserError, match="not a valid HDF5 file"):
        detect_kind(h5)
    txt = tmp_path / "m.txt"
    txt.write_text("x")
    with pytest.raises(UserError, match="is not a model"):
        detect_kind(txt)


def test_truncated_savedmodel_is_a_user_error(tiny_run, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_run[1]["model_path"], broken)
    pb = broken / "saved_model.pb"
    pb.write_bytes(pb.read_bytes()[:100])
    with pytest.raises(UserError, match="cannot load"):
        load_model(broken)


def test_train_output_folder_stands_for_its_model(tiny_run, tmp_path):
    """`compressor compress OUT` after `compressor train --out OUT`: the model/ inside is used."""
    from pathlib import Path

    from compressor.pipeline.model_io import MODEL_CARD, read_card, resolve_model_path

    out, card = tiny_run
    assert resolve_model_path(out) == Path(card["model_path"])
    assert detect_kind(out) == "keras-savedmodel"
    model = load_model(out)
    assert model.path == Path(card["model_path"]) and model.card["data"] == "digits"
    assert read_card(out) == read_card(Path(card["model_path"]))
    # a folder with a card but no model/ is not a train output: still "not a SavedModel"
    (tmp_path / MODEL_CARD).write_text("{}")
    with pytest.raises(UserError, match="not a SavedModel"):
        detect_kind(tmp_path)


def _k3_tensor(layer: str) -> dict:
    return {"class_name": "__keras_tensor__", "config": {"shape": [None, 4], "keras_history": [layer, 0, 0]}}


def _k3_functional(*layers: dict) -> dict:
    """A Keras 3 functional config (as config.json holds it) with an input 'x' of 4 features."""
    first = {"class_name": "InputLayer", "name": "x", "inbound_nodes": [], "module": "keras.layers",
             "config": {"batch_shape": [None, 4], "dtype": "float32", "name": "x", "optional": False}}  # fmt: skip
    return {"class_name": "Functional", "config": {"name": "m", "layers": [first, *layers],
            "input_layers": ["x", 0, 0], "output_layers": [layers[-1]["name"], 0, 0]}}  # fmt: skip


def _k3_layer(class_name: str, name: str, inputs: list, module: str = "keras.layers", **config) -> dict:
    node = {"args": inputs, "kwargs": {}}
    return {"module": module, "class_name": class_name, "name": name, "config": {"name": name, **config},
            "inbound_nodes": [node]}  # fmt: skip


def test_keras3_ops_become_rescaling_layers():
    """keras.ops arithmetic with a constant in a Keras 3 graph: x - 2 and 2 - x, x / 4, x * y."""
    from compressor.pipeline.keras3_graph import tf_keras_config

    config = _k3_functional(
        _k3_layer("Subtract", "a", [_k3_tensor("x"), 2.0], module="keras.src.ops.numpy"),
        _k3_layer("Subtract", "b", [2.0, _k3_tensor("a")], module="keras.src.ops.numpy"),
        _k3_layer("Divide", "c", [_k3_tensor("b"), 4], module="keras.src.ops.numpy"),
        _k3_layer("Multiply", "d", [_k3_tensor("c"), _k3_tensor("x")], module="keras.src.ops.numpy"),
    )
    translated, rewrites = tf_keras_config(config)
    by_name = {entry["name"]: entry for entry in translated["layers"]}
    assert by_name["x"]["config"]["batch_input_shape"] == [None, 4] and "batch_shape" not in by_name["x"]["config"]
    assert [by_name[n]["config"]["scale"] for n in "abc"] == [1.0, -1.0, 0.25]
    assert [by_name[n]["config"]["offset"] for n in "abc"] == [-2.0, 2.0, 0.0]
    assert by_name["d"]["class_name"] == "Multiply" and by_name["d"]["inbound_nodes"] == [
        [["c", 0, 0, {}], ["x", 0, 0, {}]]
    ]
    assert len(rewrites) == 4 and translated["output_layers"] == [["d", 0, 0]]


def test_keras3_translation_refuses_what_it_cannot_keep():
    from compressor.pipeline.keras3_graph import tf_keras_config
    from compressor.pipeline.keras3_layers import BridgeError, translate_layer

    with pytest.raises(BridgeError, match="'c' \\(keras.ops.Divide\\).*only \\+, -, \\* and /"):
        tf_keras_config(_k3_functional(_k3_layer("Divide", "c", [1.0, _k3_tensor("x")], module="keras.src.ops.numpy")))
    with pytest.raises(BridgeError, match="'d' \\(Dense\\).*option lora_rank=4"):
        translate_layer("Dense", {"name": "d", "units": 2, "lora_rank": 4})
    with pytest.raises(BridgeError, match="'e' \\(Dense\\).*activation 'log_softmax'"):
        translate_layer("Dense", {"name": "e", "units": 2, "activation": "log_softmax"})
    config, pending = translate_layer("Dense", {"name": "f", "units": 2, "lora_rank": None, "activation": "silu",
        "kernel_initializer": {"module": "keras.initializers", "class_name": "GlorotUniform",
                               "config": {"seed": None, "input_axes": None}}})  # fmt: skip
    assert "lora_rank" not in config and config["activation"] == "swish" and pending == "linear"
    assert config["kernel_initializer"] == {"class_name": "GlorotUniform", "config": {"seed": None}}
    assert (
        translate_layer("Conv2D", {"name": "g", "filters": 1, "kernel_size": 1, "activation": "hard_silu"})[1]
        == "hard_silu"
    )
