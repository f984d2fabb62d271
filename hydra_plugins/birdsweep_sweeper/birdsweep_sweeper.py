"""``hydra/sweeper: birdsweep_optuna``: resumable Optuna sweeps with fold-level pruning.

Hydra imports this module on every run to discover plugins, so it stays light: Optuna, MLflow
and the sweep logic (:mod:`birdsweep.sweep.runner`) are imported only when a sweep starts.
Set it from an ``hparams_search`` option::

    defaults:
      - override /hydra/sweeper: birdsweep_optuna
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class BirdsweepOptunaSweeperConf:
    """Settings of the sweeper (``hydra.sweeper.*``); see :class:`birdsweep.sweep.runner.OptunaSweep`."""

    _target_: str = "hydra_plugins.birdsweep_sweeper.birdsweep_sweeper.BirdsweepOptunaSweeper"
    study_name: str = "birdsweep"
    # SQLAlchemy URL of the study: sqlite:///file.db (one machine) or postgresql://... (many)
    storage: str | None = None
    direction: str = "maximize"
    n_trials: int = 20  # the study's total: rerunning adds only the missing trials
    n_jobs: int = 1  # trials per batch (parallel with hydra/launcher=joblib)
    sampler: Any = field(
        default_factory=lambda: {"_target_": "optuna.samplers.TPESampler", "seed": None}
    )
    pruner: Any = field(default_factory=lambda: {"_target_": "optuna.pruners.MedianPruner"})
    params: dict[str, Any] | None = None  # search space in Hydra's override grammar
    conditional_params: dict[str, Any] | None = None  # key: {when: other=value, space: ...}
    enqueue_trials: list[Any] | None = None  # parameter dicts to run first, once per study
    storage_timeout: float = 60.0  # seconds a SQLite connection waits for a lock
    heartbeat_interval: int | None = 30  # seconds; null = any RUNNING trial at start is stale
    grace_period: int | None = None  # no heartbeat for this long = interrupted (null = 2x)
    on_interrupted: str = "requeue"  # requeue | fail
    max_consecutive_failures: int | None = 5  # stop a sweep whose trials all fail
    plots: bool = True  # Optuna history / intermediate values / importance PNGs


ConfigStore.instance().store(
    group="hydra/sweeper",
    name="birdsweep_optuna",
    node=BirdsweepOptunaSweeperConf,
    provider="birdsweep",
)


class BirdsweepOptunaSweeper(Sweeper):
    """Hydra's side of the sweep: builds the launcher and hands over to ``OptunaSweep``."""

    def __init__(self, **settings: Any) -> None:
        from birdsweep.sweep.runner import OptunaSweep

        self.runner = OptunaSweep(**settings)
        self.config: DictConfig | None = None
        self.launcher: Any = None

    def setup(
        self,
        *,
        hydra_context: HydraContext,
        task_function: TaskFunction,
        config: DictConfig,
    ) -> None:
        """Keep the config and build the configured launcher."""
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        """Run the study to ``n_trials`` (``arguments`` are the command-line overrides)."""
        assert self.config is not None and self.launcher is not None, "setup() first"
        return self.runner.run(self.launcher, self.config, arguments)
