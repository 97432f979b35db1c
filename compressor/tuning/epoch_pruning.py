"""Pruning recipe-mode tuning trials: the epoch budget of a recipe and the per-epoch reporter.

A recipe's training steps run one after another; the pruner's resource is the epoch counted
across them (step 0 epochs 1..E0, step 1 from E0 + 1, ...), so Hyperband and the median pruner
compare trials at the same point of the same recipe and may stop one in any of its steps.
"""

from __future__ import annotations

from typing import Any

from compressor.tuning.hparam_space import Param


def recipe_epochs(recipe: dict, space: Any) -> int:
    """The epochs of a recipe's training steps end to end, each searched ``steps.I.params.epochs``
    at its largest value: Hyperband's max_resource must bound every trial."""
    from compressor.recipes import get_step

    total = 0
    for i, spec in enumerate(recipe["steps"]):
        step = get_step(spec["type"])
        if step.kind != "train":
            continue
        configured = (spec.get("params") or {}).get("epochs", step.params.model_fields["epochs"].default)
        epochs = space.params.get(f"steps.{i}.params.epochs", configured)
        if isinstance(epochs, Param):
            epochs = max(epochs.choices) if epochs.type == "categorical" else epochs.high
        total += int(epochs)
    return total


class EpochReporter:
    """The epoch hook of one recipe trial: report val_accuracy at the cumulative epoch, maybe prune.

    Each fit starts again at epoch 0; the next fit continues after the previous one's configured
    epochs (not the epochs it ran: an early-stopped step keeps its successors aligned with other trials).
    """

    def __init__(self, trial: Any):
        self.trial = trial
        self.offset = 0  # cumulative epochs of the fits before the current one
        self.epoch = 0  # the last epoch seen, cumulative
        self.fits: list[dict] = []  # per fit: its configured epochs and curves

    def __call__(self, epoch: int, epochs: int, logs: dict) -> None:
        import optuna

        if epoch == 0:
            if self.fits:
                self.offset += self.fits[-1]["epochs"]
            self.fits.append({"epochs": epochs, "curves": {}})
        for key, value in logs.items():
            self.fits[-1]["curves"].setdefault(key, []).append(value)
        self.epoch = self.offset + epoch + 1
        if "val_accuracy" not in logs:  # a step with other metrics: nothing comparable to report
            return
        self.trial.report(logs["val_accuracy"], self.epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {self.epoch}")

    def history(self, train_steps: list[str]) -> dict:
        """Same shape as a finished trial's: {'0-prune': {'loss': [...], ...}, ...}."""
        return {
            name: {k: [round(v, 6) for v in vals] for k, vals in fit["curves"].items()}
            for name, fit in zip(train_steps, self.fits)
        }
