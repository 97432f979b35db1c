"""A throwaway PostgreSQL server for tests and benchmarks (helpers, not a test module).

``postgres_server()`` runs ``initdb`` into a fresh temporary folder, starts the server with
``pg_ctl`` on a free port bound to 127.0.0.1 only (its unix socket in that folder too), creates a
database, yields its URL (with a random password: scram-sha-256, so the URL is the real
multi-machine kind) and stops the server and deletes the folder afterwards, also on failure.

PostgreSQL refuses to run as root (initdb: "cannot be run as root"): as root the server runs as
``nobody`` through ``setpriv`` (or ``runuser``), owning its data folder; otherwise as ourselves.
Without the PostgreSQL binaries the caller is skipped with the reason (pytest), never failed.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BINARIES = ("initdb", "pg_ctl", "postgres")
SERVER_USER = "nobody"
START_TIMEOUT = 30  # seconds pg_ctl waits for the server to accept connections


def missing() -> str | None:
    """Why no server can be started here (a skip reason), or None."""
    absent = [b for b in BINARIES if shutil.which(b) is None]
    if absent:
        return f"PostgreSQL binaries not on PATH: {', '.join(absent)}"
    if os.geteuid() == 0 and _run_as() is None:
        return f"running as root and neither setpriv nor runuser can switch to {SERVER_USER!r}"
    try:
        import psycopg  # noqa: F401  (the driver creates the database and is what --storage uses)
    except ImportError:
        return "psycopg 3 is not installed (pip install 'compressor[distributed]')"
    return None


def _run_as() -> list[str] | None:
    """The command prefix that runs a program as the unprivileged server user ([] when not root)."""
    if os.geteuid() != 0:
        return []
    try:
        user = pwd.getpwnam(SERVER_USER)
    except KeyError:
        return None
    if shutil.which("setpriv"):
        return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
    if shutil.which("runuser"):
        return ["runuser", "-u", SERVER_USER, "--"]
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres_server(database: str = "compressor") -> Iterator[str]:
    """A running server on loopback; yields ``postgresql://compressor:PASSWORD@127.0.0.1:PORT/DATABASE``."""
    reason = missing()
    if reason:
        import pytest

        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="compressor-pg-"))
    prefix = _run_as() or []
    data, log = root / "data", root / "server.log"
    password = secrets.token_hex(12)
    started = False
    try:
        _own(root, prefix)
        _initdb(root, data, password, prefix)
        port = free_port()
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c full_page_writes=off"
        cmd = [*prefix, "pg_ctl", "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", str(START_TIMEOUT)]
        started = True  # stop even if start reports failure: the postmaster may be half up
        _check(subprocess.run([*cmd, "start"], cwd=root, capture_output=True, text=True), log)
        _create_database(port, password, database)
        yield f"postgresql://compressor:{password}@127.0.0.1:{port}/{database}"
    finally:
        if started:
            subprocess.run(
                [*prefix, "pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop"],
                cwd=root,
                capture_output=True,
            )
        shutil.rmtree(root, ignore_errors=True)


def _own(root: Path, prefix: list[str]) -> None:
    """The server user owns the folder (data directory, socket, log); root keeps the right to delete it."""
    if prefix:
        user = pwd.getpwnam(SERVER_USER)
        os.chown(root, user.pw_uid, user.pw_gid)
    root.chmod(0o700)


def _initdb(root: Path, data: Path, password: str, prefix: list[str]) -> None:
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    if prefix:
        user = pwd.getpwnam(SERVER_USER)
        os.chown(pwfile, user.pw_uid, user.pw_gid)
    try:
        cmd = [*prefix, "initdb", "-D", str(data), "-U", "compressor", f"--pwfile={pwfile}"]
        cmd += ["--auth=scram-sha-256", "--encoding=UTF8", "--no-sync", "--no-instructions"]
        _check(subprocess.run(cmd, cwd=root, capture_output=True, text=True))
    finally:
        pwfile.unlink(missing_ok=True)


def _create_database(port: int, password: str, database: str) -> None:
    import psycopg

    dsn = f"host=127.0.0.1 port={port} user=compressor password={password} dbname=postgres"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')


def _check(done: subprocess.CompletedProcess, log: Path | None = None) -> None:
    if done.returncode != 0:
        tail = log.read_text()[-2000:] if log is not None and log.is_file() else ""
        raise RuntimeError(f"{done.args[:4]} failed ({done.returncode}): {done.stderr.strip()[-2000:]}\n{tail}")
