"""Optuna sweeps: search space, fold pruning, resume, failure isolation, MLflow, the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import optuna
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf, open_dict
from optuna.trial import TrialState

from birdsweep.sweep.runner import OptunaSweep, counts_toward_total, is_interrupted, job_outcome
from birdsweep.sweep.space import SearchSpace
from birdsweep.sweep.storage import absolute_sqlite_url, mask_url, override_value
from birdsweep.sweep.trial import FoldPruningCallback, TrialPruned, attach_trial
from birdsweep.train.kfold import StopJob, run_kfold
from tests.conftest import CONF, TINY_DATA, TINY_TRAINER, compose_config

ROOT = Path(__file__).resolve().parents[1]
optuna.logging.set_verbosity(optuna.logging.WARNING)


def _sweeper_cfg(option: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF):
        cfg = compose("train", overrides=[f"hparams_search={option}"], return_hydra_config=True)
    return cfg.hydra.sweeper


@pytest.mark.parametrize("option", ["cpu_budget", "noise_frontend"])
def test_grid_searches_sweep_keys_that_exist(option, tmp_path):
    """Every value of a grid search (basic sweeper) composes into a valid config."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from birdsweep.train.validate import validate_config

    sw = _sweeper_cfg(option)
    assert sw._target_.endswith("BasicSweeper")
    parser = OverridesParser.create()
    n = 0
    for key, values in sw.params.items():
        override = parser.parse_overrides([f"{key}={values}"])[0]
        assert override.is_sweep_override(), key
        for value in override.sweep_iterator():
            text = "null" if value is None else value
            data = ["data.root=/data"] if option == "noise_frontend" else []  # a user's folder
            cfg = compose_config(
                [f"hparams_search={option}", *data, f"{key}={text}"], root=tmp_path
            )
            assert OmegaConf.select(cfg, key) == value
            validate_config(cfg)
            n += 1
    assert n >= 4
    if option == "noise_frontend":  # trains a user's folder (the selection set), not the demo
        assert cfg.data.demo is None and cfg.data.folds == [0]


# --- search space ------------------------------------------------------------------------
def test_full_search_space_samples_overrides_that_compose(tmp_path):
    sw = _sweeper_cfg("optuna")
    assert sw._target_.endswith("BirdsweepOptunaSweeper") and sw.direction == "maximize"
    space = SearchSpace(sw.params, ["data.n_folds=2"], sw.conditional_params)
    assert {"optimizer.lr", "model", "sampler", "loss", "aug.wave.mixup.p"} <= set(
        space.distributions
    )
    assert space.distributions["optimizer.lr"].log
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        overrides = space.suggest(trial)
        # conditional parameters appear exactly when their condition holds
        assert ("sampler.alpha" in trial.params) == (trial.params["sampler"] == "balanced")
        assert ("loss.focal_gamma" in trial.params) == (trial.params["loss"] == "focal")
        seen.add(trial.params["sampler"])
        cfg = compose_config(overrides, root=tmp_path)  # every sampled key exists in the config
        lo, hi = cfg.aug.wave.noise.snr_db
        assert lo == pytest.approx(trial.params["aug.wave.noise.snr_db.0"]) and lo < hi
        assert cfg.optimizer.lr == pytest.approx(trial.params["optimizer.lr"])
        assert cfg.data.n_folds == 2 and "mixup" in cfg.aug.wave
        study.tell(trial, 0.5)
    assert seen == {"random", "balanced"}


def test_command_line_wins_over_params_and_conditionals():
    space = SearchSpace(
        {"optimizer.lr": "interval(0.1, 0.2)", "sampler": "choice(random, balanced)"},
        ["optimizer.lr=0.5", "model.frontend.n_mels=choice(16,32)", "~tags"],
        {"sampler.alpha": {"when": "sampler=balanced", "space": "interval(0.0, 1.0)"}},
    )
    assert space.fixed == {"optimizer.lr": "0.5"}
    assert set(space.distributions) == {"sampler", "model.frontend.n_mels"}
    study = optuna.create_study()
    study.enqueue_trial({"sampler": "balanced", "sampler.alpha": 0.25})
    ov = space.suggest(study.ask())
    assert "optimizer.lr=0.5" in ov and "~tags" in ov and "sampler.alpha=0.25" in ov
    with pytest.raises(ValueError, match="conditional_params.x"):
        SearchSpace({}, [], {"x": {"when": "no-equals", "space": "interval(0,1)"}})


def test_override_value_round_trips_through_hydra_grammar():
    spec = {
        "storage": "sqlite:////tmp/a b/it's.db",
        "n": 3,
        "f": 1e-4,
        "none": None,
        "ok": True,
        "pruner": {"_target_": "optuna.pruners.MedianPruner", "n_warmup_steps": 0},
        "list": [1, "x"],
    }
    parsed = OverridesParser.create().parse_overrides([f"key={override_value(spec)}"])[0]
    assert parsed.value() == spec
    assert absolute_sqlite_url("sqlite:///rel/x.db") == f"sqlite:///{Path('rel/x.db').absolute()}"
    assert mask_url("postgresql://u:secret@h/db") == "postgresql://u:***@h/db"


# --- the job side: pruning ---------------------------------------------------------------
def _study_with_good_fold0(storage=None, values=(0.9, 0.92, 0.88)) -> optuna.Study:
    """A study with 3 COMPLETE trials (2 folds each, the same value at both steps)."""
    study = optuna.create_study(
        study_name="s",
        storage=storage,
        direction="maximize",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
    )
    for v in values:
        study.add_trial(
            optuna.trial.create_trial(
                value=v, intermediate_values={0: v, 1: v}, params={}, distributions={}
            )
        )
    return study


def test_callback_prunes_a_trial_far_below_the_median_after_its_first_fold():
    study = _study_with_good_fold0()
    cb = FoldPruningCallback(study.ask(), n_folds=2)
    with pytest.raises(TrialPruned) as info:
        cb(0, 0.3)
    assert isinstance(info.value, StopJob) and isinstance(info.value, optuna.TrialPruned)
    assert info.value.state == "PRUNED"
    frozen = study.trials[-1]
    assert frozen.intermediate_values == {0: 0.3}
    assert frozen.user_attrs["pruned_after_folds"] == 1
    # a good trial is not pruned, and the last fold never prunes
    good = FoldPruningCallback(study.ask(), n_folds=2)
    good(0, 0.95)
    low_last = FoldPruningCallback(study.ask(), n_folds=1)
    low_last(0, 0.1)


def test_pruned_job_ends_mlflow_killed_and_trial_pruned(tiny_cfg, tmp_path):
    url = f"sqlite:///{tmp_path}/study.db"
    study = _study_with_good_fold0(storage=url, values=(1.0, 1.0, 1.0))  # median fold-0 AUC 1
    trial = study.ask()
    spec = {
        "study_name": "s",
        "storage": url,
        "trial_id": trial._trial_id,
        "number": trial.number,
        "pruner": {"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 2},
    }
    with open_dict(tiny_cfg):
        tiny_cfg.sweep_trial = spec
        tiny_cfg.data.soundscape_labels = None  # faster: no soundscape scoring
    cfg, callback = attach_trial(tiny_cfg)
    assert cfg.sweep_trial is None and cfg.tags.optuna_trial == trial.number
    with pytest.raises(TrialPruned):
        run_kfold(cfg, on_fold_end=callback)
    # MLflow: the parent ends KILLED with state=PRUNED after one fold run
    client = MlflowClient(cfg.logger.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("birdsweep").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and len(runs) == 2
    assert parents[0].info.status == "KILLED" and parents[0].data.tags["state"] == "PRUNED"
    assert parents[0].data.tags["optuna_trial"] == str(trial.number)
    # Optuna: the sweeper reads the job's outcome as PRUNED and records the fold-0 value
    ret = JobReturn(status=JobStatus.FAILED, _return_value=TrialPruned("pruned"))
    outcome = job_outcome(ret)
    assert outcome.state == TrialState.PRUNED
    study.tell(trial, state=outcome.state)
    frozen = study.trials[trial.number]
    assert frozen.state == TrialState.PRUNED and list(frozen.intermediate_values) == [0]
    mlflow.set_tracking_uri("")


def test_job_outcomes():
    ok = job_outcome(JobReturn(status=JobStatus.COMPLETED, _return_value=0.7))
    assert (ok.state, ok.value) == (TrialState.COMPLETE, 0.7)
    nan = job_outcome(JobReturn(status=JobStatus.COMPLETED, _return_value=float("nan")))
    assert nan.state == TrialState.FAIL and "not finite" in nan.reason
    err = job_outcome(JobReturn(status=JobStatus.FAILED, _return_value=RuntimeError("OOM")))
    assert err.state == TrialState.FAIL and err.reason == "RuntimeError: OOM"
    marked = job_outcome(JobReturn(status=JobStatus.FAILED, _return_value=ValueError()), True)
    assert marked.state == TrialState.PRUNED


# --- the sweeper side: resume ------------------------------------------------------------
def test_interrupted_trials_are_failed_and_requeued_on_resume(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    kw = {"study_name": "r", "storage": url, "params": {"x": "interval(0.0, 1.0)"}}
    first = OptunaSweep(heartbeat_interval=None, **kw)
    study = first.open_study()
    space = SearchSpace(first.params)
    done = study.ask()
    space.suggest(done)
    study.tell(done, 0.5)
    killed = study.ask()  # the sweep dies while this trial runs
    space.suggest(killed)
    # without heartbeats, every RUNNING trial found at start was interrupted
    study = OptunaSweep(heartbeat_interval=None, **kw).open_study()
    old = study.trials[killed.number]
    assert old.state == TrialState.FAIL and is_interrupted(old)
    assert not counts_toward_total(old)
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 1 and waiting[0].user_attrs["retry_of"] == killed.number
    again = study.ask()
    assert space.suggest(again) == [f"x={old.params['x']}"]  # same parameters, run again
    # with heartbeats, a trial silent for grace_period is stale; a fresh one is left alone
    beat = OptunaSweep(heartbeat_interval=1, grace_period=1, on_interrupted="fail", **kw)
    study = beat.open_study()
    beat.storage.record_heartbeat(again._trial_id)
    assert study.trials[again.number].state == TrialState.RUNNING
    time.sleep(2.2)
    study = OptunaSweep(heartbeat_interval=1, grace_period=1, on_interrupted="fail", **kw)
    study = study.open_study()
    assert is_interrupted(study.trials[again.number])
    assert not study.get_trials(states=(TrialState.WAITING,))  # on_interrupted=fail
    assert sum(counts_toward_total(t) for t in study.trials) == 1


# --- the real CLI ------------------------------------------------------------------------
def _sweep(tmp_path, cache, *extra):
    env = {**os.environ, "BIRDSWEEP_ROOT": str(tmp_path)}
    cmd = [
        sys.executable,
        "run.py",
        "-m",
        "hparams_search=optuna_demo",
        *TINY_DATA,
        *TINY_TRAINER,
        "model.backbone=mobilenetv3_small_050",
        f"paths.cache_dir={cache}",
        "data.soundscape_labels=null",  # skip soundscape scoring: faster trials
        "model.frontend.n_mels=choice(16,32)",
        # not log-scaled, so the enqueued lr=-1 reaches the job (which rejects it)
        "optimizer.lr=interval(0.0001,0.003)",
        "hydra.sweeper.enqueue_trials=[{optimizer.lr:-1.0}]",
        *extra,
    ]
    t0 = time.time()
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out, time.time() - t0


@pytest.mark.slow
def test_cli_sweep_isolates_failure_tracks_mlflow_and_resumes(tmp_path, demo_cache):
    out, secs1 = _sweep(tmp_path, demo_cache, "hydra.sweeper.n_trials=3")
    db = tmp_path / "outputs" / "sweeps" / "birdsweep_optuna_demo.db"
    study = optuna.load_study(study_name="birdsweep_optuna_demo", storage=f"sqlite:///{db}")
    states = [t.state for t in study.trials]
    assert len(states) == 3 and states[0] == TrialState.FAIL  # the enqueued lr=-1 trial
    assert "optimizer.lr" in study.trials[0].user_attrs["fail_reason"]
    assert all(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states[1:])
    assert "Optuna study" in out.stdout and "best: trial" in out.stdout
    sweep_dirs = sorted((tmp_path / "outputs" / "multiruns" / "train").iterdir())
    files = {p.name for p in sweep_dirs[-1].iterdir()}
    assert {"trials.csv", "optimization_results.yaml", "optimization_history.png"} <= files
    res = OmegaConf.load(sweep_dirs[-1] / "optimization_results.yaml")
    assert res.best_value == pytest.approx(study.best_value)
    # MLflow: one parent per launched trial, tagged with study, trial number and state
    client = MlflowClient(f"sqlite:///{tmp_path}/outputs/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("birdsweep").experiment_id])
    parents = {
        r.data.tags["optuna_trial"]: r
        for r in runs
        if "mlflow.parentRunId" not in r.data.tags and "optuna_trial" in r.data.tags
    }
    for t in study.trials[1:]:
        run = parents[str(t.number)]
        assert run.data.tags["state"] == t.state.name
        assert run.data.tags["optuna_study"] == "birdsweep_optuna_demo"
        assert t.user_attrs["mlflow_run_id"] == run.info.run_id
    summary = [r for r in runs if r.data.tags.get("sweep_summary") == "true"]
    assert len(summary) == 1 and summary[0].data.metrics["best_value"] == pytest.approx(
        study.best_value
    )
    arts = {a.path for a in client.list_artifacts(summary[0].info.run_id)}
    assert {"trials.csv", "optimization_results.yaml"} <= arts

    # rerun with a larger total, 2 trials in parallel: exactly 2 new trials, nothing rerun
    _, secs2 = _sweep(
        tmp_path,
        demo_cache,
        "hydra.sweeper.n_trials=5",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "hydra.sweeper.n_jobs=2",
    )
    study = optuna.load_study(study_name="birdsweep_optuna_demo", storage=f"sqlite:///{db}")
    assert len(study.trials) == 5 and study.trials[0].state == TrialState.FAIL
    assert all(t.state.is_finished() for t in study.trials)
    table = pd.read_csv(
        sorted((tmp_path / "outputs" / "multiruns" / "train").iterdir())[-1] / "trials.csv"
    )
    assert list(table["trial"]) == [0, 1, 2, 3, 4]
    print(f"tiny sweep: 3 trials {secs1:.0f} s; +2 trials (joblib x2) {secs2:.0f} s")
