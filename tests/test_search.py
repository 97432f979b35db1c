"""compressor search: Pareto front, search-space schema, constraint handling, a real small search."""

from __future__ import annotations

import json

import pytest
import yaml

from compressor.runtime.errors import UserError
from compressor.tuning.constraint import drop_upper_bound
from compressor.tuning.pareto import front_mask, pick
from compressor.tuning.recipe_space import sample_recipe, search_space_from_dict
from compressor.tuning.search_summary import summarize

SPACE = {
    "steps": [
        {
            "type": "prune",
            "params": {"epochs": 1, "learning_rate": 5e-4},
            "variants": {
                "unstructured": {"sparsity": {"type": "float", "low": 0.2, "high": 0.4}},
                "2:4": {"sparsity": 0.5, "m_by_n": "2:4"},
            },
        },
        {"type": "qat", "requires": ["int8"], "excludes": ["float_fallback"], "params": {"epochs": 1}},
    ],
    "convert": {
        "int8": {"calibration_samples": 100, "float_fallback": {"type": "int", "low": 0, "high": 2}},
        "dynamic": {},
    },
    "export": {"formats": ["tflite"]},
}


def test_front_and_pick():
    pts = [(0.95, 10.0), (0.94, 5.0), (0.90, 6.0), (0.96, 12.0), (0.94, 5.0)]
    assert front_mask(pts, [True, False]) == [True, True, False, True, True]  # equal points do not dominate
    rows = [{"val_accuracy": a, "gzip_bytes": s, "latency_ms": 1.0, "feasible": a >= 0.94} for a, s in pts]
    assert pick(rows) is rows[1]  # smallest feasible
    assert pick([dict(r, feasible=False) for r in rows]) is None


def test_space_errors_name_the_field():
    bad = json.loads(json.dumps(SPACE))
    bad["steps"][0]["params"]["sparsty"] = 0.5
    with pytest.raises(UserError, match=r"steps\[0\].*sparsty.*did you mean 'sparsity'"):
        search_space_from_dict(bad)
    with pytest.raises(UserError, match=r"steps\[0\]\.type: int8 is a conversion"):
        search_space_from_dict({**SPACE, "steps": [{"type": "int8"}]})
    with pytest.raises(UserError, match=r"convert\.prune: not a post-training conversion"):
        search_space_from_dict({**SPACE, "convert": {"prune": {}}})


def test_sampled_recipes_are_valid_and_respect_requires():
    import optuna

    from compressor.recipes import validate_recipe

    space = search_space_from_dict(SPACE)
    raw, label = sample_recipe(optuna.trial.FixedTrial({"prune": True, "prune.variant": "2:4", "qat": True}), space)
    assert [s["type"] for s in raw["steps"]] == ["prune", "qat", "int8"]  # qat leaves int8 as the only choice
    assert raw["steps"][0]["params"]["m_by_n"] == "2:4" and label == "prune(2:4,s=0.5)+qat+int8"
    assert "float_fallback" not in raw["steps"][-1]["params"]  # excluded after qat: not even sampled
    validate_recipe(raw)
    raw, label = sample_recipe(optuna.trial.FixedTrial({"prune": False, "qat": False, "convert": "dynamic"}), space)
    assert [s["type"] for s in raw["steps"]] == ["dynamic"] and label == "dynamic"


def test_no_feasible_trial_says_so_and_shows_the_closest():
    def row(n, acc, gz):
        return {
            "number": n,
            "state": "COMPLETE",
            "label": f"r{n}",
            "recipe": {},
            "seconds": 1.0,
            "feasible": False,
            "reference_val_accuracy": 0.95,
            "error": None,
            "result": {"val_accuracy": acc, "size_bytes": gz, "gzip_bytes": gz, "latency_ms": 0.1},
        }

    result = summarize(
        [
            row(0, 0.90, 7000),
            row(1, 0.93, 5000),
            row(2, 0.80, 3000),
            {"number": 3, "state": "FAIL", "error": "boom", "result": None},
        ],
        0.01,
        0,
    )
    assert result["chosen"] is None and result["closest"]["number"] == 1
    assert result["verdict"].startswith("no trial met --max-accuracy-drop 1.00%: the closest in accuracy is trial 1")
    assert [c["front"] for c in result["candidates"]] == [False, True, True]
    assert result["failed"] == [{"number": 3, "error": "boom"}]


def test_search_end_to_end(tiny_model_path, tmp_path):
    from compressor.tuning.search import search

    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    out = tmp_path / "s"
    # 3 trials: the int8 baseline, then (seed 0) qat+int8 and dynamic; qat+int8 is chosen, so the baseline
    # is tested on its own as well, and the chosen trial's finished steps are reused in OUT/best.
    result = search(tiny_model_path, out, space=str(space), max_accuracy_drop=0.05, n_trials=3, seed=0)
    cands = result["candidates"]
    base = result["baseline"]
    assert base["number"] == 0 and base["label"] == "int8"  # plain int8 PTQ is always trial 0
    assert len(cands) + len(result["failed"]) == 3
    for c in cands:  # every trial measured on its own .tflite, on the validation split
        assert c["gzip_bytes"] == pytest.approx(c["gzip_bytes"]) and c["size_bytes"] > c["gzip_bytes"] > 0
        assert c["feasible"] == (c["drop_bound"] <= 0.05 + 1e-9)  # judged on the bound, not the point estimate
        n = result["validation_samples"]
        assert c["accuracy_drop"] == pytest.approx((c["losses"] - c["gains"]) / n)
        assert c["drop_bound"] == pytest.approx(drop_upper_bound(c["losses"], c["gains"], n, 0.8))
        assert c["drop_bound"] > c["accuracy_drop"]
        assert (out / "trials" / f"{c['ran_in']:04d}" / "model.tflite").stat().st_size == c["size_bytes"]
    assert any(c["front"] for c in cands)
    chosen = result["chosen"]
    feasible = [c for c in cands if c["feasible"]]
    assert chosen["gzip_bytes"] == min(c["gzip_bytes"] for c in feasible)
    best = result["best_run"]
    report = json.loads((out / "best" / "report.json").read_text())
    row = next(r for r in report["artifacts"] if r["artifact"] == "search-best" and r["format"] == "tflite")
    assert best["test_accuracy"] == row["accuracy"] and best["size_bytes"] == row["size_bytes"]
    assert row["size_bytes"] == chosen["size_bytes"]  # the trial's steps were reused, not retrained
    if chosen["number"] != base["number"]:  # plain int8 PTQ judged on the same test split
        report = json.loads((out / "baseline" / "report.json").read_text())
        row = next(r for r in report["artifacts"] if r["artifact"] == "search-int8-baseline")
        assert best["baseline"]["test_accuracy"] == row["accuracy"]
        assert best["baseline"]["size_bytes"] == row["size_bytes"] == base["size_bytes"]  # same PTQ as trial 0
    assert json.loads((out / "search.json").read_text())["chosen"]["number"] == chosen["number"]
    html = (out / "report.html").read_text()
    assert 'data-trial="0"' in html and html.count("data:image/png;base64,") >= 3


def test_a_repeated_recipe_is_found_not_retrained():
    import optuna

    from compressor.tuning.search_objective import DIRECTIONS, earlier_run

    study = optuna.create_study(directions=DIRECTIONS)
    raw = {"name": "search", "steps": [{"type": "dynamic", "params": {}}]}
    first = study.ask()
    first.set_user_attr("recipe", raw)
    first.set_constraint("accuracy_drop", -0.01)
    study.tell(first, [0.97, 40_000.0, 0.05])
    again = study.ask()
    assert earlier_run(again, json.loads(json.dumps(raw))).number == 0
    assert earlier_run(again, {**raw, "steps": [{"type": "float16", "params": {}}]}) is None


def test_a_limit_the_validation_split_cannot_show_is_refused_before_the_search(tiny_model_path, tmp_path):
    from compressor.tuning.search import search

    # digits: 144 validation samples; even full agreement has a 0.8-confidence bound of 0.58%
    with pytest.raises(UserError, match=r"--max-accuracy-drop 0.20% cannot be shown on 144 validation samples"):
        search(tiny_model_path, tmp_path / "s", max_accuracy_drop=0.002, n_trials=1)
    assert not (tmp_path / "s").exists()
    with pytest.raises(UserError, match="--confidence is between 0.5"):
        search(tiny_model_path, tmp_path / "s", confidence=1.0)


def test_microcontroller_limits_are_constraints_measured_on_tflite_micro(tiny_model_path, tmp_path):
    """--max-arena-kb / --max-flash-kb: each trial's artifact runs on TFLite Micro; a dynamic-range
    model (float input) cannot, and one over a limit is infeasible whatever its accuracy."""
    from compressor.tuning.search import search

    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"convert": {"int8": {"calibration_samples": 50}, "dynamic": {}},
                                     "export": {"formats": ["tflite"]}}))  # fmt: skip
    fits = search(tiny_model_path, tmp_path / "fits", space=str(space), max_accuracy_drop=0.05, n_trials=2,
                  max_arena_kb=64, max_flash_kb=64, final=False)  # fmt: skip
    for c in fits["candidates"]:
        mcu = c["mcu"]
        assert mcu["flash_bytes"] == c["size_bytes"]
        if mcu["full_int8"]:
            assert 1024 < mcu["arena_bytes"] < mcu["recommended_arena_bytes"] <= 64 * 1024
        else:  # dynamic range: float input, not an MCU model
            assert mcu["arena_bytes"] is None and not c["feasible"]
    assert fits["chosen"] is not None and fits["chosen"]["mcu"]["full_int8"]
    # one trial, the int8 baseline: it fits the limits above, not a 1 KB arena
    tight = search(tiny_model_path, tmp_path / "tight", space=str(space), max_accuracy_drop=0.05, n_trials=1,
                   max_arena_kb=1, final=False)  # fmt: skip
    assert tight["chosen"] is None and not any(c["feasible"] for c in tight["candidates"])
    assert "and the microcontroller limits" in tight["verdict"]


def test_machines_sharing_a_study_sample_differently(tmp_path):
    """Every machine numbers its workers from 0: on shared storage each process mixes in its host and
    pid, or all machines would propose the same recipes in the same order; the run folder's own
    SQLite study stays reproducible from --seed."""
    import subprocess
    import sys

    from compressor.pipeline.layout import StudyLayout
    from compressor.tuning.samplers import sampler_seed
    from compressor.tuning.storage import default_url
    from compressor.tuning.workers import StudyConfig

    local = default_url(StudyLayout(tmp_path, "search"))
    cfg = StudyConfig(kind="search_objective", run_dir=str(tmp_path), storage=local, study="s", n_trials=1, seed=3)
    assert [sampler_seed(cfg, w) for w in (0, 1)] == [3, 1003]
    script = (
        "from compressor.tuning.samplers import sampler_seed; from compressor.tuning.workers import StudyConfig; "
        f"print(sampler_seed(StudyConfig('search_objective', {str(tmp_path)!r}, 'postgresql://u@h/db', 's', 1, "
        "seed=3), 0))"
    )
    seeds = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
             for _ in range(2)}  # fmt: skip
    assert len(seeds) == 2 and "3\n" not in seeds
