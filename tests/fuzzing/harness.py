"""Run one command on one mutated input inside a sandbox folder and check the property.

The property: exit code 0, 1 or 2 (never 70 = internal error, never 130, never a signal, never a
hang), no "Traceback" and no "internal error" in the output, and nothing outside the output folder
created, modified or deleted. The sandbox is the command's cwd, HOME and TMPDIR, so anything it
writes by accident lands where the before/after snapshot sees it.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

TIMEOUT_S = 60
ALLOWED_CODES = (0, 1, 2)


@dataclass
class Outcome:
    code: int | None  # None: timed out; negative: killed by that signal (subprocess convention)
    output: str


class Sandbox:
    """A fresh folder per input: ``input/`` (read-only to the command), ``out/`` (its output), tmp, home."""

    def __init__(self, base: Path):
        self.root = Path(tempfile.mkdtemp(prefix="case-", dir=base))
        self.out = self.root / "out"
        for sub in ("input", "out", "tmp", "home"):
            (self.root / sub).mkdir()

    def put(self, name: str, data: bytes) -> Path:
        path = self.root / "input" / name
        path.write_bytes(data)
        return path

    def snapshot(self) -> dict[str, tuple]:
        """Every path outside ``out/`` -> (kind, size, mtime_ns); ``tmp/`` must end as empty as it began."""
        state = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            rel = Path(dirpath).relative_to(self.root)
            if rel.parts[:1] == ("out",):
                continue
            for name in dirnames + filenames:
                st = os.lstat(Path(dirpath) / name)
                # A folder counts by its entries (a temporary folder made and removed in tmp/ is fine).
                is_dir = name in dirnames
                state[str(rel / name)] = (
                    st.st_mode >> 12,
                    None if is_dir else st.st_size,
                    None if is_dir else st.st_mtime_ns,
                )
        return state

    def env(self) -> dict[str, str]:
        tmp = str(self.root / "tmp")
        return {**os.environ, "TMPDIR": tmp, "HOME": str(self.root / "home"), "TF_CPP_MIN_LOG_LEVEL": "3"}

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def changed_paths(before: dict, after: dict) -> list[str]:
    created = [f"created {p}" for p in sorted(set(after) - set(before))]
    deleted = [f"deleted {p}" for p in sorted(set(before) - set(after))]
    modified = [f"modified {p}" for p in sorted(set(before) & set(after)) if before[p] != after[p]]
    return created + deleted + modified


def run_subprocess(argv: list[str], box: Sandbox) -> Outcome:
    """The command in its own session, so a hang kills the whole group and nothing else."""
    proc = subprocess.Popen(
        argv, cwd=box.root, env=box.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=TIMEOUT_S)
        return Outcome(proc.returncode, out.decode(errors="replace"))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return Outcome(None, out.decode(errors="replace"))


class _Alarm(BaseException):
    """An in-process target ran past its time limit (a BaseException, so no handler swallows it)."""


def _on_alarm(signum, frame):
    raise _Alarm


def run_in_process(call: Callable[[], int], box: Sandbox) -> Outcome:
    """``call()`` -> exit code, with cwd/TMPDIR in the sandbox, output captured and a SIGALRM time limit.

    For pure-Python parsers only: native code could kill the test process, that needs run_subprocess.
    """
    buf, cwd, old_tmp = io.StringIO(), os.getcwd(), tempfile.tempdir
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    os.chdir(box.root)
    tempfile.tempdir = str(box.root / "tmp")
    signal.alarm(TIMEOUT_S)
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            code = call()
    except _Alarm:
        code = None
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 2
    except BaseException:  # escaped the command's own handling: that is the failure we look for
        buf.write(traceback.format_exc())
        code = 70
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        tempfile.tempdir = old_tmp
        os.chdir(cwd)
    return Outcome(code, buf.getvalue())


def problems(outcome: Outcome, changed: list[str]) -> list[str]:
    """What breaks the property, one line each; empty when the command behaved."""
    found = []
    if outcome.code is None:
        found.append(f"hang: no exit within {TIMEOUT_S} s")
    elif outcome.code < 0:
        found.append(f"killed by signal {signal.Signals(-outcome.code).name}")
    elif outcome.code not in ALLOWED_CODES:
        found.append(f"exit code {outcome.code}")
    lines = outcome.output.splitlines()
    if "Traceback" in outcome.output:
        found.append("traceback: " + next((ln for ln in reversed(lines) if ln and not ln[0].isspace()), "?"))
    found += [ln.strip() for ln in lines if "internal error" in ln][:1]
    if changed:
        found.append("touched outside the output folder: " + ", ".join(changed[:3]))
    return found


@dataclass
class Campaign:
    """Counts the inputs of one target and keeps one saved example per distinct failure."""

    target: str
    failures_dir: Path
    inputs: int = 0
    started: float = field(default_factory=time.monotonic)
    failures: dict[str, dict] = field(default_factory=dict)
    codes: Counter = field(default_factory=Counter)  # exit code -> inputs: shows how deep the mutations reach

    def record(
        self, outcome: Outcome, found: list[str], description: list[str], argv: list[str], box: Sandbox, data: bytes
    ):
        self.inputs += 1
        self.codes[outcome.code] += 1
        if not found:
            return
        key = re.sub(r"\d+", "N", found[0].replace(str(box.root), "<sandbox>"))
        if key in self.failures:
            self.failures[key]["count"] += 1
            return
        self.failures_dir.mkdir(parents=True, exist_ok=True)
        saved = self.failures_dir / f"{self.target}-{len(self.failures)}.bin"
        saved.write_bytes(data)
        command = " ".join(argv).replace(str(box.root), "<sandbox>")
        self.failures[key] = {"count": 1, "problems": found, "input": str(saved), "mutation": description}
        self.failures[key]["command"] = command

    def summary(self) -> str:
        lines = [
            f"fuzz {self.target}: {self.inputs} inputs, {len(self.failures)} distinct failures, "
            f"{time.monotonic() - self.started:.1f} s; exit codes "
            + ", ".join(f"{code}: {n}" for code, n in sorted(self.codes.items(), key=lambda kv: str(kv[0])))
        ]
        for f in self.failures.values():
            lines.append(f"  x{f['count']} {' | '.join(f['problems'])}")
            lines.append(f"     mutation: {'; '.join(f['mutation'])[:300]}")
            lines.append(f"     command: {f['command']}  (input saved: {f['input']})")
        return "\n".join(lines)
