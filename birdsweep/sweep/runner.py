"""The sweeper side of an Optuna sweep: a resumable ask -> launch -> tell loop.

Each batch of ``n_jobs`` trials is asked from the study, turned into Hydra overrides (the
sampled values plus ``sweep_trial={...}`` so each job can reach its trial), launched through
the configured Hydra launcher (basic: in this process; joblib: other processes) and told back:

- the job returned a finite metric -> COMPLETE;
- the job raised :class:`optuna.TrialPruned` (or marked itself pruned) -> PRUNED;
- anything else (an exception, a NaN metric) -> FAIL with ``fail_reason``; the sweep goes on.

Rerunning resumes the study: ``n_trials`` is the study's total of finished trials (COMPLETE,
PRUNED, FAIL) plus trials running elsewhere. A trial left RUNNING by a killed sweep is failed
(``interrupted``) and, with ``on_interrupted: requeue``, queued again with the same parameters.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.trial import FrozenTrial, TrialState

from birdsweep.sweep.report import SweepMLflow, write_summary
from birdsweep.sweep.space import SearchSpace
from birdsweep.sweep.storage import absolute_sqlite_url, mask_url, open_storage, override_value
from birdsweep.sweep.trial import (
    FAIL_ATTR,
    INTERRUPTED_ATTR,
    JOB_DIR_ATTR,
    OVERRIDES_ATTR,
    PRUNED_ATTR,
    RETRY_ATTR,
    RUN_ATTR,
)

log = logging.getLogger(__name__)

# the only targets ``hydra.sweeper.sampler`` may name
SAMPLER_TARGETS = ["optuna.samplers.*", "hydra_plugins.hydra_optuna_sweeper.*"]
ON_INTERRUPTED = ("requeue", "fail")


@dataclass
class Outcome:
    """How a job ended, as Optuna sees it."""

    state: TrialState
    value: float | None = None
    reason: str | None = None


def job_outcome(ret: JobReturn | None, pruned_attr: bool = False) -> Outcome:
    """Map a Hydra :class:`JobReturn` to an Optuna trial state.

    Args:
        ret: what the launcher returned for the job (None: the launcher itself failed).
        pruned_attr: the job marked its trial pruned in the storage (robust to exceptions
            that did not survive the trip back from another process).

    Returns:
        The :class:`Outcome`.
    """
    if ret is None:
        return Outcome(TrialState.FAIL, reason="the launcher returned no result for this job")
    if ret.status == JobStatus.COMPLETED:
        try:
            value = float(ret.return_value)
        except (TypeError, ValueError):
            return Outcome(
                TrialState.FAIL, reason=f"the task returned {ret.return_value!r}, not a number"
            )
        if not math.isfinite(value):
            return Outcome(TrialState.FAIL, reason=f"the metric is not finite ({value})")
        return Outcome(TrialState.COMPLETE, value)
    err = ret._return_value  # the exception (reading .return_value would re-raise it)
    if pruned_attr or isinstance(err, optuna.TrialPruned):
        return Outcome(TrialState.PRUNED, reason=str(err) if err else None)
    return Outcome(TrialState.FAIL, reason=f"{type(err).__name__}: {err}"[:2000])


def is_interrupted(t: FrozenTrial) -> bool:
    """A FAIL trial that did not end by itself (killed sweep, lost worker, Ctrl-C)."""
    return t.state == TrialState.FAIL and (
        bool(t.user_attrs.get(INTERRUPTED_ATTR)) or FAIL_ATTR not in t.user_attrs
    )


def counts_toward_total(t: FrozenTrial) -> bool:
    """Whether ``t`` counts toward ``n_trials``: finished by itself, or running elsewhere."""
    if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING):
        return True
    return t.state == TrialState.FAIL and not is_interrupted(t)


@contextlib.contextmanager
def _quiet_heartbeat_warnings() -> Iterator[None]:
    """Silence Optuna's notes that heartbeats are experimental / meant for ``optimize``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage", category=UserWarning)
        yield


class _Heartbeat:
    """Record heartbeats of the in-flight trials in a thread (no-op if heartbeats are off)."""

    def __init__(self, storage: Any, trial_ids: Sequence[int], interval: int | None):
        self.storage, self.trial_ids, self.interval = storage, list(trial_ids), interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _beat(self) -> None:
        while True:
            for tid in self.trial_ids:
                try:
                    self.storage.record_heartbeat(tid)
                except Exception as exc:  # a missed beat must never stop the sweep
                    log.warning("heartbeat of trial id %d failed: %s", tid, exc)
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> _Heartbeat:
        if self.interval:
            self._thread = threading.Thread(target=self._beat, daemon=True, name="heartbeat")
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


class OptunaSweep:
    """A resumable Optuna study run through a Hydra launcher (see the module docstring).

    Args:
        study_name: the study (the key of a sweep in its storage).
        storage: SQLAlchemy URL of the study (e.g. ``sqlite:///outputs/sweeps/x.db``).
        direction: ``maximize`` or ``minimize`` the task's return value.
        n_trials: total trials of the study (rerunning adds only the missing ones).
        n_jobs: trials launched per batch (parallel with ``hydra/launcher=joblib``).
        sampler: ``_target_`` config of an Optuna sampler; its ``seed`` is offset by the
            number of existing trials so a resumed sweep does not repeat its first samples.
        pruner: ``_target_`` config of an Optuna pruner (null = no pruning); built in jobs.
        params: search space in Hydra's override grammar.
        conditional_params: parameters sampled only when another one has a given value.
        enqueue_trials: parameter dicts to run first (once per study), e.g. the defaults.
        storage_timeout: seconds a SQLite connection waits for a lock.
        heartbeat_interval: seconds between heartbeats of running trials (null = off: every
            RUNNING trial found at start counts as interrupted; one sweeper at a time only).
        grace_period: seconds without heartbeat after which a RUNNING trial is interrupted
            (null = 2 x heartbeat_interval).
        on_interrupted: ``requeue`` (run its parameters again) or ``fail`` (sample anew).
        max_consecutive_failures: stop the sweep after this many FAIL trials in a row (a
            broken config); null = never.
        plots: write Optuna's history / importance / intermediate-value plots.
    """

    def __init__(
        self,
        study_name: str,
        storage: str,
        direction: str = "maximize",
        n_trials: int = 20,
        n_jobs: int = 1,
        sampler: Mapping[str, Any] | None = None,
        pruner: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        conditional_params: Mapping[str, Any] | None = None,
        enqueue_trials: Sequence[Mapping[str, Any]] | None = None,
        storage_timeout: float = 60.0,
        heartbeat_interval: int | None = 30,
        grace_period: int | None = None,
        on_interrupted: str = "requeue",
        max_consecutive_failures: int | None = 5,
        plots: bool = True,
    ):
        if not storage:
            raise ValueError(
                "hydra.sweeper.storage: set a SQLAlchemy URL (e.g. sqlite:///outputs/sweeps/"
                "study.db); jobs reach their trial through it and reruns resume from it"
            )
        if not study_name:
            raise ValueError("hydra.sweeper.study_name: name the study (reruns resume it)")
        if on_interrupted not in ON_INTERRUPTED:
            raise ValueError(
                f"hydra.sweeper.on_interrupted: {on_interrupted!r} is not one of {ON_INTERRUPTED}"
            )
        if int(n_jobs) < 1:
            raise ValueError(f"hydra.sweeper.n_jobs: must be >= 1, got {n_jobs}")
        self.study_name = str(study_name)
        self.storage_url = str(storage)
        self.direction = str(direction)
        self.n_trials = int(n_trials)
        self.n_jobs = int(n_jobs)
        self.sampler_cfg = _plain(sampler)
        self.pruner_cfg = _plain(pruner)
        self.params = _plain(params) or {}
        self.conditional_params = _plain(conditional_params) or {}
        self.enqueue_trials = _plain(enqueue_trials) or []
        self.storage_timeout = float(storage_timeout)
        self.heartbeat_interval = int(heartbeat_interval) if heartbeat_interval else None
        self.grace_period = int(grace_period) if grace_period else None
        self.on_interrupted = on_interrupted
        self.max_consecutive_failures = max_consecutive_failures
        self.plots = bool(plots)
        self.job_idx = 0

    # --- study ---------------------------------------------------------------------------
    def open_study(self) -> optuna.Study:
        """Create or load the study, fail/requeue interrupted trials, queue ``enqueue_trials``."""
        self.storage_url = absolute_sqlite_url(self.storage_url)
        with _quiet_heartbeat_warnings():
            self.storage = open_storage(
                self.storage_url,
                timeout=self.storage_timeout,
                heartbeat_interval=self.heartbeat_interval,
                grace_period=self.grace_period,
                stale_trial_callback=self._on_stale,
            )
        study = optuna.create_study(
            study_name=self.study_name,
            storage=self.storage,
            direction=self.direction,
            load_if_exists=True,
        )
        if study.direction.name.lower() != self.direction.lower():
            raise ValueError(
                f"hydra.sweeper.direction: study {self.study_name!r} in "
                f"{mask_url(self.storage_url)} was created to {study.direction.name.lower()}; "
                "use another study_name for another direction"
            )
        self._recover(study)
        for params in self.enqueue_trials:
            study.enqueue_trial(dict(params), skip_if_exists=True)
        study.sampler = self._build_sampler(len(study.trials))
        return study

    def _build_sampler(self, n_existing: int) -> optuna.samplers.BaseSampler:
        cfg = dict(self.sampler_cfg or {"_target_": "optuna.samplers.TPESampler"})
        if cfg.get("seed") is not None:
            cfg["seed"] = int(cfg["seed"]) + n_existing  # resumed: continue, don't repeat
        return instantiate(cfg, _execution_whitelist_=SAMPLER_TARGETS)

    def _on_stale(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Optuna's heartbeat callback: a RUNNING trial lost its heartbeat (already FAIL)."""
        log.warning("trial %d lost its heartbeat (killed sweep or worker)", trial.number)
        if self.on_interrupted == "requeue":
            self._requeue(study, trial)

    def _requeue(self, study: optuna.Study, trial: FrozenTrial) -> None:
        study.enqueue_trial(dict(trial.params), user_attrs={RETRY_ATTR: trial.number})
        log.info("trial %d queued again with the same parameters", trial.number)

    def _recover(self, study: optuna.Study) -> None:
        """Fail (and maybe requeue) trials left RUNNING by a sweep that did not end."""
        if self.heartbeat_interval:
            with _quiet_heartbeat_warnings():
                optuna.storages.fail_stale_trials(study)  # calls _on_stale for each
            live = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if live:
                log.warning(
                    "%d trial(s) RUNNING with a recent heartbeat: assumed live on another "
                    "worker (they count toward n_trials; rerun after %d s to retry them if "
                    "they were killed)",
                    len(live),
                    self.grace_period or 2 * self.heartbeat_interval,
                )
            return
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            self._interrupt(study, t.number, t._trial_id, "left RUNNING by an earlier sweep")

    def _interrupt(self, study: optuna.Study, number: int, trial_id: int, why: str) -> None:
        if self.storage.get_trial(trial_id).state != TrialState.RUNNING:
            return
        self.storage.set_trial_user_attr(trial_id, FAIL_ATTR, f"interrupted: {why}")
        self.storage.set_trial_user_attr(trial_id, INTERRUPTED_ATTR, True)
        study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
        log.warning("trial %d marked FAIL (interrupted: %s)", number, why)
        if self.on_interrupted == "requeue":
            self._requeue(study, self.storage.get_trial(trial_id))

    def n_counted(self, study: optuna.Study) -> int:
        """Trials that count toward ``n_trials`` (see :func:`counts_toward_total`)."""
        return sum(counts_toward_total(t) for t in study.get_trials(deepcopy=False))

    # --- the loop ------------------------------------------------------------------------
    def trial_spec(self, trial: optuna.Trial) -> dict[str, Any]:
        """What a job needs to reach ``trial`` (becomes its ``sweep_trial`` override)."""
        return {
            "study_name": self.study_name,
            "storage": self.storage_url,
            "trial_id": int(trial._trial_id),
            "number": int(trial.number),
            "timeout": self.storage_timeout,
            "pruner": self.pruner_cfg,
        }

    def run(self, launcher: Any, config: DictConfig, arguments: Sequence[str]) -> optuna.Study:
        """Run the sweep to ``n_trials``, then write the summary.

        Args:
            launcher: the Hydra launcher (``launch(overrides, initial_job_idx)``).
            config: the sweeper's composed config (``hydra`` node included).
            arguments: the command-line overrides (fixed values or extra sweeps).

        Returns:
            The study.
        """
        space = SearchSpace(self.params, arguments, self.conditional_params)
        study = self.open_study()
        sweep_dir = Path(str(config.hydra.sweep.dir))
        mlflow = SweepMLflow.from_config(config)  # creates the MLflow DB once, before any job
        log.info(
            "study %r in %s: %d/%d trials counted; %s",
            self.study_name,
            mask_url(self.storage_url),
            self.n_counted(study),
            self.n_trials,
            space,
        )
        self._in_flight: list[optuna.Trial] = []
        try:
            self._loop(study, launcher, space, mlflow)
        except BaseException as exc:  # Ctrl-C or a sweeper error: leave no trial RUNNING
            for t in self._in_flight:
                self._interrupt(study, t.number, t._trial_id, f"the sweep stopped ({exc!r})")
            if not isinstance(exc, KeyboardInterrupt):
                write_summary(study, sweep_dir, mlflow, self.summary_params(), plots=self.plots)
            raise
        write_summary(study, sweep_dir, mlflow, self.summary_params(), plots=self.plots)
        return study

    def _loop(self, study: optuna.Study, launcher: Any, space: SearchSpace, mlflow: Any) -> None:
        failed_in_row = 0
        while (todo := self.n_trials - self.n_counted(study)) > 0:
            with _quiet_heartbeat_warnings():
                self._in_flight = [study.ask() for _ in range(min(self.n_jobs, todo))]
                if self.heartbeat_interval:  # from now on a killed sweep is detectable
                    for t in self._in_flight:
                        self.storage.record_heartbeat(t._trial_id)
            outcomes: dict[int, Outcome] = {}
            batch, overrides = [], []
            for t in self._in_flight:
                try:
                    ov = space.suggest(t)
                except Exception as exc:  # e.g. an enqueued value outside its distribution
                    reason = f"sampling failed: {type(exc).__name__}: {exc}"
                    outcomes[t.number] = self._tell(study, t, None, mlflow, failure=reason)
                    continue
                t.set_user_attr(OVERRIDES_ATTR, ov)
                batch.append(t)
                overrides.append([*ov, f"++sweep_trial={override_value(self.trial_spec(t))}"])
                log.info("trial %d: %s", t.number, " ".join(ov))
            returns = self._launch(launcher, batch, overrides) if batch else []
            for t, ret in zip(batch, returns, strict=True):
                outcomes[t.number] = self._tell(study, t, ret, mlflow)
            self._in_flight = []
            for number in sorted(outcomes):
                failed = outcomes[number].state == TrialState.FAIL
                failed_in_row = failed_in_row + 1 if failed else 0
            limit = self.max_consecutive_failures
            if limit and failed_in_row >= int(limit):
                raise RuntimeError(
                    f"{failed_in_row} trials in a row failed (last: "
                    f"{outcomes[max(outcomes)].reason}); fix the config and rerun the same "
                    "command to resume (raise hydra.sweeper.n_trials if the failures used up "
                    "the budget)"
                )

    def _launch(
        self, launcher: Any, trials: list[optuna.Trial], overrides: list[list[str]]
    ) -> list[JobReturn | None]:
        ids = [t._trial_id for t in trials]
        with _Heartbeat(self.storage, ids, self.heartbeat_interval):
            try:
                returns = list(launcher.launch(overrides, initial_job_idx=self.job_idx))
            except Exception as exc:  # the launcher broke (e.g. a lost joblib worker)
                log.error("launcher failed: %s: %s", type(exc).__name__, exc)
                returns = [None] * len(trials)
        self.job_idx += len(trials)
        return returns

    def _tell(
        self,
        study: optuna.Study,
        trial: optuna.Trial,
        ret: JobReturn | None,
        mlflow: Any,
        failure: str | None = None,
    ) -> Outcome:
        """Tell the trial's outcome (``failure``: it failed before a job ran)."""
        if failure is not None:
            outcome = Outcome(TrialState.FAIL, reason=failure)
        else:
            frozen = self.storage.get_trial(trial._trial_id)
            outcome = job_outcome(ret, pruned_attr=PRUNED_ATTR in frozen.user_attrs)
        ran = failure is None and mlflow is not None
        run_id = mlflow.trial_run_id(self.study_name, trial.number) if ran else None
        if run_id:
            trial.set_user_attr(RUN_ATTR, run_id)
        hydra_cfg = getattr(ret, "hydra_cfg", None)
        job_dir = OmegaConf.select(hydra_cfg, "hydra.runtime.output_dir") if hydra_cfg else None
        if job_dir:
            trial.set_user_attr(JOB_DIR_ATTR, str(job_dir))
        if outcome.state == TrialState.FAIL:
            trial.set_user_attr(FAIL_ATTR, outcome.reason or "unknown error")
        study.tell(
            trial,
            state=outcome.state,
            values=[outcome.value] if outcome.state == TrialState.COMPLETE else None,
            skip_if_finished=True,
        )
        if run_id:
            mlflow.set_trial_state(run_id, outcome.state.name)
        value = f"{outcome.value:.4f}" if outcome.value is not None else "-"
        note = f" ({outcome.reason})" if outcome.state != TrialState.COMPLETE else ""
        log_fn = log.warning if outcome.state == TrialState.FAIL else log.info
        log_fn("trial %d %s: %s%s", trial.number, outcome.state.name, value, note)
        return outcome

    def summary_params(self) -> dict[str, Any]:
        """Settings of this sweep, logged with the summary."""
        return {
            "study_name": self.study_name,
            "storage": mask_url(self.storage_url),
            "direction": self.direction,
            "n_trials": self.n_trials,
            "n_jobs": self.n_jobs,
            "sampler": (self.sampler_cfg or {}).get("_target_", "TPESampler"),
            "pruner": (self.pruner_cfg or {}).get("_target_", "none"),
        }


def _plain(node: Any) -> Any:
    """A DictConfig/ListConfig as plain containers (resolved); other values unchanged."""
    if OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True)
    return node
