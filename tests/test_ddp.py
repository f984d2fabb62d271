"""trainer=ddp: two torchrun processes (gloo, CPU) train each fold together.

Run by torchrun itself (``torchrun --nproc_per_node 2 -m tests.test_ddp OUT``), this module
takes one DDP training step on each rank's half of a fixed global batch and saves the result
to ``OUT/rank<r>.pt`` (see :func:`test_ddp_step_equals_one_process_on_the_global_batch`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from birdsweep.config import build
from birdsweep.train import distributed as D
from birdsweep.train.checkpoint import load_checkpoint
from birdsweep.train.loop import FoldTrainer, TrainerSettings
from tests.conftest import TINY_DATA, TINY_MODEL, compose_config

ROOT = Path(__file__).resolve().parents[1]
GLOBAL_BATCH, C, SR = 8, 4, 32000


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


def _one_step_setup() -> tuple[FoldTrainer, tuple[torch.Tensor, ...]]:
    """A trainer of the tiny model (same seed, so the same initial weights in every process)
    and a fixed global batch ``(wave, target, weight)`` of ``GLOBAL_BATCH`` rows."""
    cfg = compose_config([*TINY_MODEL, "aug=clean", "data.root=/nonexistent"])
    settings = TrainerSettings.from_config(cfg.trainer)
    torch.manual_seed(0)
    model = build(cfg.model, num_classes=C)
    trainer = FoldTrainer(
        model, build(cfg.loss), build(cfg.aug), build(cfg.optimizer), build(cfg.scheduler),
        settings, Path("unused"),
    )  # fmt: skip
    g = torch.Generator().manual_seed(1)
    wave = 0.1 * torch.randn(GLOBAL_BATCH, SR, generator=g)
    target = torch.eye(C)[torch.arange(GLOBAL_BATCH) % C]
    return trainer, (wave, target, torch.ones(GLOBAL_BATCH))


def _step(trainer: FoldTrainer, *batch: torch.Tensor) -> dict[str, torch.Tensor]:
    """One ``train_step`` (gradient clipping and the configured optimizer included) in eval
    mode, where a row's gradient does not depend on the other rows of its batch (BatchNorm uses
    its running statistics, dropout is off); returns the gradients and the updated weights."""
    trainer.train_forward.eval()
    optimizer, scheduler, scaler = trainer.make_optimization(total_steps=10)
    trainer.train_step(*batch, optimizer, scheduler, scaler)
    params = list(trainer.model.named_parameters())
    out = {f"grad {n}": p.grad.clone() for n, p in params if p.grad is not None}
    return out | {f"weight {n}": p.detach().clone() for n, p in params}


def _rank_main(out_dir: Path) -> None:
    """torchrun entry: this rank's share of the global batch, one DDP step, its result saved."""
    D.init_distributed("gloo")
    trainer, batch = _one_step_setup()
    rows = torch.from_numpy(D.shard_indices(GLOBAL_BATCH))
    torch.save(_step(trainer, *(t[rows] for t in batch)), out_dir / f"rank{D.current().rank}.pt")
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_ddp_step_equals_one_process_on_the_global_batch(tmp_path):
    """The gradients and weights after one step of 2 DDP processes, each on half of a batch,
    equal those of one process on the whole batch (the loss is a mean over equally weighted
    rows, so the mean of the halves' gradients is the whole batch's)."""
    torchrun = shutil.which("torchrun") or pytest.skip("torchrun not on PATH")
    cmd = [torchrun, "--nproc_per_node", "2", "--master_port", "29534"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [*cmd, "-m", "tests.test_ddp", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    trainer, batch = _one_step_setup()
    want = _step(trainer, *batch)
    assert rank0.keys() == want.keys() == rank1.keys()
    assert any(k.startswith("grad ") for k in want)
    for k, v in want.items():
        torch.testing.assert_close(rank0[k], v, rtol=1e-5, atol=1e-6, msg=k)
        assert torch.equal(rank1[k], rank0[k]), k  # DDP keeps the ranks identical


if __name__ == "__main__":
    _rank_main(Path(sys.argv[1]))
