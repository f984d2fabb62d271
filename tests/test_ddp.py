"""trainer=ddp: two torchrun processes (gloo, CPU) train each fold together."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from birdsweep.train.checkpoint import load_checkpoint
from tests.conftest import TINY_DATA, TINY_MODEL

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_torchrun_two_processes_train_and_log_once(tmp_path, demo_cache):
    torchrun = shutil.which("torchrun") or pytest.skip("torchrun not on PATH")
    env = {**os.environ, "BIRDSWEEP_ROOT": str(tmp_path), "OMP_NUM_THREADS": "1"}
    cmd = [
        torchrun,
        "--nproc_per_node",
        "2",
        "--master_port",
        "29533",
        "run.py",
        "trainer=ddp",
        *TINY_DATA,
        *TINY_MODEL,
        "trainer.epochs=2",
        "trainer.batch_size=4",
        "trainer.progress=false",
        f"paths.cache_dir={demo_cache}",
    ]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("K-fold results") == 1  # only rank 0 reports
    client = MlflowClient(f"sqlite:///{tmp_path}/outputs/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("birdsweep").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2
    for c in children:  # one metric point per epoch: rank 1 logged nothing
        assert len(client.get_metric_history(c.info.run_id, "train_loss")) == 2
    ckpts = sorted((tmp_path / "outputs" / "checkpoints").glob("*/fold*/best.pt"))
    assert len(ckpts) == 2
    state = load_checkpoint(ckpts[0])["state_dict"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
