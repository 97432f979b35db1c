"""Where a study lives: an SQLite file in the run folder by default, or any database Optuna supports.

Why SQLite through RDBStorage (and not JournalFileBackend) by default:
- it is what the user asked for: one embedded file, no set-up, readable by ``optuna-dashboard``
  and ``sqlite3``;
- it is the same code path (RDBStorage) as PostgreSQL/MySQL, so the multi-machine mode is the
  single-machine mode with another URL, not a second implementation;
- our trials last seconds to minutes, so the few writes per trial never contend for the lock
  for long; a generous busy ``timeout`` turns the rare collision into a short wait.
``journal:PATH`` selects Optuna's append-only journal file instead, for shared file systems (NFS)
where SQLite's locking is unreliable.

Heartbeats: a worker that is killed (power loss, ``kill -9``) leaves its trial RUNNING for ever;
with a heartbeat, Optuna marks it FAIL after ``grace_period`` and the retry callback re-queues
its parameters, so the study finishes its budget. Ctrl-C is handled by Optuna itself (FAIL).
A worker beats every ``HEARTBEAT_SECONDS`` (30); a trial whose last beat is ``GRACE_SECONDS`` (120)
old is stale. Two environment variables shorten (or lengthen) both, in whole seconds, e.g. for tests
or for a cluster that should re-queue a dead machine's trial sooner; every worker of a study should
use the same values (the grace must exceed the interval, or live trials would be taken as dead):
- ``COMPRESSOR_HEARTBEAT_SECONDS``: seconds between a running trial's heartbeats (>= 1);
- ``COMPRESSOR_HEARTBEAT_GRACE_SECONDS``: seconds without a beat before a trial is failed and re-queued.

PostgreSQL: a plain ``postgresql://`` URL means SQLAlchemy's default driver psycopg2, which we do not
install; without it the URL is opened with psycopg 3 (``postgresql+psycopg://``, the extra
``compressor[distributed]``). An explicit ``postgresql+DRIVER://`` is used as given.
"""

from __future__ import annotations

import importlib.util
import os
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compressor.runtime.errors import UserError

if TYPE_CHECKING:
    from compressor.pipeline.layout import StudyLayout

HEARTBEAT_SECONDS = 30
GRACE_SECONDS = 120
SQLITE_BUSY_TIMEOUT = 120  # seconds a writer waits for the SQLite lock before failing
HEARTBEAT_ENV = "COMPRESSOR_HEARTBEAT_SECONDS"
GRACE_ENV = "COMPRESSOR_HEARTBEAT_GRACE_SECONDS"
DRIVER_HINT = "pip install 'compressor[distributed]' (psycopg 3, PostgreSQL) or PyMySQL (MySQL)"


def heartbeat() -> tuple[int, int]:
    """(heartbeat interval, grace period) in seconds: the defaults, or the environment's (validated)."""
    beat, grace = _env_seconds(HEARTBEAT_ENV, HEARTBEAT_SECONDS), _env_seconds(GRACE_ENV, GRACE_SECONDS)
    if grace <= beat:
        raise UserError(f"{GRACE_ENV}={grace} must be longer than {HEARTBEAT_ENV}={beat} (seconds)")
    return beat, grace


def _env_seconds(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise UserError(f"{name}={raw!r}: expected a whole number of seconds >= 1")
    return int(raw)


def driver_url(url: str) -> str:
    """``postgresql://`` with psycopg 3 when psycopg2 (SQLAlchemy's default) is absent; others unchanged."""
    if not url.startswith("postgresql://") or importlib.util.find_spec("psycopg2") is not None:
        return url
    if importlib.util.find_spec("psycopg") is None:
        raise UserError(f"--storage {redact(url)}: no PostgreSQL driver installed; {DRIVER_HINT}")
    return "postgresql+psycopg://" + url.removeprefix("postgresql://")


def default_url(layout: StudyLayout) -> str:
    """The study in the run folder's own SQLite file: the run folder is all there is to resume or share."""
    return f"sqlite:///{layout.study_db.resolve()}"


def check_url(url: str) -> None:
    """Refuse a malformed --storage before anything is created on disk."""
    if not url.startswith("journal:") and "://" not in url:
        raise UserError(
            f"--storage {url!r}: expected a database URL such as sqlite:///study.db, "
            "postgresql://user:password@host/db, mysql+pymysql://user:password@host/db "
            "or journal:PATH"
        )


def open_storage(url: str) -> Any:
    """An Optuna storage object for ``url`` (sqlite:///..., postgresql://..., mysql://..., journal:PATH)."""
    import optuna
    from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
    from optuna.storages.journal import JournalFileBackend

    check_url(url)
    if url.startswith("journal:"):
        path = Path(url.removeprefix("journal:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    engine_kwargs: dict = {}
    if url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT}}
    beat, grace = heartbeat()
    try:
        return _created_once(
            lambda: RDBStorage(
                driver_url(url),
                engine_kwargs=engine_kwargs,
                heartbeat_interval=beat,
                grace_period=grace,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
            )
        )
    except ImportError as e:  # e.g. postgresql+psycopg2:// without psycopg2 installed
        cause = str(e.__cause__ or e).splitlines()[0]
        raise UserError(f"--storage {redact(url)}: missing database driver ({cause}); {DRIVER_HINT}") from None
    except optuna.exceptions.StorageInternalError as e:
        raise UserError(f"--storage {redact(url)}: cannot open the database ({str(e).splitlines()[0]})") from None
    except Exception as e:  # SQLAlchemy's connection errors share no narrower base we can rely on
        if type(e).__module__.startswith("sqlalchemy"):
            raise UserError(f"--storage {redact(url)}: cannot connect ({str(e).splitlines()[0][:200]})") from None
        raise


def _created_once(make: Any, attempts: int = 5) -> Any:
    """Workers started together all create Optuna's tables on a new database; one wins and the others'
    concurrent CREATE TABLE fails (PostgreSQL: unique violation on its catalogue; SQLite: "already
    exists"). The tables then exist, so opening again succeeds."""
    import sqlalchemy.exc
    from optuna.exceptions import ExperimentalWarning

    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():  # heartbeat/retry are "experimental": nothing a user can act on
                warnings.simplefilter("ignore", ExperimentalWarning)
                return make()
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError, sqlalchemy.exc.OperationalError) as e:
            # SQLite says "table ... already exists"; an unreachable server is not retried
            if attempt == attempts - 1 or (
                isinstance(e, sqlalchemy.exc.OperationalError) and "already exists" not in str(e)
            ):
                raise
            time.sleep(0.2 * (attempt + 1))
    return None


def redact(url: str) -> str:
    """Never print a database password in an error line."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


def quiet_optuna() -> None:
    """Optuna logs every trial at INFO; our own one-line-per-trial progress replaces it."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    import warnings

    # ExperimentalWarning for heartbeat/retry options: nothing a user can act on.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
