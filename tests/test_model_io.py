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
