"""The sweep summary: a rich table, files in the sweep folder, plots, and an MLflow run.

Files written to ``hydra.sweep.dir``:

- ``trials.csv``: one row per trial (state, value, folds reported, parameters, notes, run id);
- ``optimization_results.yaml``: best value, parameters and the command that reproduces it;
- ``summary.txt``: the printed table;
- ``optimization_history.png``, ``intermediate_values.png``, ``param_importances.png``
  (Optuna's matplotlib plots; skipped when there are too few finished trials).
"""

from __future__ import annotations

import logging
import math
import shlex
import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from omegaconf import OmegaConf
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.table import Table

from birdsweep.sweep.trial import (
    FAIL_ATTR,
    OVERRIDES_ATTR,
    PRUNED_ATTR,
    RETRY_ATTR,
    RUN_ATTR,
)
from birdsweep.track.sweep_runs import SweepMLflow

log = logging.getLogger(__name__)


def trial_note(t: FrozenTrial) -> str:
    """Why a trial ended as it did (pruned after k folds, failure reason, retry of #n)."""
    notes = []
    if t.state == TrialState.PRUNED:
        notes.append(
            f"pruned after {t.user_attrs.get(PRUNED_ATTR, len(t.intermediate_values))} fold(s)"
        )
    if t.state == TrialState.FAIL:
        notes.append(str(t.user_attrs.get(FAIL_ATTR, "interrupted (no heartbeat)")))
    if RETRY_ATTR in t.user_attrs:
        notes.append(f"retry of #{t.user_attrs[RETRY_ATTR]}")
    return "; ".join(notes)


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, value, folds reported, seconds, params, note, run."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {
            "trial": t.number,
            "state": t.state.name,
            "value": t.value,
            "folds_reported": len(t.intermediate_values),
            "seconds": t.duration.total_seconds() if t.duration else float("nan"),
        }
        row.update({f"params.{k}": v for k, v in t.params.items()})
        row["note"] = trial_note(t)
        row["mlflow_run_id"] = t.user_attrs.get(RUN_ATTR)
        rows.append(row)
    return pd.DataFrame(rows)


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best COMPLETE trial, or None."""
    try:
        return study.best_trial
    except ValueError:
        return None


def best_command(t: FrozenTrial) -> str:
    """``python run.py ...`` that trains the trial's recipe alone (without the sweep)."""
    ov = [o for o in t.user_attrs.get(OVERRIDES_ATTR, []) if not o.startswith("hparams_search=")]
    return " ".join(["python", "run.py", *(shlex.quote(o) for o in ov)])


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    return str(v)


def print_table(study: optuna.Study, console: Console) -> None:
    """Print the best trial and every trial's state, value, parameters and note."""
    table = Table(title=f"Optuna study {study.study_name!r}")
    for col in ("trial", "state", "value", "folds"):
        table.add_column(col, justify="right" if col != "state" else "left")
    table.add_column("params", overflow="fold")
    table.add_column("note", overflow="fold")
    best = best_trial(study)
    for t in study.get_trials(deepcopy=False):
        params = "\n".join(f"{k}={_fmt(v)}" for k, v in t.params.items())
        star = " *" if best is not None and t.number == best.number else ""
        table.add_row(
            f"{t.number}{star}",
            t.state.name,
            _fmt(t.value) if t.value is not None else "-",
            str(len(t.intermediate_values)),
            params,
            trial_note(t)[:80],
        )
    console.print(table)
    if best is None:
        console.print("[yellow]no COMPLETE trial yet[/yellow]")
        return
    console.print(f"best: trial {best.number}, value {best.value:.4f}")
    console.print(f"best params: {best.params}")
    console.print(f"reproduce: {best_command(best)}")


def save_plots(study: optuna.Study, out_dir: Path) -> list[Path]:
    """Optuna's history, intermediate-value and importance plots as PNGs (skips gracefully).

    Args:
        study: the study.
        out_dir: folder for the PNG files.

    Returns:
        The files written.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
        from optuna.visualization import matplotlib as ovm
    except ImportError as exc:
        log.warning("no sweep plots: %s (pip install matplotlib)", exc)
        return []
    n_complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    kinds = (
        ("optimization_history", ovm.plot_optimization_history, 1),
        ("intermediate_values", ovm.plot_intermediate_values, 1),
        ("param_importances", ovm.plot_param_importances, 2),
    )
    out: list[Path] = []
    for name, plot, min_complete in kinds:
        if n_complete < min_complete:
            log.info("%s plot skipped: needs %d COMPLETE trial(s)", name, min_complete)
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna's "experimental" warnings
                ax = plot(study)
            fig = np.ravel(ax)[0].figure
            path = out_dir / f"{name}.png"
            fig.savefig(path, bbox_inches="tight", dpi=100)
            plt.close(fig)
            out.append(path)
        except Exception as exc:  # e.g. importance with a single distinct value
            log.warning("%s plot skipped: %s", name, exc)
    return out


def write_summary(
    study: optuna.Study,
    out_dir: Path,
    mlflow: SweepMLflow | None,
    settings: Mapping[str, Any],
    plots: bool = True,
    console: Console | None = None,
) -> dict[str, Any]:
    """Print the summary, write its files to ``out_dir`` and log them to MLflow.

    Args:
        study: the study (all its trials, from every run of the sweep).
        out_dir: the sweep folder (``hydra.sweep.dir``).
        mlflow: where to log the summary run (None = nowhere).
        settings: the sweep's settings, logged as params.
        plots: also save Optuna's plots.
        console: where to print (default: a new rich console).

    Returns:
        The contents of ``optimization_results.yaml``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    console = console or Console(record=True, width=shutil.get_terminal_size((120, 24)).columns)
    print_table(study, console)
    trials = study.get_trials(deepcopy=False)
    counts = {s.name: sum(t.state == s for t in trials) for s in TrialState}
    best = best_trial(study)
    results: dict[str, Any] = {
        "name": "birdsweep_optuna",
        **{k: v for k, v in settings.items() if k in ("study_name", "storage", "direction")},
        "n_trials": {k: v for k, v in counts.items() if v},
        "best_trial": best.number if best else None,
        "best_value": best.value if best else None,
        "best_params": dict(best.params) if best else {},
        "best_command": best_command(best) if best else None,
        "best_mlflow_run_id": best.user_attrs.get(RUN_ATTR) if best else None,
    }
    files = [out_dir / "trials.csv", out_dir / "optimization_results.yaml", out_dir / "summary.txt"]
    trials_frame(study).to_csv(files[0], index=False)
    OmegaConf.save(OmegaConf.create(results), files[1])
    text = console.export_text(clear=False) if console.record else ""
    files[2].write_text(text)
    if plots:
        files += save_plots(study, out_dir)
    console.print(f"sweep summary: {out_dir}")
    if mlflow is not None:
        try:
            metrics = {f"n_{k.lower()}": float(v) for k, v in counts.items()}
            if best is not None:
                metrics["best_value"] = float(best.value)
            params = {**settings, **{f"best.{k}": v for k, v in results["best_params"].items()}}
            tags = {
                "best_trial": results["best_trial"],
                "best_run_id": results["best_mlflow_run_id"],
            }
            rid = mlflow.log_summary(study.study_name, params, metrics, tags, files)
            console.print(f"MLflow sweep summary run: {rid}")
        except Exception as exc:
            log.warning("could not log the sweep summary to MLflow: %s", exc)
    return results
