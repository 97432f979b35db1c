"""The objective of `compressor tune`, built once per worker process (data and model loaded once).

Two modes share the sampler/pruner set-up:
- architecture: train a reference architecture from scratch with the trial's values; each
  epoch's validation accuracy is reported to the pruner, which may stop the trial early;
- recipe: run a recipe (fine-tuning steps + conversion) with the trial's values written at their
  paths (``steps.0.params.learning_rate``) and score the .tflite on the validation split. Each
  fine-tuning epoch's validation accuracy is reported too, the resource being the epoch counted
  across the training steps (step 0 epochs 1..E0, step 1 from E0 + 1...), so the pruner can stop
  the trial in any of its steps.
"""

from __future__ import annotations

import copy
import time
from typing import Any

from compressor.datasets.splits import split_of
from compressor.tuning import trainer
from compressor.tuning.epoch_pruning import EpochReporter, recipe_epochs
from compressor.tuning.hparam_space import grid, sample, space_from_dict
from compressor.tuning.progress import Progress
from compressor.tuning.samplers import brackets, make_pruner, make_sampler, sampler_seed


def make_objective(cfg: Any, worker: int, progress: Progress) -> tuple:
    s = cfg.settings
    space = space_from_dict(s["space"])
    # Recipe mode: the space's `epochs` does not drive training; the recipe's training steps do.
    epochs = space.epochs if s["mode"] == "architecture" else recipe_epochs(s["recipe"], space)
    pruner = make_pruner(s["pruner"], epochs)
    # The trials the study will run: an epoch budget buys about max_epochs / epochs full trials.
    expected = cfg.n_trials if not cfg.max_epochs else min(cfg.n_trials, max(1, cfg.max_epochs // epochs))
    # Different seeds per worker: identical random streams would propose identical trials.
    sampler = make_sampler(
        s["sampler"], sampler_seed(cfg, worker), expected, grid(space), brackets(s["pruner"], epochs)
    )
    from compressor.datasets.source import load_from_settings

    if s["mode"] == "architecture":
        return _architecture(cfg, space, load_from_settings(s, cfg.seed), progress), sampler, pruner
    return _recipe(cfg, space, None, progress), sampler, pruner


def describe(values: dict, searched: Any = None) -> str:
    """'learning_rate=0.003 batch_size=32': the searched values of a trial, short."""

    def fmt(v: Any) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    return " ".join(
        f"{k.rsplit('.', 1)[-1] if k.startswith('steps.') else k}={fmt(v)}"
        for k, v in values.items()
        if searched is None or k in searched
    )


def _architecture(cfg: Any, space: Any, data: Any, progress: Progress):
    import optuna

    s = cfg.settings

    def objective(trial: Any) -> float:
        values = sample(trial, space)
        trial.set_user_attr("values", values)
        t0, curves = time.time(), {"val_accuracy": [], "loss": [], "accuracy": [], "val_loss": []}

        def on_epoch(epoch: int, logs: dict) -> None:
            for key in curves:
                if key in logs:
                    curves[key].append(logs[key])
            acc = logs.get("val_accuracy", 0.0)
            progress.epoch(
                f"trial {trial.number} epoch {epoch + 1}/{space.epochs}  loss {logs.get('loss', 0):.4f}  "
                f"val_accuracy {acc:.4f}  ({logs['seconds']:.1f} s)"
            )
            trial.report(acc, epoch + 1)  # the resource Hyperband allocates is epochs
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}")

        try:
            trainer.fit(s["model"], values, data, space.epochs, cfg.seed, s.get("model_params"), on_epoch)
        except optuna.TrialPruned:
            _record(trial, curves, t0)
            progress.line(
                f"trial {trial.number}: pruned at epoch {len(curves['val_accuracy'])}  "
                f"val_accuracy {curves['val_accuracy'][-1]:.4f}  {describe(values, space.searched())}  "
                f"({time.time() - t0:.1f} s)"
            )
            raise
        _record(trial, curves, t0)
        acc = curves["val_accuracy"][-1]
        progress.line(
            f"trial {trial.number}: val_accuracy {acc:.4f}  {describe(values, space.searched())}  "
            f"({time.time() - t0:.1f} s)"
        )
        return acc

    return objective


def _record(trial: Any, curves: dict, t0: float) -> None:
    trial.set_user_attr("history", {k: [round(v, 6) for v in vals] for k, vals in curves.items() if vals})
    trial.set_user_attr("seconds", round(time.time() - t0, 2))


def _recipe(cfg: Any, space: Any, data: Any, progress: Progress):
    import optuna

    from compressor.pipeline.layout import StudyLayout
    from compressor.pipeline.model_io import load_model
    from compressor.pipeline.validation import reference_outputs
    from compressor.recipes import get_step, validate_recipe
    from compressor.recipes.base import set_epoch_hook, set_progress
    from compressor.recipes.overrides import set_path
    from compressor.tuning.recipe_eval import record_result, run_recipe

    s = cfg.settings
    model = load_model(s["model_path"], trust_code=s.get("trust_code", False))
    if data is None:  # the model decides the layout and (with --preprocess auto) the scaling
        from compressor.datasets.source import load_from_settings

        data = load_from_settings(s, cfg.seed, model=model)
    reference = reference_outputs(model, split_of(data, "val"))  # a batch at a time, loaded or streamed
    set_progress(progress.epoch)

    def objective(trial: Any) -> float:
        values = sample(trial, space)
        trial.set_user_attr("values", values)
        raw = copy.deepcopy(s["recipe"])
        for path, value in values.items():
            set_path(raw, path, value, f"search space: params.{path}")
        recipe = validate_recipe(raw, f"trial {trial.number}")
        t0, reporter = time.time(), EpochReporter(trial)
        set_epoch_hook(reporter)
        try:
            result = run_recipe(model, data, recipe, StudyLayout(cfg.run_dir, "tune").trial(trial.number), reference)
        except optuna.TrialPruned:  # run_recipe removed the trial's partial folder
            train_steps = [
                f"{i}-{spec.type}" for i, spec in enumerate(recipe.steps) if get_step(spec.type).kind == "train"
            ]
            trial.set_user_attr("history", reporter.history(train_steps))
            trial.set_user_attr("seconds", round(time.time() - t0, 2))
            acc = reporter.fits[-1]["curves"]["val_accuracy"][-1]
            progress.line(
                f"trial {trial.number}: pruned at epoch {reporter.epoch}  val_accuracy {acc:.4f}  "
                f"{describe(values, space.searched())}  ({time.time() - t0:.1f} s)"
            )
            raise
        finally:
            set_epoch_hook(None)  # later fits (another mode, the final compress) must not report to this trial
        record_result(trial, result, t0)
        progress.line(
            f"trial {trial.number}: val_accuracy {result['val_accuracy']:.4f}  {describe(values, space.searched())}  "
            f"({time.time() - t0:.1f} s)"
        )
        return result["val_accuracy"]

    return objective
