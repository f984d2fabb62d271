"""The Hydra task behind ``run.py``: run K-fold training, print the result, return the metric."""

from __future__ import annotations

import logging
import math

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from birdsweep.sweep.trial import attach_trial
from birdsweep.train.distributed import current as current_rank
from birdsweep.train.kfold import KFoldSummary, StopJob, run_kfold

log = logging.getLogger(__name__)


def print_summary(summary: KFoldSummary, console: Console | None = None) -> None:
    """Print the per-fold table and the K-fold mean."""
    console = console or Console()
    table = Table(title="K-fold results (macro ROC-AUC)")
    for col in ("fold", "val AUC", "best epoch", "soundscape AUC", "minutes", "note"):
        table.add_column(col, justify="right")
    for r in summary.folds:
        table.add_row(
            str(r.fold),
            f"{r.val_macro_auc:.4f}",
            str(r.best_epoch + 1),
            f"{r.soundscape_macro_auc:.4f}",
            f"{r.seconds / 60:.1f}",
            "reused" if r.reused else "",
        )
    table.add_section()
    table.add_row(
        "mean",
        f"{summary.cv_macro_auc:.4f} ± {summary.cv_macro_auc_std:.4f}",
        "",
        f"{summary.soundscape_macro_auc:.4f} (ens)",
        f"{sum(r.seconds for r in summary.folds) / 60:.1f}",
        "",
    )
    console.print(table)
    if summary.n_bad_files:
        console.print(f"[yellow]{summary.n_bad_files} audio file(s) skipped (see log)[/yellow]")
    console.print(f"checkpoints: {summary.checkpoint_dir}")
    if summary.run_id:
        console.print(f"MLflow parent run: {summary.run_id}")


def train_task(cfg: DictConfig) -> float:
    """Run :func:`~birdsweep.train.kfold.run_kfold`, print the summary, return the metric.

    Errors are logged with the run folder before they propagate, so a failed run is
    always explained next to its outputs.
    """
    out_dir = HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else None
    try:
        # inside an Optuna sweep: report each fold to the trial and prune (birdsweep.sweep)
        cfg, on_fold_end = attach_trial(cfg)
        summary = run_kfold(cfg, on_fold_end=on_fold_end)
    except StopJob as exc:  # stopped on purpose (a pruned sweep trial): not an error
        log.info("%s; outputs in %s", exc, out_dir)
        raise
    except Exception:
        log.exception("training failed; outputs in %s", out_dir)
        raise
    if not current_rank().is_main:  # under torchrun only rank 0 reports
        return float(summary.cv_macro_auc)
    print_summary(summary)
    if out_dir:
        Console().print(f"outputs: {out_dir}")
    value = getattr(summary, str(cfg.get("optimized_metric", "cv_macro_auc")))
    return float(value) if math.isfinite(value) else float("nan")
