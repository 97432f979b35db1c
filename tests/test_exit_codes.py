"""Exit codes both CLIs share (0 ok, 1 gate, 2 user/environment, 70 bug, 130 Ctrl-C), produced for real.

Tests run as root here, where a chmod'ed folder does not stop writes. The file-system errors are
made with mechanisms root cannot override: a path under a regular FILE (ENOTDIR), a directory
where a file must be replaced (EISDIR), a folder under /sys (sysfs refuses mkdir: EPERM as root,
EACCES otherwise). ENOSPC, EROFS, EDQUOT and ENAMETOOLONG go through the mapping function with
real OSError instances: no tiny tmpfs or read-only mount can be made here.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from compressor.commands.app import state
from compressor.commands.cli import cli
from compressor.pipeline.layout import RunLayout, StudyLayout
from compressor.runtime import cli as runtime_cli
from compressor.runtime.errors import Interrupted, UserError
from compressor.runtime.exit_codes import (
    GATE_FAILED,
    INTERNAL_ERROR,
    INTERRUPTED,
    OK,
    USER_ERROR,
    outcome,
    user_os_error,
)
from tests.signals import popen_interruptible

COMPRESSOR = str(Path(sys.executable).parent / "compressor")
TINY_SPACE = {
    "epochs": 3,
    "params": {
        "learning_rate": {"type": "float", "low": 1e-3, "high": 3e-2, "scale": "log"},
        "batch_size": {"type": "categorical", "choices": [32, 64]},
        "model.filters": 4,
        "model.dense_units": 16,
    },
}


@pytest.fixture(autouse=True)
def _no_debug():
    """--debug sets a process-wide flag; a test that passes it must not leak tracebacks into the next."""
    yield
    state["debug"] = False


def invoke(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


def one_error_line(output: str) -> str:
    lines = [ln for ln in output.splitlines() if ln.strip() and not ln.startswith(("study ", "trial "))]
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    assert "Traceback" not in output
    return lines[0]


def test_codes_are_distinct_and_conventional():
    assert (OK, GATE_FAILED, USER_ERROR, INTERNAL_ERROR, INTERRUPTED) == (0, 1, 2, 70, 130)


@pytest.mark.parametrize(
    "code, fragment",
    [
        (errno.ENOSPC, "no space left"),
        (errno.EDQUOT, "quota"),
        (errno.EROFS, "read-only file system"),
        (errno.EACCES, "permission denied"),
        (errno.EPERM, "not permitted"),
        (errno.ENOTDIR, "is a file, not a folder"),
        (errno.EEXIST, "already exists"),
        (errno.EISDIR, "is a folder where a file is expected"),
        (errno.ENAMETOOLONG, "too long"),
    ],
)
def test_user_caused_os_errors_are_one_line_naming_the_path(code, fragment):
    e = OSError(code, os.strerror(code), "/data/out/model.tflite")
    exit_code, line = outcome(e)
    assert exit_code == USER_ERROR and line.startswith("error: /data/out/model.tflite: ") and fragment in line
    wrapped = RuntimeError("saving failed")
    wrapped.__cause__ = e
    assert outcome(wrapped) == (USER_ERROR, line)  # `raise ... from e` keeps the user's cause


def test_rename_names_the_destination_and_other_os_errors_stay_bugs():
    rename = OSError(errno.EISDIR, os.strerror(errno.EISDIR), "/out/.report.html.x.tmp", None, "/out/report.html")
    assert user_os_error(rename).startswith("/out/report.html: ")
    h5py_style = OSError("Unable to create file (errno = 28, error message = 'No space left on device')")
    assert user_os_error(h5py_style).startswith("no space left on the device")  # no errno: read from the text
    code, line = outcome(FileNotFoundError(errno.ENOENT, "No such file", "/tmp/x"))
    assert code == INTERNAL_ERROR and "internal error (a bug): FileNotFoundError" in line
    assert outcome(UserError("bad --data")) == (USER_ERROR, "error: bad --data")
    assert outcome(KeyboardInterrupt()) == (INTERRUPTED, "interrupted")
    assert outcome(Interrupted("kept x")) == (INTERRUPTED, "interrupted: kept x")


def test_internal_error_is_exit_70_one_line_and_debug_shows_the_traceback(tmp_path, monkeypatch):
    import compressor.reports.html

    def boom(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(compressor.reports.html, "write_html", boom)
    code, output = invoke("report", tmp_path)
    assert code == INTERNAL_ERROR
    assert one_error_line(output) == (
        "error: internal error (a bug): RuntimeError: boom; rerun with --debug for the traceback"
    )
    code, output = invoke("report", tmp_path, "--debug")
    assert code == INTERNAL_ERROR and "Traceback" in output and "in boom" in output


def test_runtime_cli_internal_and_os_errors(tmp_path, monkeypatch, capsys):
    import compressor.runtime.commands as commands

    monkeypatch.setattr(commands, "verify", lambda target, key=None: {}["no such key"])
    assert runtime_cli.run(["verify", "bundle.zip"]) == INTERNAL_ERROR
    err = capsys.readouterr().err
    assert err.startswith("error: internal error (a bug): KeyError") and "Traceback" not in err

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setattr(commands, "verify", lambda target, key=None: open(Path(target) / "manifest.json").read())  # noqa: SIM115
    assert runtime_cli.run(["verify", str(blocker)]) == USER_ERROR  # a real ENOTDIR from open()
    err = capsys.readouterr().err
    assert err.startswith(f"error: {blocker / 'manifest.json'}: ")
    assert err.endswith(": a part of this path is a file, not a folder: choose another path\n")


def _space(tmp_path: Path) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(TINY_SPACE))
    return path


def test_out_under_a_file_is_a_user_error_and_leaves_nothing(tmp_path):
    """ENOTDIR for real: --out below a regular file, for train (before TF) and tune."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, output = invoke("train", "--out", blocker / "run", "--epochs", "1")
    assert code == USER_ERROR and str(blocker) in one_error_line(output)
    code, output = invoke("tune", "--space", _space(tmp_path), "--trials", "1", "--out", blocker / "run")
    assert code == USER_ERROR and str(blocker) in one_error_line(output)
    assert blocker.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "space.yaml"]


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs sysfs, which refuses new folders even to root")
def test_out_where_nothing_may_be_created_is_a_user_error():
    """EPERM (root) / EACCES (others) for real: sysfs refuses mkdir whoever asks."""
    out = Path("/sys/compressor-test-out")
    code, output = invoke("tune", "--trials", "1", "--out", out)
    line = one_error_line(output)
    # the path, or the lock file the run folder takes next to it (tuning/run_folder.py), is named
    assert code == USER_ERROR and "/sys/" in line and out.name in line
    assert "not permitted" in line.lower() or "permission denied" in line.lower()
    assert not out.exists()


def _minimal_report(run: Path) -> None:
    run.mkdir()
    RunLayout(run).report_json.write_text(json.dumps({"schema": "compressor.report/1", "artifacts": []}))


def test_report_onto_a_folder_is_a_user_error_and_leaves_no_temp_file(tmp_path):
    """EISDIR for real: report.html is a folder, so the atomic rename onto it fails."""
    run = tmp_path / "run"
    _minimal_report(run)
    html = RunLayout(run).report_html
    html.mkdir()
    code, output = invoke("report", run)
    assert code == USER_ERROR and one_error_line(output).startswith(f"error: {html}: is a folder")
    assert sorted(p.name for p in run.iterdir()) == ["report.html", "report.json"] and not any(html.iterdir())
    html.rmdir()
    assert invoke("report", run)[0] == OK and html.is_file()  # the same minimal report is a report


@pytest.mark.parametrize(
    "kind, content, fragment",
    [
        ("compress", [1, 2], "its top level is a list, not an object"),
        ("compress", {"schema": "compressor.report/1"}, "no 'artifacts'"),
        ("compress", {"artifacts": [{"artifact": "int8"}]}, "artifacts[0] has no 'format'"),
        ("compress", {"schema": "compressor.tune/1", "artifacts": []}, "schema 'compressor.tune/1'"),
        ("tune", {"trials": {}, "study": "s"}, "no 'storage'"),
        ("search", "a string", "its top level is a string"),
    ],
)
def test_report_refuses_json_that_is_not_a_report(tmp_path, kind, content, fragment):
    run = tmp_path / "run"
    run.mkdir()
    path = RunLayout(run).report_json if kind == "compress" else StudyLayout(run, kind).result
    path.write_text(json.dumps(content))
    code, output = invoke("report", run)
    line = one_error_line(output)
    assert code == USER_ERROR and line.startswith(f"error: {path} is not a compressor report (") and fragment in line
    assert not RunLayout(run).report_html.exists()


def test_ctrl_c_during_tune_is_130_without_traceback_and_says_what_was_kept(tmp_path):
    """A real SIGINT to `compressor tune` while a trial trains (where Optuna logged its traceback)."""
    out = tmp_path / "run"
    layout = StudyLayout(out, "tune")
    args = ["tune", "--model", "digits_cnn", "--space", _space(tmp_path), "--trials", "50", "--out", out]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = popen_interruptible(
        [COMPRESSOR, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    deadline = time.time() + 180
    while not any(ln.startswith("trial 0 epoch") for ln in lines) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert layout.study_db.is_file(), "".join(lines)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    reader.join(timeout=10)
    err = "".join(lines)
    assert proc.returncode == INTERRUPTED, err
    assert "Traceback" not in err and "failed with" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"interrupted: kept study 'tune' in {layout.study_db} (") and str(layout.config) in last
    assert last.endswith("rerun the same command to resume the study")
    assert layout.study_db.is_file() and layout.config.is_file() and not layout.result.exists()
