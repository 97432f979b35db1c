"""Faster, not only smaller (issue #18): channel-prune-int8 at half the MACs against plain int8 on a
reference model with real accuracy, latency side by side in one compress run.

The model is the reference ``cifar_resnet`` (depth 8) trained on the embedded digits upsampled to
32x32x3 (each 8x8 pixel a 4x4 block, grey copied to 3 channels; the digits' own split), so its
accuracy is real and its convolutions have a CPU cost worth removing. Both recipes run in one
``compress`` (same machine, same moment), latency is LiteRT's median at 1 thread over 300 runs,
MACs are counted from each exported file.

    python -m benchmarks.job benchmarks.faster_bench:channel_pruning '{"work": "/tmp/faster"}'
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

EPOCHS = 15
WIDTH = 2  # 4x the MACs of width 1: compute, not per-op overhead, sets the latency


def channel_pruning(work: str, epochs: int = EPOCHS) -> dict:
    from compressor.pipeline.compress import compress
    from compressor.pipeline.train import train

    from .mixed_precision import digits_32x32

    work_dir = Path(work)
    work_dir.mkdir(parents=True, exist_ok=True)
    data = split_npz(digits_32x32(), work_dir / "digits32.npz")
    card = train(
        "cifar_resnet",
        work_dir / "base",
        data=str(data),
        epochs=epochs,
        model_params={"depth": 8, "width": WIDTH},
        overwrite=True,
        preprocess="none",
    )
    report = compress(
        card["model_path"],
        ["int8", "channel-prune-int8"],
        work_dir / "run",
        data=str(data),
        overwrite=True,
        latency_runs=300,
        preprocess="none",
    )
    rows = {r["artifact"]: r for r in report["artifacts"] if r["format"] == "tflite"}
    plain, pruned = rows["int8"], rows["channel-prune-int8"]
    info = next(m for m in report["steps"]["channel-prune-int8"] if m["step"] == "channel_prune").get("info", {})
    return {
        "model": f"cifar_resnet depth 8 width {WIDTH} on the digits at 32x32x3",
        "train_epochs": epochs,
        "float_test_accuracy": round(report["reference_accuracy"], 4),
        "rows": {name: _row(r) for name, r in rows.items()},
        "latency_ratio_pruned_to_int8": round(pruned["latency"]["median_ms"] / plain["latency"]["median_ms"], 3),
        "macs_ratio_pruned_to_int8": round(pruned["macs"] / plain["macs"], 3),
        "accuracy_drop_points_vs_float": round((report["reference_accuracy"] - pruned["accuracy"]) * 100, 2),
        "accuracy_drop_points_vs_int8": round((plain["accuracy"] - pruned["accuracy"]) * 100, 2),
        "channel_prune": {k: info[k] for k in ("importance", "macs_before", "macs_after") if k in info},
    }


def _row(r: dict) -> dict:
    return {
        "accuracy": round(r["accuracy"], 4),
        "median_ms": r["latency"]["median_ms"],
        "macs": r["macs"],
        "size_kb": round(r["size_bytes"] / 1024, 1),
        "status": "ok"
        if not (r["gates_failed"] or r["export_mismatches"])
        else "; ".join(r["gates_failed"] + r["export_mismatches"]),
    }


def split_npz(data, path: Path) -> Path:
    """The split as an .npz: train+val as train (compress splits val off again with the same seed)."""
    x_train = np.concatenate([data.x_train, data.x_val]).astype(np.float32)
    y_train = np.concatenate([data.y_train, data.y_val])
    np.savez(path, x_train=x_train, y_train=y_train, x_test=data.x_test, y_test=data.y_test)
    return path
