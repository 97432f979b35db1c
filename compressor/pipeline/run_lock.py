"""One run per output folder: an OS file lock on ``.OUT.lock`` beside the output.

Two runs on one --out would share its partial folder and delete each other's work, so the second
is refused at once, told who holds the folder. The lock is ``flock`` on the lock file: the kernel
releases it when its holder exits, however it exits, so a crashed run never leaves the folder
locked; the file it leaves (pid, host, start time) is simply taken over by the next run.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from datetime import datetime
from pathlib import Path

from compressor.pipeline.layout import lock_file
from compressor.runtime.errors import UserError


class RunLock:
    """``with RunLock(out):`` holds ``out``'s lock file; the file is removed on release."""

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.path = lock_file(self.out.absolute())
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise a one-line UserError naming its holder."""
        if self._fd is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = self._lock()
        except OSError as e:
            raise UserError(f"cannot create the lock file {self.path} ({e.strerror}); give a writable --out") from None
        started = datetime.now().isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started}).encode())
        self._fd = fd

    def _lock(self) -> int:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _describe(_read(fd))
                os.close(fd)
                raise UserError(
                    f"--out {self.out} is in use by another run ({holder}; lock {self.path}); "
                    "wait for it to finish or choose another --out"
                ) from None
            if _same_file(fd, self.path):
                return fd
            os.close(fd)  # its holder removed the file between our open and our lock: take the new one

    def release(self) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)  # while still held: no one can lock a file about to vanish
        os.close(self._fd)
        self._fd = None


def _read(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}


def _describe(holder: dict) -> str:
    if not holder:
        return "holder unknown"
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started {holder.get('started', '?')}"


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    fst = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)
