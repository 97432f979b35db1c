"""--set RECIPE:path=value changes one recipe of the command line; --set path=value all of them."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from compressor.commands.cli import cli
from compressor.recipes import load_recipe
from compressor.recipes.overrides import check_targets, overrides_for, split_target
from compressor.runtime.errors import UserError


def test_split_target_leaves_colons_in_values_alone():
    assert split_target("qat-int8:steps.0.params.epochs=1") == ("qat-int8", "steps.0.params.epochs=1")
    assert split_target("steps.0.params.m_by_n=2:4") == (None, "steps.0.params.m_by_n=2:4")
    assert split_target("prune-int8:steps.0.params.m_by_n=2:4") == ("prune-int8", "steps.0.params.m_by_n=2:4")


def test_targeted_override_reaches_its_recipe_only():
    overrides = ["qat-int8:steps.0.params.epochs=1", "steps.0.params.learning_rate=0.001"]
    assert overrides_for("qat-int8", "qat-int8", overrides) == ["steps.0.params.epochs=1", overrides[1]]
    assert overrides_for("prune-int8", "prune-int8", overrides) == [overrides[1]]
    qat, prune = load_recipe("qat-int8", overrides), load_recipe("prune-int8", overrides)
    assert (qat.steps[0].params.epochs, qat.steps[0].params.learning_rate) == (1, 0.001)
    assert (prune.steps[0].params.epochs, prune.steps[0].params.learning_rate) == (8, 0.001)


def test_a_recipe_file_is_targeted_by_its_stem(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("steps:\n  - {type: qat, params: {epochs: 5}}\n  - {type: int8}\n")
    assert load_recipe(str(path), ["mine:steps.0.params.epochs=2"]).steps[0].params.epochs == 2
    assert load_recipe(str(path), ["qat-int8:steps.0.params.epochs=2"]).steps[0].params.epochs == 5


def test_unknown_target_is_refused():
    with pytest.raises(UserError, match=r"no recipe 'qat_int8' on this command line \(recipes: qat-int8, prune-int8\)"):
        check_targets(["qat_int8:steps.0.params.epochs=1"], {"qat-int8": "qat-int8", "prune-int8": "prune-int8"})


def _compress(tiny_model_path, tmp_path, *sets):
    args = ["compress", tiny_model_path, "--out", str(tmp_path / "o"), "--recipe", "qat-int8", "--recipe", "prune-int8"]
    for item in sets:
        args += ["--set", item]
    return CliRunner().invoke(cli, [*args, "--dry-run", "--json"])


def test_two_training_recipes_in_one_command(tiny_model_path, tmp_path):
    result = _compress(
        tiny_model_path, tmp_path, "qat-int8:steps.0.params.epochs=1", "prune-int8:steps.0.params.epochs=2"
    )
    assert result.exit_code == 0, result.output
    qat, prune = json.loads(result.output)
    assert (qat["steps"][0]["params"]["epochs"], prune["steps"][0]["params"]["epochs"]) == (1, 2)
    bad = _compress(tiny_model_path, tmp_path, "qat:steps.0.params.epochs=1")
    assert bad.exit_code == 2 and "no recipe 'qat' on this command line" in bad.output
    assert "Traceback" not in bad.output
