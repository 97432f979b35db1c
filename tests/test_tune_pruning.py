"""Recipe-mode `compressor tune` prunes trials from each fine-tuning epoch, counted across steps."""

from __future__ import annotations

import json

import optuna
import pytest
import yaml

from compressor.tuning.epoch_pruning import EpochReporter, recipe_epochs
from compressor.tuning.hparam_space import space_from_dict

# Two training steps (1 + 2 epochs), then conversion: cumulative epochs 1 | 2, 3.
RECIPE = {
    "name": "two-steps",
    "steps": [
        {"type": "regularize", "params": {"epochs": 1}},
        {"type": "prune", "params": {"epochs": 2, "sparsity": 0.3, "learning_rate": 1e-4}},
        {"type": "dynamic"},
    ],
    "export": {"formats": ["tflite"]},
}


def _trial(pruner=None):
    study = optuna.create_study(direction="maximize", pruner=pruner or optuna.pruners.NopPruner())
    return study.ask()


def test_reporter_counts_epochs_across_fits():
    trial = _trial()
    reporter = EpochReporter(trial)
    # fit 0: 3 epochs configured, early-stopped after 2; fit 1: 2 epochs; fit 2 reports no val_accuracy
    for epoch, epochs, acc in [(0, 3, 0.5), (1, 3, 0.6), (0, 2, 0.7), (1, 2, 0.8)]:
        reporter(epoch, epochs, {"loss": 1.0 - acc, "val_accuracy": acc})
    reporter(0, 1, {"loss": 0.1})
    reported = trial.study.get_trials(deepcopy=False)[0].intermediate_values
    assert reported == {1: 0.5, 2: 0.6, 4: 0.7, 5: 0.8}  # fit 1 starts after fit 0's 3 configured epochs
    assert reporter.epoch == 6
    assert reporter.history(["0-prune", "1-qat", "2-distill"]) == {
        "0-prune": {"loss": [0.5, 0.4], "val_accuracy": [0.5, 0.6]},
        "1-qat": {"loss": [pytest.approx(0.3), pytest.approx(0.2)], "val_accuracy": [0.7, 0.8]},
        "2-distill": {"loss": [0.1]},
    }

    pruning = EpochReporter(_trial(optuna.pruners.ThresholdPruner(lower=0.3)))
    pruning(0, 3, {"val_accuracy": 0.5})
    with pytest.raises(optuna.TrialPruned, match="after epoch 4"):
        pruning(0, 2, {"val_accuracy": 0.1})


@pytest.mark.parametrize(
    "epochs, total",
    [
        (None, 3),  # not searched: the recipe's 1 + 2
        (5, 6),  # fixed in the space
        ({"type": "int", "low": 1, "high": 4}, 5),  # searched: its largest value
        ({"type": "categorical", "choices": [6, 2]}, 7),
    ],
)
def test_recipe_epochs_bound_every_trial(epochs, total):
    params = {"steps.0.params.learning_rate": {"type": "float", "low": 1e-5, "high": 1e-3, "scale": "log"}}
    if epochs is not None:
        params["steps.1.params.epochs"] = epochs
    space = space_from_dict({"epochs": 10, "params": params})  # the space's own epochs is not the budget
    assert recipe_epochs(RECIPE, space) == total
    assert recipe_epochs({"steps": [{"type": "prune", "params": {}}, {"type": "int8"}]}, space) == 8  # prune default


def test_objective_pruner_gets_the_recipe_budget(tiny_model_path, tmp_path):
    from compressor.tuning.progress import Progress
    from compressor.tuning.tune import _settings
    from compressor.tuning.tune_objective import make_objective
    from compressor.tuning.workers import StudyConfig

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    settings, _ = _settings(None, tiny_model_path, str(recipe), None, None, None, None, False)
    settings.update(sampler="random", pruner="hyperband")
    cfg = StudyConfig(
        kind="tune_objective", run_dir=str(tmp_path), storage="", study="s", n_trials=1, settings=settings
    )
    _, _, pruner = make_objective(cfg, 0, Progress(quiet=True))
    assert isinstance(pruner, optuna.pruners.HyperbandPruner) and pruner._max_resource == 3


def test_hook_exception_leaves_no_trial_folder(tiny_model_path, tmp_path):
    from compressor.datasets import load_dataset
    from compressor.pipeline.model_io import load_model
    from compressor.recipes import validate_recipe
    from compressor.recipes.base import set_epoch_hook
    from compressor.tuning.recipe_eval import run_recipe

    class Stop(Exception):
        """Raised by the hook mid-chain, as optuna.TrialPruned would be."""

    def stop_in_second_step(epoch, epochs, logs):
        seen.append(epochs)
        if epochs == 2:
            raise Stop

    seen: list[int] = []
    data = load_dataset("digits", seed=0)
    set_epoch_hook(stop_in_second_step)
    try:
        with pytest.raises(Stop):
            run_recipe(
                load_model(tiny_model_path), data, validate_recipe(RECIPE), tmp_path / "0000", None, latency_runs=1
            )
    finally:
        set_epoch_hook(None)
    assert seen == [1, 2]  # the first step's epoch, then the prune step's first: the chain stopped
    assert list(tmp_path.iterdir()) == []  # neither the trial folder nor its .partial twin


def test_recipe_tune_prunes_losing_trials(tiny_model_path, tmp_path):
    from compressor.tuning.tune import tune

    recipe, space = tmp_path / "recipe.yaml", tmp_path / "space.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    # lr 0.5 wrecks the model in the first epoch; the median pruner (3 start-up trials) must stop it.
    space.write_text(
        yaml.safe_dump({"params": {"steps.0.params.learning_rate": {"type": "categorical", "choices": [1e-4, 0.5]}}})
    )
    out = tmp_path / "run"
    # Seed 2: the random sampler proposes good, good, good, bad, good.
    result = tune(
        out,
        model_path=tiny_model_path,
        recipe=str(recipe),
        space=str(space),
        n_trials=5,
        sampler="random",
        pruner="median",
        seed=2,
        final=False,
    )
    study = optuna.load_study(study_name="tune", storage=f"sqlite:///{out / 'study.db'}")
    states = {t.number: t.state.name for t in study.trials}
    lrs = {t.number: t.params["steps.0.params.learning_rate"] for t in study.trials}
    assert [lrs[n] for n in sorted(lrs)] == [1e-4, 1e-4, 1e-4, 0.5, 1e-4]
    assert states == {0: "COMPLETE", 1: "COMPLETE", 2: "COMPLETE", 3: "PRUNED", 4: "COMPLETE"}
    assert result["counts"]["PRUNED"] == 1
    for t in study.trials:
        if t.state.name == "COMPLETE":
            assert sorted(t.intermediate_values) == [1, 2, 3]  # step 1's epochs continue at 2, not 1
            assert t.value == t.user_attrs["result"]["val_accuracy"] > 0.5  # the objective is the .tflite's
            assert t.intermediate_values[3] == t.user_attrs["history"]["1-prune"]["val_accuracy"][-1]
            assert (out / "trials" / f"{t.number:04d}" / "model.tflite").is_file()
    pruned = study.trials[3]
    assert sorted(pruned.intermediate_values) == [1] and pruned.intermediate_values[1] < 0.5
    history = pruned.user_attrs["history"]  # the epochs it ran, shaped like a finished trial's
    assert list(history) == ["0-regularize"] and len(history["0-regularize"]["loss"]) == 1
    assert history["0-regularize"]["val_accuracy"] == [round(pruned.intermediate_values[1], 6)]
    assert pruned.user_attrs["seconds"] > 0
    assert sorted(p.name for p in (out / "trials").iterdir()) == ["0000", "0001", "0002", "0004"]
    row = next(r for r in json.loads((out / "tune.json").read_text())["trials"] if r["number"] == 3)
    assert row["state"] == "PRUNED" and row["epochs_run"] == 1
