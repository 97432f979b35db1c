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
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from compressor.runtime.errors import UserError

if TYPE_CHECKING:
    from compressor.pipeline.layout import StudyLayout

HEARTBEAT_SECONDS = 30
GRACE_SECONDS = 120
SQLITE_BUSY_TIMEOUT = 120  # seconds a writer waits for the SQLite lock before failing


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
    try:
        return RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=HEARTBEAT_SECONDS,
            grace_period=GRACE_SECONDS,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
        )
    except ImportError as e:  # e.g. postgresql:// without psycopg2 installed
        raise UserError(
            f"--storage {redact(url)}: missing database driver ({e}); "
            "pip install psycopg2-binary (PostgreSQL) or PyMySQL (MySQL)"
        ) from None
    except optuna.exceptions.StorageInternalError as e:
        raise UserError(f"--storage {redact(url)}: cannot open the database ({str(e).splitlines()[0]})") from None
    except Exception as e:  # SQLAlchemy's connection errors share no narrower base we can rely on
        if type(e).__module__.startswith("sqlalchemy"):
            raise UserError(f"--storage {redact(url)}: cannot connect ({str(e).splitlines()[0][:200]})") from None
        raise


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
