"""Peak memory of `compress` with a QAT recipe on 2,000 and on 20,000 generated images.

    python -m benchmarks.job benchmarks.memory_bench:peak_rss '{"work": "/tmp/mem"}'

Image folders of 10 classes, each image 24..48 px a side (width and height drawn apart), PNG and
JPEG mixed, a class-coloured pattern plus noise, are fitted to a cifar_resnet (depth 8, 32x32x3)
trained 2 epochs on 1,000 other such images of 32x32 (`compressor train`). Each `compress` (qat-int8, 1 epoch,
100 calibration samples, TFLite only) runs in a process of its own (benchmarks/measure.py), whose
peak RSS is its own. The data is read as compress reads it by default (datasets/source.py): the
2,000 images (23 MiB of float32 inputs) are loaded, the 20,000 (234 MiB) streamed. The 20,000 run
with streaming turned off is measured as well, to show what streaming saves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from benchmarks.measure import ratio, run_job

SIZES = (2_000, 20_000)
CLASSES = 10
TARGET_RATIO = 1.3
RECIPE = "qat-int8"
OVERRIDES = [
    "steps.0.params.epochs=1",
    "steps.0.params.max_start_gap=0.5",  # a memory figure, not an accuracy one: a briefly trained model
    "steps.1.params.calibration_samples=100",
    "export.formats=[tflite]",
]
ROOT = Path(__file__).resolve().parents[1]


def write_images(folder: Path, count: int, seed: int = 0, sides: tuple[int, int] = (24, 48)) -> Path:
    """``count`` images in ``folder``/<class>/, sides drawn in ``sides`` and formats mixed; kept when
    already complete."""
    from PIL import Image

    done = folder / ".complete"
    if done.is_file():
        return folder
    rng = np.random.default_rng(seed)
    colours = rng.integers(40, 216, size=(CLASSES, 3))
    for i in range(count):
        label = i % CLASSES
        height, width = (int(v) for v in rng.integers(sides[0], sides[1] + 1, size=2))
        stripes = (np.arange(width) // (2 + label % 4) % 2)[None, :, None] * 40
        noise = rng.integers(-30, 31, size=(height, width, 3))
        pixels = np.clip(colours[label] + stripes + noise, 0, 255).astype(np.uint8)
        path = folder / f"class{label}" / f"{i:06d}.{'png' if i % 2 else 'jpg'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
    done.write_text(str(count))
    return folder


def _base_model(work: Path, data: Path) -> str:
    base = work / "base"
    if not (base / "model").exists():
        cmd = [sys.executable, "-m", "compressor", "train", "--model", "cifar_resnet", "--param", "depth=8"]
        cmd += ["--data", str(data), "--epochs", "2", "--out", str(base), "--overwrite", "--quiet"]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT, env=env)
    return str(base / "model")


def compress_folder(model: str, data: str, out: str, stream: bool | None = None) -> dict:
    """One compress run (the measured child): its accuracy figures and whether the data streamed."""
    from compressor.pipeline.compress import compress

    report = compress(
        model, [RECIPE], out, data=data, overrides=OVERRIDES, overwrite=True, latency_runs=5, stream=stream
    )
    run = json.loads((Path(out) / "run.json").read_text())
    return {
        "streamed": bool(run["data"].get("streamed")),
        "splits": run["data"]["splits"],
        "accuracy": {r["artifact"]: round(r["accuracy"], 4) for r in report["artifacts"]},
        "seconds": report["seconds"],
    }


def peak_rss(work: str, contrast: bool = True) -> dict:
    """Peak RSS (MiB) of compress on 2,000 and 20,000 images, their ratio (target < 1.3); with
    ``contrast``, also the 20,000 run loaded into memory instead of streamed."""
    root = Path(work)
    folders = {n: write_images(root / f"images-{n}", n) for n in SIZES}
    model = _base_model(root, write_images(root / "train-32px", 1_000, seed=1, sides=(32, 32)))
    runs = {}
    for n in SIZES:
        runs[f"images_{n}"] = _measured(model, folders[n], root / f"run-{n}", None)
    if contrast:
        runs[f"images_{SIZES[-1]}_loaded"] = _measured(model, folders[SIZES[-1]], root / "run-loaded", False)
    small, large = (runs[f"images_{n}"]["peak_rss_mb"] for n in SIZES)
    return {**runs, "ratio": ratio(large, small), "target_ratio": TARGET_RATIO}


def _measured(model: str, data: Path, out: Path, stream: bool | None) -> dict:
    job = run_job("benchmarks.memory_bench:compress_folder", model=model, data=str(data), out=str(out), stream=stream)
    return {"peak_rss_mb": round(job["peak_rss_mb"], 1), "wall_s": round(job["wall_s"], 1), **job["result"]}
