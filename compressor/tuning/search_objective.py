"""The objective of `compressor search`: one sampled recipe -> (val accuracy, gzip size, latency).

Three objectives, all measured on the artifact the device would run: validation accuracy
(maximise), gzip size in bytes (minimise: what an app download or OTA update costs, and the only
size pruning and clustering reduce), median latency on the target interpreter (minimise). The
accuracy constraint is handed to NSGA-II as ``trial.set_constraint(bound - max_drop)`` (feasible <= 0),
where ``bound`` is the upper confidence bound of the drop (see constraint.py), so infeasible recipes
lose every comparison against feasible ones but still steer the search.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np

from compressor.datasets.splits import split_of
from compressor.pipeline.layout import StudyLayout
from compressor.pipeline.validation import reference_outputs
from compressor.tuning.constraint import drop_upper_bound
from compressor.tuning.progress import Progress
from compressor.tuning.recipe_eval import record_result, run_recipe
from compressor.tuning.recipe_space import sample_recipe, search_space_from_dict
from compressor.tuning.samplers import make_nsga2, sampler_seed

DIRECTIONS = ["maximize", "minimize", "minimize"]


def make_objective(cfg: Any, worker: int, progress: Progress) -> tuple:
    from compressor.datasets.source import load_from_settings
    from compressor.pipeline.model_io import load_model
    from compressor.recipes import validate_recipe
    from compressor.recipes.base import set_progress

    s = cfg.settings
    space = search_space_from_dict(s["space"])
    sampler = make_nsga2(sampler_seed(cfg, worker), cfg.n_trials)
    model = load_model(s["model_path"], trust_code=s.get("trust_code", False))
    data = load_from_settings(s, cfg.seed, model=model)
    reference = reference_outputs(model, split_of(data, "val"))  # a batch at a time, loaded or streamed
    ref_acc = float(np.mean(reference.argmax(1) == data.y_val)) if reference is not None else None
    set_progress(progress.epoch)
    ranking: list[str] | None = None

    def objective(trial: Any) -> tuple[float, float, float]:
        nonlocal ranking
        raw, label = sample_recipe(trial, space)
        trial.set_user_attr("label", label)
        fallback = raw["steps"][-1]["params"].pop("float_fallback", 0)
        if fallback:
            ranking = ranking if ranking is not None else worst_layers(model, data)
            raw["steps"][-1]["params"]["float_layers"] = ranking[:fallback]
        trial.set_user_attr("recipe", copy.deepcopy(raw))
        recipe = validate_recipe(raw, f"trial {trial.number} ({label})")
        same = earlier_run(trial, raw)
        if same is not None:
            # NSGA-II revisits categorical combinations; training is seeded, so the same recipe gives
            # the same artifact: record the earlier result instead of training it again.
            for key in ("result", "history", "reference_val_accuracy", "feasible"):
                trial.set_user_attr(key, same.user_attrs.get(key))
            trial.set_user_attr("reused_from", same.user_attrs.get("reused_from", same.number))
            for name, value in same.constraints.items():
                trial.set_constraint(name, value)
            progress.line(f"trial {trial.number}: {label}: same recipe as trial {same.number}, result reused")
            return tuple(same.values)
        return _run_trial(trial, recipe, label, model, data, reference, ref_acc, cfg, progress)

    return objective, sampler, None


def _run_trial(
    trial: Any,
    recipe: Any,
    label: str,
    model: Any,
    data: Any,
    reference: Any,
    ref_acc: float | None,
    cfg: Any,
    progress: Progress,
) -> tuple[float, float, float]:
    """Train, convert and measure one new recipe; record its result and its constraint on ``trial``."""
    s = cfg.settings
    t0 = time.time()
    progress.line(f"trial {trial.number}: {label}")
    result = run_recipe(model, data, recipe, StudyLayout(cfg.run_dir, "search").trial(trial.number), reference)
    base = ref_acc if ref_acc is not None else result["val_accuracy"]
    drop = base - result["val_accuracy"]
    bound = (
        drop_upper_bound(result["val_losses"], result["val_gains"], result["val_samples"], s.get("confidence", 0.5))
        if "val_losses" in result
        else drop
    )
    result["drop_bound"] = bound
    trial.set_user_attr("reference_val_accuracy", base)
    trial.set_constraint("accuracy_drop", bound - s["max_accuracy_drop"])  # feasible when <= 0
    over = _mcu_constraints(trial, result, cfg, data)
    trial.set_user_attr("feasible", bool(bound <= s["max_accuracy_drop"] + 1e-9 and all(v <= 0 for v in over)))
    record_result(trial, result, t0)
    progress.line(
        f"trial {trial.number}: val_accuracy {result['val_accuracy']:.4f} (drop {drop * 100:+.2f} pt, "
        f"bound {bound * 100:+.2f} pt)  "
        f"gzip {result['gzip_bytes'] / 1024:.1f} KB  {result['latency_ms']:.3f} ms  "
        f"({time.time() - t0:.1f} s)"
    )
    return result["val_accuracy"], float(result["gzip_bytes"]), result["latency_ms"]


def _mcu_constraints(trial: Any, result: dict, cfg: Any, data: Any) -> list[float]:
    """With --max-arena-kb / --max-flash-kb: the trial's artifact on TFLite Micro, one constraint per limit
    (KB over it; a model that is not full-int8 cannot run on the MCU: infinitely over)."""
    limits = cfg.settings.get("mcu_limits")
    if not limits:
        return []
    from compressor.mcu.fit import excess_kb, mcu_fit
    from compressor.pipeline.layout import TrialLayout

    artifact = TrialLayout(StudyLayout(cfg.run_dir, "search").trial(trial.number)).artifact
    fit = mcu_fit(artifact, split_of(data, "val").head(1)[0])
    result["mcu"] = fit
    over = excess_kb(fit, limits.get("arena_kb"), limits.get("flash_kb"))
    for name, value in over.items():
        trial.set_constraint(name, min(value, 1e9))  # NSGA-II compares violations: keep them finite
    return list(over.values())


def earlier_run(trial: Any, raw: dict, poll_s: float = 1.0) -> Any:
    """A finished trial of this study that ran exactly this recipe, or None.

    One that another worker or machine started earlier (a lower number) and is still running is
    waited for: training the same seeded recipe twice is the same work twice. Waiting only on lower
    numbers cannot deadlock; a trial that dies instead is failed by its heartbeat (checked here: no
    new trial starts while we wait, and Optuna fails stale trials only then) and we train. Without
    heartbeats (journal storage) a dead trial would be waited for for ever: no waiting there."""
    import time

    import optuna
    from optuna.storages._heartbeat import is_heartbeat_enabled
    from optuna.trial import TrialState

    can_wait = is_heartbeat_enabled(trial.study._storage)
    while True:
        if can_wait:
            optuna.storages.fail_stale_trials(trial.study)
        running = False
        for t in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)):
            if t.number == trial.number or t.user_attrs.get("recipe") != raw:
                continue
            if t.state == TrialState.COMPLETE and "accuracy_drop" in t.constraints:
                return t
            running = running or (t.state == TrialState.RUNNING and t.number < trial.number)
        if not (running and can_wait):
            return None
        time.sleep(poll_s)


def worst_layers(model: Any, data: Any) -> list[str]:
    """Keras layer names, worst int8 error (RMSE/scale) first, measured once on the input model."""
    from compressor.export.quant_debug import QuantDebugger, layer_label
    from compressor.recipes.ptq import calibration_sample

    stats = QuantDebugger(model, calibration_sample(data, 200), "int8").statistics()
    names: list[str] = []
    for row in stats:
        # Layout ops share their input's scale: never worth a float copy (as in selective.fall_back).
        if not row.get("node") or row.get("op") in ("RESHAPE", "SQUEEZE"):
            continue
        label = layer_label(row["node"], "").split("+")[0]
        if label and " (" not in label and label not in names:
            names.append(label)
    return names
