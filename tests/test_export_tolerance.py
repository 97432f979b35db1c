"""The float export check: a tolerance scaled to the outputs (max, mean, top-1), one rule for the
status column and the parity line. Real conversions, real TFLite: rounding noise passes, a wrong
weight fails."""

from __future__ import annotations

import numpy as np
import pytest

from compressor.export.parity import FLOAT16, FLOAT32, compare, errors, summary_lines


def _probs(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def reference(seed) -> np.ndarray:
    return _probs(np.random.default_rng(0).normal(0, 3, (400, 10)))


def test_mobilenet_v3_rounding_noise_passes(reference):
    """The figures of issue 16's MobileNetV3Small float32 export: mean 7.6e-6, max 1.99e-4, 100% top-1."""
    noise = np.random.default_rng(1).normal(0, 7.6e-6 * 1.25, reference.shape).astype(np.float32)
    noise.flat[7] = 1.99e-4
    exported = reference + noise
    assert exported.argmax(1).tolist() == reference.argmax(1).tolist()
    assert FLOAT32.failures(exported, reference) == []
    row = compare("keras", reference, "float32 tflite", exported, "float")
    assert row["status"] == "ok" and row["max_abs_diff"] == pytest.approx(1.99e-4, rel=0.01)
    assert summary_lines([row])[0].startswith("parity: 1 pairs agree (float: max diff <= 0.001 x scale")


def test_tolerance_scales_with_logits(reference):
    logits = np.log(reference) * 10  # outputs up to ~100: the same relative noise must pass
    noisy = logits + np.random.default_rng(2).normal(0, 1e-5 * np.abs(logits).max(), logits.shape)
    assert FLOAT32.failures(noisy.astype(np.float32), logits) == []
    assert FLOAT32.failures(logits + 0.05, logits) != []  # a bias off by 0.05 on every logit


def test_real_errors_fail_and_the_line_says_so(reference):
    shifted = reference.copy()
    shifted[:, 0] += 0.002  # one class's probability off by 0.2%: a wrong bias, not rounding
    failed = FLOAT32.failures(shifted, reference)
    assert failed and failed[0].startswith("max abs diff") and "mean abs diff" in failed[-1]
    assert FLOAT16.failures(shifted, reference) == []  # float16's own, looser rule
    swapped = reference[:, ::-1].copy()
    row = compare("keras", reference, "float32 onnx", swapped, "float")
    assert row["status"] == "error" and row["failed"][0].startswith("top-1 agreement")
    assert errors([row])[0].startswith("parity keras vs float32 onnx: top-1 agreement")
    assert summary_lines([row]) == errors([row])
    ok = compare("keras", reference, "float32 tflite", reference.copy(), "float")
    assert summary_lines([ok], ["float16 (tflite) vs keras: max abs diff 3e-02 > 2e-02"])[0].startswith(
        "parity: 1 export check(s) failed"
    )


def test_float32_tflite_of_a_real_model_passes_and_a_changed_weight_fails(tiny_model_path, digits, tmp_path):
    """The whole check on a real conversion: the TFLite passes; the same TFLite against a Keras
    model with one class's bias moved by 0.05 fails it (what a broken conversion would look like)."""
    from compressor.export.tflite import export_float32
    from compressor.pipeline import validation
    from compressor.pipeline.model_io import load_model

    model = load_model(tiny_model_path)
    path = export_float32(model, tmp_path / "f32.tflite")
    result = validation.measure(path, "float32", "tflite", digits.x_test, digits.y_test, None, latency_runs=2)
    keras_out = validation.reference_outputs(model, digits.x_test)
    validation.check_against(result, "keras", keras_out, atol=validation.FLOAT32_ATOL)
    assert result.mismatches == []
    layer = model.keras.layers[-1]
    weights = layer.get_weights()
    bias = weights[1].copy()
    bias[0] += 0.05  # all biases moved alike would cancel in the softmax
    layer.set_weights([weights[0], bias])
    validation.check_against(result, "keras", validation.reference_outputs(model, digits.x_test), atol=FLOAT32)
    assert result.mismatches and "abs diff" in result.mismatches[0].detail
