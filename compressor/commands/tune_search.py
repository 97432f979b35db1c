"""`compressor tune` and `compressor search`: Optuna studies over training hyperparameters and over recipes."""

from __future__ import annotations

import click

from compressor.commands.app import cli, common, emit, fail_unless, parse_params, progress, state
from compressor.commands.data_options import data_options, stream_option
from compressor.commands.distribute_options import distribute_options
from compressor.pipeline.layout import RunLayout


def _study_options(fn):
    """Options shared by tune and search: budget, study, storage, workers."""
    for opt in reversed(
        [
            click.option(
                "--trials",
                "n_trials",
                default=20,
                show_default=True,
                type=click.IntRange(1, 100000),
                help="Total trials of the study (all workers together; resumed studies count what is done).",
            ),
            click.option("--study", default=None, help="Study name (several workers share a study by name)."),
            click.option(
                "--storage",
                default=None,
                help="Optuna storage URL shared by workers (postgresql://..., "
                "mysql+pymysql://..., sqlite:///file.db, journal:PATH). Default: OUT/study.db",
            ),
            click.option(
                "--workers",
                default=1,
                show_default=True,
                type=click.IntRange(1, 64),
                help="Worker processes on this machine.",
            ),
            click.option("--no-final", is_flag=True, help="Only run trials (e.g. on extra machines); no refit/export."),
        ]
    ):
        fn = opt(fn)
    return fn


@cli.command("tune")
@click.argument("model_path", required=False, type=click.Path())
@click.option("--model", "model_name", default=None, help="Reference architecture to train (default digits_cnn).")
@click.option("--recipe", default=None, help="Tune the fine-tuning options of this recipe applied to MODEL_PATH.")
@click.option(
    "--space",
    default=None,
    help="Search space YAML (default: built-in 'train', or the recipe's learning rates and batch sizes).",
)
@click.option("--data", default=None)
@click.option("--data-dir", type=click.Path())
@click.option("--out", required=True, type=click.Path())
@_study_options
@click.option("--sampler", default="tpe", show_default=True, type=click.Choice(["tpe", "random", "grid"]))
@click.option(
    "--pruner", default="hyperband", show_default=True, type=click.Choice(["hyperband", "halving", "median", "none"])
)
@click.option(
    "--budget-epochs",
    "max_epochs",
    default=None,
    type=click.IntRange(1, None),
    help="Compute budget: start no new trial once the study's trials trained this many epochs in total "
    "(pruned trials count only what they ran). --trials still caps the count.",
)
@click.option("--param", "params", multiple=True, help="Fixed architecture argument NAME=VALUE (repeatable).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--trust-code", is_flag=True)
@click.option("--overwrite", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
@distribute_options(("none", "mirrored"))
@stream_option
@data_options
@common
def tune_cmd(
    model_path,
    model_name,
    recipe,
    space,
    data,
    data_dir,
    out,
    n_trials,
    study,
    storage,
    workers,
    no_final,
    sampler,
    pruner,
    max_epochs,
    params,
    seed,
    trust_code,
    overwrite,
    as_json,
    distribute,
    replicas,
    preprocess,
    image_fit,
    stream,
):
    """Tune training hyperparameters (Optuna); refit the winner on train+val, test it once."""
    _trials_over_devices(distribute, replicas, workers)
    from compressor.tuning.progress import Progress
    from compressor.tuning.summary_text import format_tune
    from compressor.tuning.tune import tune

    result = tune(
        out,
        model=model_name,
        model_path=model_path,
        recipe=recipe,
        space=space,
        data=data,
        data_dir=data_dir,
        n_trials=n_trials,
        sampler=sampler,
        pruner=pruner,
        study=study or "tune",
        max_epochs=max_epochs,
        storage=storage,
        workers=workers,
        seed=seed,
        model_params=parse_params(params),
        overwrite=overwrite,
        final=not no_final,
        trust_code=trust_code,
        progress=Progress(quiet=state["quiet"]),
        data_options={"preprocess": preprocess, "image_fit": image_fit, "stream": stream},
    )
    emit(result, as_json, format_tune(result) + f"\nreport: {RunLayout(out).report_html}")


def _trials_over_devices(mode: str, replicas: int | None, workers: int) -> None:
    """tune --distribute mirrored: each trial trains over this machine's devices. Machines share a study
    (--storage) rather than one trial: independent trials need no synchronisation."""
    from compressor.recipes import distribute
    from compressor.runtime.errors import UserError

    if mode != "none" and workers > 1:
        raise UserError("choose --workers (trials side by side) or --distribute mirrored (each trial over devices)")
    distribute.setup(mode, replicas)
    if distribute.active():
        progress(f"distributed: every trial trains over {distribute.replicas()} replica(s) in sync")


@cli.command("search")
@click.argument("model_path", type=click.Path())
@click.option("--space", default=None, help="Recipe search space YAML (default: built-in 'recipes').")
@click.option(
    "--max-accuracy-drop",
    default=0.01,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Constraint: validation accuracy may drop at most this much (0.01 = 1 point) vs float.",
)
@click.option(
    "--confidence",
    default=0.8,
    show_default=True,
    type=float,
    help="The constraint holds for the upper bound of the drop at this one-sided confidence "
    "(0.5 = the point estimate): a small validation split must not let a lucky trial in.",
)
@click.option(
    "--max-arena-kb",
    type=float,
    default=None,
    help="Constraint for a microcontroller: the tensor arena on TFLite Micro (measured + 10%%) at most this.",
)
@click.option(
    "--max-flash-kb", type=float, default=None, help="Constraint for a microcontroller: the model file at most this."
)
@click.option("--data", default=None)
@click.option("--data-dir", type=click.Path())
@click.option("--out", required=True, type=click.Path())
@_study_options
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--trust-code", is_flag=True)
@click.option("--overwrite", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
@stream_option
@data_options
@common
def search_cmd(
    model_path,
    space,
    max_accuracy_drop,
    confidence,
    max_arena_kb,
    max_flash_kb,
    data,
    data_dir,
    out,
    n_trials,
    study,
    storage,
    workers,
    no_final,
    seed,
    trust_code,
    overwrite,
    as_json,
    preprocess,
    image_fit,
    stream,
):
    """Accuracy-aware multi-objective search over recipes: Pareto front + best artifact under the constraint."""
    from compressor.tuning.progress import Progress
    from compressor.tuning.search import search
    from compressor.tuning.summary_text import format_search

    result = search(
        model_path,
        out,
        space=space,
        max_accuracy_drop=max_accuracy_drop,
        confidence=confidence,
        max_arena_kb=max_arena_kb,
        max_flash_kb=max_flash_kb,
        data=data,
        data_dir=data_dir,
        n_trials=n_trials,
        study=study or "search",
        storage=storage,
        workers=workers,
        seed=seed,
        final=not no_final,
        trust_code=trust_code,
        overwrite=overwrite,
        progress=Progress(quiet=state["quiet"]),
        data_options={"preprocess": preprocess, "image_fit": image_fit, "stream": stream},
    )
    emit(result, as_json, format_search(result) + f"\nreport: {RunLayout(out).report_html}")
    # Like compress, exit 1 when there is nothing to ship: no trial met the constraint, or the
    # exported artifact failed its gate on the test split.
    fail_unless(result["chosen"] is not None and (not result.get("best_run") or result["best_run"]["passed"]))
