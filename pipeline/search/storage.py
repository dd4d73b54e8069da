"""The study's storage: any URL Optuna's RDBStorage takes (a SQLite file on one machine, PostgreSQL for several),
opened with heartbeats so that a worker that dies mid-trial (SIGKILL, a lost node) has its trial failed by another
worker, which then runs it again (RetryHeartbeatStaleTrialCallback, Optuna 5's name for RetryFailedTrialCallback).
A storage that cannot be reached is one line naming the URL, its password redacted, within CONNECT_TIMEOUT seconds,
not a traceback after minutes."""
from __future__ import annotations

import logging
import re
import time
import warnings

import optuna
import sqlalchemy.engine
import sqlalchemy.exc
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from pipeline.errors import UserError

CONNECT_TIMEOUT = 10  # seconds for PostgreSQL to answer; SQLite waits as long for a writer's lock
HEARTBEAT_INTERVAL = 30  # seconds between a running trial's heartbeats
STALE_AFTER = 4  # heartbeats missed before the trial is failed (and retried, up to MAX_RETRIES times)
MAX_RETRIES = 2
SECRET_QUERY_KEYS = r"password|secret|token|key"  # libpq takes ?password=..., drivers take sslkey=...

# Optuna says each trial's end at INFO with every value, and a failed one at WARNING with its traceback (Ctrl-C's
# too): the worker says them itself, in one line each
optuna.logging.set_verbosity(optuna.logging.ERROR)
log = logging.getLogger(__name__)


class StorageError(UserError):
    """The study's storage cannot be opened."""


def connect_args(url: str) -> dict:
    if url.startswith("postgresql"):
        return {"connect_timeout": CONNECT_TIMEOUT}
    if url.startswith("sqlite"):
        return {"timeout": CONNECT_TIMEOUT * 6}
    return {}


def open_storage(url: str, heartbeat: int | None = HEARTBEAT_INTERVAL) -> RDBStorage:
    """The storage at `url`, with heartbeats every `heartbeat` seconds (None: without, for reading). Workers that
    start together on a fresh database race to create its tables: the loser's error (not a connection's) is tried
    once more."""
    try:
        return rdb_storage(url, heartbeat)
    except sqlalchemy.exc.OperationalError as error:  # the database cannot be reached or opened
        raise opening_error(url, error) from None
    except Exception:  # SQLAlchemy's, the driver's and Optuna's own errors have no common base
        time.sleep(1.0)
    try:
        return rdb_storage(url, heartbeat)
    except Exception as error:
        raise opening_error(url, error) from None


def opening_error(url: str, error: Exception) -> StorageError:
    return StorageError(f"--storage {shown(url)}: cannot open the study storage ({reason(error)})")


def shown(url: str) -> str:
    """The URL fit to print: its password and any password-like query value hidden, by SQLAlchemy, which parses
    these URLs (the project's redact lives with MLflow, whose import takes seconds: this line must come fast)."""
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except Exception:  # not a URL at all: it names no password either, unless before an @
        return f"***@{url.rpartition('@')[2]}" if "@" in url else url
    hidden = {key: "***" for key in parsed.query if re.search(SECRET_QUERY_KEYS, key, re.IGNORECASE)}
    return parsed.update_query_dict(hidden).render_as_string(hide_password=True).replace("%2A%2A%2A", "***")


def rdb_storage(url: str, heartbeat: int | None) -> RDBStorage:
    with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.8
        warnings.simplefilter("ignore", ExperimentalWarning)
        return RDBStorage(
            url, engine_kwargs={"connect_args": connect_args(url)}, heartbeat_interval=heartbeat,
            grace_period=heartbeat * STALE_AFTER if heartbeat else None,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES) if heartbeat
            else None)


def reason(error: Exception) -> str:
    """The driver's first line (`connection refused`, `unable to open database file`), not SQLAlchemy's page."""
    cause = getattr(error, "orig", None) or error
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return lines[0][:300] if lines else type(error).__name__


def load_study(storage: RDBStorage, name: str) -> optuna.Study:
    """An existing study, or one line naming the studies the storage holds."""
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = ", ".join(summary.study_name for summary in optuna.get_all_study_summaries(storage)) or "none"
        raise StorageError(f"--study {name}: no such study in {shown(storage.url)} (studies there: {names})") from None
