"""Shared fixtures: the real Hydra config, composed and shrunk to tiny CPU runs."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

CONF = str(Path(__file__).resolve().parents[1] / "conf")

# a tiny demo set and a tiny model: every test that trains uses these
TINY_DATA = [
    "data.demo.n_classes=6",
    "+data.demo.clips_per_class_max=4",
    "+data.demo.soundscape_seconds=20",
    "+data.demo.n_train_soundscapes=2",
    "+data.demo.n_test_soundscapes=2",
    "data.n_folds=2",
    "data.val_windows_per_clip=1",
    "data.min_epoch_samples=0",
]
TINY_MODEL = ["model.backbone=mobilenetv3_small_050", "model.frontend.n_mels=32"]
TINY_TRAINER = [
    "trainer.epochs=1",
    "trainer.batch_size=8",
    "trainer.progress=false",
    "trainer.fold_workers=1",  # tests/test_fold_workers.py trains folds side by side
]


def tiny_run_py(cache: Path, epochs: int, fold_workers: int) -> list[str]:
    """``python run.py`` on the tiny demo set and model (for tests of the real CLI)."""
    return [
        sys.executable,
        "run.py",
        *TINY_DATA,
        *TINY_MODEL,
        f"trainer.epochs={epochs}",
        "trainer.batch_size=8",
        "trainer.progress=false",
        f"trainer.fold_workers={fold_workers}",
        f"paths.cache_dir={cache}",
    ]


def kill_when_ready(cmd: list[str], env: dict, ready, what: str, cwd: Path) -> None:
    """Start ``cmd``, wait (≤ 10 min) until ``ready()`` is true, then SIGKILL it."""
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline:
            if ready():
                break
            assert proc.poll() is None, "run ended before it could be killed"
            time.sleep(0.05)
        else:
            pytest.fail(f"{what} never started")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def compose_config(overrides: list[str] | None = None, root: Path | None = None) -> DictConfig:
    """Compose ``conf/train.yaml`` like ``run.py`` does, with ``paths`` under ``root``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF):
        cfg = compose("train", overrides=list(overrides or []), return_hydra_config=False)
    if root is not None:
        with open_dict(cfg):
            cfg.paths.root_dir = str(root)
            cfg.paths.output_dir = str(root / "run")
    return cfg


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory) -> Path:
    """One tiny demo data set + decoded-audio cache shared by the whole session."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def tiny_cfg(tmp_path, demo_cache) -> DictConfig:
    """The default config shrunk to a 2-fold × 1-epoch run on the tiny demo set."""
    cfg = compose_config(TINY_DATA + TINY_MODEL + TINY_TRAINER, root=tmp_path)
    with open_dict(cfg):
        cfg.paths.cache_dir = str(demo_cache)
    return cfg


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(2)
    yield


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, demo_cache):
    """One tiny 2-fold × 1-epoch run of the default recipe, shared by the tests that only read
    its outputs (export, report): ``(cfg, summary)``."""
    from birdsweep.train.kfold import run_kfold

    root = tmp_path_factory.mktemp("tiny_run")
    cfg = compose_config(TINY_DATA + TINY_MODEL + TINY_TRAINER, root=root)
    with open_dict(cfg):
        cfg.paths.cache_dir = str(demo_cache)
    torch.set_num_threads(2)
    return cfg, run_kfold(cfg)
