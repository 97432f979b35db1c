"""The reference architectures: registry, shapes, parameter counts, initializers, errors."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import numpy as np
import pytest

import compressor.models as models
from compressor.models import MODELS, build_model, model_names
from compressor.runtime.errors import UserError

# (name, input_shape, num_classes, builder kwargs): small enough to build in well under a second.
SMALL = [
    ("digits_cnn", (8, 8, 1), 4, {"filters": 4, "dense_units": 8, "dropout": 0.1}),
    ("mlp", (6,), 3, {"units": (8, 4), "dropout": 0.1}),
    ("cifar_resnet", (16, 16, 3), 5, {"depth": 8, "width": 0.25}),
    ("mobilenet_v2", (32, 32, 3), 3, {"alpha": 0.35}),
]


@pytest.fixture(scope="module")
def keras():
    from compressor.keras_shim import keras

    return keras


@pytest.fixture
def seed(keras):
    keras.utils.set_random_seed(0)
    return np.random.default_rng(0)


def _kernel_layers(model):
    """Conv and dense layers. DepthwiseConv2D also carries an (unused) kernel_initializer
    but its weight is ``depthwise_kernel``, so select on the weight."""
    return [layer for layer in model.layers if getattr(layer, "kernel", None) is not None]


def test_import_and_listing_do_not_import_tensorflow():
    code = "import sys, compressor.models as m; m.model_names(); assert 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_registry_matches_builder_signatures():
    assert model_names() == sorted(MODELS) == ["cifar_resnet", "digits_cnn", "mlp", "mobilenet_v2"]
    for spec in MODELS.values():
        module, function = spec.builder.split(":")
        builder = getattr(importlib.import_module(module, "compressor.models"), function)
        params = inspect.signature(builder).parameters
        assert list(params)[:2] == ["input_shape", "num_classes"]
        assert set(params) - {"input_shape", "num_classes"} == set(spec.params), spec.name
        assert params["input_shape"].default == spec.default_input_shape
        assert builder.__doc__ and all("\n" not in doc for doc in spec.params.values())


@pytest.mark.parametrize("name, shape, classes, kwargs", SMALL, ids=[s[0] for s in SMALL])
def test_builds_softmax_model(seed, name, shape, classes, kwargs):
    model = build_model(name, input_shape=shape, num_classes=classes, **kwargs)
    assert model.input_names == ["input"] and model.output_names == ["probs"]
    assert model.layers[-1].name == "probs"
    assert model.optimizer is None  # uncompiled: the caller picks loss and optimizer
    probs = model(seed.random((2, *shape), dtype=np.float32), training=False).numpy()
    assert probs.shape == (2, classes)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert (probs >= 0).all()


def test_default_input_shapes(keras):
    for name in ("digits_cnn", "mlp", "cifar_resnet"):
        model = build_model(name)
        assert model.input_shape == (None, *MODELS[name].default_input_shape)
        assert model.output_shape == (None, 10)


def test_digits_cnn_parameter_counts(keras):
    full = build_model("digits_cnn")
    half = build_model("digits_cnn", width=0.5)
    assert full.count_params() >= 20_000
    assert half.count_params() < full.count_params()
    # Conv kernels scale with width squared: the student has a quarter of them.
    assert half.get_layer("conv2").kernel.shape.num_elements() * 4 == (
        full.get_layer("conv2").kernel.shape.num_elements()
    )
    assert build_model("digits_cnn", width=0.01).get_layer("conv1").filters == 1


def test_mlp_width_and_dropout(keras):
    full = build_model("mlp")
    half = build_model("mlp", width=0.5, dropout=0.2)
    assert [layer.units for layer in _kernel_layers(half)] == [64, 32, 10]
    assert half.count_params() < full.count_params()
    assert sum(isinstance(layer, keras.layers.Dropout) for layer in half.layers) == 2
    assert [layer.units for layer in _kernel_layers(build_model("mlp", units=()))] == [10]


def test_cifar_resnet_depth_and_projection_shortcuts(keras):
    model = build_model("cifar_resnet", depth=14)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    projections = [layer.name for layer in convs if "_proj" in layer.name]
    # depth counts the stem, 2 convs per block and the classifier, not the projections.
    assert len(convs) - len(projections) + 1 == 14
    assert projections == ["stage2_block1_proj_conv", "stage3_block1_proj_conv"]
    assert model.get_layer("pool").output_shape == (None, 64)
    assert build_model("cifar_resnet", width=0.5).get_layer("pool").output_shape == (None, 32)


@pytest.mark.parametrize("size", [96, 224])
def test_mobilenet_v2_standard_sizes(keras, size):
    model = build_model("mobilenet_v2", input_shape=(size, size, 3))
    assert model.input_shape == (None, size, size, 3)
    assert model.output_shape == (None, 10)
    assert model.output_names == ["probs"]


def test_mobilenet_v2_rename_survives_config_round_trip(keras):
    model = build_model("mobilenet_v2", input_shape=(32, 32, 3), alpha=0.35)
    clone = keras.Model.from_config(model.get_config())
    assert clone.input_names == ["input"] and clone.output_names == ["probs"]


@pytest.mark.parametrize("name, shape, classes, kwargs", SMALL, ids=[s[0] for s in SMALL])
def test_kernel_initializer_is_applied(keras, name, shape, classes, kwargs):
    model = build_model(name, shape, classes, **kwargs, kernel_initializer="lecun_uniform")
    layers = _kernel_layers(model)
    assert layers and all(isinstance(layer.kernel_initializer, keras.initializers.LecunUniform) for layer in layers)


def test_mobilenet_v2_initializer_default_and_reinitialisation(keras):
    small = {"input_shape": (32, 32, 3), "alpha": 0.35}
    default = build_model("mobilenet_v2", **small)
    assert isinstance(default.get_layer("probs").kernel_initializer, keras.initializers.GlorotUniform)
    zeros = build_model("mobilenet_v2", **small, kernel_initializer="zeros")
    depthwise = [layer for layer in zeros.layers if isinstance(layer, keras.layers.DepthwiseConv2D)]
    assert depthwise
    assert all(isinstance(layer.depthwise_initializer, keras.initializers.Zeros) for layer in depthwise)
    # The weights are really redrawn, not just the recorded initializer changed.
    assert not np.any(zeros.get_layer("probs").kernel.numpy())
    assert not np.any(depthwise[0].depthwise_kernel.numpy())


def test_unknown_model_suggests_closest_name():
    with pytest.raises(UserError) as err:
        build_model("digit_cnn")
    assert str(err.value) == (
        "unknown model 'digit_cnn'; did you mean 'digits_cnn'? Valid: cifar_resnet, digits_cnn, mlp, mobilenet_v2"
    )
    with pytest.raises(UserError, match=r"^unknown model 'vgg16'; Valid: cifar_resnet"):
        models.get_spec("vgg16")


def test_unknown_argument_names_it_and_the_valid_ones():
    with pytest.raises(UserError) as err:
        build_model("mlp", filters=8)
    assert str(err.value) == ("model 'mlp' has no argument 'filters'; Valid: dropout, kernel_initializer, units, width")
    with pytest.raises(UserError, match=r"no argument 'dept'; did you mean 'depth'\?"):
        build_model("cifar_resnet", dept=14)


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("digits_cnn", {"width": 0}, r"width must be a number > 0, got 0"),
        ("mlp", {"width": -0.5}, r"width must be a number > 0"),
        ("digits_cnn", {"filters": 0}, r"filters must be a positive integer, got 0"),
        ("digits_cnn", {"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
        ("mlp", {"units": "128"}, r"units must be a list of positive integers"),
        ("mlp", {"units": (64, 0)}, r"units must be a positive integer, got 0"),
        ("cifar_resnet", {"depth": 9}, r"depth must be 6n\+2 with n >= 1"),
        ("mobilenet_v2", {"alpha": 0}, r"alpha must be a number > 0"),
        ("mobilenet_v2", {"input_shape": (31, 64, 3)}, r"mobilenet_v2: input .* at least 32x32"),
        ("digits_cnn", {"input_shape": (8, 8)}, r"input_shape must have 3 axes"),
        ("mlp", {"input_shape": (0, 4)}, r"input_shape must be positive integers"),
        ("mlp", {"input_shape": 64}, r"input_shape must be positive integers"),
        ("mlp", {"num_classes": 1}, r"num_classes must be an integer >= 2, got 1"),
        ("digits_cnn", {"kernel_initializer": "he_nromal"}, r"unknown kernel_initializer"),
    ],
)
def test_bad_values_are_user_errors(keras, name, kwargs, message):
    with pytest.raises(UserError, match=message):
        build_model(name, **kwargs)
