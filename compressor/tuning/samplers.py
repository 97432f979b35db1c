"""Samplers and pruners by name, with the settings that suit our small trial budgets.

- random: the baseline; every trial independent.
- tpe: Tree-structured Parzen Estimator (Bergstra et al. 2011), multivariate; few start-up
  random trials because budgets here are tens of trials, not hundreds, counted per Hyperband
  bracket (the sampler sees only its bracket's trials). ``constant_liar`` keeps
  parallel workers from proposing the same point while the other's trial is still running.
- grid: every combination of the space's grid points (see space.grid).
- nsga2: multi-objective genetic search (Deb et al. 2002) with constraint handling, for `search`.
Pruners stop bad trials from their per-epoch validation accuracy:
- hyperband (Li et al. 2018, arXiv:1603.06560), halving (successive halving, Jamieson &
  Talwalkar 2016), median, none.
"""

from __future__ import annotations

import math
from typing import Any

from compressor.runtime.errors import UserError


def sampler_seed(cfg: Any, worker: int) -> int:
    """The sampler seed of one worker process: ``seed + 1000 * worker`` within a machine.

    Machines sharing a study through --storage all number their workers from 0: with that alone
    every machine would propose the same trials in the same order, one trial apart. So when the
    study is not in the run folder's own SQLite file, the machine's name and this process's id are
    mixed in. The data split keeps ``cfg.seed``: every machine must judge on the same samples.
    """
    import os
    import socket
    import zlib

    from compressor.pipeline.layout import StudyLayout
    from compressor.tuning.storage import default_url

    seed = cfg.seed + 1000 * worker
    if cfg.storage == default_url(StudyLayout(cfg.run_dir, cfg.kind.split("_")[0])):
        return seed
    return seed + zlib.crc32(f"{socket.gethostname()}:{os.getpid()}".encode()) % 1_000_000 * 1000


SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("hyperband", "halving", "median", "none")
MIN_RESOURCE, REDUCTION = 1, 3  # Hyperband: epochs of the shortest rung, and 1/eta of trials promoted per rung


def make_sampler(name: str, seed: int, n_trials: int, grid: dict[str, list] | None = None, n_brackets: int = 1) -> Any:
    """``n_brackets``: Hyperband's bracket count. Optuna's samplers see only the trials of the
    current trial's bracket, so TPE's random start-up is paid once per bracket: size it on the
    trials one bracket will get, or a small budget never gets past the random phase."""
    import optuna

    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        startup = startup_trials(n_trials, n_brackets)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=True, constant_liar=True)
    if name == "grid":
        if not grid:
            raise UserError("--sampler grid needs at least one searched parameter in the space")
        return optuna.samplers.GridSampler(grid, seed=seed)
    raise UserError(f"unknown sampler {name!r}; valid: {', '.join(SAMPLERS)}")


def startup_trials(n_trials: int, n_brackets: int = 1) -> int:
    """Random trials before TPE models the space: a third of what one bracket will see, 3 to 10."""
    return max(3, min(10, n_trials // max(1, n_brackets) // 3))


def brackets(pruner: str, epochs: int) -> int:
    """How many groups the pruner splits trials into for the sampler: Hyperband's brackets
    floor(log_eta(max_resource / min_resource)) + 1 (Li et al. 2018), 1 for the others."""
    if pruner != "hyperband" or epochs < 2:
        return 1
    return int(math.floor(math.log(epochs / MIN_RESOURCE, REDUCTION) + 1e-9)) + 1


def make_nsga2(seed: int, n_trials: int) -> Any:
    """Constraints come from each trial (trial.set_constraint), NSGA-II's constrained domination."""
    import optuna

    # A generation of ~n/3 (at least 4) lets a 30-trial budget evolve 2-3 generations instead
    # of spending all of it on the default first generation of 50 random trials.
    population = max(4, min(50, n_trials // 3))
    return optuna.samplers.NSGAIISampler(population_size=population, seed=seed)


def make_pruner(name: str, epochs: int) -> Any:
    import optuna

    if epochs < 2:  # nothing to stop early: a 1-epoch trial would only be relabelled PRUNED at its end
        return optuna.pruners.NopPruner()

    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=MIN_RESOURCE, max_resource=epochs, reduction_factor=REDUCTION
        )
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise UserError(f"unknown pruner {name!r}; valid: {', '.join(PRUNERS)}")
