"""Exit codes and the one-line message for every way a command can end, shared by both CLIs.

``compressor`` and ``compressor-runtime`` exit with the same codes so a script (device CI) can tell
a failed gate from a bad input from a bug. Defined here, in runtime/, because the device CLI cannot
import anything of compressor outside runtime/.
"""

from __future__ import annotations

import errno
import os

from .errors import Interrupted, UserError

OK = 0
GATE_FAILED = 1  # a gate, the self-test or the export checks failed: the result is not shippable
USER_ERROR = 2  # the user's input or environment is wrong; one line says what and how to fix it
INTERNAL_ERROR = 70  # a bug in compressor (EX_SOFTWARE of sysexits.h)
INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it

# OSErrors the user's environment causes (full disk, read-only or foreign folder, a file in the way):
# what to do about each. Anything else from the OS stays an internal error: it may be our bug.
_ADVICE = {
    errno.ENOSPC: "no space left on the device: free some space or write to another disk",
    errno.EDQUOT: "disk quota exceeded: free some space or write to another disk",
    errno.EROFS: "read-only file system: write to a writable folder (another --out)",
    errno.EACCES: "permission denied: choose a path you may write (and read), or fix its permissions",
    errno.EPERM: "operation not permitted: choose a path you may write, or fix its permissions",
    errno.ENOTDIR: "a part of this path is a file, not a folder: choose another path",
    errno.EEXIST: "already exists where a new file or folder must go: remove it or choose another path",
    errno.EISDIR: "is a folder where a file is expected: give a file path",
    errno.ENAMETOOLONG: "file name too long: choose a shorter path",
}


def _errno_of(e: BaseException) -> int | None:
    """The errno of an OSError, or of a library error that only quotes the OS message
    (TensorFlow's file errors, h5py's OSError without errno)."""
    code = getattr(e, "errno", None)
    if isinstance(e, OSError) and code in _ADVICE:
        return code
    if isinstance(e, OSError) or type(e).__module__.split(".")[0] in ("tensorflow", "h5py"):
        text = str(e)
        for candidate in _ADVICE:
            if os.strerror(candidate) in text:
                return candidate
    return None


def user_os_error(e: BaseException) -> str | None:
    """One line for an OS error the user can fix (naming the path), or None when it is not one.

    Follows ``raise ... from`` chains: a library that wraps the OSError keeps it as the cause.
    """
    seen = 0
    while e is not None and seen < 8:
        code = _errno_of(e)
        if code is not None:
            # A rename names (temporary source, destination): the destination is the user's path.
            path = getattr(e, "filename2", None) or getattr(e, "filename", None)
            if path is None:  # TensorFlow/h5py quote the path in their message
                first = str(e).splitlines()[0] if str(e) else ""
                return f"{_ADVICE[code]} ({first[:300]})"
            return f"{path.decode(errors='replace') if isinstance(path, bytes) else path}: {_ADVICE[code]}"
        e, seen = e.__cause__, seen + 1
    return None


def outcome(e: BaseException) -> tuple[int, str]:
    """(exit code, the one line to print on stderr) for an exception that ended a command."""
    if isinstance(e, UserError):
        return USER_ERROR, f"error: {e}"
    if isinstance(e, Interrupted):
        return INTERRUPTED, f"interrupted: {e.kept}"
    if isinstance(e, KeyboardInterrupt):
        return INTERRUPTED, "interrupted"
    message = user_os_error(e)
    if message is not None:
        return USER_ERROR, f"error: {message}"
    first = str(e).splitlines()[0] if str(e) else ""
    what = f"{type(e).__name__}: {first}" if first else type(e).__name__
    return INTERNAL_ERROR, f"error: internal error (a bug): {what}; rerun with --debug for the traceback"
