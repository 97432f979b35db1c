"""Per-epoch reporting for every Keras fit: one callback that times the epoch and passes its figures on.

Used by the recipe steps' fine-tuning (finetune.callbacks), `compressor train` and the tuning
trainer. Lines are plain, one per epoch (no carriage-return bars: logs and CI stay readable).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

OnEpoch = Callable[[int, dict], None]


def epoch_callback(on_epoch: OnEpoch) -> Any:
    """A Keras callback calling ``on_epoch(epoch, logs)`` at each epoch end: ``epoch`` 0-based,
    ``logs`` Keras' figures as floats plus ``seconds``, the epoch's wall time. What it raises
    ends the fit (tuning stops unpromising trials this way)."""
    from compressor.keras_shim import keras

    class EpochLog(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = time.time()

        def on_epoch_end(self, epoch, logs=None):
            figures = {k: float(v) for k, v in (logs or {}).items()}
            figures["seconds"] = time.time() - self._t0
            on_epoch(epoch, figures)

    return EpochLog()


def epoch_line(epoch: int, epochs: int, logs: dict, skip: Iterable[str] = (), indent: str = "") -> str:
    """``epoch 3/10  loss 0.1234  accuracy 0.9561  (1.2 s)``: Keras' figures in their order."""
    figures = "  ".join(f"{k} {v:.4f}" for k, v in logs.items() if k != "seconds" and k not in skip)
    return f"{indent}epoch {epoch + 1}/{epochs}  {figures}  ({logs['seconds']:.1f} s)"


def without_seconds(logs: dict) -> dict:
    """Keras' own figures of an epoch (what curves and the recipe epoch hook record)."""
    return {k: v for k, v in logs.items() if k != "seconds"}
