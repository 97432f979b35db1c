"""Our side of each comparison, as job functions (run in a fresh process by benchmarks.job)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def compress_job(
    model_path: str, recipes: list[str], out: str, data: str | None = None, overrides: list[str] | None = None
) -> dict:
    from compressor.pipeline.compress import compress

    report = compress(model_path, recipes, out, data=data, overrides=overrides or [], overwrite=True, latency_runs=20)
    keep = (
        "artifact",
        "format",
        "path",
        "size_bytes",
        "gzip_bytes",
        "accuracy",
        "accuracy_delta",
        "gates_failed",
        "export_mismatches",
    )
    return {
        "reference_accuracy": report["reference_accuracy"],
        "passed": report["passed"],
        "onnx_skipped": report.get("onnx_skipped", {}),
        "artifacts": [
            {**{k: r[k] for k in keep}, "latency_median_ms": r["latency"]["median_ms"]} for r in report["artifacts"]
        ],
        "steps": {
            name: [{"step": m["step"], "info": m.get("info", {})} for m in metas]
            for name, metas in report.get("steps", {}).items()
        },
    }


def train_job(
    model: str, out: str, data: str = "digits", epochs: int = 20, seed: int = 0, model_params: dict | None = None
) -> dict:
    from compressor.pipeline.train import train

    card = train(model, out, data=data, epochs=epochs, seed=seed, model_params=model_params, overwrite=True)
    return {"model_path": card["model_path"], "test_accuracy": card["test_accuracy"], "parameters": card["parameters"]}


def random_model_job(model: str, input_shape: list[int], out: str, samples: int = 256, seed: int = 0) -> dict:
    """A reference architecture with random weights (latency and size rows only) and raw uint8 data
    of its input shape, so the usual compress path (calibration, validation) runs unchanged."""
    from compressor.keras_shim import set_seed
    from compressor.models import build_model
    from compressor.runtime.quiet import native_stderr_silenced

    set_seed(seed)
    keras_model = build_model(model, input_shape=tuple(input_shape), num_classes=10)
    with native_stderr_silenced():
        keras_model.save(Path(out) / "model", save_format="tf")
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, size=(samples, *input_shape), dtype=np.uint8)
    labels = rng.integers(0, 10, size=samples)
    half = samples // 2
    np.savez(Path(out) / "data.npz", x_train=raw[:half], y_train=labels[:half], x_test=raw[half:], y_test=labels[half:])
    return {
        "model_path": str(Path(out) / "model"),
        "data": str(Path(out) / "data.npz"),
        "parameters": int(keras_model.count_params()),
    }


def demo_job(out: str) -> dict:
    from compressor.pipeline.demo import run_demo

    report = run_demo(out, overwrite=True)
    return {"passed": report["passed"], "artifacts": len(report["artifacts"])}


def package_job(run_dir: str, out: str) -> dict:
    from compressor.bundle.package import package

    result = package(run_dir, out, overwrite=True)
    return {"artifact": result["artifact"], "files": sorted(result["manifest"]["files"])}


def package_mcu_job(run_dir: str, out: str, artifact: str, compress_weights: bool = False) -> dict:
    from compressor.mcu.package_mcu import package_mcu

    info = package_mcu(run_dir, out, artifact=artifact, compress_weights=compress_weights, overwrite=True)
    keep = ("artifact", "accuracy", "arena", "flash", "ops", "weight_compression", "tflite_micro")
    return {k: info[k] for k in keep}
