"""Hydra sweeper plugin ``hydra/sweeper=birdsweep_optuna`` (see :mod:`birdsweep.sweep`)."""
