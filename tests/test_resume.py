"""Fault tolerance: kill -9 in the middle of a fold, run again, nothing finished is lost."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from birdsweep.train.kfold import run_kfold
from birdsweep.train.validate import ConfigError
from tests.conftest import kill_when_ready, tiny_run_py

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_kill_mid_fold_then_rerun_resumes(tmp_path, demo_cache):
    env = {**os.environ, "BIRDSWEEP_ROOT": str(tmp_path)}
    cmd = tiny_run_py(demo_cache, epochs=3, fold_workers=1)  # workers: test_fold_workers.py
    ckpts = tmp_path / "outputs" / "checkpoints"

    def fold1_training() -> bool:
        return bool(list(ckpts.glob("*/fold1/last.pt"))) and not list(
            ckpts.glob("*/fold1/result.json")
        )

    kill_when_ready(cmd, env, fold1_training, "fold 1", ROOT)
    assert list(ckpts.glob("*/fold0/result.json"))  # fold 0 had finished
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    log = out.stderr + out.stdout
    assert "fold 0: reusing finished fold" in log
    assert "fold 1: resumed from" in log
    client = MlflowClient(f"sqlite:///{tmp_path}/outputs/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("birdsweep").experiment_id])
    parents = {r.info.run_id: r for r in runs if "mlflow.parentRunId" not in r.data.tags}
    statuses = sorted(r.info.status for r in parents.values())
    assert statuses == ["FINISHED", "KILLED"]  # the killed job's parent is closed, not RUNNING
    done = next(i for i, r in parents.items() if r.info.status == "FINISHED")
    folds = [r.data.tags["fold"] for r in runs if r.data.tags.get("mlflow.parentRunId") == done]
    assert sorted(folds) == ["0", "1"]  # every fold exactly once


@pytest.mark.parametrize(
    "override,key",
    [
        ("optimizer.lr", "optimizer.lr"),
        ("trainer.epochs", "trainer.epochs"),
        ("data.n_folds", "data.n_folds"),
    ],
)
def test_out_of_range_config_names_the_key(tiny_cfg, override, key):
    section, name = override.split(".")
    tiny_cfg[section][name] = -1
    with pytest.raises(ConfigError, match=key):
        run_kfold(tiny_cfg)


def test_more_folds_than_clips_of_any_class(tiny_cfg):
    tiny_cfg.data.n_folds = 50
    with pytest.raises(ValueError, match="data.n_folds=50"):
        run_kfold(tiny_cfg)
