"""The winner of a tuning study, retrained on train+val and evaluated on test exactly once.

Selecting on validation and then refitting on train+val uses every labelled sample for the
shipped model, while the test split stays untouched by the search: its accuracy is an honest
estimate. The SavedModel and its card have the layout of `compressor train`, so
`compressor compress OUT/best/model` picks up the data set and preprocessing by itself.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from compressor.tuning import trainer


def refit(values: dict, space: Any, settings: dict, out: Path, seed: int, progress: Any) -> dict:
    from compressor.datasets.source import load_from_settings
    from compressor.pipeline.model_io import write_trained_model
    from compressor.pipeline.train import evaluated_on_test

    data = load_from_settings(settings, seed)
    merged = trainer.merged_train_val(data)
    progress.line(
        f"refitting the best configuration on train+val ({len(merged.y_train)} samples, {space.epochs} epochs)"
    )
    t0 = time.time()

    def on_epoch(epoch: int, logs: dict) -> None:
        progress.epoch(
            f"refit epoch {epoch + 1}/{space.epochs}  loss {logs.get('loss', 0):.4f}  "
            f"accuracy {logs.get('accuracy', 0):.4f}"
        )

    model, curves = trainer.fit(
        settings["model"], values, merged, space.epochs, seed, settings.get("model_params"), on_epoch, validate=False
    )
    seconds = time.time() - t0
    test_accuracy = evaluated_on_test(model, data)
    arch = {**settings.get("model_params", {}), **{k[6:]: v for k, v in values.items() if k.startswith("model.")}}
    training = {k: v for k, v in values.items() if not k.startswith("model.")}
    card = write_trained_model(
        out,
        model,
        name=settings["model"],
        params=arch,
        data=settings["data"],
        dataset=data,
        training={
            **training,
            "epochs": space.epochs,
            "seed": seed,
            "seconds": round(seconds, 2),
            "splits": "train+val",
            "selected_by": "compressor tune (validation accuracy)",
        },
        test_accuracy=test_accuracy,
        history=curves,
        overwrite=True,
    )
    progress.line(f"best configuration: test accuracy {test_accuracy:.2%} (evaluated once); saved {out / 'model'}")
    return {
        "model_path": str(out / "model"),
        "test_accuracy": float(test_accuracy),
        "parameters": card["parameters"],
        "history": curves,
        "values": values,
    }
