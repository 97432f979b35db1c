"""MACs counted from exported files equal the analytic count of the Keras layers, in TFLite and
ONNX alike, and `inspect` shows them."""

from __future__ import annotations

import numpy as np
import pytest

from compressor.inspection.inspect import format_inspection, inspect_file
from compressor.inspection.macs import file_macs, format_macs


def _model():
    """Conv 3x3 stride 2, depthwise 3x3, 1x1 conv, dense head: each MAC count written out by hand
    below. (No grouped conv: tf2onnx cannot convert one.)"""
    from compressor.keras_shim import keras, set_seed

    set_seed(0)
    inp = keras.Input((16, 16, 4))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)  # 8x8x8
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)  # 8x8x8
    x = keras.layers.Conv2D(12, 1)(x)  # 8x8x12
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(5, activation="softmax")(x)
    return keras.Model(inp, out)


EXPECTED = {
    "conv": 8 * 8 * 8 * 3 * 3 * 4,  # output positions x channels x kernel x input channels
    "depthwise": 8 * 8 * 8 * 3 * 3,
    "pointwise": 8 * 8 * 12 * 8,
    "dense": 12 * 5,
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from compressor.export.onnx import keras_to_onnx
    from compressor.export.tflite import convert
    from compressor.pipeline.model_io import LoadedModel

    folder = tmp_path_factory.mktemp("macs")
    model = _model()
    loaded = LoadedModel(folder / "m", "keras-savedmodel", model, (16, 16, 4), (5,))
    tflite = folder / "model.tflite"
    tflite.write_bytes(convert(loaded, "float32"))
    return tflite, keras_to_onnx(model, folder / "model.onnx")


def test_tflite_and_onnx_count_the_analytic_macs(exported):
    tflite, onnx = exported
    total = sum(EXPECTED.values())
    t, o = file_macs(tflite), file_macs(onnx)
    assert t["total"] == total == o["total"], (t, o)
    assert sorted(r["macs"] for r in t["ops"]) == sorted(EXPECTED.values())
    assert t["by_op"]["DEPTHWISE_CONV_2D"] == EXPECTED["depthwise"]
    assert t["by_op"]["FULLY_CONNECTED"] == EXPECTED["dense"]


def test_inspect_shows_macs(exported):
    tflite, _ = exported
    info = inspect_file(tflite)
    assert info["macs"] == sum(EXPECTED.values())
    assert f"MACs per sample: {format_macs(info['macs'])} ({info['macs']:,})" in format_inspection(info)


def test_format_macs():
    assert [format_macs(n) for n in (999, 1500, 2_345_678, 3_000_000_000, None)] == ["999", "1.5K", "2.35M", "3G", ""]
    assert np.isclose(float(format_macs(123_456)[:-1]), 123)


def test_report_rows_carry_macs(int8_run):
    import json

    report = json.loads((int8_run / "report.json").read_text())
    macs = {(r["artifact"], r["format"]): r["macs"] for r in report["artifacts"]}
    assert len(set(macs.values())) == 1 and next(iter(macs.values())) > 0  # int8 computes what float32 does
    from compressor.reports.summary import format_table

    assert "MACs" in format_table(report).splitlines()[0]


def test_slower_than_float32_is_warned():
    from compressor.reports.speed import annotate_speed, slower_lines

    def row(name, fmt, ms):
        return {"artifact": name, "format": fmt, "latency": {"median_ms": ms}}

    rows = [row("float32", "tflite", 1.0), row("int8", "tflite", 1.05), row("int16x8", "tflite", 35.0)]
    rows += [row("float32", "onnx", 2.0), row("int8", "onnx", 3.0)]
    rows += [row("float32", "tiny", 0.001), row("int8", "tiny", 0.002)]  # 2x of a microsecond: timer noise
    annotate_speed(rows)
    assert [r.get("speed_vs_float32") for r in rows] == [None, 1.05, 35.0, None, 1.5, None, 2.0]
    lines = slower_lines({"artifacts": rows})
    assert len(lines) == 2  # 5% is timing noise, not "slower"
    assert lines[0].startswith("warning: int16x8 (tflite) is 35.00x slower than float32 here (35.000 ms vs 1.000 ms)")
    assert lines[1].startswith("warning: int8 (onnx) is 1.50x slower")
