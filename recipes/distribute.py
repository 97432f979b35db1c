"""tf.distribute for the training steps: one strategy per process, chosen before TensorFlow starts.

``none`` trains on the default device. ``mirrored`` replicates the model over this machine's GPUs
(or, without one, over ``replicas`` logical CPU devices, which is how it is tested on a CPU).
``multi-worker`` is MultiWorkerMirroredStrategy: every machine runs the same command with its own
``TF_CONFIG``; the chief (task ``chief``, else worker 0) writes OUT, the others write a throwaway
sibling folder. The batch size stays the global batch: Keras splits each batch across replicas.

Fault tolerance: each fit keeps a BackupAndRestore checkpoint per epoch under ``.OUT.backup`` (a
path every worker computes alike, so it must be on a file system they share). A worker that dies
makes the others fail within seconds (collective heartbeats); starting every worker again with
``--resume`` skips the finished steps and continues the interrupted fit from its last epoch.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from compressor.runtime.errors import UserError

MODES = ("none", "mirrored", "multi-worker")
_state: dict[str, Any] = {"strategy": None, "mode": "none", "backup_root": None, "key": "", "fits": 0}


def setup(mode: str, replicas: int | None = None) -> Any:
    """Create this process's strategy (call before any TensorFlow work); returns it, None for none."""
    if mode not in MODES:
        raise UserError(f"--distribute must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "none":
        if replicas not in (None, 1):
            raise UserError("--replicas needs --distribute mirrored")
        _state.update(strategy=None, mode=mode)
        return None
    if mode == "multi-worker":
        if replicas not in (None, 1):
            raise UserError("--replicas is for --distribute mirrored; multi-worker takes its workers from TF_CONFIG")
        _task_of(_tf_config())  # a missing or wrong TF_CONFIG fails before TensorFlow starts
        strategy = _multi_worker()
    else:
        strategy = _mirrored(replicas)
    _state.update(strategy=strategy, mode=mode)
    return strategy


def _mirrored(replicas: int | None) -> Any:
    from compressor.keras_shim import tf

    gpus = tf.config.list_physical_devices("GPU")
    kind, found = ("GPU", len(gpus)) if gpus else ("CPU", 1)
    wanted = replicas or found
    if kind == "CPU" and wanted > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:  # one physical CPU split into logical devices: only possible before TensorFlow initialises
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * wanted)
        except RuntimeError:
            raise UserError(
                "--replicas must be chosen before TensorFlow starts: call distribute.setup() first"
            ) from None
    elif wanted > found:
        raise UserError(f"--replicas {wanted}: this machine has {found} {kind}(s); use at most {found}")
    devices = [d.name for d in tf.config.list_logical_devices(kind)][:wanted]
    return tf.distribute.MirroredStrategy(devices)


def _multi_worker() -> Any:
    from compressor.keras_shim import tf
    from compressor.runtime.quiet import native_stderr_silenced

    with native_stderr_silenced():
        return tf.distribute.MultiWorkerMirroredStrategy()


def _tf_config() -> dict:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise UserError(
            "--distribute multi-worker needs TF_CONFIG on every machine, e.g. "
            '\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}\''
        )
    try:
        config = json.loads(raw)
    except ValueError as e:
        raise UserError(f"TF_CONFIG is not valid JSON ({e}); see README 'Training on several machines'") from None
    if not isinstance(config, dict):
        raise UserError("TF_CONFIG must be a JSON object with 'cluster' and 'task'")
    return config


def _task_of(config: dict) -> tuple[str, int]:
    cluster, task = config.get("cluster"), config.get("task")
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise UserError("TF_CONFIG needs a 'cluster' object (worker addresses) and a 'task' object (type, index)")
    kind, index = task.get("type"), task.get("index", 0)
    members = cluster.get(kind) if isinstance(kind, str) else None
    if not isinstance(members, list) or not isinstance(index, int) or not 0 <= index < len(members):
        raise UserError(f"TF_CONFIG task {task} is not a member of its cluster {sorted(cluster)}")
    return kind, index


def mode() -> str:
    return _state["mode"]


def active() -> bool:
    return _state["strategy"] is not None


def replicas() -> int:
    strategy = _state["strategy"]
    return 1 if strategy is None else int(strategy.num_replicas_in_sync)


def is_chief() -> bool:
    """Whether this process writes the outputs: always, except a non-chief multi-worker task."""
    if _state["mode"] != "multi-worker":
        return True
    config = _tf_config()
    kind, index = _task_of(config)
    has_chief = bool(config["cluster"].get("chief"))
    return kind == "chief" or (not has_chief and kind == "worker" and index == 0)


def scope() -> Any:
    """The strategy's scope (a no-op without one): models and optimizers built inside it are replicated."""
    strategy = _state["strategy"]
    return nullcontext() if strategy is None else strategy.scope()


@contextmanager
def output_folder(out: Path, resume: bool = False) -> Iterator[Path]:
    """Where this process writes: OUT for the chief, a sibling ``.OUT.<task>-N`` for other workers.

    A worker's folder mirrors the chief's run (so ``--resume`` skips the same finished steps) and is
    removed once the command succeeds, as are the epoch backups (``.OUT.backup``, by the chief).
    Without ``resume`` both start afresh: a stale backup would restore another run's weights.
    """
    out = Path(out)
    backups = out.parent / f".{out.name}.backup"
    _state.update(backup_root=backups if active() else None, key="", fits=0)
    chief = is_chief()
    if chief:
        where = out
    else:
        kind, index = _task_of(_tf_config())
        where = out.parent / f".{out.name}.{kind}-{index}"
    ours = backups if chief else where  # names only a distributed run makes
    if active() and not resume:
        shutil.rmtree(ours, ignore_errors=True)
    yield where
    if active():
        shutil.rmtree(ours, ignore_errors=True)
    _state.update(backup_root=None)


def begin_step(key: str) -> None:
    """Name the training step whose fits follow (its backups are kept apart from other steps')."""
    _state.update(key=key, fits=0)


def backup_callbacks() -> list:
    """A BackupAndRestore callback for the next fit when training is distributed, else nothing.

    Every fit of a step gets its own folder (fit-0, fit-1, ...): a restarted step reruns its earlier
    fits from scratch and must not pick up a later fit's checkpoint.
    """
    root = _state["backup_root"]
    if not active() or root is None:
        return []
    from compressor.keras_shim import keras

    folder = Path(root) / (_state["key"] or "fit") / f"fit-{_state['fits']}"
    _state["fits"] += 1
    return [keras.callbacks.BackupAndRestore(str(folder))]


def clone_into_scope(model: Any) -> Any:
    """``model`` rebuilt inside the strategy's scope with its weights (the model itself without one)."""
    if not active():
        return model
    from compressor.keras_shim import keras
    from compressor.recipes.stepio import step_load_scope

    with scope(), step_load_scope():  # a QAT model's wrappers clone too
        try:
            clone = keras.models.clone_model(model)
        except Exception as e:  # subclassed models cannot be cloned: say what to do instead
            raise UserError(
                f"--distribute {mode()} needs a functional or sequential Keras model "
                f"({type(e).__name__}: {str(e).splitlines()[0][:160]})"
            ) from None
        clone.set_weights(model.get_weights())
    return clone


@contextmanager
def worker_failures_explained() -> Iterator[None]:
    """Turns a fit that a dead worker aborted into one line saying how to resume."""
    try:
        yield
    except Exception as e:
        failure = worker_failure(e)
        if failure is None:
            raise
        raise failure from e


def worker_failure(e: BaseException) -> UserError | None:
    """One line for a fit that a dead worker aborted (collective heartbeats), None for other errors."""
    if mode() != "multi-worker" or type(e).__name__ not in ("UnavailableError", "AbortedError", "InternalError"):
        return None
    first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
    return UserError(
        f"a worker of this multi-worker job stopped ({first}); start every worker again with the same "
        "command and --resume: training continues from its last finished epoch"
    )
