"""Accuracy of a loaded model on labelled data, and its agreement with reference (float) outputs."""

from __future__ import annotations

import numpy as np

from .errors import UserError
from .interpreters import Runner
from .quantization import dequantize_output, quantize_input


def predict(runner: Runner, x_float: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Run float data through ``runner``; return float32 outputs (dequantized), one row per sample."""
    x = np.asarray(x_float, dtype=np.float32)
    if len(x) == 0:
        raise UserError("no samples to evaluate")
    if not np.isfinite(x).all():
        raise UserError(
            f"data contains {np.count_nonzero(~np.isfinite(x))} NaN or infinite values; "
            "clean or impute them before evaluating"
        )
    if batch_size < 1:
        raise UserError(f"batch size must be >= 1, got {batch_size}")
    in_info, out_info = runner.inputs[0], runner.outputs[0]
    outputs = [
        dequantize_output(runner.run(quantize_input(x[i : i + batch_size], in_info)), out_info)
        for i in range(0, len(x), batch_size)
    ]
    y = np.concatenate(outputs)
    return y.reshape(len(x), -1)  # e.g. (N, 1, 1, C) heads -> (N, C)


def evaluate(
    runner: Runner,
    x_float: np.ndarray,
    y: np.ndarray,
    batch_size: int = 256,
    reference: np.ndarray | None = None,
    top_k: int = 5,
) -> dict:
    """Predict ``x_float`` and score it against labels ``y``; see ``classification_metrics``."""
    if len(y) != len(x_float):
        raise UserError(f"{len(y)} labels for {len(x_float)} samples; they must match")
    return classification_metrics(predict(runner, x_float, batch_size), y, reference, top_k)


def classification_metrics(
    outputs: np.ndarray, y: np.ndarray, reference: np.ndarray | None = None, top_k: int = 5
) -> dict:
    """Top-1, top-k (when there are at least k classes) and the confusion matrix (rows = true class).

    ``y`` holds class indices (N,) or one-hot rows (N, C). With ``reference`` outputs (N x C, e.g.
    from the float model) it adds how often the top-1 classes agree and how far the values drift.
    """
    outputs = np.asarray(outputs, dtype=np.float32)
    labels = _class_indices(y, outputs)
    n, classes = outputs.shape
    top1 = outputs.argmax(axis=1)
    result: dict = {"samples": n, "top1": float(np.mean(top1 == labels))}
    if top_k > 1 and classes >= top_k:
        best = np.argpartition(-outputs, top_k - 1, axis=1)[:, :top_k]
        result[f"top{top_k}"] = float(np.mean((best == labels[:, None]).any(axis=1)))
    cells = np.bincount(labels * classes + top1, minlength=classes * classes)
    result["confusion_matrix"] = cells.reshape(classes, classes).tolist()
    if reference is not None:
        result["agreement"] = agreement(outputs, reference)
    return result


def agreement(outputs: np.ndarray, reference: np.ndarray) -> dict:
    """How closely ``outputs`` follow ``reference``: same top-1 class, and absolute differences."""
    reference = np.asarray(reference, dtype=np.float32)
    if reference.shape != outputs.shape:
        raise UserError(f"reference outputs have shape {reference.shape}, expected {outputs.shape}")
    diff = np.abs(outputs - reference)
    return {
        "top1_agreement": float(np.mean(outputs.argmax(1) == reference.argmax(1))),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
    }


def _class_indices(y: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    y = np.asarray(y)
    if outputs.ndim != 2 or len(y) != len(outputs):
        raise UserError(f"{len(y)} labels for outputs of shape {outputs.shape}; need one label per row")
    if y.ndim == 2:
        y = y.argmax(axis=1)
    if np.issubdtype(y.dtype, np.floating) and np.array_equal(y, np.round(y)):
        y = y.astype(np.int64)  # labels read from CSV/npz often arrive as 0.0, 1.0, ...
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise UserError(f"labels must be class indices (N,) or one-hot (N, C); got {y.dtype} {y.shape}")
    classes = outputs.shape[1]
    if len(y) and (y.min() < 0 or y.max() >= classes):
        raise UserError(
            f"labels must be in [0, {classes}) for a model with {classes} outputs; found {y.min()}..{y.max()}"
        )
    return y.astype(np.int64)
