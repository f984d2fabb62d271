"""trainer.max_minutes fits a fold's whole LR schedule into a wall-time budget."""

from __future__ import annotations

import itertools

import pytest
import torch

from birdsweep.config import build
from birdsweep.train import loop
from birdsweep.train.checkpoint import load_checkpoint
from birdsweep.train.loop import TrainerSettings, epochs_within, rebuild_schedule
from birdsweep.train.schedule import cosine_with_warmup
from tests.conftest import TINY_MODEL, compose_config
from tests.test_config_options import C, _fit_tiny


def _lrs(optimizer, scheduler, n: int) -> list[float]:
    out = []
    for _ in range(n):
        optimizer.step()
        scheduler.step()
        out.append(optimizer.param_groups[0]["lr"])
    return out


def test_rebuilt_schedule_continues_as_a_fresh_one_over_the_new_length():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1e-3)
    first = cosine_with_warmup(opt, total_steps=100)
    _lrs(opt, first, 10)  # 10 steps of a 100-step plan, mid warm-up (5 steps)
    rebuilt = rebuild_schedule(cosine_with_warmup, opt, total_steps=40, done_steps=10)

    q = torch.nn.Parameter(torch.zeros(1))
    ref_opt = torch.optim.AdamW([q], lr=1e-3)
    ref = cosine_with_warmup(ref_opt, total_steps=40)
    _lrs(ref_opt, ref, 10)
    assert opt.param_groups[0]["lr"] == pytest.approx(ref_opt.param_groups[0]["lr"])
    got, want = _lrs(opt, rebuilt, 30), _lrs(ref_opt, ref, 30)
    assert got == pytest.approx(want)
    assert got[-1] == pytest.approx(1e-5)  # decayed to min_lr_ratio * lr at the new end


def test_epochs_within_budget():
    assert epochs_within(5.0, 13.2, 40) == 22
    assert epochs_within(5.0, 6.0, 40) == 40  # never more than asked
    assert epochs_within(0.01, 60.0, 40) == 1  # at least one


def test_max_minutes_shortens_the_schedule_and_resume_keeps_the_plan(tmp_path, monkeypatch):
    clock = itertools.count(0.0, 60.0)  # every reading of the clock is 60 s later
    monkeypatch.setattr(loop.time, "monotonic", lambda: next(clock))
    cfg = compose_config([*TINY_MODEL, "data.root=/nonexistent"], root=tmp_path)
    settings = TrainerSettings.from_config(cfg.trainer)
    settings.epochs, settings.batch_size, settings.progress = 5, 4, False
    settings.max_minutes = 2.5  # the first epoch "takes" 60 s: 2 of the 5 epochs fit

    fit = _fit_tiny(cfg, build(cfg.model, num_classes=C), settings, tmp_path / "ck")
    assert len(fit.history) == 2
    lr = float(cfg.optimizer.lr) * float(cfg.scheduler.min_lr_ratio)
    assert fit.history[-1]["lr"] == pytest.approx(lr)  # the schedule ran to its end
    assert load_checkpoint(tmp_path / "ck" / "last.pt")["planned_epochs"] == 2

    # a rerun resumes from last.pt with the plan it made: nothing is left to train
    again = _fit_tiny(cfg, build(cfg.model, num_classes=C), settings, tmp_path / "ck")
    assert len(again.history) == 2

    settings.max_minutes = None  # no budget: every epoch
    full = _fit_tiny(cfg, build(cfg.model, num_classes=C), settings, tmp_path / "ck2")
    assert len(full.history) == 5


def test_a_slow_first_epoch_does_not_cut_the_schedule_for_good(tmp_path, monkeypatch):
    # the clock: start 0, the first epoch ends at 90 s (a busy machine), then 10 s per epoch
    readings = itertools.chain([0.0, 90.0], itertools.count(100.0, 10.0))
    monkeypatch.setattr(loop.time, "monotonic", lambda: next(readings))
    cfg = compose_config([*TINY_MODEL, "data.root=/nonexistent"], root=tmp_path)
    settings = TrainerSettings.from_config(cfg.trainer)
    settings.epochs, settings.batch_size, settings.progress = 10, 4, False
    settings.max_minutes = 5.0  # after epoch 1: 3 epochs fit; by epoch 4 the mean allows all 10

    fit = _fit_tiny(cfg, build(cfg.model, num_classes=C), settings, tmp_path / "ck")
    assert len(fit.history) == 10
    lr = float(cfg.optimizer.lr) * float(cfg.scheduler.min_lr_ratio)
    assert fit.history[-1]["lr"] == pytest.approx(lr)
