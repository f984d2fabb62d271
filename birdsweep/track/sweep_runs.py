"""The MLflow side of an Optuna sweep: find a trial's parent run, tag its Optuna state, and log
the sweep's summary run (the sweeper in :mod:`birdsweep.sweep` calls it; MLflow calls stay here).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

log = logging.getLogger(__name__)

# MLflow tags on a trial's parent run (the sweeper adds ``state``) and on a sweep's summary run
STUDY_TAG, TRIAL_TAG, STATE_TAG = "optuna_study", "optuna_trial", "state"
SUMMARY_TAG = "sweep_summary"


class SweepMLflow:
    """MLflow side of a sweep: find a trial's parent run, tag its state, log the summary.

    Args:
        client: an ``mlflow.tracking.MlflowClient``.
        experiment_id: the experiment the jobs log to.
    """

    def __init__(self, client: Any, experiment_id: str):
        self.client = client
        self.experiment_id = experiment_id

    @classmethod
    def from_config(cls, config: DictConfig) -> SweepMLflow | None:
        """Build from the task config's ``logger`` (None when it is not an enabled MLflow one).

        Creating the tracker here initialises the MLflow database and experiment once, in
        the sweeper's process, before parallel jobs could race on it.
        """
        logger = config.get("logger")
        if not logger or not logger.get("enabled", True):
            return None
        if not str(logger.get("_target_", "")).endswith("MLflowTracker"):
            return None
        from birdsweep.config import build

        try:
            tracker = build(logger)
        except Exception as exc:
            log.warning("MLflow unavailable to the sweeper (%s): no run tags or summary", exc)
            return None
        return cls(tracker.client, tracker.experiment_id)

    def trial_run_id(self, study_name: str, number: int) -> str | None:
        """The newest parent run tagged with this study and trial number."""
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.{STUDY_TAG} = '{study_name}' and tags.{TRIAL_TAG} = '{number}'",
            order_by=["attributes.start_time DESC"],
            max_results=100,
        )
        parents = [r for r in runs if MLFLOW_PARENT_RUN_ID not in r.data.tags]
        return parents[0].info.run_id if parents else None

    def set_trial_state(self, run_id: str, state: str) -> None:
        """Tag the run with the trial's Optuna state; close it if its job left it RUNNING."""
        self.client.set_tag(run_id, STATE_TAG, state)
        if self.client.get_run(run_id).info.status == "RUNNING":
            self.client.set_terminated(run_id, status="KILLED")

    def log_summary(
        self,
        study_name: str,
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        tags: Mapping[str, Any],
        files: list[Path],
    ) -> str:
        """Log a ``sweep_<study>`` run with the summary files; returns its run id."""
        from mlflow.entities import Metric, Param, RunTag

        run = self.client.create_run(
            self.experiment_id,
            run_name=f"sweep_{study_name}",
            tags={STUDY_TAG: study_name, SUMMARY_TAG: "true"},
        )
        rid = run.info.run_id
        self.client.log_batch(
            rid,
            metrics=[
                Metric(k, float(v), 0, 0)
                for k, v in metrics.items()
                if v is not None and math.isfinite(v)
            ],
            params=[Param(str(k), str(v)[:6000]) for k, v in params.items()],
            tags=[RunTag(str(k), str(v)[:5000]) for k, v in tags.items()],
        )
        for f in files:
            self.client.log_artifact(rid, str(f))
        self.client.set_terminated(rid, status="FINISHED")
        return rid
