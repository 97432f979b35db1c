"""`compressor validate`: measure one .tflite/.onnx artifact on its own interpreter.

TensorFlow is imported only when the reference is a Keras model; a .tflite or .onnx reference
(and no reference at all) keeps this command TF-free.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from compressor.datasets.model_input import ModelInput
from compressor.datasets.source import load_or_stream
from compressor.export import parity
from compressor.pipeline.preflight import check_fits
from compressor.pipeline.validation import reference_outputs, runner_outputs
from compressor.runtime import accuracy, latency
from compressor.runtime.errors import UserError
from compressor.runtime.interpreters import open_model


def validate_artifact(
    artifact: str,
    data: str = "digits",
    data_dir: str | None = None,
    reference: str | None = None,
    threads: int = 1,
    latency_runs: int = 100,
    seed: int = 0,
    trust_code: bool = False,
    preprocess: str = "auto",
    image_fit: str = "resize",
    stream: bool | None = None,
) -> dict:
    """The artifact measured on the test split of ``data``, loaded or streamed (``stream``: True,
    False, or None for auto, datasets/source.py): outputs are computed a batch at a time either way."""
    runner = open_model(artifact, threads=threads)
    shape = ModelInput(shape=_Shapes(runner).input_shape)
    dataset = load_or_stream(data, data_dir, seed, shape, preprocess, image_fit, stream)
    check_fits(_Shapes(runner), dataset)
    test = dataset.split("test")
    ref = _reference_outputs(reference, test, threads, trust_code) if reference else None
    outputs = runner_outputs(runner, test)
    metrics = accuracy.classification_metrics(outputs, test.y, reference=ref)
    if ref is not None:  # the export check's rule (export/parity.py), as `compress` applies it
        metrics["agreement"]["float_tolerance"] = {
            "rule": parity.FLOAT32.describe(),
            "failed": parity.FLOAT32.failures(outputs, ref, metrics["agreement"]),
        }
    return {
        "artifact": str(artifact),
        "backend": runner.backend,
        "data": dataset.name,
        "preprocessing": dataset.preprocessing.to_dict(),
        "preprocess_reason": dataset.preprocess_reason,
        "inputs": [t.to_dict() for t in runner.inputs],
        "outputs": [t.to_dict() for t in runner.outputs],
        "accuracy": metrics,
        "size": latency.file_size(artifact),
        "latency": latency.measure_latency(runner, test.head(1), runs=latency_runs, max_seconds=10.0),
    }


class _Shapes:
    """Adapts a Runner to the (input_shape, output_shape) pair check_fits reads."""

    def __init__(self, runner):
        self.input_shape = tuple(None if d < 0 else d for d in runner.inputs[0].shape[1:])
        self.output_shape = tuple(None if d < 0 else d for d in runner.outputs[0].shape[1:])


def _reference_outputs(reference: str, x: Any, threads: int, trust_code: bool) -> np.ndarray:
    if Path(reference).suffix.lower() in (".tflite", ".onnx"):
        return runner_outputs(open_model(reference, threads=threads), x)
    from compressor.pipeline.model_io import load_model

    outputs = reference_outputs(load_model(reference, trust_code=trust_code), x)
    if outputs is None:
        raise UserError("a plain SavedModel cannot serve as reference here; pass its float32 .tflite instead")
    return outputs


def format_validation(r: dict) -> str:
    acc, lat, size = r["accuracy"], r["latency"], r["size"]
    lines = [
        f"{r['artifact']}  [{r['backend']}]",
        f"  accuracy     top-1 {acc['top1']:.2%}"
        + (f", top-5 {acc['top5']:.2%}" if "top5" in acc else "")
        + f" on {acc['samples']} samples ({r['data']})",
        f"  preprocess   {r['preprocessing'].get('mode', '?')} ({r['preprocess_reason']})",
        f"  size         {size['bytes'] / 1024:.1f} KB ({size['gzip_bytes'] / 1024:.1f} KB gzip)",
        f"  latency      p50 {lat['median_ms']:.3f} ms, p90 {lat['p90_ms']:.3f} ms, "
        f"init {lat['init_ms']:.1f} ms, {lat['threads']} thread(s)",
    ]
    if "agreement" in acc:
        a = acc["agreement"]
        lines.append(
            f"  vs reference top-1 agreement {a['top1_agreement']:.2%}, "
            f"max abs diff {a['max_abs_diff']:.4g}, mean {a['mean_abs_diff']:.4g}"
        )
        if "float_tolerance" in a:
            failed = a["float_tolerance"]["failed"]
            lines.append(
                "  float check  "
                + (f"outside ({'; '.join(failed)})" if failed else "within")
                + f" the float32 export tolerance ({a['float_tolerance']['rule']}; a quantized artifact is "
                "judged by top-1 agreement only)"
            )
    return "\n".join(lines)
