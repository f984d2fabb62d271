"""The study's storage: any SQLAlchemy URL through Optuna's ``RDBStorage``.

SQLite (the default) is fine for one machine and a few parallel jobs: every connection waits
up to ``timeout`` seconds for a lock instead of failing. For many workers or several machines
use a server database (``postgresql://user@host/db``; the password in ``PGPASSWORD`` or
``~/.pgpass`` keeps it out of configs and logs).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage

log = logging.getLogger(__name__)


def absolute_sqlite_url(url: str) -> str:
    """Make the file of a ``sqlite:///relative.db`` URL absolute (other URLs unchanged).

    Jobs may run in another working directory or process; an absolute path keeps them on the
    same file.

    Args:
        url: a SQLAlchemy URL.

    Returns:
        The URL with an absolute SQLite path.
    """
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url in (prefix, f"{prefix}:memory:"):
        return url
    path, _, query = url[len(prefix) :].partition("?")
    path = str(Path(path).expanduser().absolute())
    return prefix + path + (f"?{query}" if query else "")


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (for logs)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a SQLAlchemy URL: nothing to hide we know of
        return url


def open_storage(
    url: str,
    *,
    timeout: float = 60.0,
    create: bool = True,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    stale_trial_callback: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
) -> RDBStorage:
    """Open (and, with ``create``, initialise) an Optuna RDB storage.

    Args:
        url: SQLAlchemy URL (``sqlite:///path.db``, ``postgresql://user@host/db``, ...).
        timeout: seconds a SQLite connection waits for a lock before failing.
        create: create the tables (the sweeper does it once; jobs pass False so parallel
            jobs never race on the schema).
        heartbeat_interval: seconds between heartbeats of running trials (None = off);
            a trial without a heartbeat for ``grace_period`` s counts as interrupted.
        grace_period: see above (None = 2 x ``heartbeat_interval``).
        stale_trial_callback: called with each trial failed for a missing heartbeat.

    Returns:
        The storage.
    """
    url = absolute_sqlite_url(url)
    engine_kwargs: dict[str, Any]
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :].partition("?")[0]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": float(timeout)}}
    else:
        engine_kwargs = {"pool_pre_ping": True}  # survive server-side connection drops
    return RDBStorage(
        url,
        engine_kwargs=engine_kwargs,
        skip_compatibility_check=not create,
        skip_table_creation=not create,
        heartbeat_interval=heartbeat_interval,
        grace_period=grace_period,
        heartbeat_stale_trial_callback=stale_trial_callback,
    )


def override_value(value: Any) -> str:
    """Write a plain value (str, number, bool, None, list, dict) in Hydra's override grammar.

    Strings are always quoted, so URLs, paths and dotted names pass through unchanged.

    Args:
        value: the value.

    Returns:
        The override text, e.g. ``{a:'sqlite:////x.db',b:3}``.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{override_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as a Hydra override value")
