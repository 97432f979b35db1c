"""compress --accuracy-budget: the ladder climbs from plain int8 until the drop on the validation
split is within the budget, keeps that rung, and measures the test split once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def outlier_model(digits, tmp_path_factory) -> Path:
    """A digits MLP with one extra hidden unit whose activations are ~100x the others' and whose
    outgoing weights are tiny: the float model is unchanged, but min/max int8 gives the hidden
    tensor a scale that rounds every normal unit to a few levels, and percentile ranges cannot
    help (the unit fires on every sample). Cross-layer equalization moves the scale into the next
    layer's weights: the textbook case it exists for."""
    from compressor.keras_shim import keras, set_seed

    set_seed(0)
    inp = keras.Input((8, 8, 1))
    hidden = keras.layers.Dense(32, activation="relu", name="hidden")(keras.layers.Flatten()(inp))
    small = keras.Model(inp, keras.layers.Dense(10, activation="softmax", name="probs")(hidden))
    small.compile("adam", "sparse_categorical_crossentropy")
    small.fit(digits.x_train, digits.y_train, epochs=30, batch_size=32, verbose=0)
    inp = keras.Input((8, 8, 1))
    wide = keras.layers.Dense(33, activation="relu", name="hidden")(keras.layers.Flatten()(inp))
    model = keras.Model(inp, keras.layers.Dense(10, activation="softmax", name="probs")(wide))
    (w1, b1), (w2, b2) = small.get_layer("hidden").get_weights(), small.get_layer("probs").get_weights()
    model.get_layer("hidden").set_weights([np.c_[w1, np.full((64, 1), 50.0, np.float32)], np.r_[b1, 0.0]])
    model.get_layer("probs").set_weights([np.r_[w2, np.full((1, 10), 1e-4, np.float32)], b2])
    np.testing.assert_allclose(
        model.predict(digits.x_test, verbose=0), small.predict(digits.x_test, verbose=0), atol=1e-2
    )
    path = tmp_path_factory.mktemp("budget") / "model"
    model.save(path, save_format="tf")
    return path


def test_the_ladder_climbs_to_the_first_rung_within_budget(outlier_model, tmp_path):
    from compressor.pipeline.budget import compress_to_budget, ladder

    out = tmp_path / "run"
    report = compress_to_budget(outlier_model, out, 0.01, latency_runs=5)
    section = report["budget"]
    attempts = section["attempts"]
    names = [a["name"] for a in attempts]
    assert names == [name for name, _, _ in ladder(0.01)][: len(names)]  # in order, none skipped
    assert not attempts[0]["met"] and attempts[0]["drop"] > 0.05  # plain int8 loses on this model
    assert attempts[-1]["met"] and all(not a["met"] for a in attempts[:-1])  # stopped at the first that held
    assert section["chosen"] == names[-1] and section["met"]
    rows = [r for r in report["artifacts"] if r["artifact"] != "float32"]
    assert {r["artifact"] for r in rows} == {section["chosen"]}  # only the chosen rung met the test split
    assert report["gates"][section["chosen"]]["max_accuracy_drop"] == 0.01
    assert json.loads((out / "report.json").read_text())["budget"] == section
    assert not (tmp_path / ".run.budget").exists()
    page = (out / "report.html").read_text()
    assert "Accuracy budget: every attempt" in page and f"met by {section['chosen']}" in page


def test_budget_and_recipe_do_not_mix(tiny_model_path, tmp_path):
    cmd = [sys.executable, "-m", "compressor", "compress", tiny_model_path, "--accuracy-budget", "0.01"]
    r = subprocess.run(
        [*cmd, "--recipe", "int8", "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        cwd=Path(__file__).parents[1],
    )
    assert r.returncode == 2 and "--accuracy-budget chooses the recipe itself; drop --recipe" in r.stderr
    assert not (tmp_path / "o").exists()
