"""Helpers shared by the benchmark scripts: compose the real config and run K-fold jobs."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

from birdsweep.train.kfold import KFoldSummary, run_kfold

REPO = Path(__file__).resolve().parents[1]


def compose_run_config(overrides: list[str], root: Path) -> DictConfig:
    """``conf/train.yaml`` with overrides, outputs under ``root`` (as ``run.py`` would)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf")):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.root_dir = str(root)
        cfg.paths.output_dir = str(root / "bench_run")
    return cfg


def timed_kfold(overrides: list[str], root: Path) -> tuple[KFoldSummary, float]:
    """Run one K-fold job; returns its summary and wall-clock minutes."""
    cfg = compose_run_config(overrides, root)
    t0 = time.monotonic()
    summary = run_kfold(cfg)
    return summary, (time.monotonic() - t0) / 60


def soundscape_fold_mean(summary: KFoldSummary) -> float:
    """Mean over folds of each fold model's macro AUC on the labelled soundscapes."""
    return float(np.nanmean([f.soundscape_macro_auc for f in summary.folds]))
