"""--distribute: MirroredStrategy over 2 logical CPU devices, and MultiWorkerMirroredStrategy with two
worker processes on loopback ports, each checked against a single-device run; a killed worker's job
resumes from its last finished epoch (BackupAndRestore) and only the chief writes OUT.

Every distributed run is its own process: logical devices and the strategy must be set up before
TensorFlow initialises, which this test process did long ago.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
TIMEOUT = 240
TINY = ["--param", "filters=8", "--param", "dense_units=32", "--batch-size", "64"]


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "compressor", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env or ENV, cwd=ROOT, timeout=TIMEOUT)


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _tf_config(ports: list[int], index: int) -> str:
    workers = [f"127.0.0.1:{p}" for p in ports]
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


@pytest.mark.parametrize(
    "args, tf_config, expected",
    [
        (["--distribute", "multi-worker"], None, "needs TF_CONFIG"),
        (["--distribute", "multi-worker"], "{not json", "TF_CONFIG is not valid JSON"),
        (
            ["--distribute", "multi-worker"],
            '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}',
            "not a member",
        ),
        (["--replicas", "2"], None, "--replicas needs --distribute mirrored"),
    ],
)
def test_bad_distribution_settings_are_one_line_errors(tmp_path, args, tf_config, expected):
    env = {k: v for k, v in ENV.items() if k != "TF_CONFIG"}
    if tf_config is not None:
        env["TF_CONFIG"] = tf_config
    out = tmp_path / "out"
    r = _cli("train", "--out", str(out), "--epochs", "1", *args, env=env)
    assert r.returncode == 2, r.stderr
    assert expected in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.iterdir())


def _history(folder: Path) -> dict:
    return json.loads((folder / "history.json").read_text())


def test_mirrored_two_replicas_matches_one_device(tmp_path):
    """Same global batch, same seed: the mean gradient over 2 replicas is the batch's gradient, so the
    curves agree up to summation order and per-replica BatchNorm statistics (stated tolerance: 10%
    relative on every epoch's val_loss, 3 points of test accuracy)."""
    runs, procs = {}, {}
    for name, extra in (("one", []), ("two", ["--distribute", "mirrored", "--replicas", "2"])):
        cmd = [sys.executable, "-m", "compressor", "train", "--out", str(tmp_path / name), "--epochs", "3", "--json"]
        with open(tmp_path / f"{name}.out", "w") as out, open(tmp_path / f"{name}.err", "w") as err:
            # side by side: two independent processes (what they compute does not depend on timing)
            procs[name] = subprocess.Popen([*cmd, *TINY, *extra], stdout=out, stderr=err, env=ENV, cwd=ROOT)
    try:
        for name, proc in procs.items():
            assert proc.wait(timeout=TIMEOUT) == 0, (tmp_path / f"{name}.err").read_text()
            runs[name] = (json.loads((tmp_path / f"{name}.out").read_text()), _history(tmp_path / name))
    finally:
        for proc in procs.values():
            proc.kill()
    (card1, hist1), (card2, hist2) = runs["one"], runs["two"]
    assert card2["training"]["distribute"] == {"mode": "mirrored", "replicas": 2}
    assert "distribute" not in card1["training"]
    for a, b in zip(hist1["val_loss"], hist2["val_loss"], strict=True):
        assert abs(a - b) <= 0.10 * a, (hist1["val_loss"], hist2["val_loss"])
    assert abs(card1["test_accuracy"] - card2["test_accuracy"]) <= 0.03
    assert not (tmp_path / ".two.backup").exists()  # the epoch backups go once training succeeded


def _start_worker(index: int, ports: list[int], args: list[str], log: Path) -> subprocess.Popen:
    env = {**ENV, "TF_CONFIG": _tf_config(ports, index)}
    cmd = [sys.executable, "-m", "compressor", *args, "--distribute", "multi-worker"]
    with open(log, "w") as sink:
        return subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def _wait_for(log: Path, text: str, proc: subprocess.Popen, timeout: float = TIMEOUT) -> None:
    deadline = time.time() + timeout
    while text not in log.read_text():
        assert proc.poll() is None, log.read_text()[-2000:]
        assert time.time() < deadline, f"no {text!r} in {log}"
        time.sleep(0.2)


def _run_workers(ports: list[int], args: list[str], logs: list[Path]) -> list[int]:
    procs = [_start_worker(i, ports, args, log) for i, log in enumerate(logs)]
    try:
        return [p.wait(timeout=TIMEOUT) for p in procs]
    finally:
        for p in procs:
            p.kill()


def test_killed_worker_resumes_and_only_the_chief_writes(tiny_model_path, tmp_path):
    out = tmp_path / "run"
    steps = ["--set", "steps.0.params.epochs=3", "--set", "steps.0.params.learning_rate=0.0005"]
    steps += ["--set", "export.formats=[tflite]"]  # ONNX is not what this test is about
    args = ["compress", tiny_model_path, "--recipe", "prune-int8", "--out", str(out), "--runs", "5", *steps]
    ports = _free_ports(2)
    logs = [tmp_path / "chief.log", tmp_path / "worker.log"]
    chief, worker = (_start_worker(i, ports, args, log) for i, log in enumerate(logs))
    try:
        _wait_for(logs[0], "epoch 1/3", chief)  # epoch 1 finished (and backed up): 2 of 3 epochs left
        worker.kill()  # SIGKILL mid-training: the chief's collectives lose their peer
        assert chief.wait(timeout=TIMEOUT) == 2
    finally:
        chief.kill()
        worker.kill()
    told = logs[0].read_text().strip().splitlines()[-1]
    assert "a worker of this multi-worker job stopped" in told and "--resume" in told, told
    assert (tmp_path / ".run.backup").is_dir()  # the finished epochs' checkpoint, kept for the restart

    codes = _run_workers(_free_ports(2), [*args, "--resume"], [tmp_path / "chief2.log", tmp_path / "worker2.log"])
    chief_log = (tmp_path / "chief2.log").read_text()
    assert codes == [0, 0], chief_log[-3000:]
    epochs = [line.split()[1] for line in chief_log.splitlines() if line.strip().startswith("epoch ")]
    assert epochs and epochs[0] in ("2/3", "3/3"), epochs  # continued, not restarted from epoch 1
    report = json.loads((out / "report.json").read_text())
    pruned = next(a for a in report["artifacts"] if a["artifact"] == "prune-int8" and a["format"] == "tflite")
    assert pruned["accuracy"] >= report["reference_accuracy"] - 0.05
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # worker folder, backups gone


def test_tune_trials_train_over_two_replicas(tiny_model_path, tmp_path):
    """tune --distribute mirrored: a recipe-mode study whose trials train inside the strategy; the
    trials complete with sane accuracy, and --workers with it is refused (one or the other). Also the
    suite's recipe-mode tune through the CLI: each trial ran the value sampled from the default space."""
    recipe = tmp_path / "prune.yaml"
    steps = [{"type": "prune", "params": {"epochs": 1, "sparsity": 0.3}}, {"type": "dynamic"}]
    recipe.write_text(json.dumps({"steps": steps, "export": {"formats": ["tflite"]}}))
    args = ["tune", tiny_model_path, "--recipe", str(recipe), "--trials", "2", "--no-final", "--json"]
    r = _cli(*args, "--out", str(tmp_path / "t"), "--distribute", "mirrored", "--replicas", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "every trial trains over 2 replica(s)" in r.stderr
    result = json.loads(r.stdout)
    assert result["mode"] == "recipe" and result["counts"]["COMPLETE"] == 2
    assert all(row["value"] > 0.5 for row in result["trials"]), result["trials"]
    for row in result["trials"]:
        lr = row["values"]["steps.0.params.learning_rate"]
        assert 1e-5 <= lr <= 1e-2  # the default space of a recipe's fine-tuning step
        saved = yaml.safe_load((tmp_path / "t" / "trials" / f"{row['number']:04d}" / "recipe.yaml").read_text())
        assert saved["steps"][0]["params"]["learning_rate"] == lr  # the trial ran what was sampled
        assert row["result"]["val_accuracy"] == row["value"]
    refused = _cli(*args, "--out", str(tmp_path / "w"), "--distribute", "mirrored", "--workers", "2")
    assert refused.returncode == 2 and "choose --workers" in refused.stderr
