"""Epoch time with 1 vs 2 replicas (MirroredStrategy): the workload of benchmarks/mixed_precision.py
(cifar_resnet depth 8, digits at 32x32x3, global batch 32, float32), trained through the shared
fine-tuning fit inside the strategy that `--distribute mirrored --replicas N` sets up.

Each replica count runs in its own process: logical CPU devices exist only if they are configured
before TensorFlow initialises. Without a GPU, the replicas are logical devices of one CPU: they share
its cores, which one replica's intra-op threads already use, so the figure shows what splitting a
2-core CPU costs or gives, not what a second device adds.

    python -m benchmarks.job benchmarks.replicas_bench:epoch_times '{"work": "/tmp/rep", "replicas": 2}'
"""

from __future__ import annotations

from pathlib import Path


def epoch_times(work: str, replicas: int) -> dict:
    from compressor.recipes import distribute

    from .mixed_precision import digits_32x32, median_epoch

    distribute.setup("none" if replicas == 1 else "mirrored", replicas if replicas > 1 else None)
    seconds = median_epoch("float32", digits_32x32(), Path(work) / f"replicas-{replicas}")
    return {"replicas_in_sync": distribute.replicas(), "epoch_s": round(seconds, 3)}
