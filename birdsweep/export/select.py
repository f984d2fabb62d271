"""Pick the fold checkpoints that go into an ensemble: from paths or from MLflow runs."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from birdsweep.track import store
from birdsweep.train.checkpoint import load_checkpoint

log = logging.getLogger(__name__)

FOLD_METRIC = "best_val_macro_auc"  # metric of a fold (child) run, logged by run_kfold
PARENT_TAG = "mlflow.parentRunId"


@dataclass
class FoldSource:
    """One fold checkpoint chosen for the ensemble, with where it came from.

    Attributes:
        checkpoint: path of the fold's ``best.pt``.
        score: the fold's validation macro AUC (MLflow ``best_val_macro_auc`` or the
            checkpoint's ``val_macro_auc``).
        fold: fold index.
        run_id: MLflow child (fold) run, when selected from MLflow.
        parent_run_id: MLflow parent (job) run.
        parent_score: the parent's selection metric (``--metric``), when used.
        config_hash: the job's config hash (MLflow tag or the checkpoint folder name).
    """

    checkpoint: str
    score: float
    fold: int | None = None
    run_id: str | None = None
    parent_run_id: str | None = None
    parent_score: float | None = None
    config_hash: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def _finite(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return float("nan")
    return v if math.isfinite(v) else float("nan")


def _rank_key(src: FoldSource) -> float:
    return src.score if math.isfinite(src.score) else -math.inf


def _dedupe_top_k(sources: list[FoldSource], top_k: int | None) -> list[FoldSource]:
    """Best first, one entry per checkpoint file (re-used folds appear in several jobs)."""
    seen: set[str] = set()
    out = []
    for s in sorted(sources, key=_rank_key, reverse=True):
        key = str(Path(s.checkpoint).resolve())
        if key in seen:
            continue
        seen.add(key)
        out.append(s)
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"--top-k must be >= 1, got {top_k}")
        if len(out) < top_k:
            log.warning("asked for the top %d folds but only %d are available", top_k, len(out))
        out = out[:top_k]
    return out


def select_checkpoints(paths: Sequence[str | Path], top_k: int | None = None) -> list[FoldSource]:
    """Fold checkpoints given as files or folders (``<dir>/fold*/best.pt`` or ``<dir>/best.pt``).

    Args:
        paths: ``best.pt`` files or folders holding them (e.g. ``outputs/checkpoints/<hash>``).
        top_k: keep the K best by the checkpoint's ``val_macro_auc`` (None = all).

    Returns:
        The chosen :class:`FoldSource` list, best first.

    Raises:
        FileNotFoundError: a path does not exist or a folder holds no checkpoint.
    """
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            found = sorted(p.glob("fold*/best.pt")) or sorted(p.glob("best.pt"))
            if not found:
                raise FileNotFoundError(
                    f"{p}: no fold*/best.pt or best.pt checkpoint in this folder"
                )
            files.extend(found)
        else:
            raise FileNotFoundError(f"{p}: no such checkpoint file or folder")
    sources = []
    for f in files:
        ck = load_checkpoint(f)
        parent = f.parent.parent.name if f.parent.name.startswith("fold") else None
        sources.append(
            FoldSource(
                checkpoint=str(f.absolute()),
                score=_finite(ck.get("val_macro_auc")),
                fold=ck.get("fold"),
                config_hash=parent,
            )
        )
    return _dedupe_top_k(sources, top_k)


def _fold_source(run, parent_score: float | None = None) -> FoldSource | None:
    tags, metrics = run.data.tags, run.data.metrics
    ckpt = tags.get("checkpoint")
    if run.info.status != "FINISHED" or not ckpt or FOLD_METRIC not in metrics:
        return None
    if not Path(ckpt).is_file():
        log.warning("run %s: checkpoint %s no longer exists; skipped", run.info.run_id, ckpt)
        return None
    fold = tags.get("fold")
    return FoldSource(
        checkpoint=ckpt,
        score=_finite(metrics[FOLD_METRIC]),
        fold=int(fold) if fold is not None and str(fold).isdigit() else None,
        run_id=run.info.run_id,
        parent_run_id=tags.get(PARENT_TAG),
        parent_score=parent_score,
        config_hash=tags.get("config_hash"),
    )


def _check_one_recipe(sources: list[FoldSource], where: str, mix_jobs: bool) -> None:
    """Refuse folds of different configs (two "fold 1" of two recipes) unless asked for."""
    hashes = sorted({s.config_hash for s in sources if s.config_hash})
    if len(hashes) <= 1:
        return
    jobs = sorted({s.parent_run_id or "?" for s in sources})
    text = (
        f"{where}: the chosen folds come from {len(hashes)} different configs "
        f"({', '.join(hashes)}; jobs {', '.join(jobs)})"
    )
    if not mix_jobs:
        raise ValueError(
            f"{text}: an ensemble of mixed recipes is rarely what is meant; pick one job with "
            "--runs <parent run id> or --metric cv_macro_auc, or pass --mix-jobs to mix them"
        )
    log.warning("%s (--mix-jobs)", text)


def select_from_mlflow(
    tracking_uri: str,
    experiment: str | None = None,
    run_ids: Sequence[str] | None = None,
    top_k: int | None = None,
    metric: str | None = None,
    mix_jobs: bool = False,
) -> list[FoldSource]:
    """Fold checkpoints chosen from MLflow runs logged by ``python run.py``.

    Exactly one of ``experiment`` / ``run_ids`` is given.

    - ``experiment`` alone: the folds of its latest job (the parent run that started last and
      has finished folds); the ``top_k`` best when given.
    - ``experiment`` with ``metric`` (e.g. ``cv_macro_auc``): the job (parent run) with the
      highest ``metric``, then its folds (the ``top_k`` best when given).
    - ``experiment`` with ``mix_jobs``: the ``top_k`` best fold runs of the whole experiment
      by ``best_val_macro_auc``, whatever job they come from (a warning names the configs).
    - ``run_ids``: a parent run id stands for all its folds, a child run id for that fold.

    Folds of different configs are refused unless ``mix_jobs`` is set.

    Args:
        tracking_uri: MLflow tracking URI.
        experiment: experiment name.
        run_ids: parent and/or fold run ids.
        top_k: keep the K best folds (None = all).
        metric: parent-run metric that picks the best job (experiment mode only).
        mix_jobs: allow folds of different jobs and configs in one ensemble.

    Returns:
        The chosen :class:`FoldSource` list, best first.

    Raises:
        ValueError: nothing usable was found (the message says why).
    """
    if (experiment is None) == (run_ids is None):
        raise ValueError("give exactly one of --experiment or --runs")
    client = store.client(tracking_uri)
    sources: list[FoldSource] = []
    if experiment is not None:
        exp_id = store.experiment_id(client, experiment)
        if exp_id is None:
            raise ValueError(
                f"--experiment {experiment!r}: no such MLflow experiment at {tracking_uri}"
            )
        runs = store.all_runs(client, [exp_id])
        parents = {r.info.run_id: r for r in runs if PARENT_TAG not in r.data.tags}
        children = [r for r in runs if PARENT_TAG in r.data.tags]
        if metric:
            scored = [
                (_finite(r.data.metrics.get(metric)), rid)
                for rid, r in parents.items()
                if math.isfinite(_finite(r.data.metrics.get(metric)))
            ]
            if not scored:
                raise ValueError(
                    f"--metric {metric}: no parent run of experiment {experiment!r} has this metric"
                )
            best_score, best = max(scored)
            log.info("best job by %s: run %s (%.4f)", metric, best, best_score)
            children = [r for r in children if r.data.tags.get(PARENT_TAG) == best]
            sources = [s for r in children if (s := _fold_source(r, best_score))]
        elif mix_jobs:
            sources = [s for r in children if (s := _fold_source(r))]
        else:
            by_parent: dict[str, list[FoldSource]] = {}
            for r in children:
                if s := _fold_source(r):
                    by_parent.setdefault(str(s.parent_run_id), []).append(s)
            latest = max(
                (p for p in by_parent if p in parents),
                key=lambda p: parents[p].info.start_time or 0,
                default=None,
            )
            sources = by_parent.get(latest, []) if latest else []
            if latest:
                name = parents[latest].info.run_name
                log.info("latest job: run %s (%s), %d fold(s)", latest, name, len(sources))
        where = f"experiment {experiment!r}"
    else:
        for rid in run_ids or []:
            run = store.get_run(client, rid, tracking_uri, flag="--runs")
            if PARENT_TAG in run.data.tags:
                s = _fold_source(run)
                if s is None:
                    raise ValueError(f"--runs {rid}: fold run is unfinished or has no checkpoint")
                sources.append(s)
                continue
            kids = store.all_runs(
                client, [run.info.experiment_id], f"tags.`{PARENT_TAG}` = '{rid}'"
            )
            ps = _finite(run.data.metrics.get(metric)) if metric else None
            sources.extend(s for r in kids if (s := _fold_source(r, ps)))
        where = f"runs {list(run_ids or [])}"
    if not sources:
        raise ValueError(
            f"{where}: no finished fold run with a '{FOLD_METRIC}' metric and an existing "
            "'checkpoint' file; train with python run.py first"
        )
    chosen = _dedupe_top_k(sources, top_k)
    _check_one_recipe(chosen, where, mix_jobs)
    return chosen
