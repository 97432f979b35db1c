"""The HTML report's QAT layer table (issue 16): the layers a qat step left float, or gave a config
of ours, each with its reason; the layers tfmot wraps itself counted, not listed."""

from __future__ import annotations

import re

from compressor.recipes.qat_layers import plan
from compressor.reports.compress_sections import compress_sections


def _model():
    from compressor.keras_shim import keras

    x = inputs = keras.Input((16, 2))
    x = keras.layers.Conv1D(4, 3, activation="relu", name="conv1d")(x)
    x = keras.layers.PReLU(name="prelu")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs)


def test_qat_layer_table_lists_float_and_own_config_layers_with_reasons(tmp_path):
    layers = plan(_model(), skip=[])
    start = {"float_val_accuracy": 0.9, "qat_val_accuracy": 0.895}
    report = {"steps": {"qat-<b>": [{"step": "qat", "index": 0, "info": {"layers": layers, "start": start}}]}}
    sections = dict(compress_sections(report, tmp_path))
    html = sections["QAT: layers left float or given their own config"]
    rows = {
        cells[1]: cells
        for cells in (re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", html))
        if cells
    }
    assert rows["prelu"][2:4] == ["PReLU", "float"] and "PReLU" in rows["prelu"][4]
    assert rows["conv1d"][3] == "int8 (Conv1D config)"
    assert "head" not in rows  # wrapped by tfmot: counted in the note only
    wrapped = sum(d["qat"] == "tfmot" for d in layers.values())
    assert f"{len(layers)} layers, {wrapped} by tfmot" in html and wrapped >= 1
    assert "before training 89.50% int8-simulated vs 90.00% float" in html
    assert "qat-<b>" not in html and "qat-&lt;b&gt;" in html  # recipe names are escaped


def test_no_qat_step_no_table(tmp_path):
    report = {"steps": {"int8": [{"step": "int8", "index": 0, "info": {"float_ops": {}}}]}}
    titles = [title for title, _ in compress_sections(report, tmp_path)]
    assert not any(title.startswith("QAT") for title in titles)
