"""Run one recipe as a trial: chain in its own folder, then measure the .tflite on the VALIDATION split.

Trials select; they never look at the test split (choosing on test would make the reported test
accuracy optimistic). The chosen configuration is evaluated on test once, by `compressor compress`.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from compressor.datasets.splits import split_of
from compressor.runtime.atomic import output_dir, write_json
from compressor.tuning.constraint import paired_counts

LATENCY_RUNS = 50  # per trial: enough for a stable median of a small model, cheap enough for 30+ trials


def fresh_model(model: Any) -> Any:
    """A copy of the input model's weights for one trial: steps may train it in place."""
    if model.keras is None:
        return model
    from compressor.keras_shim import keras

    try:
        clone = keras.models.clone_model(model.keras)
        clone.set_weights(model.keras.get_weights())
    except Exception:  # custom layers that do not clone: reload from disk instead
        from compressor.pipeline.model_io import load_model

        return load_model(model.path, trust_code=True)
    return dataclasses.replace(model, keras=clone)


def run_recipe(
    model: Any, data: Any, recipe: Any, trial_dir: Path, reference: np.ndarray | None, latency_runs: int = LATENCY_RUNS
) -> dict:
    """Chain + conversion + measurement; everything is written under ``trial_dir`` atomically."""
    from compressor.pipeline import validation
    from compressor.pipeline.chain import run_chain
    from compressor.pipeline.layout import TrialLayout

    trial_dir = Path(trial_dir)
    with output_dir(trial_dir, overwrite=True) as tmp:
        trial = TrialLayout(tmp)
        trial.recipe.write_text(yaml.safe_dump(recipe.model_dump(), sort_keys=False))
        tflite, metas = run_chain(fresh_model(model), data, recipe, trial.steps)
        final = trial.artifact
        final.write_bytes(Path(tflite).read_bytes())
        val = split_of(data, "val")  # loaded or streamed: measured a batch at a time
        measured = validation.measure(final, recipe.name, "tflite", val, None, reference, 1, latency_runs)
        m = measured.metrics
        result = {
            "val_accuracy": float(m["accuracy"]["top1"]),
            "val_samples": int(len(data.y_val)),
            "val_agreement": m["accuracy"].get("agreement", {}).get("top1_agreement"),
            # paired with the reference on the same samples: what the search's constraint bound needs
            **(
                dict(zip(("val_losses", "val_gains"), paired_counts(measured.outputs, reference, data.y_val)))
                if reference is not None
                else {}
            ),
            "size_bytes": int(m["size"]["bytes"]),
            "gzip_bytes": int(m["size"]["gzip_bytes"]),
            "latency_ms": float(m["latency"]["median_ms"]),
            "latency_p90_ms": float(m["latency"]["p90_ms"]),
            "macs": int(m["macs"]),
            "steps": [
                {k: v for k, v in meta.items() if k in ("step", "params", "seconds", "history", "info")}
                for meta in metas
            ],
        }
        write_json(trial.result, result)
    return result


def record_result(trial: Any, result: dict, started: float) -> None:
    """Store a recipe trial's figures, its steps' training curves and its duration on the Optuna trial."""
    trial.set_user_attr("result", {k: v for k, v in result.items() if k != "steps"})
    trial.set_user_attr(
        "history", {f"{i}-{m['step']}": m["history"] for i, m in enumerate(result["steps"]) if m.get("history")}
    )
    trial.set_user_attr("seconds", round(time.time() - started, 2))
