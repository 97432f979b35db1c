"""`compressor tune`: search training hyperparameters, refit the winner on train+val, test it once.

Run folder:
    OUT/study.db            the Optuna study (default storage; resumable, shareable)
    OUT/tune-config.json    what was asked
    OUT/trials/NNNN/        per-trial artifacts (recipe mode)
    OUT/best/model          architecture mode: the winner refit on train+val (SavedModel + card),
                            ready for `compressor compress`
    OUT/best/               recipe mode: `compressor compress` run of best-recipe.yaml
    OUT/narrowed-space.yaml ranges around the best trials, for a coarse-to-fine second study
    OUT/tune.json, OUT/report.html
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compressor.pipeline.layout import StudyLayout
from compressor.runtime.atomic import write_json, write_text
from compressor.runtime.errors import UserError
from compressor.tuning import run_folder as rundir
from compressor.tuning import trainer
from compressor.tuning.hparam_space import Space, grid_size, load_space, space_from_dict, space_to_dict
from compressor.tuning.narrow_space import write_narrowed
from compressor.tuning.progress import Progress, from_callable
from compressor.tuning.samplers import PRUNERS, SAMPLERS
from compressor.tuning.workers import StudyConfig, epochs_spent, kept_on_interrupt, open_study, run_workers


def tune(
    out: str | Path,
    model: str | None = None,
    model_path: str | None = None,
    recipe: str | None = None,
    space: str | None = None,
    data: str | None = None,
    data_dir: str | None = None,
    n_trials: int = 20,
    sampler: str = "tpe",
    pruner: str = "hyperband",
    study: str = "tune",
    storage: str | None = None,
    workers: int = 1,
    seed: int = 0,
    model_params: dict | None = None,
    overwrite: bool = False,
    final: bool = True,
    trust_code: bool = False,
    progress: Any = None,
    spawn_workers: bool = False,
    max_epochs: int | None = None,
    data_options: dict | None = None,
) -> dict:
    """Run (or resume) the study, then refit/evaluate its best trial; returns tune.json's content.
    ``data_options``: preprocess / image_fit (compressor/datasets/choice.py), stream (datasets/source.py)."""
    progress = from_callable(progress)
    _check_choices(sampler, pruner, n_trials, workers)
    settings, the_space = _settings(model, model_path, recipe, space, data, data_dir, model_params, trust_code)
    settings.update(sampler=sampler, pruner=pruner, **(data_options or {}))
    if sampler == "grid":
        n_trials = min(n_trials, grid_size(the_space))
    inputs = [model_path, recipe, space, data, data_dir]
    with rundir.study_folder(out, "tune", storage, study, overwrite, inputs) as (out, url):
        layout = StudyLayout(out, "tune")
        cfg = StudyConfig(
            kind="tune_objective",
            run_dir=str(out),
            storage=url,
            study=study,
            n_trials=n_trials,
            workers=workers,
            seed=seed,
            quiet=progress.quiet,
            spawn=spawn_workers,
            settings=settings,
            max_epochs=max_epochs,
        )
        with kept_on_interrupt(layout, url, study):
            _write_config(layout, cfg)
            attrs = {"kind": "tune", "space": settings["space"], "mode": settings["mode"]}
            the_study = open_study(cfg, ["maximize"], attrs)
            budget = f"{n_trials} trials" + (f" or {max_epochs} epochs, whichever comes first" if max_epochs else "")
            progress.line(
                f"study {study!r}: {budget}, sampler {sampler}, pruner {pruner}, {workers} worker(s); "
                f"storage {rundir.redact(url)}"
            )
            seconds = run_workers(cfg, progress)
            return _conclude(the_study, the_space, cfg, layout, seconds, final, progress)


def _check_choices(sampler: str, pruner: str, n_trials: int, workers: int) -> None:
    if sampler not in SAMPLERS or pruner not in PRUNERS:
        raise UserError(f"--sampler must be one of {', '.join(SAMPLERS)} and --pruner one of {', '.join(PRUNERS)}")
    if n_trials < 1 or workers < 1:
        raise UserError("--trials and --workers must be >= 1")


def _write_config(layout: StudyLayout, cfg: StudyConfig) -> None:
    """What was asked: it marks the folder as a tune run and lets a later call resume it."""
    write_json(
        layout.config,
        {
            "settings": cfg.settings,
            "n_trials": cfg.n_trials,
            "max_epochs": cfg.max_epochs,
            "study": cfg.study,
            "storage": rundir.redact(cfg.storage),
            "workers": cfg.workers,
            "seed": cfg.seed,
        },
    )


def _conclude(
    study: Any, space: Space, cfg: StudyConfig, layout: StudyLayout, seconds: float, final: bool, progress: Progress
) -> dict:
    """Summarise the study, narrow its space, refit/compress the best trial, write tune.json and the report."""
    result = _summary(study, space, cfg, seconds)
    result["narrowed_space"] = write_narrowed(space, result["trials"], layout.root)
    if final and result["best"] is not None:
        result["final"] = _finalize(result["best"], space, cfg.settings, layout, cfg.seed, progress)
    write_json(layout.result, result)
    from compressor.reports.html import write_html

    write_html(layout.root)
    return result


def _settings(model, model_path, recipe, space, data, data_dir, model_params, trust_code) -> tuple[dict, Space]:
    if recipe:
        if not model_path:
            raise UserError("tuning a recipe's fine-tuning needs the trained MODEL to apply it to")
        from compressor.pipeline.model_io import read_card
        from compressor.recipes import get_step, load_recipe

        resolved = load_recipe(recipe)
        if not [s for s in resolved.steps if get_step(s.type).kind == "train"]:
            raise UserError(
                f"recipe {resolved.name} has no training step: nothing to tune "
                "(tune a recipe with fine-tuning steps, e.g. prune or qat)"
            )
        the_space = load_space(space) if space else default_recipe_space(resolved)
        card = read_card(Path(model_path))
        settings = {
            "mode": "recipe",
            "model_path": str(model_path),
            "recipe": resolved.model_dump(),
            "data": data or card.get("data", "digits"),
            "trust_code": trust_code,
        }
    else:
        if model_path:
            raise UserError(
                "a trained MODEL is tuned through a recipe: pass --recipe, or --model NAME to "
                "tune the training of a reference architecture"
            )
        model = model or "digits_cnn"
        the_space = load_space(space or "train")
        trainer.check_names(list(the_space.params), model)
        settings = {
            "mode": "architecture",
            "model": model,
            "model_params": model_params or {},
            "data": data or "digits",
        }
    settings.update(space=space_to_dict(the_space), data_dir=data_dir)
    return settings, the_space


def default_recipe_space(recipe: Any) -> Space:
    """Learning rate (log) and batch size of every fine-tuning step: what matters most, cheaply."""
    from compressor.recipes import get_step

    params: dict = {}
    for i, step in enumerate(recipe.steps):
        fields = get_step(step.type).params.model_fields  # training-free steps (equalize, bias_correct) have neither
        if "learning_rate" in fields:
            params[f"steps.{i}.params.learning_rate"] = {"type": "float", "low": 1e-5, "high": 1e-2, "scale": "log"}
        if "batch_size" in fields:
            params[f"steps.{i}.params.batch_size"] = {"type": "categorical", "choices": [16, 32, 64, 128]}
    if not params:
        raise UserError(f"recipe {recipe.name} has no fine-tuning step to tune; give --space with what to search")
    return space_from_dict({"description": f"fine-tuning of recipe {recipe.name}", "params": params})


def _summary(study: Any, space: Space, cfg: StudyConfig, seconds: float) -> dict:
    from compressor.tuning.trial_rows import trial_rows

    rows = trial_rows(study, space)
    done = [r for r in rows if r["state"] == "COMPLETE"]
    best = max(done, key=lambda r: r["value"]) if done else None
    return {
        "schema": "compressor.tune/1",
        "study": cfg.study,
        "storage": rundir.redact(cfg.storage),
        "mode": cfg.settings["mode"],
        "sampler": cfg.settings["sampler"],
        "pruner": cfg.settings["pruner"],
        "n_trials": cfg.n_trials,
        "max_epochs": cfg.max_epochs,
        "epochs_spent": epochs_spent(study),
        "workers": cfg.workers,
        "seconds": round(seconds, 2),
        "space": cfg.settings["space"],
        "trials": rows,
        "best": best,
        "counts": {s: sum(r["state"] == s for r in rows) for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")},
    }


def _finalize(best: dict, space: Space, settings: dict, layout: StudyLayout, seed: int, progress: Progress) -> dict:
    if settings["mode"] == "recipe":
        return _finalize_recipe(best, settings, layout, seed, progress)
    from compressor.tuning.refit import refit

    return refit(best["values"], space, settings, layout.run("best").root, seed, progress)


def _finalize_recipe(best: dict, settings: dict, layout: StudyLayout, seed: int, progress: Progress) -> dict:
    import copy

    import yaml

    from compressor.datasets.source import data_arguments
    from compressor.pipeline.compress import compress
    from compressor.recipes.overrides import set_path

    raw = copy.deepcopy(settings["recipe"])
    for path, value in best["values"].items():
        set_path(raw, path, value, f"search space: params.{path}")
    raw["name"] = f"{raw['name']}-tuned"
    recipe_file = write_text(layout.recipe_file("best"), yaml.safe_dump(raw, sort_keys=False))
    progress.line(f"best trial {best['number']}: compressing with {recipe_file.name} (evaluated on test once)")
    report = compress(
        settings["model_path"],
        [str(recipe_file)],
        layout.run("best").root,
        **data_arguments(settings),  # the study's data, preprocessing, image fit and streaming choice
        overwrite=True,
        seed=seed,
        trust_code=settings.get("trust_code", False),
        progress=progress.epoch,
    )
    row = next(r for r in report["artifacts"] if r["artifact"] == raw["name"] and r["format"] == "tflite")
    return {
        "recipe": str(recipe_file),
        "test_accuracy": row["accuracy"],
        "reference_test_accuracy": report["reference_accuracy"],
        "artifact": row["path"],
    }
