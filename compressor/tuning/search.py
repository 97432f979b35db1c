"""`compressor search`: multi-objective search over recipes under an accuracy constraint.

Objectives (on the validation split, see search_objective.py): accuracy, gzip size, latency; sampler
NSGA-II with the constraint ``upper bound of the accuracy drop <= --max-accuracy-drop``, the bound
at ``--confidence`` (constraint.py: a small validation split must not let a lucky candidate in). Trial 0 is always plain
int8 PTQ, the baseline every other answer is compared with. At the end:
- the Pareto front (non-dominated trials) as a table and in search.json / report.html;
- the smallest feasible trial is re-run as a `compressor compress` run in OUT/best (its trial
  steps are reused, not retrained): exported, validated, evaluated on the TEST split once, and
  ready for `compressor package OUT/best`;
- when no trial meets the constraint we say so, keep every result, and show the closest.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from compressor.datasets.source import data_arguments, load_from_settings
from compressor.pipeline.layout import StudyLayout
from compressor.runtime.atomic import write_json, write_text
from compressor.runtime.errors import UserError
from compressor.tuning import run_folder as rundir
from compressor.tuning.constraint import smallest_certifiable_drop
from compressor.tuning.hparam_space import Param, first_value, optuna_name
from compressor.tuning.progress import Progress, from_callable
from compressor.tuning.recipe_space import load_search_space
from compressor.tuning.search_objective import DIRECTIONS
from compressor.tuning.search_summary import summarize
from compressor.tuning.storage import open_storage
from compressor.tuning.trial_rows import trial_rows
from compressor.tuning.workers import StudyConfig, kept_on_interrupt, open_study, run_workers

BEST_RECIPE = "search-best"
BASELINE_RECIPE = "search-int8-baseline"
DEFAULT_CONFIDENCE = 0.8


def search(
    model_path: str | Path,
    out: str | Path,
    space: str | None = None,
    max_accuracy_drop: float = 0.01,
    data: str | None = None,
    data_dir: str | None = None,
    n_trials: int = 30,
    study: str = "search",
    storage: str | None = None,
    workers: int = 1,
    seed: int = 0,
    final: bool = True,
    trust_code: bool = False,
    overwrite: bool = False,
    progress: Any = None,
    confidence: float = DEFAULT_CONFIDENCE,
    max_arena_kb: float | None = None,
    max_flash_kb: float | None = None,
    data_options: dict | None = None,
) -> dict:
    """Run (or resume) the search, then export and test its choice; returns search.json's content.

    ``max_arena_kb`` / ``max_flash_kb``: constraints on a microcontroller (the trial's artifact on the
    TFLite Micro interpreter: recommended arena, flatbuffer size; see compressor/mcu/fit.py)."""
    progress = from_callable(progress)
    _check_arguments(model_path, max_accuracy_drop, confidence)
    the_space = load_search_space(space)
    settings = _settings(model_path, the_space, max_accuracy_drop, data, data_dir, trust_code, confidence)
    settings.update(mcu_limits=_mcu_limits(max_arena_kb, max_flash_kb), **(data_options or {}))
    _check_certifiable(settings, seed)
    inputs = [model_path, space, data, data_dir]
    with rundir.study_folder(out, "search", storage, study, overwrite, inputs) as (out, url):
        layout = StudyLayout(out, "search")
        cfg = StudyConfig(
            kind="search_objective",
            run_dir=str(out),
            storage=url,
            study=study,
            n_trials=n_trials,
            workers=workers,
            seed=seed,
            quiet=progress.quiet,
            settings=settings,
        )
        with kept_on_interrupt(layout, url, study):
            the_study = _open(cfg, layout, the_space)
            progress.line(
                f"study {study!r}: {n_trials} trials (NSGA-II), max accuracy drop {max_accuracy_drop:.2%} "
                f"(upper bound at confidence {confidence:g}), "
                f"{workers} worker(s); storage {rundir.redact(url)}"
            )
            seconds = run_workers(cfg, progress, wait=final)  # one process concludes: after every trial
            return _conclude(the_study, cfg, layout, seconds, final, progress)


def _conclude(
    study: Any, cfg: StudyConfig, layout: StudyLayout, seconds: float, final: bool, progress: Progress
) -> dict:
    """Summarise the trials, export and test the choice (and the baseline), write search.json and the report."""
    settings = cfg.settings
    result = summarize(
        trial_rows(study), settings["max_accuracy_drop"], study.user_attrs.get("baseline_trial"), settings["confidence"]
    )
    result.update(
        study=cfg.study,
        storage=rundir.redact(cfg.storage),
        n_trials=cfg.n_trials,
        workers=cfg.workers,
        seconds=round(seconds, 2),
    )
    if final and result["chosen"]:
        result["best_run"] = _export_best(result["chosen"], settings, layout, cfg.seed, progress)
        if result["baseline"] and result["baseline"]["number"] != result["chosen"]["number"]:
            result["best_run"]["baseline"] = _test_baseline(result["baseline"], settings, layout, cfg.seed, progress)
    write_json(layout.result, result)
    from compressor.reports.html import write_html

    write_html(layout.root)
    return result


def _check_arguments(model_path: str | Path, max_accuracy_drop: float, confidence: float) -> None:
    from compressor.pipeline.model_io import detect_kind

    if not 0 <= max_accuracy_drop <= 1:
        raise UserError("--max-accuracy-drop is a fraction between 0 and 1 (0.01 = 1 point)")
    if not 0.5 <= confidence < 1:
        raise UserError("--confidence is between 0.5 (judge the point estimate) and 1 (exclusive), e.g. 0.8")
    if detect_kind(Path(model_path)) == "savedmodel":
        raise UserError(
            f"{model_path} is a plain SavedModel without Keras metadata: the search's training steps "
            "need a tf_keras model"
        )


def _mcu_limits(max_arena_kb: float | None, max_flash_kb: float | None) -> dict | None:
    if max_arena_kb is None and max_flash_kb is None:
        return None
    for name, value in (("--max-arena-kb", max_arena_kb), ("--max-flash-kb", max_flash_kb)):
        if value is not None and not value > 0:
            raise UserError(f"{name} must be > 0, got {value}")
    from compressor.mcu.tflm import available

    missing = available()
    if missing:
        raise UserError(f"--max-arena-kb/--max-flash-kb measure on TFLite Micro: {missing}")
    return {"arena_kb": max_arena_kb, "flash_kb": max_flash_kb}


def _settings(model_path, space, max_accuracy_drop, data, data_dir, trust_code, confidence) -> dict:
    """What every worker needs to rebuild the objective (recorded in search-config.json too)."""
    from compressor.pipeline.model_io import read_card

    return {
        "model_path": str(model_path),
        "space": space.model_dump(),
        "max_accuracy_drop": max_accuracy_drop,
        "data": data or read_card(Path(model_path)).get("data", "digits"),
        "data_dir": data_dir,
        "trust_code": trust_code,
        "confidence": confidence,
    }


def _check_certifiable(settings: dict, seed: int) -> None:
    """Refuse a limit no candidate can meet on this validation split, before spending the budget."""
    n = len(load_from_settings(settings, seed).y_val)
    floor = smallest_certifiable_drop(n, settings["confidence"])
    if settings["max_accuracy_drop"] < floor:
        raise UserError(
            f"--max-accuracy-drop {settings['max_accuracy_drop']:.2%} cannot be shown on {n} validation "
            f"samples at --confidence {settings['confidence']:g} (even a candidate that agrees with the "
            f"float model everywhere has a bound of {floor:.2%}): raise the limit, lower --confidence, "
            "or give more validation data"
        )


def _open(cfg: StudyConfig, layout: StudyLayout, space: Any) -> Any:
    """Record what was asked, open (or resume) the study and queue the int8 baseline as trial 0."""
    settings = cfg.settings
    write_json(
        layout.config,
        {
            "settings": settings,
            "n_trials": cfg.n_trials,
            "study": cfg.study,
            "storage": rundir.redact(cfg.storage),
            "workers": cfg.workers,
            "seed": cfg.seed,
        },
    )
    created = _create(cfg)
    the_study = open_study(
        cfg,
        DIRECTIONS,
        {
            "kind": "search",
            "space": settings["space"],
            "model": settings["model_path"],
            "max_accuracy_drop": settings["max_accuracy_drop"],
            "confidence": settings["confidence"],
        },
    )
    if created:  # machines opening a new shared study together must not each queue (and train) it
        _enqueue_baseline(the_study, space)
    return the_study


def _create(cfg: StudyConfig) -> bool:
    """Whether this process created the study (the storage lets exactly one of many do so)."""
    import optuna

    try:
        optuna.create_study(storage=open_storage(cfg.storage), study_name=cfg.study, directions=DIRECTIONS)
    except optuna.exceptions.DuplicatedStudyError:
        return False
    return True


def _enqueue_baseline(study: Any, space: Any) -> None:
    """Plain int8 PTQ as trial 0 (unless another machine asked first): every answer is compared with it."""
    if study.trials or "int8" not in space.convert:
        return
    params: dict[str, Any] = {b.type: False for b in space.steps if b.optional}
    params["convert"] = "int8"
    for key, p in space.convert["int8"].items():
        if isinstance(p, Param):
            params[optuna_name(f"int8.{key}", p)] = 0 if key == "float_fallback" else first_value(p)
    study.enqueue_trial(params, user_attrs={"baseline": True})
    study.set_user_attr("baseline_trial", next(t.number for t in study.trials if t.user_attrs.get("baseline")))


def _export_best(chosen: dict, settings: dict, layout: StudyLayout, seed: int, progress: Progress) -> dict:
    import yaml

    raw = copy.deepcopy(chosen["recipe"])
    raw.update(
        name=BEST_RECIPE,
        description=f"compressor search trial {chosen['number']}: {chosen['label']}",
        gates={"max_accuracy_drop": settings["max_accuracy_drop"]},
    )
    recipe_path = write_text(layout.recipe_file("best"), yaml.safe_dump(raw, sort_keys=False))
    best = layout.run("best")
    # Reuse the trial's finished steps (same model, data, seed): compress skips steps whose meta.json matches.
    trial_steps = layout.trial_steps(chosen["ran_in"])  # a reused result ran in an earlier trial
    progress.line(f"exporting trial {chosen['number']} as {best.root} (validated, evaluated on test once)")
    report = _compress(settings, recipe_path, best.root, seed, progress, reuse_steps={BEST_RECIPE: trial_steps})
    row = next(r for r in report["artifacts"] if r["artifact"] == BEST_RECIPE and r["format"] == "tflite")
    # round + 0.0: an exact tie is 0.0, not -0.0 (which would print as a "-0.00%" drop)
    return {
        "recipe": str(recipe_path),
        "artifact": row["path"],
        "report": str(best.report_json),
        "test_accuracy": row["accuracy"],
        "reference_test_accuracy": report["reference_accuracy"],
        "test_accuracy_drop": round(-row["accuracy_delta"], 9) + 0.0,
        "size_bytes": row["size_bytes"],
        "gzip_bytes": row["gzip_bytes"],
        "gates_failed": row["gates_failed"],
        "passed": report["passed"],
    }


def _test_baseline(base: dict, settings: dict, layout: StudyLayout, seed: int, progress: Progress) -> dict:
    """Plain int8 PTQ on the test split too (OUT/baseline), so "smaller at no worse accuracy" is
    stated on the data that decides it, not only on the validation split that chose the artifact."""
    import yaml

    raw = copy.deepcopy(base["recipe"])
    raw.update(
        name=BASELINE_RECIPE,
        description="compressor search baseline: plain int8 PTQ (trial 0)",
        export={**raw.get("export", {}), "formats": ["tflite"]},
    )
    path = write_text(layout.recipe_file("baseline"), yaml.safe_dump(raw, sort_keys=False))
    baseline = layout.run("baseline").root
    progress.line(f"evaluating the plain int8 PTQ baseline on test too ({baseline})")
    report = _compress(settings, path, baseline, seed, progress)
    row = next(r for r in report["artifacts"] if r["artifact"] == BASELINE_RECIPE and r["format"] == "tflite")
    return {"test_accuracy": row["accuracy"], "size_bytes": row["size_bytes"], "gzip_bytes": row["gzip_bytes"]}


def _compress(
    settings: dict, recipe: Path, out: Path, seed: int, progress: Progress, reuse_steps: dict | None = None
) -> dict:
    """`compressor compress` of one chosen recipe, on the search's model and data (``reuse_steps``: a trial's)."""
    from compressor.pipeline.compress import compress

    return compress(
        settings["model_path"],
        [str(recipe)],
        out,
        **data_arguments(settings),
        overwrite=True,
        reuse_steps=reuse_steps,
        seed=seed,
        trust_code=settings.get("trust_code", False),
        progress=progress.epoch,
    )
