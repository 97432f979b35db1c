"""Recipe files: presets resolve, overrides apply, and every mistake names its field."""

from __future__ import annotations

import pytest

from compressor.recipes import load_recipe, preset_names, step_types
from compressor.runtime.errors import UserError


def test_presets_resolve_with_descriptions():
    names = preset_names()
    assert {"float16", "dynamic", "int8", "int16x8"} <= set(names)
    for name in names:
        recipe = load_recipe(name)
        assert recipe.description, f"preset {name} needs a one-line description"
        assert step_types()[recipe.steps[-1].type].kind == "convert"


def test_defaults_filled_and_override_applied():
    recipe = load_recipe("int8", ["steps.0.params.calibration_samples=500"])
    params = recipe.steps[0].params
    assert (params.calibration_samples, params.io_dtype, params.float_layers) == (500, "int8", [])
    assert recipe.export.formats == ["tflite", "onnx"] and recipe.export.opset == 17
    assert recipe.gates.max_accuracy_drop == 0.01


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["steps.0.params.calibration_sampls=5"],
            "preset int8: steps[0].params.calibration_sampls: unknown key 'calibration_sampls'; "
            "did you mean 'calibration_samples'?",
        ),
        (
            ["steps.0.params.calibration_samples=0"],
            "steps[0].params.calibration_samples: must be greater than or equal to 1",
        ),
        (["steps.0.type=int"], "steps[0].type: unknown step type 'int'; did you mean 'int8'?"),
        (["gates.max_accuracy_drop=1.5"], "gates.max_accuracy_drop: must be less than or equal to 1"),
        (["export.formats=[tflite, tf]"], "export.formats[1]: must be 'tflite' or 'onnx'"),
        (["steps=[]"], "steps: List should have at least 1 item"),
        (["nonsense"], "expected KEY.PATH=VALUE"),
        (["steps.3.type=int8"], "'3' is not a valid index"),
    ],
)
def test_errors_name_the_field(overrides, message):
    with pytest.raises(UserError) as err:
        load_recipe("int8", overrides)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_preset_suggests_closest():
    with pytest.raises(UserError, match=r"unknown recipe 'flaot16'; did you mean 'float16'\?"):
        load_recipe("flaot16")


def test_user_file_and_its_errors(tmp_path):
    good = tmp_path / "mine.yaml"
    good.write_text("description: mine\nsteps:\n  - type: dynamic\nexport:\n  formats: [tflite]\n")
    recipe = load_recipe(str(good))
    assert recipe.name == "mine" and recipe.export.formats == ["tflite"]

    bad = tmp_path / "bad.yaml"
    bad.write_text("steps:\n  - type: int8\n  - type: float16\n")
    with pytest.raises(UserError, match=r"steps\[0\].type: only the last step may be a post-training conversion"):
        load_recipe(str(bad))

    broken = tmp_path / "broken.yaml"
    broken.write_text("steps: [type: int8\n")
    with pytest.raises(UserError, match="is not valid YAML"):
        load_recipe(str(broken))

    with pytest.raises(UserError, match="does not exist"):
        load_recipe(str(tmp_path / "missing.yaml"))


def test_one_dotted_path_writer_for_set_and_tuning():
    from compressor.recipes.overrides import apply_override, set_path

    raw = {"steps": [{"type": "prune", "params": {}}]}
    apply_override(raw, "steps.0.params.sparsity=0.8")
    set_path(raw, "steps.0.params.learning_rate", 0.01, "search space: params.steps.0.params.learning_rate")
    apply_override(raw, "export.formats=[tflite]")
    assert raw == {
        "steps": [{"type": "prune", "params": {"sparsity": 0.8, "learning_rate": 0.01}}],
        "export": {"formats": ["tflite"]},
    }
    with pytest.raises(UserError, match=r"^--set steps\.3\.type: '3' is not a valid index \(the list has 1 items\)$"):
        apply_override(raw, "steps.3.type=int8")
    with pytest.raises(UserError, match=r"^where: steps\.0\.type is not a mapping or list$"):
        set_path(raw, "steps.0.type.x.y", 1, "where")
