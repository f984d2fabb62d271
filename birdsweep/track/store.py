"""Finished MLflow runs read and written outside a training job (export, report).

The default tracking URI, a client on a database that must exist, paged run search, and a
run's artifacts downloaded or added to. :class:`~birdsweep.track.mlflow_tracker.MLflowTracker`
is the side that logs a job while it runs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

# the tracking database under the project root: conf/logger/mlflow.yaml's tracking_uri with
# conf/paths/default.yaml's output_root (tests/test_config_sources.py keeps them equal)
TRACKING_DB = "outputs/mlflow.db"
# what the default is, in words (the ``--tracking-uri`` help of ``birdsweep export`` / ``report``)
DEFAULT_TRACKING_URI_TEXT = f"$MLFLOW_TRACKING_URI or sqlite:///{TRACKING_DB}"


def default_tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI``, else the project's ``sqlite:///<root>/outputs/mlflow.db``.

    ``<root>`` is ``$BIRDSWEEP_ROOT`` or the current folder, as in ``conf/paths/default.yaml``.
    """
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    root = Path(os.environ.get("BIRDSWEEP_ROOT", ".")).absolute()
    return f"sqlite:///{root / TRACKING_DB}"


def client(tracking_uri: str, must_exist: bool = True) -> Any:
    """An ``MlflowClient`` of ``tracking_uri``.

    Raises:
        FileNotFoundError: ``must_exist`` and the URI names a SQLite file that is not there
            (a client would create an empty database instead of finding the runs).
    """
    from mlflow.tracking import MlflowClient

    if must_exist and tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri.removeprefix("sqlite:///"))
        if not db.is_file():
            raise FileNotFoundError(
                f"--tracking-uri {tracking_uri}: no MLflow database at {db}; train first "
                "(python run.py) or pass the URI the training used"
            )
    return MlflowClient(tracking_uri)


def all_runs(client: Any, experiment_ids: list[str], filter_string: str = "") -> list:
    """Every run of the experiments that matches ``filter_string`` (all result pages)."""
    runs, token = [], None
    while True:
        page = client.search_runs(
            experiment_ids, filter_string=filter_string, max_results=1000, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def get_run(client: Any, run_id: str, tracking_uri: str, flag: str = "--run") -> Any:
    """The run ``run_id``.

    Raises:
        ValueError: no such run at ``tracking_uri`` (naming ``flag``, the id and the URI).
    """
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException as exc:
        raise ValueError(
            f"{flag} {run_id!r}: no such MLflow run at {tracking_uri} ({exc.message}); "
            "check --tracking-uri and the id (mlflow ui lists runs)"
        ) from exc


def experiment_id(client: Any, name: str) -> str | None:
    """The id of the experiment called ``name`` (None when there is none)."""
    exp = client.get_experiment_by_name(name)
    return None if exp is None else exp.experiment_id


def artifact_names(client: Any, run_id: str) -> set[str]:
    """The paths of a run's top-level artifacts."""
    return {a.path for a in client.list_artifacts(run_id)}


@contextlib.contextmanager
def _no_progress_bar() -> Iterator[None]:
    """Silence MLflow's per-file download bars (restored afterwards)."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    old = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def download_artifacts(
    client: Any, run_id: str, names: Sequence[str], dst: str | Path
) -> dict[str, Path]:
    """Download top-level artifacts of a run into ``dst`` (created), without progress bars.

    Returns:
        name -> downloaded file.
    """
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    with _no_progress_bar():
        return {n: Path(client.download_artifacts(run_id, n, str(dst))) for n in names}


def log_files(client: Any, run_id: str, files: Sequence[Path], artifact_path: str) -> None:
    """Add files to a (finished) run's artifacts under ``artifact_path``."""
    for p in files:
        client.log_artifact(run_id, str(p), artifact_path)
