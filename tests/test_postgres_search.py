"""`compressor search --storage postgresql://...` on a real PostgreSQL server, as two machines.

Two `compressor search` processes share one study (one with --no-final, as an extra machine would);
the study is read back from PostgreSQL with Optuna. The server is a throwaway one on loopback
(tests/pg_server.py); without the PostgreSQL binaries these tests are skipped.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.pg_server import postgres_server

PTQ_SPACE = {
    "convert": {"int8": {"calibration_samples": 50}, "dynamic": {}, "float16": {}},
    "export": {"formats": ["tflite"]},
}
TRAINING_SPACE = {  # a 1-epoch prune: a trial slow enough to be killed in the middle
    "steps": [{"type": "prune", "params": {"epochs": 1, "learning_rate": 5e-4, "sparsity": 0.3}}],
    "convert": {"int8": {"calibration_samples": 50}, "dynamic": {}},
    "export": {"formats": ["tflite"]},
}
HEARTBEAT = {"COMPRESSOR_HEARTBEAT_SECONDS": "1", "COMPRESSOR_HEARTBEAT_GRACE_SECONDS": "4"}
TIMEOUT = 150  # seconds a search process may take before the test gives up on it


@pytest.fixture(scope="module")
def pg_url():
    with postgres_server() as url:
        yield url


def _start(model: str, space: dict, url: str, study: str, out: Path, trials: int, *extra: str) -> subprocess.Popen:
    """One machine: `compressor search` in its own process, its output in OUT.log."""
    out.parent.mkdir(parents=True, exist_ok=True)
    space_file = out.parent / f"{study}-space.yaml"
    space_file.write_text(yaml.safe_dump(space))
    cmd = [sys.executable, "-m", "compressor", "search", model, "--space", str(space_file)]
    cmd += ["--max-accuracy-drop", "0.05", "--trials", str(trials), "--storage", url, "--study", study]
    cmd += ["--out", str(out), *extra]
    log = open(out.parent / f"{out.name}.log", "w")  # noqa: SIM115 (closed with the process below)
    env = {**os.environ, **HEARTBEAT, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=Path(__file__).parents[1])


def _finish(proc: subprocess.Popen, out: Path) -> str:
    try:
        proc.wait(timeout=TIMEOUT)
    finally:
        proc.kill()
        proc.stdout and proc.stdout.close()
    return (out.parent / f"{out.name}.log").read_text()


def _study(url: str, name: str):
    import optuna

    from compressor.tuning.storage import open_storage

    return optuna.load_study(study_name=name, storage=open_storage(url))


def _trained_once(trials) -> None:
    """No recipe trained twice: a repeated recipe is the deliberate reuse of a finished result."""
    trained = [json.dumps(t.user_attrs["recipe"], sort_keys=True) for t in trials if "reused_from" not in t.user_attrs]
    assert len(trained) == len(set(trained)), trained
    for t in trials:
        if "reused_from" in t.user_attrs:
            source = trials[[x.number for x in trials].index(t.user_attrs["reused_from"])]
            assert source.user_attrs["recipe"] == t.user_attrs["recipe"]


def test_two_machines_share_one_study(tiny_model_path, tmp_path, pg_url):
    from optuna.trial import TrialState

    a = _start(tiny_model_path, PTQ_SPACE, pg_url, "two", tmp_path / "A", 6)
    b = _start(tiny_model_path, PTQ_SPACE, pg_url, "two", tmp_path / "B", 6, "--no-final")
    log_b, log_a = _finish(b, tmp_path / "B"), _finish(a, tmp_path / "A")
    assert a.returncode == 0, log_a
    assert b.returncode == 0, log_b
    password = pg_url.split(":")[2].split("@")[0]
    assert password not in log_a + log_b and "compressor:***@127.0.0.1" in log_a  # redacted

    study = _study(pg_url, "two")
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == 6 and len(study.trials) == 6  # the budget, shared: nothing failed, nothing extra
    assert [t.number for t in study.trials if t.user_attrs.get("baseline")] == [0]  # queued once
    _trained_once(done)
    workers = {t.user_attrs["worker"] for t in done}
    assert len(workers) == 2  # both machines ran trials

    assert (tmp_path / "A" / "best" / "report.json").is_file()  # exactly one final export
    assert not (tmp_path / "B" / "best").exists()
    result = json.loads((tmp_path / "A" / "search.json").read_text())
    assert len(result["candidates"]) == 6  # concluded after the other machine's last trial


def _wait_for_running_trial(url: str, study: str, pid: int, deadline: float):
    """The trial the process ``pid`` is running, as soon as there is one (polling the database)."""
    from optuna.trial import TrialState

    while time.time() < deadline:
        with contextlib.suppress(KeyError):  # the study is not created yet
            for t in _study(url, study).get_trials(states=(TrialState.RUNNING,)):
                if t.user_attrs.get("worker", "").endswith(f":{pid}"):
                    return t
        time.sleep(0.2)
    raise AssertionError(f"process {pid} ran no trial in time")


def test_a_killed_machine_s_trial_is_failed_and_requeued(tiny_model_path, tmp_path, pg_url):
    from optuna.trial import TrialState

    trials = 4
    a = _start(tiny_model_path, TRAINING_SPACE, pg_url, "kill", tmp_path / "A", trials)
    b = _start(tiny_model_path, TRAINING_SPACE, pg_url, "kill", tmp_path / "B", trials, "--no-final")
    try:
        victim = _wait_for_running_trial(pg_url, "kill", b.pid, time.time() + 60)
        os.kill(b.pid, signal.SIGKILL)  # power loss: no chance to mark its trial failed
        _finish(b, tmp_path / "B")
    finally:
        b.kill()
    log_a = _finish(a, tmp_path / "A")
    assert a.returncode in (0, 1), log_a  # 1: the chosen artifact may fail the test-split gate

    study = _study(pg_url, "kill")
    killed = study.trials[victim.number]
    assert killed.state == TrialState.FAIL  # failed once its heartbeat was older than the grace period
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
    assert retried[0].params == killed.params
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == trials  # the budget is still reached
    assert (tmp_path / "A" / "best" / "report.json").is_file()
