"""End to end: K-fold training on a tiny demo set, tracked in MLflow."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from birdsweep.scoring.combine import combine
from birdsweep.scoring.metric import macro_auc
from birdsweep.train.kfold import run_kfold
from tests.conftest import TINY_DATA, TINY_MODEL, TINY_TRAINER

ROOT = Path(__file__).resolve().parents[1]


def _runs(uri: str):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("birdsweep")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


def test_kfold_run_tracks_parent_and_fold_runs(tiny_cfg):
    summary = run_kfold(tiny_cfg)
    assert len(summary.folds) == 2
    assert 0.0 <= summary.cv_macro_auc <= 1.0
    assert math.isfinite(summary.soundscape_macro_auc)
    # the soundscape AUC uses the recording context of conf/postprocess; the raw one does not
    preds = np.load(Path(summary.checkpoint_dir) / "predictions.npz")
    truth = preds["soundscape_targets"]
    assert summary.soundscape_macro_auc == pytest.approx(
        macro_auc(truth, preds["soundscape_scores"])
    )
    assert summary.soundscape_macro_auc_raw == pytest.approx(
        macro_auc(truth, preds["soundscape_probs"])
    )
    assert not np.allclose(preds["soundscape_scores"], preds["soundscape_probs"])
    # each fold's own soundscape scores, and what it trained on, are kept for analysis
    folds = preds["soundscape_fold_scores"]
    assert folds.shape == (2, *truth.shape)
    np.testing.assert_allclose(folds.mean(0), preds["soundscape_scores"], rtol=1e-5)
    rank_auc = macro_auc(truth, combine(folds.transpose(1, 0, 2), "rank"))
    counts = preds["fold_train_counts"]
    assert counts.shape == (2, truth.shape[1])
    # with 2 folds each clip trains one of them; a class of one clip trains both (ALWAYS_TRAIN)
    total = summary.per_class["n_train_clips"].to_numpy()
    assert (total == 1).any() and (total > 1).any()
    np.testing.assert_array_equal(counts.sum(0), np.where(total < 2, 2 * total, total))
    for r in summary.folds:
        assert Path(r.checkpoint).is_file() and len(r.history) == 1
    uri = tiny_cfg.logger.tracking_uri
    parents, children = _runs(uri)
    assert len(parents) == 1 and len(children) == 2
    p = parents[0]
    assert p.info.status == "FINISHED"
    for key in (
        "cv_macro_auc",
        "cv_macro_auc_std",
        "soundscape_macro_auc",
        "soundscape_macro_auc_raw",
        "oof_macro_auc",
    ):
        assert key in p.data.metrics
    assert p.data.metrics["cv_macro_auc"] == pytest.approx(summary.cv_macro_auc)
    # what the exported ensemble's default (rank averaging) would score, beside the mean
    assert p.data.metrics["soundscape_macro_auc_rank"] == pytest.approx(rank_auc)
    assert p.data.params["model.backbone"] == "mobilenetv3_small_050"
    arts = {a.path for a in MlflowClient(uri).list_artifacts(p.info.run_id)}
    assert {"config.yaml", "per_class_auc.csv"} <= arts
    for c in children:
        assert c.data.tags["mlflow.parentRunId"] == p.info.run_id
        hist = MlflowClient(uri).get_metric_history(c.info.run_id, "val_macro_auc")
        assert len(hist) == 1
        assert "train_loss" in c.data.metrics and "best_val_macro_auc" in c.data.metrics


def test_identical_rerun_reuses_finished_folds(tiny_cfg):
    first = run_kfold(tiny_cfg)
    again = run_kfold(tiny_cfg)
    assert all(r.reused for r in again.folds)
    assert again.cv_macro_auc == pytest.approx(first.cv_macro_auc)
    parents, children = _runs(tiny_cfg.logger.tracking_uri)
    assert len(parents) == 2 and len(children) == 4  # every fold once per parent
    mlflow.set_tracking_uri("")  # leave no global state behind


@pytest.mark.slow
def test_cli_run_py_prints_table_and_writes_mlflow(tmp_path, demo_cache):
    env = {**os.environ, "BIRDSWEEP_ROOT": str(tmp_path)}
    cmd = [
        sys.executable,
        "run.py",
        *TINY_DATA,
        *TINY_MODEL,
        *TINY_TRAINER,
        f"paths.cache_dir={demo_cache}",
    ]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "K-fold results" in out.stdout and "mean" in out.stdout
    assert (tmp_path / "outputs" / "mlflow.db").is_file()
    parents, children = _runs(f"sqlite:///{tmp_path}/outputs/mlflow.db")
    assert len(parents) == 1 and len(children) == 2
