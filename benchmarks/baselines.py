"""What users write today, run under the same conditions as our pipeline.

(a) ``default_converter``: TFLiteConverter called directly, default settings (5 lines).
(b) ``handwritten_prune_qat``: the tfmot guide's prune -> strip -> pruning-preserving QAT ->
    int8 convert script, with the same epochs, batch size and learning rates as our preset.
TensorFlow comes through our shim only to get the same environment (legacy Keras, quiet logs);
the calls below are the plain library calls a user would make.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np


def _accuracy(tflite: bytes, x: np.ndarray, y: np.ndarray) -> float:
    from compressor.runtime import accuracy
    from compressor.runtime.interpreters import open_model

    path = Path(f"/tmp/baseline-{abs(hash(tflite))}.tflite")
    path.write_bytes(tflite)
    try:
        return accuracy.evaluate(open_model(path), x, y)["top1"]
    finally:
        path.unlink()


def default_converter(model_path: str, out: str, optimize: bool = False) -> dict:
    from compressor.keras_shim import tf

    converter = tf.lite.TFLiteConverter.from_saved_model(model_path)
    if optimize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    flatbuffer = converter.convert()
    Path(out).write_bytes(flatbuffer)
    return {"size_bytes": len(flatbuffer), "gzip_bytes": len(gzip.compress(flatbuffer, 9))}


def handwritten_prune_qat(
    model_path: str,
    out: str,
    data: str,
    sparsity: float,
    prune_epochs: int,
    qat_epochs: int,
    batch_size: int,
    prune_lr: float,
    qat_lr: float,
    calibration_samples: int = 200,
    seed: int = 0,
) -> dict:
    from compressor.datasets import load_dataset
    from compressor.keras_shim import keras, tf, tfmot

    mot = tfmot()
    ds = load_dataset(data, seed=seed)
    keras.utils.set_random_seed(seed)
    model = keras.models.load_model(model_path, compile=False)

    steps = int(np.ceil(len(ds.x_train) / batch_size)) * prune_epochs
    schedule = mot.sparsity.keras.PolynomialDecay(0.0, sparsity, begin_step=0, end_step=int(steps * 0.7))
    pruned = mot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
    pruned.compile(keras.optimizers.Adam(prune_lr), "sparse_categorical_crossentropy", ["accuracy"])
    pruned.fit(
        ds.x_train,
        ds.y_train,
        batch_size=batch_size,
        epochs=prune_epochs,
        verbose=0,
        validation_data=(ds.x_val, ds.y_val),
        callbacks=[mot.sparsity.keras.UpdatePruningStep()],
    )
    stripped = mot.sparsity.keras.strip_pruning(pruned)

    annotated = mot.quantization.keras.quantize_annotate_model(stripped)
    qat = mot.quantization.keras.quantize_apply(
        annotated, mot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
    )
    qat.compile(keras.optimizers.Adam(qat_lr), "sparse_categorical_crossentropy", ["accuracy"])
    qat.fit(
        ds.x_train,
        ds.y_train,
        batch_size=batch_size,
        epochs=qat_epochs,
        verbose=0,
        validation_data=(ds.x_val, ds.y_val),
    )

    converter = tf.lite.TFLiteConverter.from_keras_model(qat)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    calib = ds.x_train[:calibration_samples]
    converter.representative_dataset = lambda: ([row[None]] for row in calib)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    flatbuffer = converter.convert()
    Path(out).write_bytes(flatbuffer)
    return {
        "size_bytes": len(flatbuffer),
        "gzip_bytes": len(gzip.compress(flatbuffer, 9)),
        "accuracy": _accuracy(flatbuffer, ds.x_test, ds.y_test),
    }
