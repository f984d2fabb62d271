"""``trainer.fold_workers``: folds trained side by side in worker processes."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from omegaconf import open_dict

from birdsweep.train.fold_pool import worker_threads
from birdsweep.train.kfold import fold_dir_of, run_kfold
from birdsweep.train.soundscapes import SOUNDSCAPE_PROBS, SoundscapeProbs
from tests.conftest import kill_when_ready, tiny_run_py
from tests.test_train_e2e import _runs

ROOT = Path(__file__).resolve().parents[1]


def _fold_files(summary, k: int) -> tuple[np.ndarray, float]:
    fold_dir = fold_dir_of(Path(summary.checkpoint_dir), k)
    res = summary.folds[k]
    return np.load(fold_dir / "val_probs.npy"), res.val_macro_auc


def test_folds_side_by_side_match_folds_one_at_a_time(tiny_cfg):
    with open_dict(tiny_cfg):
        tiny_cfg.trainer.threads = 1  # the same arithmetic in both: one thread per fold
        tiny_cfg.trainer.epochs = 2
    one = run_kfold(tiny_cfg)
    with open_dict(tiny_cfg):
        tiny_cfg.trainer.fold_workers = 2
    two = run_kfold(tiny_cfg)
    assert two.checkpoint_dir != one.checkpoint_dir  # its own folds, not reused
    assert not any(r.reused for r in two.folds)
    for k in range(2):
        probs_one, auc_one = _fold_files(one, k)
        probs_two, auc_two = _fold_files(two, k)
        np.testing.assert_allclose(probs_two, probs_one, rtol=0, atol=1e-6)
        assert auc_two == pytest.approx(auc_one)
        assert len(two.folds[k].history) == 2  # the worker's epochs came back
    assert two.soundscape_macro_auc == pytest.approx(one.soundscape_macro_auc, abs=1e-6)
    # the workers scored their folds' soundscapes (as the one-at-a-time folds did, the same
    # function writing the same files); the parent used those scores
    for run in (one, two):
        pred = np.load(Path(run.checkpoint_dir) / "predictions.npz")
        for k in range(2):
            scored = SoundscapeProbs.load(
                fold_dir_of(Path(run.checkpoint_dir), k) / SOUNDSCAPE_PROBS
            )
            pick = [list(scored.row_ids).index(r) for r in pred["soundscape_row_ids"]]
            np.testing.assert_array_equal(pred["soundscape_fold_probs"][k], scored.probs[pick])
    parents, children = _runs(tiny_cfg.logger.tracking_uri)
    assert len(parents) == 2 and len(children) == 4
    again = run_kfold(tiny_cfg)  # finished folds of workers are reused like any others
    assert all(r.reused for r in again.folds)


def test_worker_threads_share_the_threads_torch_has():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(4)  # e.g. OMP_NUM_THREADS=4 on a bigger machine
        assert worker_threads(2, None) == 2
        assert worker_threads(3, None) == 1
        assert worker_threads(8, None) == 1  # at least one
        assert worker_threads(2, 3) == 3  # trainer.threads wins
    finally:
        torch.set_num_threads(before)


def test_fold_workers_must_be_positive(tiny_cfg):
    with open_dict(tiny_cfg):
        tiny_cfg.trainer.fold_workers = 0
    with pytest.raises(ValueError, match="trainer.fold_workers"):
        run_kfold(tiny_cfg)


def _processes_with_env(marker: str) -> list[int]:
    """pids of the live processes whose environment holds ``marker``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        except OSError:
            continue
        if marker.encode() in env and state != "Z":
            found.append(int(pid))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_killed_run_leaves_no_worker_behind_and_resumes(tmp_path, demo_cache):
    marker = f"BIRDSWEEP_ROOT={tmp_path}"
    env = {**os.environ, "BIRDSWEEP_ROOT": str(tmp_path)}
    cmd = tiny_run_py(demo_cache, epochs=12, fold_workers=2)
    ckpts = tmp_path / "outputs" / "checkpoints"

    def both_training() -> bool:  # both folds are training, side by side
        return len(list(ckpts.glob("*/fold*/last.pt"))) == 2 and not list(
            ckpts.glob("*/fold*/result.json")
        )

    kill_when_ready(cmd, env, both_training, "the folds", ROOT)
    deadline = time.monotonic() + 30
    while _processes_with_env(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _processes_with_env(marker), "a fold worker outlived its killed parent"
    assert not list(ckpts.glob("*/fold*/result.json"))  # nothing finished after the kill
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    log = out.stderr + out.stdout
    assert "fold 0: resumed from" in log and "fold 1: resumed from" in log, log[-4000:]
    assert len(list(ckpts.glob("*/fold*/result.json"))) == 2
    # the MLflow side of the real CLI: the runs are named and tagged by their recipe
    parents, children = _runs(f"sqlite:///{tmp_path}/outputs/mlflow.db")
    done = [r for r in parents if r.info.status == "FINISHED"]
    assert len(done) == 1 and done[0].info.run_name == "sed_small·ce·noisy_mixup_warp"
    tags = done[0].data.tags
    assert tags["birdsweep.choice.model"] == "sed_small" and tags["birdsweep.choice.loss"] == "ce"
    assert "trainer.epochs=12" in tags["birdsweep.overrides"].split()
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()  # fmt: skip
    assert tags["mlflow.source.git.commit"].removesuffix("+dirty") == head
    params = done[0].data.params
    assert "model.backbone" in params and not any(k.endswith("_target_") for k in params)
    assert not any(k.endswith(("_convert_", "_partial_")) for k in params)
    mine = [c for c in children if c.data.tags["mlflow.parentRunId"] == done[0].info.run_id]
    assert sorted(c.info.run_name for c in mine) == ["fold0", "fold1"]
    assert all(c.data.tags["birdsweep.choice.aug"] == "noisy_mixup_warp" for c in mine)
    # the fold workers' records reach the parent's log file, and it is the run's artifact
    client = MlflowClient(f"sqlite:///{tmp_path}/outputs/mlflow.db")
    logs = [a.path for a in client.list_artifacts(done[0].info.run_id, "logs")]
    assert logs == ["logs/train.log"], logs
    text = Path(client.download_artifacts(done[0].info.run_id, "logs/train.log")).read_text()
    for k in (0, 1):
        assert f"fold {k}: resumed from" in text and f"fold {k} epoch 12/12" in text, text[-3000:]
    assert "[fold worker]" not in log  # printed once, in the parent's format
