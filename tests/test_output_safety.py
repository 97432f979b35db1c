"""A user's file is never lost to --out, and one --out holds one run at a time.

The issue's "Data loss" and "Resume and concurrency" cases, through the CLI where the exit code
matters: --overwrite replaces only a folder this tool wrote (or an empty one), never the current
folder, an input or a folder holding one; a second run on a locked --out is refused at once.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from compressor.commands.cli import cli
from compressor.pipeline.layout import OUTPUT_MARKER, lock_file
from compressor.pipeline.run_lock import RunLock
from compressor.runtime.errors import UserError
from compressor.tuning.run_folder import prepare, release

FAST = ["--recipe", "int8", "--set", "export.formats=[tflite]", "--runs", "5"]


def invoke(*args) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


def assert_refused(code: int, output: str, fragment: str) -> None:
    lines = [ln for ln in output.splitlines() if ln.strip()]
    assert code == 2, output
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in output, output


def listing(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def run_dir(tiny_model_path, tmp_path_factory) -> Path:
    """One finished compress run (int8, tflite only)."""
    out = tmp_path_factory.mktemp("safety") / "run"
    code, output = invoke("compress", tiny_model_path, "--out", out, *FAST)
    assert code == 0, output
    return out


def test_a_finished_run_is_marked_unlocked_and_replaceable(run_dir, tiny_model_path, tmp_path):
    assert json.loads((run_dir / OUTPUT_MARKER).read_text())["kind"] == "compress"
    assert not lock_file(run_dir).exists() and not (run_dir.parent / f".{run_dir.name}.partial").exists()
    again = shutil.copytree(run_dir, tmp_path / "run")
    code, output = invoke("compress", tiny_model_path, "--out", again, *FAST, "--overwrite")
    assert code == 0, output
    assert (again / "run.json").is_file() and (again / "float32" / "model.tflite").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"], "no .old, .partial or .lock left behind"


def test_overwrite_of_the_current_folder_is_refused(tiny_model_path, tmp_path, monkeypatch):
    (tmp_path / "notes.txt").write_text("mine")
    monkeypatch.chdir(tmp_path)
    assert_refused(*invoke("compress", tiny_model_path, "--out", ".", *FAST, "--overwrite"), "current folder")
    assert_refused(*invoke("train", "--out", ".", "--epochs", "1", "--overwrite"), "current folder")
    with pytest.raises(UserError, match="current folder"):
        prepare(".", "tune", None, "tune", overwrite=True)
    assert (
        sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"] and (tmp_path / "notes.txt").read_text() == "mine"
    )


def test_overwrite_of_a_folder_holding_the_model_is_refused(tiny_run, tmp_path):
    base = shutil.copytree(tiny_run[0], tmp_path / "base")
    before = listing(tmp_path)
    assert_refused(*invoke("compress", base / "model", "--out", base, *FAST, "--overwrite"), "holds an input")
    assert_refused(*invoke("compress", base / "model", "--out", tmp_path, *FAST, "--overwrite"), "holds an input")
    assert_refused(*invoke("compress", base / "model", "--out", base / "model", *FAST, "--overwrite"), "an input")
    for kind in ("tune", "search"):  # tune/search delete --out before their first trial
        with pytest.raises(UserError, match="holds an input"):
            prepare(base, kind, None, kind, overwrite=True, inputs=[base / "model"])
    assert listing(tmp_path) == before


def test_overwrite_of_a_foreign_folder_is_refused(tiny_model_path, tmp_path):
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "cat.jpg").write_bytes(b"\xff\xd8")
    assert_refused(*invoke("compress", tiny_model_path, "--out", mine, *FAST, "--overwrite"), "not written by")
    assert_refused(*invoke("train", "--out", mine, "--epochs", "1", "--overwrite"), "not written by")
    with pytest.raises(UserError, match="not written by"):
        prepare(mine, "search", None, "search", overwrite=True)
    assert listing(mine) == {"cat.jpg": b"\xff\xd8"}


@pytest.mark.parametrize("command", ["compress", "train"])
def test_out_that_is_a_file_is_refused(command, tiny_model_path, tmp_path):
    target = tmp_path / "out"
    target.write_text("keep me")
    args = ["compress", tiny_model_path, *FAST] if command == "compress" else ["train", "--epochs", "1"]
    for extra in ([], ["--overwrite"]):
        assert_refused(*invoke(*args, "--out", target, *extra), "is a file")
    assert target.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"], "no .out.old, .partial or lock left behind"


def test_package_never_replaces_a_folder_or_a_foreign_file(run_dir, tmp_path):
    folder = tmp_path / "dist"
    folder.mkdir()
    (folder / "app.apk").write_bytes(b"apk")
    assert_refused(*invoke("package", run_dir, "--out", folder, "--overwrite"), "is a folder")
    notes = tmp_path / "notes.zip"
    notes.write_bytes(b"not a bundle")
    assert_refused(*invoke("package", run_dir, "--out", notes, "--overwrite"), "not written by compressor")
    assert_refused(*invoke("package", run_dir, "--out", run_dir / "report.json", "--overwrite"), "an input")
    assert listing(folder) == {"app.apk": b"apk"} and notes.read_bytes() == b"not a bundle"
    bundle = tmp_path / "bundle.zip"
    for extra in ([], ["--overwrite"]):  # a previous bundle may be replaced
        code, output = invoke("package", run_dir, "--out", bundle, "--quiet", *extra)
        assert code == 0, output
    assert "manifest.json" in zipfile.ZipFile(bundle).namelist()


def test_second_run_on_a_locked_out_is_refused(tiny_model_path, tmp_path):
    out = tmp_path / "run"
    with RunLock(out):
        code, output = invoke("compress", tiny_model_path, "--out", out, *FAST)
        assert_refused(code, output, f"is in use by another run (pid {os.getpid()}")
        assert lock_file(out).exists(), "the refused run must not remove the holder's lock"
        with pytest.raises(UserError, match="in use by another run"):
            prepare(out, "tune", None, "tune", overwrite=False)
    assert not out.exists() and not lock_file(out).exists()


def test_lock_held_by_another_process_names_it_and_a_dead_holder_is_taken_over(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from compressor.pipeline.run_lock import RunLock\n"
         f"with RunLock({str(out)!r}):\n    print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=f"pid {holder.pid} on "):
            RunLock(out).acquire()
    finally:
        holder.kill()  # dies holding the lock: the OS frees it, its lock file stays behind
        holder.wait()
    assert lock_file(out).exists()
    with RunLock(out) as lock:
        assert json.loads(lock_file(out).read_text())["pid"] == os.getpid() and lock.held
    assert not lock_file(out).exists()


def test_bad_storage_leaves_no_output_folder(tmp_path):
    for storage in ("nonsense", f"sqlite:///{tmp_path}/missing/dir/study.db"):
        with pytest.raises(UserError, match="--storage"):
            prepare(tmp_path / "tuned", "tune", storage, "tune", overwrite=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_tune_folder_is_marked_and_released(tmp_path):
    out, url = prepare(tmp_path / "tuned", "tune", None, "tune", overwrite=False)
    assert json.loads((out / OUTPUT_MARKER).read_text())["kind"] == "tune" and url.startswith("sqlite:///")
    assert lock_file(out).exists()
    release(out)
    assert not lock_file(out).exists()
    out, _ = prepare(out, "tune", None, "tune", overwrite=True)  # marked (and empty): may be replaced
    release(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tuned"]


def test_outputs_get_the_permissions_the_umask_gives(tmp_path):
    """Temporary files are created 0600/0700; a finished output must not stay that private."""
    from compressor.runtime.atomic import output_dir, write_bytes

    umask = os.umask(0o022)
    os.umask(umask)
    assert (write_bytes(tmp_path / "a.bin", b"x").stat().st_mode & 0o777) == 0o666 & ~umask
    with output_dir(tmp_path / "run") as work:
        write_bytes(work / "f", b"y")
    assert ((tmp_path / "run").stat().st_mode & 0o777) == 0o777 & ~umask
