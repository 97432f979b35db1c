"""Keep native (C++) log lines of TensorFlow, the TFLite converter and LiteRT off the terminal.

Python-level switches (TF_CPP_MIN_LOG_LEVEL, logging levels) do not reach every native logger:
the MLIR converter and the XNNPACK delegate write straight to file descriptor 2. So we redirect
fd 2 itself while native code runs, and replay what was captured only when asked (``-v``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

_VERBOSE = os.environ.get("COMPRESSOR_VERBOSE") == "1"
_depth = 0


def set_verbose(verbose: bool) -> None:
    global _VERBOSE
    _VERBOSE = verbose
    os.environ["COMPRESSOR_VERBOSE"] = "1" if verbose else "0"


def is_verbose() -> bool:
    return _VERBOSE


@contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Redirect fd 2 to a temp file for the duration; nested uses are no-ops."""
    global _depth
    if _VERBOSE or _depth > 0:
        _depth += 1
        try:
            yield
        finally:
            _depth -= 1
        return
    with contextlib.suppress(AttributeError, ValueError):
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 (embedded interpreters): nothing to silence
        yield
        return
    _depth += 1
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            _depth -= 1
