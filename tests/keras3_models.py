"""Build the Keras 3 models tests/test_keras3.py feeds to compressor: run as a script in a child
process with TF_USE_LEGACY_KERAS unset, so ``import keras`` is Keras 3.

``python tests/keras3_models.py DATA.npz OUT``: DATA holds the digits split the tests use
(x_train, y_train, x_test); OUT receives each model's files and Keras 3's own outputs
(``<name>_pred.npy``) on its inputs (the digits test split, or ``<name>_x.npy`` for the applications).
"""

from __future__ import annotations

import sys
from pathlib import Path

import keras
import numpy as np


def functional() -> keras.Model:
    inp = keras.Input((8, 8, 1), name="pixels")
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False)(inp)  # keeps Keras' default name conv2d
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    y = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras.layers.Add()([x, y])
    s = keras.layers.SeparableConv2D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.Concatenate()([x, s])
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.1)(x)
    out = keras.layers.Dense(10, activation="softmax", kernel_regularizer=keras.regularizers.L2(1e-4))(x)
    return keras.Model(inp, out)


def sequential() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Reshape((8, 8)),
            keras.layers.Conv1D(16, 3, padding="same", activation="relu"),
            keras.layers.AveragePooling1D(2),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.1),
            keras.layers.Dense(32, activation="hard_silu"),  # no tf_keras activation: the bridge rewrites it
            keras.layers.Dense(10, activation="softmax"),
        ]
    )


def calibrated(model: keras.Model, x: np.ndarray, passes: int = 3) -> keras.Model:
    """weights=None applications' outputs barely depend on the input (the signal fades with depth):
    set every BatchNormalization's moving statistics to its input's on ``x``, as training would
    (a few passes, each with the statistics the previous one set upstream)."""
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    probe = keras.Model(model.input, [layer.input for layer in norms])
    for _ in range(passes):
        for layer, h in zip(norms, probe(x, training=False), strict=True):
            h = np.asarray(h)
            axes = tuple(range(h.ndim - 1))
            gamma, beta, _, _ = layer.get_weights()
            layer.set_weights([gamma, beta, h.mean(axes), h.var(axes) + 1e-3])
    return model


def main(data: str, out: str) -> None:
    keras.utils.set_random_seed(0)
    d, out_dir = np.load(data), Path(out)
    for name, model, epochs in (("func", functional(), 40), ("seq", sequential(), 20)):
        model.compile(keras.optimizers.Adam(0.003), "sparse_categorical_crossentropy")
        model.fit(d["x_train"], d["y_train"], epochs=epochs, batch_size=64, verbose=0)
        model.save(out_dir / f"{name}.keras")
        np.save(out_dir / f"{name}_pred.npy", model.predict(d["x_test"], verbose=0))
    functional_model = keras.saving.load_model(out_dir / "func.keras")
    functional_model.save(out_dir / "func.h5")
    functional_model.export(out_dir / "func_export", verbose=False)
    rng = np.random.default_rng(0)
    pixels = rng.uniform(0, 255, (16, 32, 32, 3)).astype("float32")
    apps = keras.applications
    # MobileNetV3 rescales pixels itself (a Rescaling layer); MobileNetV2 expects [-1, 1]
    for name, build, x in (
        ("mobilenet_v3_small", apps.MobileNetV3Small, pixels),
        ("mobilenet_v2", apps.MobileNetV2, pixels / 127.5 - 1),
    ):
        model = calibrated(build(weights=None, input_shape=(32, 32, 3), classes=10), x)
        model.save(out_dir / f"{name}.keras")
        np.save(out_dir / f"{name}_x.npy", x)
        np.save(out_dir / f"{name}_pred.npy", model.predict(x, verbose=0))
    inp = keras.Input((8, 8, 1))
    flat = keras.layers.Flatten()(inp)
    lam = keras.Model(inp, keras.layers.Dense(10)(keras.layers.Lambda(lambda t: t * 2.0, name="doubler")(flat)))
    lam.save(out_dir / "lambda.keras")
    seq = keras.layers.Reshape((8, 8))(inp)
    gru = keras.Model(inp, keras.layers.Dense(10, activation="softmax")(keras.layers.GRU(4, name="my_gru")(seq)))
    gru.save(out_dir / "gru.keras")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
