"""Train K-fold SED models: ``python run.py [group=option ...] [key=value ...]``.

Examples:
    python run.py                                   # demo data, default recipe
    python run.py model=sed_v2s aug=noisy trainer=gpu
    python run.py data=birdclef data.root=/path/to/birdclef-2025
    python run.py -m hparams_search=optuna          # Optuna sweep (see README)
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from birdsweep.cli import train_task


@hydra.main(config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    """Hydra entry point: returns ``cfg.optimized_metric`` so sweepers can optimise it."""
    return train_task(cfg)


if __name__ == "__main__":
    main()
