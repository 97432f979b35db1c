"""Search throughput by storage: trials per minute with 1 and 2 `compressor search` processes,
on SQLite (the run folder's study.db; two processes share one file through --storage sqlite:///...)
and on PostgreSQL (a throwaway loopback server, tests/pg_server.py).

The same fixed search each time: the tiny digits_cnn, post-training recipes only (int8 with a
searched calibration size, dynamic range, float16), --no-final so only trials are timed.
Throughput is the study's completed trials over the span from its first trial's start to its
last trial's end, read back from the storage: process start-up (TensorFlow import, loading the
model) is reported apart as ``wall_s``. Both processes run on this machine, so with 2 cores the
2-process figure is what sharing the cores gives, not what a second machine would add.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TRIALS = 12
SPACE = {
    "convert": {
        "int8": {"calibration_samples": {"type": "int", "low": 20, "high": 300}},
        "dynamic": {},
        "float16": {},
    },
    "export": {"formats": ["tflite"]},
}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "compressor", *args]


def _model(work: Path) -> str:
    base = work / "base"
    if not (base / "model").exists():
        cmd = _cli("train", "--model", "digits_cnn", "--epochs", "3", "--out", str(base), "--overwrite")
        subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT, env=_env())
    return str(base / "model")


def _env() -> dict:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _run(work: Path, model: str, name: str, storage: str | None, processes: int) -> dict:
    """``processes`` searches sharing one study; returns trials/minute and what the study holds."""
    space = work / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    procs, t0 = [], time.time()
    for i in range(processes):
        out = work / f"{name}-{i}"
        cmd = _cli("search", model, "--space", str(space), "--trials", str(TRIALS), "--max-accuracy-drop", "0.05")
        cmd += ["--study", name, "--out", str(out), "--overwrite", "--no-final", "--quiet"]
        cmd += ["--storage", storage] if storage else []
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    try:
        for p in procs:
            _, err = p.communicate(timeout=1800)
            if p.returncode not in (0, 1):
                raise RuntimeError(f"{name}: search exited {p.returncode}: {err.decode()[-1000:]}")
    finally:  # a failed run leaves no process behind writing into its folder
        for p in procs:
            p.kill()
            p.wait()
    wall = time.time() - t0
    return {**_figures(storage or f"sqlite:///{work / f'{name}-0' / 'study.db'}", name), "wall_s": round(wall, 1)}


def _figures(url: str, name: str) -> dict:
    import optuna
    from optuna.trial import TrialState

    from compressor.tuning.storage import open_storage, quiet_optuna

    quiet_optuna()
    done = optuna.load_study(study_name=name, storage=open_storage(url)).get_trials(states=(TrialState.COMPLETE,))
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    return {
        "trials": len(done),
        "reused": sum("reused_from" in t.user_attrs for t in done),
        "workers": len({t.user_attrs.get("worker") for t in done}),
        "span_s": round(span, 1),
        "trials_per_minute": round(60 * len(done) / span, 1),
    }


def search_throughput(work: Path) -> dict:
    """Trials per minute, 1 vs 2 processes, SQLite vs PostgreSQL, and their ratios."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.measure import ratio
    from tests.pg_server import missing, postgres_server

    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    model = _model(work)
    runs = {
        "sqlite_1": _run(work, model, "sqlite1", None, 1),
        "sqlite_2": _run(work, model, "sqlite2", f"sqlite:///{work / 'shared-study.db'}", 2),
    }
    reason = missing()
    if reason is None:
        with postgres_server() as url:
            runs["postgresql_1"] = _run(work, model, "pg1", url, 1)
            runs["postgresql_2"] = _run(work, model, "pg2", url, 2)
    tpm = {k: v["trials_per_minute"] for k, v in runs.items()}
    return {
        "trials": TRIALS,
        "runs": runs,
        "postgresql_skipped": reason,
        "sqlite_2_vs_1": ratio(tpm["sqlite_2"], tpm["sqlite_1"]),
        "postgresql_2_vs_1": ratio(tpm["postgresql_2"], tpm["postgresql_1"]) if reason is None else None,
        "postgresql_vs_sqlite_1": ratio(tpm["postgresql_1"], tpm["sqlite_1"]) if reason is None else None,
        "postgresql_vs_sqlite_2": ratio(tpm["postgresql_2"], tpm["sqlite_2"]) if reason is None else None,
    }


if __name__ == "__main__":
    import json

    print(json.dumps(search_throughput(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/storage-bench")), indent=1))
