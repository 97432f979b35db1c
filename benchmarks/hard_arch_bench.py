"""Hard architectures for int8 (issue #15): MobileNetV2, MobileNetV3Small and EfficientNetB0 from
tf_keras.applications, trained on the embedded digits upsampled to 32x32x3, then compressed with
plain int8, with the training-free techniques (equalize + bias_correct + percentile ranges), and by
the accuracy-budget loop at 1 point. Every figure is on the digits' own test split (359 images:
one image is 0.28 points).

    python -m benchmarks.job benchmarks.hard_arch_bench:hard_architectures '{"work": "/tmp/hard"}'
"""

from __future__ import annotations

import time
from pathlib import Path

EPOCHS = 10
BUDGET = 0.01
TECHNIQUES = {
    "name": "int8-techniques",
    "description": "cross-layer equalization + bias correction + percentile int8",
    "steps": [
        {"type": "equalize"},
        {"type": "bias_correct"},
        {"type": "int8", "params": {"calibration_samples": 200, "activation_ranges": "percentile:99.99"}},
    ],
    "export": {"formats": ["tflite"]},
}


def _architectures(keras) -> dict:
    shape = (32, 32, 3)
    return {
        "MobileNetV2": lambda: keras.applications.MobileNetV2(alpha=0.35, input_shape=shape, weights=None, classes=10),
        "MobileNetV3Small": lambda: keras.applications.MobileNetV3Small(
            input_shape=shape, weights=None, classes=10, include_preprocessing=False
        ),
        "EfficientNetB0": lambda: keras.applications.EfficientNetB0(input_shape=shape, weights=None, classes=10),
    }


def hard_architectures(work: str, epochs: int = EPOCHS) -> dict:
    import numpy as np
    import yaml

    from compressor.keras_shim import keras, set_seed

    from .faster_bench import split_npz
    from .mixed_precision import digits_32x32

    work_dir = Path(work)
    work_dir.mkdir(parents=True, exist_ok=True)
    data = digits_32x32()
    npz = split_npz(data, work_dir / "digits32.npz")
    recipe = work_dir / "int8-techniques.yaml"
    recipe.write_text(yaml.safe_dump(TECHNIQUES))
    out = {"task": "digits upsampled to 32x32x3 (1,437 train+val, 359 test)", "epochs": epochs, "budget": BUDGET}
    for name, build in _architectures(keras).items():
        set_seed(0)
        model = build()
        for layer in model.layers:  # the applications' 0.999 leaves BatchNorm statistics untrained in 450 steps
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = 0.9
        model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
        t0 = time.time()
        x = np.concatenate([data.x_train, data.x_val])
        model.fit(x, np.concatenate([data.y_train, data.y_val]), epochs=epochs, batch_size=32, verbose=0)
        path = work_dir / name / "model.h5"
        path.parent.mkdir(exist_ok=True)
        model.save(path)
        out[name] = {"train_s": round(time.time() - t0, 1), **_compress_all(path, npz, recipe, work_dir / name)}
    return out


def _compress_all(model: Path, data: Path, recipe: Path, folder: Path) -> dict:
    from compressor.pipeline.budget import compress_to_budget
    from compressor.pipeline.compress import compress

    common = {"data": str(data), "preprocess": "none", "overwrite": True, "latency_runs": 50}
    report = compress(
        str(model), ["int8", str(recipe)], folder / "run", overrides=["int8:export.formats=[tflite]"], **common
    )
    rows = {r["artifact"]: r for r in report["artifacts"] if r["format"] == "tflite"}
    ref = report["reference_accuracy"]
    result = {"float_test_accuracy": round(ref, 4)}
    for key in ("int8", "int8-techniques"):
        result[key] = _figures(rows[key], ref)
    t0 = time.time()
    try:
        budget = compress_to_budget(str(model), folder / "budget", BUDGET, **common)
    except Exception as e:  # the bench reports what the tool said, and goes on to the next model
        result["budget_loop"] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
        return result
    chosen = budget["budget"]["chosen"]
    row = next(r for r in budget["artifacts"] if r["artifact"] == chosen and r["format"] == "tflite")
    result["budget_loop"] = {
        "chosen": chosen,
        "met_on_val": budget["budget"]["met"],
        "attempts": [{k: a.get(k) for k in ("name", "drop", "met", "error")} for a in budget["budget"]["attempts"]],
        **_figures(row, budget["reference_accuracy"]),
        "seconds": round(time.time() - t0, 1),
    }
    return result


def _figures(row: dict, reference: float) -> dict:
    return {
        "test_accuracy": round(row["accuracy"], 4),
        "drop_points": round((reference - row["accuracy"]) * 100, 2),
        "size_kb": round(row["size_bytes"] / 1024, 1),
        "median_ms": row["latency"]["median_ms"],
    }
