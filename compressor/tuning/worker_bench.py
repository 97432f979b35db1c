"""Wall time of a fixed number of tuning trials with N workers, for `make bench` (workers 2 vs 1).

Each call is a fresh study in a temporary folder: random sampler and no pruner, so every trial
does the same work whatever the worker count, and the ratio measures the parallelism alone.
Defaults (12 trials x 4 epochs, ~1 min) are sized so the work outweighs each worker's start-up:
on this 2-core machine, shared with other jobs (load ~2.3), 8 x 2 gave 0.84-0.99x and 12 x 4
gave 1.07-1.32x: the second worker only helps when a core is free.
The time includes starting the workers (each imports TensorFlow once, in its own process, for
1 worker too, so both sides pay the same start-up): that is what a user waits for.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

BENCH_SPACE = {
    "description": "bench: digits_cnn, fixed work per trial",
    "epochs": 2,
    "params": {
        "learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2, "scale": "log"},
        # Batch size and architecture fixed: they change the work per trial, the learning rate does not.
        "batch_size": 32,
        "model.filters": 8,
        "model.dense_units": 32,
    },
}


def time_trials(
    workers: int, n_trials: int = 12, epochs: int = 4, seed: int = 0, out: str | Path | None = None
) -> dict:
    """Run ``n_trials`` tuning trials with ``workers`` processes; returns seconds and trial counts."""
    import yaml

    from compressor.tuning.tune import tune

    with tempfile.TemporaryDirectory(prefix="compressor-bench-") as tmp:
        space = Path(tmp) / "space.yaml"
        space.write_text(yaml.safe_dump({**BENCH_SPACE, "epochs": epochs}))
        run = Path(out) if out else Path(tmp) / "run"
        t0 = time.perf_counter()
        result = tune(
            run,
            model="digits_cnn",
            space=str(space),
            n_trials=n_trials,
            sampler="random",
            pruner="none",
            workers=workers,
            seed=seed,
            final=False,
            overwrite=True,
            spawn_workers=True,
        )
        seconds = time.perf_counter() - t0
    return {
        "workers": workers,
        "trials": n_trials,
        "completed": result["counts"]["COMPLETE"],
        "seconds": round(seconds, 2),
        "study_seconds": result["seconds"],
    }


def speedup(n_trials: int = 12, epochs: int = 4) -> dict:
    """Both runs and their ratio: seconds(1 worker) / seconds(2 workers); > 1 means 2 workers are faster."""
    one = time_trials(1, n_trials, epochs)
    two = time_trials(2, n_trials, epochs)
    return {"workers_1": one, "workers_2": two, "speedup": round(one["seconds"] / two["seconds"], 2)}
