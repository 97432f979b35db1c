"""Start a command that a test will interrupt with a real SIGINT.

A shell started without job control (``make test &``, a CI runner's background step) ignores
SIGINT in its background children, and the ignore is inherited: Python then installs no
KeyboardInterrupt handler and the SIGINT a test sends is lost. The child gets the default back.
"""

from __future__ import annotations

import signal
import subprocess


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def popen_interruptible(args: list[str], **kwargs) -> subprocess.Popen:
    """``subprocess.Popen`` whose child reacts to SIGINT whatever the test runner ignores."""
    return subprocess.Popen(args, preexec_fn=_default_sigint, **kwargs)
