"""regularize and distill steps: config rewriting, the distillation loss, defaults, chain, schema errors."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
from click.testing import CliRunner

from compressor.commands.cli import cli
from compressor.recipes.distill import DistillParams, distillation_loss, make_student, widened
from compressor.recipes.regularize import RegularizeParams, regularized


@pytest.fixture(scope="module")
def digits():
    from compressor.datasets import load_dataset

    return load_dataset("digits", seed=0)


@pytest.fixture(scope="module")
def teacher(tiny_model_path):
    from compressor.pipeline.model_io import load_model

    return load_model(tiny_model_path).keras


def _sequential():
    from compressor.keras_shim import keras

    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
            keras.layers.MaxPooling2D(name="pool"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(10, activation="softmax", name="probs"),
        ]
    )


@pytest.mark.parametrize(
    "arch, where, dropout_after",
    [
        ("tiny", "both", {"dense": "Dropout", "pool": "SpatialDropout2D"}),
        ("mlp", "blocks", {"dense1": "Dropout"}),
        ("cifar_resnet", "head", {"pool": "Dropout"}),
        ("sequential", "both", {"flatten": "Dropout", "pool": "SpatialDropout2D"}),
    ],
)
def test_regularize_keeps_outputs_and_adds_l2(arch, where, dropout_after, teacher, seed):
    from compressor.models import build_model

    model = {
        "tiny": lambda: teacher,
        "sequential": _sequential,
        "mlp": lambda: build_model("mlp", units=(16, 8)),
        "cifar_resnet": lambda: build_model("cifar_resnet", input_shape=(8, 8, 3)),
    }[arch]()
    new, info = regularized(model, l2=1e-3, rate=0.5, where=where)
    x = np.random.default_rng(seed).normal(size=(16, *model.input_shape[1:])).astype(np.float32)
    # Inference mode: dropout is the identity and L2 only adds to the loss.
    np.testing.assert_allclose(new(x, training=False).numpy(), model(x, training=False).numpy(), rtol=0, atol=1e-6)
    assert new.losses, "no L2 loss terms on the rebuilt model"
    kernels = [layer.name for layer in model.layers if layer.__class__.__name__ in ("Dense", "Conv2D")]
    assert info["l2_layers"] == kernels
    assert {d["after"]: d["type"] for d in info["dropout"]} == dropout_after
    assert all(d["rate"] == 0.5 and d["action"] == "inserted" for d in info["dropout"])


def test_regularize_sets_the_rate_of_an_existing_dropout():
    from compressor.models import build_model

    new, info = regularized(build_model("digits_cnn", filters=4, dense_units=8, dropout=0.1), 0.0, 0.3, "head")
    assert info["dropout"] == [
        {"layer": "dropout", "after": "dense", "type": "Dropout", "rate": 0.3, "action": "rate set"}
    ]
    assert new.get_layer("dropout").rate == 0.3 and not new.losses and info["l2_layers"] == []


def test_regularize_step_with_defaults(teacher, digits, tmp_path):
    from compressor.recipes import get_step

    out = get_step("regularize").apply(teacher, digits, RegularizeParams(), tmp_path)
    info = json.loads((tmp_path / "info.json").read_text())
    history = json.loads((tmp_path / "history.json").read_text())
    assert len(history["loss"]) == RegularizeParams().epochs == 3
    assert info["l2_layers"] == ["conv1", "conv2", "dense", "probs"] and info["where"] == "head"
    assert out.get_layer("dense_dropout").rate == 0.2 and info["val_accuracy_after"] > 0.3


def test_derived_student_sizes(teacher):
    from compressor.models import build_model

    student, sizes = widened(teacher, 0.5)
    assert sizes == {"conv1": [8, 4], "conv2": [8, 4], "dense": [32, 16]}
    assert [student.get_layer(n).filters for n in ("conv1", "conv2")] == [4, 4]
    assert student.get_layer("bn1").gamma.shape == (4,) and student.get_layer("probs").units == 10
    # conv 9*1*4 + bn 4*4 + conv 9*4*4 + bn 4*4 + dense 64*16+16 + probs 16*10+10 = 1422 (teacher 5170)
    assert student.count_params() == 1422 and teacher.count_params() == 5170
    # The preset's promise on the full digits_cnn: 11,130 of 43,242 parameters (25.7%).
    full = build_model("digits_cnn")
    assert widened(full, 0.5)[0].count_params() / full.count_params() <= 0.35


def test_student_from_reference_architecture_and_seeded_init(teacher):
    params = DistillParams(student="mlp", student_params={"units": [16]}, seed=3)
    student, description = make_student(teacher, params)
    assert description == {"student": "mlp", "student_params": {"units": [16]}}
    assert student.input_shape == teacher.input_shape and student.output_shape == (None, 10)
    again, _ = make_student(teacher, params)  # alpha=1 baselines start from the same weights
    for a, b in zip(student.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_distillation_loss_matches_the_formula(seed):
    rng = np.random.default_rng(seed)
    z_student, z_teacher = rng.normal(size=(4, 10)) * 3, rng.normal(size=(4, 10)) * 3
    labels = np.array([1, 0, 7, 9])

    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    p_student, p_teacher = softmax(z_student), softmax(z_teacher)
    y_true = np.concatenate([labels[:, None], np.log(p_teacher)], axis=1).astype(np.float32)
    t, alpha = 4.0, 0.25
    ce = -np.log(p_student[np.arange(4), labels])
    soft_t, soft_s = softmax(z_teacher / t), softmax(z_student / t)
    kl = (soft_t * np.log(soft_t / soft_s)).sum(axis=1)
    got = distillation_loss(alpha, t)(y_true, p_student.astype(np.float32)).numpy()
    np.testing.assert_allclose(got, alpha * ce + (1 - alpha) * t * t * kl, rtol=1e-4)
    labels_only = distillation_loss(1.0, t)(y_true, p_student.astype(np.float32)).numpy()
    np.testing.assert_allclose(labels_only, ce, rtol=1e-5)


def test_distill_step_with_defaults(teacher, digits, tmp_path):
    """The derived student starts from the teacher's channels, trains until validation stops improving,
    and the info shows student at start, alone (labels only) and distilled."""
    from compressor.recipes import get_step

    student = get_step("distill").apply(teacher, digits, DistillParams(), tmp_path)
    info = json.loads((tmp_path / "info.json").read_text())
    history = json.loads((tmp_path / "history.json").read_text())
    assert info["init"] == "teacher's strongest channels (L1 norm)"
    assert len(history["val_accuracy"]) == history["epochs_run"] <= 60
    assert json.loads((tmp_path / "labels_only" / "history.json").read_text())["epochs_run"] <= 60
    assert info["teacher_parameters"] == 5170 and info["student_parameters"] == student.count_params() == 1422
    assert info["parameter_ratio"] == round(1422 / 5170, 4) and info["width"] == 0.5
    assert student.layers[-1].name == "probs"
    probs = student.predict(digits.x_test[:8], verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)  # softmax outputs, not logits
    acc = info["test_accuracy"]
    assert set(acc) == {"teacher", "student_start", "distilled", "student_alone"}
    assert info["student_test_accuracy"] > 0.8 and info["student_test_accuracy"] >= acc["teacher"] - 0.05, info


@pytest.mark.parametrize("name", ["residual_separable", "conv1d_net", "hard_swish_net"])
def test_derived_student_keeps_the_strongest_teacher_channels(name, digits, seed):
    """Residual Add, squeeze-excite Multiply, SeparableConv2D, Conv1D, BatchNorm, Flatten: every layer
    is sliced to the kept channels, the same ones on both sides of an Add/Multiply."""
    import architectures as arch

    from compressor.recipes.distill_init import _groups, init_from_teacher

    data = arch.as_sequences(digits) if name == "conv1d_net" else digits
    teacher = getattr(arch, name)()
    student, _ = widened(teacher, 0.5)
    kept = init_from_teacher(teacher, student)
    assert kept and all(n > 0 for n in kept.values())
    _, groups = _groups(teacher.get_config())
    first = next(layer.name for layer in teacher.layers if layer.name in kept)
    joined = [n for n, g in groups.items() if g == groups[first]]  # e.g. both sides of a residual Add
    assert len(joined) > 1 or name == "conv1d_net"

    def norms(layer_name):
        kernel = teacher.get_layer(layer_name).get_weights()[1 if "separable" in layer_name else 0]
        return np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0)

    t_kernel, s_kernel = teacher.get_layer(first).get_weights()[0], student.get_layer(first).get_weights()[0]
    strongest = np.sort(np.argsort(-sum(norms(n) for n in joined))[: s_kernel.shape[-1]])
    np.testing.assert_array_equal(s_kernel, t_kernel[..., strongest])
    assert student.predict(data.x_val[:4], verbose=0).shape == (4, 10)


def test_squeeze_excite_reshape_follows_the_student_width(digits, seed):
    """EfficientNet's squeeze-excite: pooling, Reshape((1, 1, C)), two 1x1 convolutions, Multiply. The
    Reshape named the teacher's C, so the narrowed student could not be built."""
    from compressor.export.tflite import convert
    from compressor.inspection.tflite import float_ops
    from compressor.keras_shim import keras
    from compressor.recipes.distill_init import init_from_teacher

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="swish", name="stem")(inputs)
    se = keras.layers.GlobalAveragePooling2D(name="se_squeeze")(x)
    se = keras.layers.Reshape((1, 1, 16), name="se_reshape")(se)
    se = keras.layers.Conv2D(4, 1, activation="swish", name="se_reduce")(se)
    se = keras.layers.Conv2D(16, 1, activation="sigmoid", name="se_expand")(se)
    x = keras.layers.Multiply(name="se_excite")([x, se])
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    teacher = keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="probs")(x))
    reference = teacher.predict(digits.x_val[:4], verbose=0)
    student, sizes = widened(teacher, 0.5)
    assert student.get_layer("se_reshape").output_shape == (None, 1, 1, 8)
    assert student.get_layer("se_reshape").get_config()["target_shape"] == (1, 1, 8)  # a -1 converts to Flex
    assert sizes["stem"] == [16, 8] and sizes["se_expand"] == [16, 8]
    assert init_from_teacher(teacher, student)
    assert student.predict(digits.x_val[:4], verbose=0).shape == (4, 10)
    np.testing.assert_array_equal(teacher.predict(digits.x_val[:4], verbose=0), reference)  # teacher untouched
    loaded = types.SimpleNamespace(keras=student, input_shape=(8, 8, 1))
    assert float_ops(convert(loaded, "int8", digits.x_train[:32], io_dtype="int8")) == {}


def test_distill_int8_chain(tiny_model_path, tmp_path):
    from compressor.pipeline.compress import compress
    from compressor.runtime.interpreters import open_model

    out = tmp_path / "run"
    report = compress(tiny_model_path, ["distill-int8"], out, latency_runs=5, overrides=["steps.0.params.epochs=2"])
    row = next(r for r in report["artifacts"] if r["artifact"] == "distill-int8" and r["format"] == "tflite")
    assert row["accuracy"] > 0.3 and not row["export_mismatches"]
    meta = json.loads((out / "distill-int8" / "steps" / "00-distill" / "meta.json").read_text())
    assert meta["info"]["parameter_ratio"] < 0.35 and meta["history"]["epochs_run"] == 2
    assert open_model(out / "distill-int8" / "model.tflite").inputs[0].dtype == "int8"
    assert (out / "distill-int8" / "model.onnx").is_file()


@pytest.mark.parametrize(
    "recipe, override, fragment",
    [
        ("distill-int8", "steps.0.params.temperature=0", "steps[0].params.temperature: must be greater than 0"),
        ("distill-int8", "steps.0.params.alpha=1.5", "steps[0].params.alpha: must be less than or equal to 1"),
        (
            "distill-int8",
            "steps.0.params.temprature=2",
            "steps[0].params.temprature: unknown key 'temprature'; did you mean 'temperature'?",
        ),
        (
            "distill-int8",
            "steps.0.params.student=mlpp",
            "steps[0].params.student: unknown model 'mlpp'; did you mean 'mlp'?",
        ),
        ("distill-int8", "steps.0.params.student_params={units: [8]}", "steps[0].params: student_params needs student"),
        ("distill-int8", "steps.0.params.width=1.5", "steps[0].params.width: must be less than or equal to 1"),
        ("regularize-int8", "steps.0.params.dropout=1", "steps[0].params.dropout: must be less than 1"),
        ("regularize-int8", "steps.0.params.l2=-0.1", "steps[0].params.l2: must be greater than or equal to 0"),
        ("regularize-int8", "steps.0.params.where=tail", "steps[0].params.where: must be 'head', 'blocks' or 'both'"),
    ],
)
def test_schema_errors_via_cli(recipe, override, fragment, tiny_model_path, tmp_path):
    result = CliRunner().invoke(
        cli, ["compress", tiny_model_path, "--recipe", recipe, "--out", str(tmp_path / "o"), "--set", override]
    )
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert fragment in lines[0], lines[0]
    assert not (tmp_path / "o").exists()
