"""Every option of every config group composes, builds and trains one tiny step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf, open_dict
from torch.utils.data import TensorDataset

from birdsweep.config import build
from birdsweep.train.loop import FoldTrainer, TrainerSettings
from tests.conftest import CONF, TINY_MODEL, compose_config

GROUPS = ["model", "loss", "aug", "sampler", "optimizer", "scheduler", "trainer", "logger", "data"]
SR, C, B = 32000, 4, 4


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONF) / group).glob("*.yaml"))


CASES = [(g, o) for g in GROUPS for o in _options(g)]


def _tiny_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    wave = 0.1 * torch.randn(B, SR, generator=g)
    target = torch.zeros(B, C)
    target[torch.arange(B), torch.arange(B) % C] = 1.0
    return wave, target, torch.ones(B)


@pytest.mark.parametrize("group,option", CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_option_builds_and_trains_one_step(group, option, tmp_path):
    overrides = [f"{group}={option}"]
    if group != "model":  # big presets are exercised with their own backbone, tiny input
        overrides += TINY_MODEL
    cfg = compose_config(overrides + ["data.root=/nonexistent"], root=tmp_path)
    with open_dict(cfg):
        cfg.logger.tracking_uri = f"sqlite:///{tmp_path}/mlflow.db"
    settings = TrainerSettings.from_config(cfg.trainer)
    if settings.device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    # every _target_ of the option builds
    if group == "logger":
        tracker = build(cfg.logger)
        tracker.start({"a": 1})
        tracker.end()
        return
    if group == "data":
        assert OmegaConf.to_container(cfg.data, resolve=True)["sample_rate"] == SR
        return
    settings.epochs, settings.batch_size, settings.progress = 1, B, False
    settings.device, settings.amp = "cpu", False
    model = build(cfg.model, num_classes=C)
    loss_fn = build(cfg.loss)
    aug = build(cfg.aug)
    aug.bind_noise([np.random.default_rng(0).standard_normal(3 * SR).astype(np.float32)], SR)
    sampler = build(
        cfg.sampler, primary=[0, 1, 2, 3], secondary=[[], [], [0], []], num_classes=C, num_samples=B
    )
    wave, target, weight = _tiny_batch()
    trainer = FoldTrainer(
        model, loss_fn, aug, build(cfg.optimizer), build(cfg.scheduler), settings, tmp_path / "ck"
    )
    before = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    fit = trainer.fit(
        TensorDataset(wave, target, weight), TensorDataset(wave, target), target.numpy(), sampler
    )
    assert np.isfinite(fit.history[0]["train_loss"])
    after = [p for p in model.parameters() if p.requires_grad]
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))  # it learned
    assert (tmp_path / "ck" / "best.pt").is_file()


@pytest.mark.parametrize("experiment", _options("experiment"))
def test_experiment_composes(experiment, tmp_path):
    cfg = compose_config([f"experiment={experiment}"], root=tmp_path)
    assert cfg.task_name == experiment
    build(cfg.loss)
    build(cfg.aug)


def _fit_tiny(cfg, model, settings: TrainerSettings, ckpt_dir: Path):
    """Train ``model`` on the tiny batch without augmentation (train = validation set)."""
    wave, target, weight = _tiny_batch()
    no_aug = OmegaConf.create({"_target_": "birdsweep.augment.pipeline.AugmentPipeline"})
    trainer = FoldTrainer(
        model, build(cfg.loss), build(no_aug), build(cfg.optimizer), build(cfg.scheduler),
        settings, ckpt_dir,
    )  # fmt: skip
    return trainer.fit(
        TensorDataset(wave, target, weight),
        TensorDataset(wave, target),
        target.numpy(),
        build(cfg.sampler, primary=[0, 1, 2, 3], secondary=[[]] * 4, num_classes=C, num_samples=B),
    )


@pytest.mark.parametrize("keep", ["best", "last"])
def test_trainer_keep_picks_the_epoch_of_best_pt(keep, tmp_path, monkeypatch):
    from birdsweep.train import loop
    from birdsweep.train.checkpoint import load_checkpoint

    script = iter([0.5, 0.9, 0.7, 0.6])  # validation AUC per epoch: best is epoch 1 of 0-3
    monkeypatch.setattr(loop, "macro_auc", lambda *_: next(script))

    cfg = compose_config([*TINY_MODEL, "data.root=/nonexistent"], root=tmp_path)
    settings = TrainerSettings.from_config(cfg.trainer)
    settings.epochs, settings.batch_size, settings.progress, settings.keep = 4, B, False, keep
    settings.val_every = 1
    fit = _fit_tiny(cfg, build(cfg.model, num_classes=C), settings, tmp_path / "ck")
    aucs = [h["val_macro_auc"] for h in fit.history]
    assert aucs == [0.5, 0.9, 0.7, 0.6]
    want = 3 if keep == "last" else 1
    assert fit.best_epoch == want and fit.best_auc == pytest.approx(aucs[want])
    kept = load_checkpoint(tmp_path / "ck" / "best.pt")
    assert kept["epoch"] == want
    if keep == "last":
        last = load_checkpoint(tmp_path / "ck" / "last.pt")["state_dict"]
        assert all(torch.equal(v, last[k]) for k, v in kept["state_dict"].items())
    with pytest.raises(ValueError, match="trainer.keep"):
        TrainerSettings(keep="middle")


@pytest.mark.parametrize("keep", ["best", "last"])
def test_val_every_scores_every_nth_and_the_last_epoch(keep, tmp_path, monkeypatch):
    from birdsweep.train import loop
    from birdsweep.train.checkpoint import load_checkpoint

    script = iter([0.9, 0.6])  # the AUC of each validation that runs: epochs 2 and 4 (0-based)
    monkeypatch.setattr(loop, "macro_auc", lambda *_: next(script))
    cfg = compose_config([*TINY_MODEL, "data.root=/nonexistent"], root=tmp_path)
    settings = TrainerSettings.from_config(cfg.trainer)
    settings.epochs, settings.batch_size, settings.progress, settings.keep = 5, B, False, keep
    settings.val_every = 3  # epochs 3 and 5 (1-based): every third, and the last
    fit = _fit_tiny(cfg, build(cfg.model, num_classes=C), settings, tmp_path / "ck")
    assert [h.get("val_macro_auc") for h in fit.history] == [None, None, 0.9, None, 0.6]
    want = 4 if keep == "last" else 2  # best: only scored epochs compete
    assert fit.best_epoch == want and load_checkpoint(tmp_path / "ck" / "best.pt")["epoch"] == want
    assert fit.val_probs is not None and fit.val_probs.shape == (B, C)
    with pytest.raises(ValueError, match="trainer.val_every"):
        TrainerSettings(val_every=0)


def test_ema_decay_evaluates_timms_average_of_the_trajectory(tmp_path, monkeypatch):
    """With trainer.ema_decay, best.pt and the validation scores are of the moving average of
    the weights after each step (BatchNorm statistics averaged too, batch counters copied), its
    decay ramped up as ``min(decay, (1 + step) / (10 + step))``: after the first step the
    average is mostly the trained model, not the random initial weights (a constant 0.999 would
    keep 99.9 % of them)."""
    from birdsweep.train.checkpoint import load_checkpoint
    from birdsweep.train.loop import predict, weight_average

    probe = weight_average(torch.nn.Linear(1, 1), 0.999)
    assert probe.get_decay(1) == pytest.approx(2 / 11)
    assert probe.get_decay(100) == pytest.approx(101 / 110)
    assert weight_average(torch.nn.Linear(1, 1), 0.99).get_decay(10_000) == 0.99

    cfg = compose_config([*TINY_MODEL, "data.root=/nonexistent"], root=tmp_path)
    settings = TrainerSettings.from_config(cfg.trainer)
    settings.epochs, settings.batch_size, settings.progress = 4, B, False  # 4 steps
    settings.keep, settings.ema_decay = "last", 0.999
    model = build(cfg.model, num_classes=C)
    trajectory = [{k: v.detach().clone() for k, v in model.state_dict().items()}]
    step = FoldTrainer.train_step

    def recorded_step(self, *args, **kwargs):
        loss = step(self, *args, **kwargs)
        trajectory.append({k: v.detach().clone() for k, v in self.model.state_dict().items()})
        return loss

    monkeypatch.setattr(FoldTrainer, "train_step", recorded_step)
    fit = _fit_tiny(cfg, model, settings, tmp_path / "ck")
    assert len(trajectory) == 5
    want = trajectory[0]
    for n, state in enumerate(trajectory[1:], start=1):
        decay = min(0.999, (1 + n) / (10 + n))
        want = {k: v.lerp(state[k], 1 - decay) if v.is_floating_point() else state[k]
                for k, v in want.items()}  # fmt: skip
    evaluated = load_checkpoint(tmp_path / "ck" / "best.pt")["state_dict"]
    raw = load_checkpoint(tmp_path / "ck" / "last.pt")["state_dict"]
    assert all(torch.equal(raw[k], v) for k, v in trajectory[-1].items())
    assert evaluated.keys() == want.keys()
    for k, v in want.items():
        torch.testing.assert_close(evaluated[k], v, rtol=1e-5, atol=1e-7, msg=k)
    for kind in ("weight", "running_mean", "running_var"):
        assert any(k.endswith(kind) and not torch.allclose(evaluated[k], raw[k]) for k in raw)
    averaged = build(cfg.model, num_classes=C)
    averaged.load_state_dict(evaluated)
    val = TensorDataset(*_tiny_batch()[:2])
    np.testing.assert_allclose(fit.val_probs, predict(averaged, val), rtol=1e-5, atol=1e-6)


def test_debug_fast_trains_one_fold_once_without_mlflow(tmp_path, demo_cache):
    from birdsweep.train.kfold import run_kfold
    from tests.conftest import TINY_DATA

    cfg = compose_config(
        ["debug=fast", *TINY_DATA, *TINY_MODEL, "trainer.batch_size=8", "trainer.progress=false"],
        root=tmp_path,
    )
    assert cfg.task_name == "debug" and cfg.trainer.epochs == 1 and list(cfg.data.folds) == [0]
    assert cfg.logger.enabled is False
    with open_dict(cfg):
        cfg.paths.cache_dir = str(demo_cache)
    summary = run_kfold(cfg)
    assert [r.fold for r in summary.folds] == [0] and summary.run_id is None
    assert not list(tmp_path.rglob("mlflow.db"))
