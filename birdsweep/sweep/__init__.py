"""Optuna sweeps of the K-fold task: ``python run.py -m hparams_search=optuna``.

The Hydra sweeper plugin (``hydra_plugins/birdsweep_sweeper``) is thin; the work lives here:

- :mod:`birdsweep.sweep.space`: search spaces in Hydra's override grammar, sampled by Optuna.
- :mod:`birdsweep.sweep.storage`: the study's RDB storage (SQLite by default) and URL helpers.
- :mod:`birdsweep.sweep.trial`: the job side: reach the trial, report folds, prune.
- :mod:`birdsweep.sweep.runner`: the sweeper side: ask, launch, tell, resume.
- :mod:`birdsweep.sweep.report`: the sweep summary (table, files, plots, MLflow run).
"""
