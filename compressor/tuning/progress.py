"""Progress lines for trials and epochs: live on a terminal, plain lines in logs and CI.

On a TTY (one worker) the epoch line of the running trial is rewritten in place and each
finished trial leaves one permanent line; elsewhere every event is one plain line, because
carriage returns turn CI logs into noise. ``quiet`` silences everything.
"""

from __future__ import annotations

import sys


class Progress:
    def __init__(self, quiet: bool = False, prefix: str = "", live: bool | None = None):
        self.quiet = quiet
        self.prefix = prefix
        self.live = sys.stderr.isatty() if live is None else live
        self._pending = False  # a live line is on screen and must be cleared before the next one

    def line(self, msg: str) -> None:
        """A permanent line (a trial finished, a phase started)."""
        if self.quiet:
            return
        self._clear()
        print(f"{self.prefix}{msg}", file=sys.stderr, flush=True)

    def __call__(self, msg: str) -> None:
        self.line(msg)

    def epoch(self, msg: str) -> None:
        """A transient line (an epoch of the running trial, calibration, validation)."""
        if self.quiet:
            return
        if not self.live:
            print(f"{self.prefix}{msg.strip()}", file=sys.stderr, flush=True)
            return
        text = f"{self.prefix}{msg.strip()}"[:160]
        print(f"\r{text}\x1b[K", end="", file=sys.stderr, flush=True)
        self._pending = True

    def _clear(self) -> None:
        if self._pending:
            print("\r\x1b[K", end="", file=sys.stderr, flush=True)
            self._pending = False


def from_callable(progress) -> Progress:
    """Library entry points take a Progress (passed through), None (silent) or a plain callable (wrapped).

    Spawned workers cannot receive a callable, so they print only when ``quiet`` is false:
    None keeps them silent too, a callable lets them print their own lines to stderr.
    """
    if isinstance(progress, Progress):
        return progress
    if progress is None:
        return Progress(quiet=True, live=False)
    p = Progress(quiet=False, live=False)
    p.line = progress  # type: ignore[method-assign]
    p.epoch = progress  # type: ignore[method-assign]
    return p
