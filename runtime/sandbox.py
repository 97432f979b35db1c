"""A trial run of a .tflite in a child process: a crash there is a one-line error, not our process dying.

tflite_check.py refuses the faults we know of, but LiteRT's kernels trust the model further
than any structural check can follow (values inside option tables, kernel-specific invariants).
So the first time this process opens a model, a child loads it, allocates it and invokes it once
on zeros, exactly as the runner is about to; if the child is killed by a signal, the model is
refused and the signal named. Measured cost: ~0.1 s per model (a Python start, numpy and
ai-edge-litert imports, one invoke), paid once per file per process. Files this process's own
converter has just written (every export of a compress run) are vouched for and skip it.

The child is plain ``python -c`` with a self-contained script (it imports only numpy and the
interpreter), so it works wherever this runtime is installed, as ``compressor.runtime`` or alone.
Ordinary errors in the child (a kernel refusing a shape) are left to the parent's own load,
which reports them with their message.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from .errors import UserError

TIMEOUT_S = 120.0  # a big model's first invoke on a slow board; a crafted WHILE loop never ends

_PROBE = r"""
import sys
import numpy as np
path, threads, xnnpack = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
try:
    from ai_edge_litert import interpreter as api
except ImportError:
    from tflite_runtime import interpreter as api
resolvers = api.OpResolverType
resolver = resolvers.AUTO if xnnpack else resolvers.BUILTIN_WITHOUT_DEFAULT_DELEGATES
try:
    interp = api.Interpreter(model_path=path, num_threads=threads, experimental_op_resolver_type=resolver)
    interp.allocate_tensors()
    for d in interp.get_input_details():
        interp.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
    interp.invoke()
except Exception:
    pass  # not a crash: the parent's own load reports it with its message
"""

_tried: set[tuple] = set()  # (path, size, mtime, threads, xnnpack) already run without a crash
_vouched: set[tuple] = set()  # (path, size, mtime) this process's own converter wrote


def _identity(path: Path) -> tuple:
    stat = path.stat()
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def vouch(path: Path) -> None:
    """``path`` was just written by this process's own TFLite converter: it needs no trial run.

    The trial run guards against files from outside; a model converted here a moment ago (each
    export, each candidate of a selective-quantization search) is not one. The vouch holds for this
    exact file only: moved, rewritten or opened by another process, it is tried again.
    """
    _vouched.add(_identity(path))


def trial_run(path: Path, threads: int = 1, xnnpack: bool = True) -> None:
    """Load and invoke ``path`` once in a child process; UserError naming the signal if the child dies."""
    identity = _identity(path)
    key = (*identity, threads, xnnpack)
    if key in _tried or identity in _vouched:
        return
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-c", _PROBE, str(path), str(threads), "1" if xnnpack else "0"]
    try:
        done = subprocess.run(command, env=env, capture_output=True, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise UserError(
            f"{path} did not finish one run within {TIMEOUT_S:.0f} s in a trial child process; "
            "the model loops or is far too large for this machine"
        ) from None
    if done.returncode < 0:
        raise UserError(
            f"{path} crashed the TFLite interpreter ({_signal_name(-done.returncode)}) in a trial run "
            "in a child process; the file is corrupt or crafted: re-export it"
        )
    _tried.add(key)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
