"""The job side of a sweep trial: reach the trial in the shared storage, report folds, prune.

The sweeper passes ``sweep_trial={study_name, storage, trial_id, number, pruner, timeout}``
as an override; :func:`attach_trial` turns it into the ``on_fold_end`` callback of
:func:`~birdsweep.train.kfold.run_kfold`. The job reaches the trial through the storage, so
this works in the sweeper's process (basic launcher) and in other processes (joblib, SLURM).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Any

import optuna
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from birdsweep.sweep.storage import open_storage
from birdsweep.track.sweep_runs import STUDY_TAG, TRIAL_TAG
from birdsweep.train.kfold import FoldResult, StopJob

log = logging.getLogger(__name__)

# the only targets a ``sweep_trial.pruner`` config may name
PRUNER_TARGETS = ["optuna.pruners.*"]
# Optuna trial user attributes: set by the job when it prunes itself ...
PRUNED_ATTR = "pruned_after_folds"
# ... and by the sweeper
FAIL_ATTR, INTERRUPTED_ATTR, OVERRIDES_ATTR = "fail_reason", "interrupted", "overrides"
RUN_ATTR, JOB_DIR_ATTR, RETRY_ATTR = "mlflow_run_id", "job_dir", "retry_of"


class TrialPruned(StopJob, optuna.TrialPruned):
    """A sweep trial stopped by its pruner: the MLflow parent ends KILLED, state PRUNED."""

    state = "PRUNED"


def build_pruner(spec: Mapping[str, Any] | None) -> optuna.pruners.BasePruner:
    """Build an Optuna pruner from a ``_target_`` config (None = never prune).

    Args:
        spec: e.g. ``{_target_: optuna.pruners.MedianPruner, n_startup_trials: 5}``.

    Returns:
        The pruner.
    """
    if not spec:
        return optuna.pruners.NopPruner()
    return instantiate(dict(spec), _execution_whitelist_=PRUNER_TARGETS)


class FoldPruningCallback:
    """``on_fold_end`` callback: report the running CV mean to the trial, prune if told to.

    Step ``i`` is the i-th finished fold (0-based), so trials are compared on the same folds.
    No pruning after the last fold: the trial is complete by then.

    Args:
        trial: the Optuna trial of this job.
        n_folds: folds this job trains.
    """

    def __init__(self, trial: optuna.Trial, n_folds: int):
        self.trial = trial
        self.n_folds = int(n_folds)
        self.step = 0

    def __call__(self, fold: int, running_mean: float, result: FoldResult | None = None) -> None:
        """Report ``running_mean`` at the next step; raise :class:`TrialPruned` to prune."""
        step = self.step
        self.step += 1
        self.trial.report(float(running_mean), step)
        if step >= self.n_folds - 1 or not self.trial.should_prune():
            return
        self.trial.set_user_attr(PRUNED_ATTR, step + 1)
        raise TrialPruned(
            f"trial {self.trial.number} pruned after fold {fold} "
            f"({step + 1}/{self.n_folds} folds, running mean {running_mean:.4f})"
        )

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], n_folds: int) -> FoldPruningCallback:
        """Load the trial ``spec`` names from its storage (see the module docstring)."""
        storage = open_storage(
            str(spec["storage"]), timeout=float(spec.get("timeout", 60.0)), create=False
        )
        study = optuna.load_study(
            study_name=str(spec["study_name"]),
            storage=storage,
            sampler=optuna.samplers.RandomSampler(),  # the job never samples
            pruner=build_pruner(spec.get("pruner")),
        )
        trial = optuna.trial.Trial(study, int(spec["trial_id"]))
        if "number" in spec and trial.number != int(spec["number"]):
            raise ValueError(
                f"sweep_trial: trial_id {spec['trial_id']} is trial #{trial.number} of study "
                f"{spec['study_name']!r}, not #{spec['number']}"
            )
        return cls(trial, n_folds)


def n_job_folds(cfg: DictConfig) -> int:
    """How many folds ``cfg`` trains (``data.folds`` or ``data.n_folds``)."""
    folds = cfg.data.get("folds")
    return len(folds) if folds is not None else int(cfg.data.n_folds)


def attach_trial(cfg: DictConfig) -> tuple[DictConfig, FoldPruningCallback | None]:
    """Connect a job to its sweep trial.

    Args:
        cfg: the job's config; ``cfg.sweep_trial`` is set by the sweeper (or null).

    Returns:
        ``(cfg for training, callback)``: a copy with ``sweep_trial`` cleared (so the
        checkpoint key is that of the same recipe run alone) and the study/trial added to
        ``tags``; the pruning callback (None outside a sweep).
    """
    if not cfg.get("sweep_trial"):
        return cfg, None
    spec = OmegaConf.to_container(cfg.sweep_trial, resolve=True)
    callback = FoldPruningCallback.from_spec(spec, n_job_folds(cfg))
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        cfg.sweep_trial = None
        if cfg.get("tags") is None:
            cfg.tags = {}
        cfg.tags[STUDY_TAG] = str(spec["study_name"])
        cfg.tags[TRIAL_TAG] = int(callback.trial.number)
        if cfg.get("logger") is not None and "run_name" in cfg.logger:
            cfg.logger.run_name = f"{spec['study_name']}_trial{callback.trial.number}"
    log.info("sweep trial #%d of study %r", callback.trial.number, spec["study_name"])
    return cfg, callback
