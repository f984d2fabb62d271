"""MLflow tracking: one parent run per job, one nested child run per fold."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from birdsweep.track.recipe import hydra_choices, recipe_name, recipe_tags

log = logging.getLogger(__name__)


# Hydra's instantiation keys: how an object is built, not a setting to compare runs by
INSTANTIATION_KEYS = ("_target_", "_convert_", "_partial_", "_recursive_", "_args_")


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings to ``{"a.b.c": value}`` (lists become strings), leaving out
    Hydra's instantiation keys (``_target_``, ``_convert_``, ...)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if k in INSTANTIATION_KEYS:
            continue
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def sqlite_uri(path: str | Path) -> str:
    """``sqlite:///`` URI of a database file (its folder is created)."""
    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


# who owns a RUNNING run: a later job closes it only when this process is gone
PID_TAG, HOST_TAG, STARTED_TAG = "birdsweep.pid", "birdsweep.host", "birdsweep.pid_started"


def _process_started(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, /proc; None elsewhere): with the
    pid it tells a live owner from a new process that reuses a dead owner's pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]  # field 22 of proc(5)
    except (OSError, IndexError):
        return None


def owner_tags() -> dict[str, str]:
    """Tags naming this process (pid, host and start time) for the runs it opens."""
    tags = {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}
    started = _process_started(os.getpid())
    if started is not None:
        tags[STARTED_TAG] = started
    return tags


def owner_alive(tags: Mapping[str, str]) -> bool | None:
    """Whether the process that opened a run (its :func:`owner_tags`) still runs.

    Returns:
        True / False; None when it cannot be told: no owner tags (a run of an older
        birdsweep) or another host.
    """
    pid = tags.get(PID_TAG, "")
    if not pid.isdigit() or tags.get(HOST_TAG) is None:
        return None
    if tags[HOST_TAG] != socket.gethostname():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        pass
    started = tags.get(STARTED_TAG)
    now = _process_started(int(pid))
    return started is None or now is None or started == now


def _as_uri(location: str | None) -> str | None:
    """An absolute ``file:`` URI for a local folder (URIs such as s3://… pass through)."""
    if not location or "://" in location:
        return location
    return Path(location).absolute().as_uri()


class MLflowTracker:
    """Thin wrapper over the MLflow client API used by the training task.

    Args:
        tracking_uri: any MLflow URI (``sqlite:///…/mlflow.db``, ``http://host:5000``, ...).
        experiment_name: MLflow experiment.
        run_name: parent run name (None = the recipe: ``experiment=<name>`` or
            ``model·loss·aug`` of the Hydra group choices, see :mod:`birdsweep.track.recipe`).
        enabled: False turns every call into a no-op (tests, dry runs).
        tags: extra tags on the parent run.
        artifact_location: where a NEW experiment stores artifacts (default: MLflow's
            ``./mlruns`` of the current folder); existing experiments keep theirs.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment_name: str = "birdsweep",
        run_name: str | None = None,
        enabled: bool = True,
        tags: Mapping[str, Any] | None = None,
        artifact_location: str | None = None,
    ):
        self.enabled = enabled
        self.run_name = run_name
        self.tags = {str(k): str(v) for k, v in (tags or {}).items()}
        self.parent_id: str | None = None
        self._active: list[str] = []
        if not enabled:
            return
        import mlflow
        from mlflow.tracking import MlflowClient

        if tracking_uri.startswith("sqlite:///"):
            Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.tracking_uri = tracking_uri
        mlflow.set_tracking_uri(tracking_uri)
        self.client = MlflowClient(tracking_uri)
        exp = self.client.get_experiment_by_name(experiment_name)
        self.experiment_id = (
            exp.experiment_id
            if exp
            else self.client.create_experiment(
                experiment_name, artifact_location=_as_uri(artifact_location)
            )
        )

    @property
    def run_id(self) -> str | None:
        """The innermost active run (child when inside :meth:`child`)."""
        return self._active[-1] if self._active else None

    def start(
        self, params: Mapping[str, Any] | None = None, config_yaml: str | None = None
    ) -> None:
        """Open the parent run, log flattened params and the resolved config. The recipe's tags
        (group choices, overrides, git commit) go on it and on every fold run."""
        if not self.enabled:
            return
        choices, overrides = hydra_choices()
        self.tags.update(recipe_tags(choices, overrides))
        if self.run_name is None:
            self.run_name = recipe_name(choices, fallback=self.tags.get("task_name", "train"))
        tags = {**self.tags, **owner_tags()}
        run = self.client.create_run(self.experiment_id, run_name=self.run_name, tags=tags)
        self.parent_id = run.info.run_id
        self._active.append(self.parent_id)
        if params:
            self.log_params(params)
        if config_yaml is not None:
            self.log_text(config_yaml, "config.yaml")
        log.info(
            "MLflow run %s (experiment %s) at %s",
            self.parent_id,
            self.experiment_id,
            self.tracking_uri,
        )

    def close_stale(self, tags: Mapping[str, Any], status: str = "KILLED") -> int:
        """Close the RUNNING runs with these tags that a killed job left behind.

        A run is closed (``status``, children too) only when its owning process is gone: the
        pid and start time in its owner tags (see :func:`owner_tags`) name no live process of
        this host. A run of a live process (the same command started twice) is left RUNNING,
        and so is one opened on another host, which cannot be checked from here. Runs without
        owner tags (older birdsweep) are closed. Call before :meth:`start`; returns how many
        parent runs were closed.
        """
        if not self.enabled:
            return 0
        filt = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"attributes.status = 'RUNNING' and {filt}",
            max_results=50000,
        )
        closed = 0
        for r in runs:  # children too: nothing of a killed job stays RUNNING
            alive = owner_alive(r.data.tags)
            is_parent = "mlflow.parentRunId" not in r.data.tags
            if alive is None and HOST_TAG in r.data.tags:
                if is_parent:
                    log.info(
                        "run %s is RUNNING on host %s; left as it is (cannot check it from here)",
                        r.info.run_id,
                        r.data.tags[HOST_TAG],
                    )
                continue
            if alive:
                if is_parent:
                    log.warning(
                        "run %s of process %s is still running; left RUNNING",
                        r.info.run_id,
                        r.data.tags[PID_TAG],
                    )
                continue
            self.client.set_terminated(r.info.run_id, status=status)
            if is_parent:
                closed += 1
                log.warning(
                    "marked run %s %s: its process %s is gone (killed or crashed)",
                    r.info.run_id,
                    status,
                    r.data.tags.get(PID_TAG, "(not recorded)"),
                )
        return closed

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params (values truncated to MLflow's 6000-character limit)."""
        if not self.enabled:
            return
        from mlflow.entities import Param

        items = [Param(str(k), str(v)[:6000]) for k, v in flatten(params).items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log numeric metrics on the active run (non-finite values are skipped)."""
        if not self.enabled:
            return
        import math
        import time

        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        items = [
            Metric(k, float(v), ts, step or 0)
            for k, v in metrics.items()
            if v is not None and math.isfinite(float(v))
        ]
        if items:
            self.client.log_batch(self.run_id, metrics=items)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set tags on the active run."""
        if not self.enabled:
            return
        for k, v in tags.items():
            self.client.set_tag(self.run_id, str(k), str(v))

    def log_text(self, text: str, name: str) -> None:
        """Store ``text`` as an artifact file ``name`` of the active run."""
        if not self.enabled:
            return
        self.client.log_text(self.run_id, text, name)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Copy a file or folder into the active run's artifacts."""
        if not self.enabled:
            return
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_dataframe(self, df, name: str) -> None:
        """Store a DataFrame as a CSV artifact."""
        if not self.enabled:
            return
        with tempfile.TemporaryDirectory() as tmp:
            p = os.path.join(tmp, name)
            df.to_csv(p, index=False)
            self.client.log_artifact(self.run_id, p)

    @contextlib.contextmanager
    def child(self, name: str, tags: Mapping[str, Any] | None = None) -> Iterator[None]:
        """A nested run under the parent; ends FAILED if the block raises."""
        if not self.enabled:
            yield
            return
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        t = {MLFLOW_PARENT_RUN_ID: self.parent_id, **self.tags, **owner_tags()}
        t.update({str(k): str(v) for k, v in (tags or {}).items()})
        run = self.client.create_run(self.experiment_id, run_name=name, tags=t)
        self._active.append(run.info.run_id)
        status = "FAILED"
        try:
            yield
            status = "FINISHED"
        finally:
            self._active.pop()
            self.client.set_terminated(run.info.run_id, status=status)

    def end(self, status: str = "FINISHED") -> None:
        """Close the parent run (``FINISHED``, ``FAILED`` or ``KILLED``), after logging the
        job's log file (every file the root logger writes, e.g. Hydra's ``<task_name>.log``
        with the fold workers' epochs) as an artifact under ``logs/``."""
        if not self.enabled or self.parent_id is None:
            return
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).is_file():
                handler.flush()
                try:
                    self.client.log_artifact(self.parent_id, handler.baseFilename, "logs")
                except Exception as exc:  # a log that cannot be uploaded never fails the run
                    log.warning("could not log %s to MLflow: %s", handler.baseFilename, exc)
        self.client.set_terminated(self.parent_id, status=status)
        self._active.clear()
