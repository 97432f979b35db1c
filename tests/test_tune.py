"""compressor tune: search-space schema, sampling, coarse-to-fine, real studies on SQLite, 2 workers."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from compressor.runtime.errors import UserError
from compressor.tuning.hparam_space import grid, sample, space_from_dict
from compressor.tuning.narrow_space import narrow

TINY_SPACE = {
    "epochs": 2,
    "params": {
        "learning_rate": {"type": "float", "low": 1e-3, "high": 3e-2, "scale": "log"},
        "batch_size": {"type": "categorical", "choices": [32, 64]},
        "momentum": {"type": "float", "low": 0.8, "high": 0.99, "scale": "one_minus_log"},
        "model.filters": 4,
        "model.dense_units": 16,
        "l2": 1e-5,
    },
}


def _space_file(tmp_path, space=TINY_SPACE, **changes):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({**space, **changes}))
    return str(path)


def test_schema_errors_name_the_field():
    with pytest.raises(UserError, match=r"params\.lr\.scale: .*'linear', 'log' or 'one_minus_log'"):
        space_from_dict({"params": {"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "scale": "logg"}}})
    with pytest.raises(UserError, match=r"params\.lr\.hgih: unknown key 'hgih'; did you mean 'high'\?"):
        space_from_dict({"params": {"lr": {"type": "float", "low": 1e-4, "hgih": 1e-2}}})
    with pytest.raises(UserError, match="one_minus_log needs 0 <= low < high < 1"):
        space_from_dict({"params": {"beta": {"type": "float", "low": 0.9, "high": 1.5, "scale": "one_minus_log"}}})


def test_space_file_errors_name_the_file(tmp_path):
    """Both space kinds read files through tuning.yaml_spec: the same one-line messages."""
    from compressor.tuning.hparam_space import load_space
    from compressor.tuning.recipe_space import load_search_space

    broken, typo = tmp_path / "broken.yaml", tmp_path / "typo.yaml"
    broken.write_text("params: [1, 2\n")
    typo.write_text("params:\n  lr: {type: float, low: 1.0e-4, hgih: 1.0e-2}\n")
    for load in (load_space, load_search_space):
        with pytest.raises(UserError, match=r"broken\.yaml is not valid YAML: while parsing a flow sequence$"):
            load(str(broken))
    with pytest.raises(UserError, match=r"typo\.yaml: params\.lr\.hgih: unknown key 'hgih'; did you mean 'high'\?"):
        load_space(str(typo))
    for load in (load_space, load_search_space):
        with pytest.raises(
            UserError,
            match=r"^search space nope is neither a YAML file nor a built-in space "
            r"\(recipes, train\)$",
        ):
            load("nope")
    assert load_space("train").searched() and load_search_space(None).convert


def test_one_minus_log_sampling_and_grid(seed):
    import optuna

    space = space_from_dict(TINY_SPACE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for _ in range(30):
        trial = study.ask()
        values = sample(trial, space)
        assert 0.8 <= values["momentum"] <= 0.99
        assert math.isclose(trial.params["1-momentum"], 1 - values["momentum"])  # stored as 1 - beta
        assert 1e-3 <= values["learning_rate"] <= 3e-2 and values["batch_size"] in (32, 64)
        assert values["model.filters"] == 4  # fixed values pass through unsearched
        study.tell(trial, values["learning_rate"])
    g = grid(space)
    assert g["batch_size"] == [32, 64]
    assert g["learning_rate"][0] == pytest.approx(1e-3) and g["learning_rate"][-1] == pytest.approx(3e-2)
    assert g["learning_rate"][1] == pytest.approx(math.sqrt(1e-3 * 3e-2))  # geometric middle
    assert g["1-momentum"][0] == pytest.approx(0.01) and g["1-momentum"][-1] == pytest.approx(0.2)
    from compressor.tuning.samplers import make_sampler

    grid_study = optuna.create_study(sampler=make_sampler("grid", seed, 100, g))
    grid_study.optimize(lambda t: sample(t, space)["learning_rate"], n_trials=100)  # stops when the grid is done
    visited = {tuple(sorted(t.params.items())) for t in grid_study.trials}
    assert len(grid_study.trials) == len(visited) == 2 * 3 * 3


def test_narrow_keeps_best_and_stays_inside():
    space = space_from_dict(TINY_SPACE)
    rows = [
        {"state": "COMPLETE", "value": v, "values": {"learning_rate": lr, "batch_size": bs, "momentum": m}}
        for v, lr, bs, m in [
            (0.95, 4e-3, 32, 0.9),
            (0.94, 6e-3, 32, 0.95),
            (0.5, 2.9e-2, 64, 0.81),
            (0.4, 1.1e-3, 64, 0.85),
        ]
    ]
    fine = narrow(space, rows, top_k=2).params
    assert 1e-3 <= fine["learning_rate"].low < 4e-3 and 6e-3 < fine["learning_rate"].high < 3e-2
    assert fine["batch_size"].choices == [32]
    assert 0.8 <= fine["momentum"].low < 0.9 and 0.95 < fine["momentum"].high <= 0.99


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    from compressor.tuning.tune import tune

    tmp = tmp_path_factory.mktemp("tune")
    out = tmp / "run"
    result = tune(
        out, model="digits_cnn", space=_space_file(tmp), n_trials=4, sampler="tpe", pruner="hyperband", seed=0
    )
    return out, result


def test_tune_records_trials_refits_and_reports(tuned):
    import optuna

    out, result = tuned
    study = optuna.load_study(study_name="tune", storage=f"sqlite:///{out / 'study.db'}")
    assert len(study.trials) == 4
    assert sum(result["counts"].values()) == 4 and result["counts"]["COMPLETE"] >= 1
    done = [r for r in result["trials"] if r["state"] == "COMPLETE"]
    assert result["best"]["value"] == max(r["value"] for r in done)
    assert result["best"]["value"] == study.best_value
    for r in result["trials"]:  # per-epoch validation accuracy reached the pruner
        assert 1 <= r["epochs_run"] <= 2 and len(r["history"]["val_accuracy"]) == r["epochs_run"]
    final = result["final"]
    card = json.loads((out / "best" / "compressor-model.json").read_text())
    assert card["data"] == "digits" and card["training"]["splits"] == "train+val"
    assert card["test_accuracy"] == final["test_accuracy"] > 0.3
    assert (out / "best" / "model" / "saved_model.pb").is_file()
    assert json.loads((out / "tune.json").read_text())["best"]["number"] == result["best"]["number"]
    narrowed = yaml.safe_load((out / "narrowed-space.yaml").read_text())
    assert space_from_dict(narrowed).epochs == 2
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4 and "section failed" not in html


def test_tune_resumes_with_the_remaining_budget(tuned):
    from compressor.tuning.tune import tune

    out, _ = tuned
    again = tune(out, model="digits_cnn", space=str(out.parent / "space.yaml"), n_trials=5, seed=0, final=False)
    assert sum(again["counts"].values()) == 5  # one more trial, not five
    with pytest.raises(UserError, match="different space"):
        tune(out, model="digits_cnn", space=_space_file(out.parent, epochs=3), n_trials=6, final=False)


def test_an_epoch_budget_stops_the_study(tmp_path):
    from compressor.tuning.tune import tune

    space = _space_file(tmp_path, epochs=2)
    kw = dict(model="digits_cnn", space=space, n_trials=50, sampler="random", pruner="none", seed=0, final=False)
    result = tune(tmp_path / "b", max_epochs=3, **kw)
    # 2 epochs per unpruned trial: 2 trials reach 4 >= 3 (a trial is not cut short); the trial cap (50) is far away
    assert sum(result["counts"].values()) == 2 and result["epochs_spent"] == 4
    assert result["epochs_spent"] == sum(r["epochs_run"] for r in result["trials"])
    again = tune(tmp_path / "b", max_epochs=3, **kw)  # resumed: the budget is spent, nothing runs
    assert sum(again["counts"].values()) == 2


def test_two_workers_share_one_study(tmp_path):
    import optuna

    from compressor.tuning.tune import tune

    out = tmp_path / "w2"
    space = _space_file(tmp_path, epochs=1)
    result = tune(
        out, model="digits_cnn", space=space, n_trials=6, sampler="random", pruner="none", workers=2, final=False
    )
    study = optuna.load_study(study_name="tune", storage=f"sqlite:///{out / 'study.db'}")
    trials = study.trials
    assert [t.number for t in trials] == list(range(len(trials)))  # numbers handed out once each
    assert sum(t.state.name == "COMPLETE" for t in trials) == 6 == result["counts"]["COMPLETE"]
    assert len(trials) <= 7  # at most workers - 1 extra when both start a trial at the budget's edge
    params = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(params)) == len(params)  # differently seeded workers: no duplicated trial
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both processes ran trials


def test_user_errors(tmp_path):
    from compressor.tuning.tune import tune

    bad = _space_file(tmp_path, params={"model.fliters": {"type": "int", "low": 4, "high": 8}})
    with pytest.raises(UserError, match=r"params\.model\.fliters: unknown parameter for digits_cnn"):
        tune(tmp_path / "a", model="digits_cnn", space=bad)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file.txt").write_text("x")
    with pytest.raises(UserError, match="not a `compressor tune` run"):
        tune(tmp_path / "taken", space=_space_file(tmp_path))
    with pytest.raises(UserError, match="expected a database URL"):
        tune(tmp_path / "b", space=_space_file(tmp_path), storage="localhost:5432")


def test_cli_tune_missing_space_is_exit_2(tmp_path):
    """The CLI's exit code for a bad space. A recipe-mode study through the CLI (the sampled values reach
    the recipe each trial runs) is checked in test_distribute, whose tune runs trials over 2 replicas."""
    from click.testing import CliRunner

    from compressor.commands.cli import cli

    res = CliRunner().invoke(
        cli, ["tune", "--model", "digits_cnn", "--out", str(tmp_path / "x"), "--space", "nope.yaml"]
    )
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "search space nope.yaml" in res.output
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("epochs", [3, 8, 9, 27])
def test_tpe_start_up_is_sized_per_hyperband_bracket(epochs):
    """Optuna's samplers see one bracket's trials: our count must equal Hyperband's own."""
    import optuna

    from compressor.tuning.samplers import brackets, make_pruner, startup_trials

    pruner = make_pruner("hyperband", epochs)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    trial = study.ask()
    trial.report(0.5, 1)
    trial.should_prune()  # Hyperband sizes its brackets on first use
    assert brackets("hyperband", epochs) == pruner._n_brackets == {3: 2, 8: 2, 9: 3, 27: 4}[epochs]
    assert brackets("median", epochs) == 1
    assert [startup_trials(n, 2) for n in (10, 30, 90)] == [3, 5, 10]
    assert startup_trials(30) == 10


def test_default_recipe_space_tunes_only_steps_that_fine_tune():
    from compressor.recipes import validate_recipe
    from compressor.tuning.tune import default_recipe_space

    steps = [
        {"type": "equalize"},
        {"type": "prune", "params": {"epochs": 1}},
        {"type": "bias_correct"},
        {"type": "int8"},
    ]
    space = default_recipe_space(validate_recipe({"name": "r", "steps": steps}))
    assert sorted(space.searched()) == ["steps.1.params.batch_size", "steps.1.params.learning_rate"]
    with pytest.raises(UserError, match="recipe r has no fine-tuning step to tune"):
        default_recipe_space(validate_recipe({"name": "r", "steps": [{"type": "equalize"}, {"type": "int8"}]}))
