"""The HTML report's tables from training steps (issue 16): the layers a qat step left float, or gave a
config of ours, each with its reason (those tfmot wraps itself counted, not listed); a distill step's
teacher / student-alone / distilled accuracies, with the reason when the student stays far below."""

from __future__ import annotations

import re

from compressor.recipes.distill import DistillParams
from compressor.recipes.distill_gap import gap_note
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


def _cells(html: str) -> list[list[str]]:
    return [c for c in (re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", html)) if c]


def test_distill_table_shows_every_accuracy_and_the_gap_reason(tmp_path):
    accuracy = {"teacher": 0.8886, "student_start": 0.3008, "student_alone": 0.81, "distilled": 0.8357}
    record = {
        "epochs_run": 14,
        "val_loss": [1.0, 0.6, 0.5, 0.45, 0.44, 0.43, 0.43, 0.44, 0.45, 0.5, 0.5, 0.5, 0.5, 0.5],
    }
    gap = gap_note(accuracy, 0.8357, record, DistillParams(), 0.27)
    info = {"test_accuracy": accuracy, "parameter_ratio": 0.27, "handed_on": "distilled", "gap": gap}
    report = {"steps": {"distill-int8": [{"step": "distill", "index": 0, "info": info}]}}
    html = dict(compress_sections(report, tmp_path))["Distillation: test accuracy of teacher and student"]
    assert _cells(html) == [["distill-int8", "27%", "88.86%", "30.08%", "81.00%", "83.57%"]]
    assert "5.3 points below the teacher" in html
    assert "stopped improving at epoch 6 of 14" in html and "27% of the teacher" in html and "width 0.5" in html


def test_gap_reason_follows_the_training_record():
    accuracy = {"teacher": 0.90, "distilled": 0.80, "student_alone": 0.82}
    params = DistillParams(epochs=10, early_stopping=3)
    rising = {"epochs_run": 10, "val_loss": [1.0 - 0.05 * i for i in range(10)]}
    out_of_epochs = gap_note(accuracy, 0.82, rising, params, 0.3)
    assert out_of_epochs["points"] == 8.0
    assert "still improving when the 10 epochs ran out (best at epoch 10)" in out_of_epochs["why"]
    assert "soft targets did not help here (labels alone: 82.00%)" in out_of_epochs["why"]
    stopped = {"epochs_run": 7, "val_loss": [1.0, 0.5, 0.4, 0.41, 0.42, 0.43, 0.44]}
    small = gap_note({"teacher": 0.90, "distilled": 0.85}, 0.85, stopped, params, 0.25)
    assert "stopped improving at epoch 3 of 7" in small["why"] and "too small" in small["why"]
    assert gap_note({"teacher": 0.90, "distilled": 0.88}, 0.88, stopped, params, 0.25) is None  # 2 points
