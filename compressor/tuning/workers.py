"""Run one study's trials in N processes on this machine, or as one worker among many machines.

Every worker (a process here, or ``compressor tune/search --study NAME --storage URL`` on
another machine) loads the same study from the shared storage and calls ``study.optimize``:
the storage hands out trial numbers atomically, so no trial is run twice and every result is
recorded in one place. Processes are started with ``spawn`` so each imports TensorFlow once,
cleanly (forking a process that already initialised TF deadlocks its thread pools).

The budget is a total for the study, not per worker: a worker stops when finished (complete or
pruned) plus running trials reach it, so an interrupted study resumes with only what is left.
Workers started at the same instant can overshoot the budget by at most workers - 1 trials.
An optional compute budget (``max_epochs``) also stops starting trials once the study's trials
have trained that many epochs in total: the currency Hyperband saves, where pruned trials cost
only the epochs they ran (a trial already running finishes, so it can overshoot by one trial).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

from compressor.pipeline.layout import StudyLayout
from compressor.runtime.errors import Interrupted, UserError
from compressor.tuning.progress import Progress
from compressor.tuning.storage import open_storage, quiet_optuna
from compressor.tuning.storage import redact as _redact

FINISHED = ("COMPLETE", "PRUNED")


@dataclass
class StudyConfig:
    """Everything a worker process needs, as plain picklable values."""

    kind: str  # module under compressor.tuning with make_objective(cfg, worker, progress)
    run_dir: str
    storage: str
    study: str
    n_trials: int
    workers: int = 1
    seed: int = 0
    quiet: bool = False
    spawn: bool = False  # run even a single worker in its own process (benchmarks: equal start-up costs)
    max_epochs: int | None = None  # compute budget: no new trial once the study's trials trained this many epochs
    settings: dict = field(default_factory=dict)


def count(study: Any, states: tuple[str, ...]) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=tuple(TrialState[s] for s in states)))


def open_study(
    cfg: StudyConfig, directions: list[str], user_attrs: dict, sampler: Any = None, pruner: Any = None
) -> Any:
    """Create the study, or load it to resume; refuse to mix a different search into an old study."""
    import optuna

    quiet_optuna()
    storage = open_storage(cfg.storage)
    study = optuna.create_study(
        storage=storage,
        study_name=cfg.study,
        directions=directions,
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )
    if [d.name.lower() for d in study.directions] != [d.lower() for d in directions]:
        raise UserError(
            f"study {cfg.study!r} in {cfg.storage} optimises other objectives "
            f"({[d.name.lower() for d in study.directions]}); choose another --study name"
        )
    for key, value in user_attrs.items():
        old = study.user_attrs.get(key)
        if old is None:
            study.set_user_attr(key, value)
        elif old != value:
            raise UserError(
                f"study {cfg.study!r} was created with a different {key}; resume it with the same "
                "settings, or start a new one with another --study name (or --overwrite)"
            )
    return study


def run_workers(cfg: StudyConfig, progress: Progress, wait: bool = False) -> float:
    """Run the study's remaining trials with ``cfg.workers`` processes; returns the wall time in seconds.
    ``wait``: then also wait for other machines' running trials (the process that concludes the study)."""
    t0 = time.time()
    _run(cfg, progress)
    if wait:
        wait_for_others(cfg, progress)
    return time.time() - t0


def wait_for_others(cfg: StudyConfig, progress: Progress, poll: float = 1.0) -> None:
    """Our workers stop when finished + running trials reach the budget; the running ones may be
    another machine's. Wait for them, and run the trials a dead machine leaves: its trial is failed
    once its heartbeat is older than the grace period, and re-queued (storage.py)."""
    import optuna
    from optuna.storages._heartbeat import is_heartbeat_enabled

    storage = open_storage(cfg.storage)
    if not is_heartbeat_enabled(storage):  # journal: a dead worker's trial would be waited for for ever
        return
    said = False
    while True:
        study = optuna.load_study(study_name=cfg.study, storage=storage)
        optuna.storages.fail_stale_trials(study)
        finished, running = count(study, FINISHED), count(study, ("RUNNING",))
        if count(study, ("WAITING",)) and finished < cfg.n_trials:
            _run(cfg, progress)
            if count(study, FINISHED) > finished:
                continue
        if not running:
            return
        if not said:
            progress.line(f"waiting for {running} trial(s) running on other workers")
            said = True
        time.sleep(poll)


@contextlib.contextmanager
def kept_on_interrupt(layout: StudyLayout, storage: str, study: str) -> Iterator[None]:
    """Turn Ctrl-C into an Interrupted saying what the run folder keeps: the study with its finished
    trials (Optuna marked the running ones FAIL) and the config, which the same command resumes."""
    try:
        yield
    except KeyboardInterrupt as e:  # also an Interrupted of the final compress run: rerunning *this* command resumes
        raise Interrupted(_kept(layout, storage, study)) from e


def _kept(layout: StudyLayout, storage: str, study: str) -> str:
    from compressor.tuning.storage import default_url

    where = str(layout.study_db) if storage == default_url(layout) else _redact(storage)
    kept = []
    if storage != default_url(layout) or layout.study_db.is_file():
        kept.append(f"study {study!r} in {where}{_finished(storage, study)}")
    if layout.config.is_file():
        kept.append(str(layout.config))
    if not kept:
        return f"no study was started; {layout.root} holds nothing to resume"
    return f"kept {' and '.join(kept)}; rerun the same command to resume the study"


def _finished(storage: str, study: str) -> str:
    """' (N finished trials)', read back from the storage; empty when it cannot be read quickly."""
    try:
        import optuna

        loaded = optuna.load_study(study_name=study, storage=open_storage(storage))
        return f" ({count(loaded, FINISHED)} finished trials)"
    except Exception:  # the study may not exist yet, or the storage is unreachable: say less, not wrong
        return ""


class _NoInterruptTraceback(logging.Filter):
    """Optuna logs a trial ended by Ctrl-C as a failure with the whole traceback (through Keras'
    fit loop, ~150 lines) and then its value; the command line says it was interrupted in one line
    instead. Once an interrupt is seen, the failure lines after it are dropped too."""

    def __init__(self) -> None:
        super().__init__()
        self.interrupted = False

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt):
            self.interrupted = True
        return not (self.interrupted and record.levelno >= logging.WARNING)


def _quiet_interrupts() -> None:
    """Filters sit on the logger that creates the record (optuna.study._optimize): a parent's would not see it."""
    logger = logging.getLogger("optuna.study._optimize")
    for f in [f for f in logger.filters if isinstance(f, _NoInterruptTraceback)]:
        logger.removeFilter(f)  # a new study in the same process starts uninterrupted
    logger.addFilter(_NoInterruptTraceback())


def _run(cfg: StudyConfig, progress: Progress) -> None:
    if cfg.workers <= 1 and not cfg.spawn:
        run_worker(cfg, 0, progress)
        return
    ctx = get_context("spawn")
    with ProcessPoolExecutor(max_workers=cfg.workers, mp_context=ctx, initializer=_ignore_sigint) as pool:
        futures = [pool.submit(_worker_entry, cfg, i) for i in range(cfg.workers)]
        errors = []
        try:
            for f in futures:
                try:
                    f.result()
                except UserError as e:
                    errors.append(str(e))
        except KeyboardInterrupt:
            _interrupt_workers(pool)
            raise
    if errors:
        raise UserError(errors[0])


def _ignore_sigint() -> None:
    """An idle pool process ignores Ctrl-C (it would die with a traceback); a running worker takes it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _interrupt_workers(pool: ProcessPoolExecutor) -> None:
    """Pass Ctrl-C on to the workers (a terminal sends it to them too; `kill -INT` only to us), so
    each marks its running trial failed and stops instead of finishing the study's budget."""
    pids = list(getattr(pool, "_processes", None) or {})  # CPython's {pid: process}; gone after shutdown
    pool.shutdown(wait=False, cancel_futures=True)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGINT)


def _worker_entry(cfg: StudyConfig, index: int) -> None:
    """Entry point of a spawned worker: share the cores, then run trials until done or interrupted."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _share_cores(cfg.workers)
        run_worker(cfg, index, Progress(quiet=cfg.quiet, prefix=f"[worker {index}] ", live=False))
    except KeyboardInterrupt:
        return  # the parent reports the interrupt; the storage holds what finished
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _share_cores(workers: int) -> None:
    """N workers on one machine each get cores/N intra-op threads: oversubscribed TF pools thrash."""
    threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    from compressor.keras_shim import tf

    with contextlib.suppress(RuntimeError):  # TF already initialised its runtime: keep its defaults
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)


def epochs_spent(study: Any) -> int:
    """Epochs trained by the study's trials: one reported step is one epoch (pruned trials count what they ran)."""
    return sum(len(t.intermediate_values) for t in study.get_trials(deepcopy=False))


def over_epoch_budget(study: Any, max_epochs: int | None) -> bool:
    return max_epochs is not None and epochs_spent(study) >= max_epochs


def run_worker(cfg: StudyConfig, index: int, progress: Progress) -> int:
    """One worker: load the study, run trials until the study's budget is reached; returns trials run."""
    import optuna

    quiet_optuna()
    _quiet_interrupts()
    module = importlib.import_module(f"compressor.tuning.{cfg.kind}")
    objective, sampler, pruner = module.make_objective(cfg, index, progress)
    study = optuna.load_study(study_name=cfg.study, storage=open_storage(cfg.storage), sampler=sampler, pruner=pruner)
    remaining = cfg.n_trials - count(study, FINISHED)
    if remaining <= 0 or over_epoch_budget(study, cfg.max_epochs):
        return 0
    ran = [0]
    host = socket.gethostname()

    failed = [float("nan")] * len(study.directions)

    def tagged(trial: Any) -> Any:
        trial.set_user_attr("worker", f"{host}:{os.getpid()}")
        try:
            return objective(trial)
        except optuna.TrialPruned:
            raise
        except Exception as e:
            # A step refusing a parameter combination is a result of the search, not a crash:
            # record why, mark the trial failed (NaN) and go on with the study. Errors that are
            # not UserErrors keep their type so the summary shows them as internal errors.
            reason = str(e).splitlines()[0] if str(e) else ""
            reason = reason if isinstance(e, UserError) else f"internal error: {type(e).__name__}: {reason}"
            trial.set_user_attr("error", reason[:500])
            progress.line(f"trial {trial.number}: failed: {reason}")
            return failed[0] if len(failed) == 1 else failed

    def stop_at_budget(study: Any, trial: Any) -> None:
        ran[0] += 1
        if count(study, FINISHED + ("RUNNING",)) >= cfg.n_trials or over_epoch_budget(study, cfg.max_epochs):
            study.stop()

    study.optimize(tagged, n_trials=remaining, callbacks=[stop_at_budget], gc_after_trial=True)
    return ran[0]
