"""K-fold training from a composed Hydra config: the body of ``python run.py``."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from birdsweep.atomic import atomic_write_bytes, atomic_write_json
from birdsweep.config import build
from birdsweep.data.dataset import PseudoMix, TrainCrops, Windows, clip_windows
from birdsweep.data.prepare import PreparedData, prepare_data
from birdsweep.data.windows import window_samples
from birdsweep.scoring.context import FileMaxContext
from birdsweep.scoring.metric import macro_auc, per_class_auc
from birdsweep.train import distributed as D
from birdsweep.train.checkpoint import load_checkpoint, load_model
from birdsweep.train.fold_pool import train_folds_in_workers, worker_threads
from birdsweep.train.loop import FoldTrainer, TrainerSettings
from birdsweep.train.soundscapes import (
    SOUNDSCAPE_PROBS,
    SoundscapeProbs,
    context_of,
    score_soundscapes,
    shifts_of,
    soundscape_files,
    soundscape_scores,
)
from birdsweep.train.validate import validate_config

log = logging.getLogger(__name__)

__all__ = ["FoldResult", "KFoldSummary", "StopJob", "run_kfold"]

# config keys that do not change what a fold learns (excluded from the checkpoint key)
NON_LEARNING_KEYS = (
    "logger",
    "paths",
    "tags",
    "task_name",
    "hydra",
    "hparams_search",
    "postprocess",
    "tta",
)
NON_LEARNING_SUBKEYS = {
    "trainer": ("progress", "resume", "num_workers", "eval_batch_size"),
    "data": ("folds", "decode_workers"),
}

# what train_fold_files writes next to a fold's checkpoints (and the soundscape probabilities,
# SOUNDSCAPE_PROBS; a reused fold's are scored again: conf/tta may have changed since)
VAL_PROBS, RESULT = "val_probs.npy", "result.json"

FoldCallback = Callable[[int, float, "FoldResult"], None]


class StopJob(Exception):
    """Raised by an ``on_fold_end`` callback to end a job early on purpose (e.g. a pruned
    sweep trial). The MLflow parent run then ends KILLED with tag ``state`` = :attr:`state`."""

    state = "STOPPED"


@dataclass
class FoldResult:
    """Scores of one trained fold."""

    fold: int
    val_macro_auc: float
    best_epoch: int
    seconds: float
    checkpoint: str
    history: list[dict[str, float]] = field(default_factory=list)
    soundscape_macro_auc: float = float("nan")
    reused: bool = False


@dataclass
class KFoldSummary:
    """What a K-fold job produced (returned to ``run.py``)."""

    folds: list[FoldResult]
    cv_macro_auc: float
    cv_macro_auc_std: float
    oof_macro_auc: float
    soundscape_macro_auc: float  # fold ensemble (mean), with the postprocess context
    per_class: pd.DataFrame
    checkpoint_dir: str
    run_id: str | None
    n_bad_files: int
    soundscape_macro_auc_raw: float = float("nan")  # the same, each window on its own


@dataclass
class FoldInputs:
    """The datasets of one fold."""

    train_rows: pd.DataFrame  # training clips of the fold
    train_ds: Any  # TrainCrops (or PseudoMix over it)
    val_ds: Windows
    val_targets: np.ndarray  # [len(val_ds), C]


def fold_dir_of(ckpt_dir: Path, k: int) -> Path:
    """Folder of fold ``k``'s files (``best.pt``, ``result.json``, ...) in a run's checkpoints."""
    return ckpt_dir / f"fold{k}"


def config_hash(cfg: DictConfig) -> str:
    """Hash of the resolved config parts that change what a fold learns."""
    c = OmegaConf.to_container(cfg, resolve=True)
    for k in NON_LEARNING_KEYS:
        c.pop(k, None)
    for group, keys in NON_LEARNING_SUBKEYS.items():
        for k in keys:
            (c.get(group) or {}).pop(k, None)
    return hashlib.sha1(json.dumps(c, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_key(cfg: DictConfig, data_fingerprint: str) -> str:
    """The key of a job's checkpoint folder (and its ``config_hash`` tag): the config hash and
    the data fingerprint (:meth:`PreparedData.fingerprint`), so folds are reused only for the
    same config on the same data."""
    return hashlib.sha1(f"{config_hash(cfg)}|{data_fingerprint}".encode()).hexdigest()[:16]


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def clip_repeats(data_cfg: Any, n_clips: int) -> int:
    """How often each training clip is drawn per epoch: ``data.clip_repeats``, raised so that
    an epoch holds at least ``data.min_epoch_samples`` crops (small data sets get epochs long
    enough to learn from, large ones are unaffected)."""
    floor = int(data_cfg.get("min_epoch_samples") or 0)
    return max(int(data_cfg.get("clip_repeats", 1)), -(-floor // max(n_clips, 1)))


def _fold_inputs(cfg: DictConfig, data: PreparedData, k: int, loss_fn: Any, clip_tf: Any):
    sr = data.sample_rate
    win = window_samples(cfg.data.window_seconds, sr)
    crop = int(round(float(cfg.data.crop_seconds) * sr))
    tr = data.clips[data.clips["fold"] != k]
    train_ds = TrainCrops(
        data.cache,
        tr["path"].tolist(),
        tr["label_idx"].tolist(),
        tr["secondary_idx"].tolist(),
        tr["rating"].tolist(),
        data.meta.num_classes,
        crop,
        secondary_target=float(getattr(loss_fn, "secondary_target", 0.0)),
        rating_weighted=bool(getattr(loss_fn, "rating_weighted", False)),
        clip_transform=clip_tf,
        seed=int(cfg.seed) + k,
        repeats=clip_repeats(cfg.data, len(tr)),
    )
    if data.pseudo is not None and float(cfg.data.pseudo_prob) > 0:
        ps = data.pseudo
        own = np.flatnonzero(ps.folds != k)  # never the soundscapes of the held-out fold
        windows = Windows(ps.cache, [ps.items[i] for i in own], ps.targets[own], win)
        train_ds = PseudoMix(train_ds, windows, float(cfg.data.pseudo_prob), int(cfg.seed) + k)
        log.info(
            "fold %d: %d pseudo-labelled window(s) replace %.1f%% of training items "
            "(data.pseudo_prob %g, capped so no window is drawn more often than a clip)",
            k,
            len(windows),
            100 * train_ds.rate,
            float(cfg.data.pseudo_prob),
        )
    val_ds, vt = _val_set(cfg, data, k)
    return FoldInputs(tr, train_ds, val_ds, vt)


def _val_set(cfg: DictConfig, data: PreparedData, k: int) -> tuple[Windows, np.ndarray]:
    """The held-out windows of fold ``k`` and their ``[N, C]`` targets."""
    win = window_samples(cfg.data.window_seconds, data.sample_rate)
    va = data.clips[data.clips["fold"] == k]
    vpaths = va["path"].tolist()
    wins = clip_windows(data.cache, vpaths, win, int(cfg.data.val_windows_per_clip))
    vt = np.zeros((len(wins), data.meta.num_classes), dtype=np.float32)
    for i, (j, _) in enumerate(wins):
        vt[i, va["label_idx"].iloc[j]] = 1.0
    return Windows(data.cache, [(vpaths[j], s) for j, s in wins], vt, win), vt


def run_kfold(cfg: DictConfig, on_fold_end: FoldCallback | None = None) -> KFoldSummary:
    """Train every fold of ``cfg``, track it in MLflow and return the CV summary.

    Finished folds of an identical config on unchanged data (same :func:`run_key`) are reused
    and an interrupted fold resumes from its last epoch when ``trainer.resume`` is true.

    Args:
        cfg: the composed ``conf/train.yaml``.
        on_fold_end: called after each fold with ``(fold, running mean AUC, result)``; it may
            raise to stop the job early (sweep pruning). The MLflow parent then ends KILLED.

    Returns:
        The :class:`KFoldSummary`.
    """
    validate_config(cfg)
    seed_everything(int(cfg.seed))
    settings = TrainerSettings.from_config(cfg.trainer)
    if settings.threads:
        torch.set_num_threads(int(settings.threads))
    dist = D.init_distributed(settings.dist_backend)
    data = _prepare_once(cfg, settings, dist.is_main)
    chash, fingerprint = _job_key(cfg, data)
    ckpt_root = Path(str(cfg.paths.checkpoint_dir)).absolute() / chash
    tracker = build(
        cfg.logger,
        **({} if dist.is_main else {"enabled": False}),
        tags={
            "config_hash": chash,
            "data_fingerprint": fingerprint,
            "task_name": cfg.task_name,
            **dict(cfg.get("tags") or {}),
        },
    )
    tracker.close_stale({"config_hash": chash, "task_name": str(cfg.task_name)})
    context = context_of(cfg)
    shifts_of(cfg).validate(float(cfg.data.window_seconds))  # before any fold trains
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    tracker.start(params=OmegaConf.to_container(cfg, resolve=True), config_yaml=config_yaml)
    done = _Folds()
    status = "FAILED"
    try:
        tracker.log_metrics(
            {"n_train_clips": len(data.clips), "n_bad_audio_files": len(data.bad_files)}
        )
        if len(data.bad_files):
            tracker.log_dataframe(data.bad_files, "bad_audio_files.csv")
        noise = functools.cache(
            lambda: data.noise_clips(int(cfg.data.decode_workers), settings.progress)
        )  # decoded once, on the first fold that needs it
        for k, fresh in _folds_in_waves(cfg, ckpt_root, settings, not dist.enabled):
            out = _tracked_fold(cfg, data, k, fold_dir_of(ckpt_root, k), fresh, tracker, noise)
            done.add(out, _val_set(cfg, data, k)[1], data.clips[data.clips["fold"] != k], data)
            running = float(np.mean([r.val_macro_auc for r in done.results]))
            tracker.log_metrics({"cv_macro_auc_running": running}, step=len(done.results))
            if on_fold_end is not None:
                on_fold_end(k, running, out.result)
        summary = _summarise(data, done, context, ckpt_root, tracker)
        if dist.is_main:
            _write_stage_pointer(cfg, ckpt_root, summary, data.meta.labels)
        status = "FINISHED"
        return summary
    except StopJob as exc:
        status = "KILLED"
        tracker.set_tags({"state": exc.state, "stopped_after_folds": len(done.results)})
        raise
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        tracker.end(status)


def _prepare_once(cfg: DictConfig, settings: TrainerSettings, is_main: bool) -> PreparedData:
    """The prepared data; under DDP rank 0 generates/decodes first and the other ranks then
    reuse its cache (and stay quiet: rank 0 reports)."""
    if not is_main:
        logging.getLogger("birdsweep").setLevel(logging.WARNING)
        D.barrier()
    data = prepare_data(cfg.data, cfg.paths.cache_dir, int(cfg.seed), settings.progress)
    if is_main:
        D.barrier()
    return data


def _job_key(cfg: DictConfig, data: PreparedData) -> tuple[str, str]:
    """``(checkpoint folder key, data fingerprint)``: :func:`run_key`, and for a later stage of a
    chain (``init.from_task``) the folder of the stage it starts from too (new earlier folds
    mean new folds here)."""
    fingerprint = data.fingerprint()
    key = run_key(cfg, fingerprint)
    if cfg.get("init") and cfg.init.get("from_task"):
        prev = stage_pointer(cfg, cfg.init.from_task)
        prev_dir = json.loads(prev.read_text())["checkpoint_dir"] if prev.is_file() else ""
        key = hashlib.sha1(f"{key}|{prev_dir}".encode()).hexdigest()[:16]
    return key, fingerprint


def _folds_in_waves(
    cfg: DictConfig, ckpt_root: Path, settings: TrainerSettings, workers: bool = True
) -> Iterator[tuple[int, bool]]:
    """Each fold of the job in order, as ``(fold, trained by this job's workers)``.

    With ``trainer.fold_workers`` > 1 (and ``workers``), the next unfinished folds are first
    trained side by side in worker processes, a wave at a time; the caller then reads their
    files. Otherwise (and for a lone fold left) the caller trains the fold itself.
    """
    folds = (
        list(cfg.data.folds)
        if cfg.data.get("folds") is not None
        else list(range(int(cfg.data.n_folds)))
    )
    n = int(settings.fold_workers) if workers else 1
    pending = [
        k for k in folds if not (settings.resume and (fold_dir_of(ckpt_root, k) / RESULT).is_file())
    ]
    fresh: set[int] = set()
    for k in folds:
        wave = [j for j in pending if j not in fresh][:n]
        if n > 1 and k in wave and len(wave) > 1:
            train_folds_in_workers(
                cfg,
                {j: fold_dir_of(ckpt_root, j) for j in wave},
                train_fold_files,
                worker_threads(n, settings.threads),
                settings.progress,
            )
            fresh.update(wave)
        yield k, k in fresh


def _tracked_fold(
    cfg: DictConfig,
    data: PreparedData,
    k: int,
    fold_dir: Path,
    fresh: bool,
    tracker: Any,
    noise: Callable[[], list[np.ndarray]],
) -> FoldOutput:
    """Fold ``k`` in its MLflow child run: its files read back (trained by the workers, or
    finished earlier and reused) or trained here; its soundscapes scored; its metrics logged."""
    settings = TrainerSettings.from_config(cfg.trainer)
    with tracker.child(f"fold{k}", tags={"fold": k}):
        n_train = int((data.clips["fold"] != k).sum())
        n_val = len(_val_set(cfg, data, k)[1])
        tracker.log_params({"fold": k, "n_train": n_train, "n_val_windows": n_val})
        if (settings.resume or fresh) and (fold_dir / RESULT).is_file():
            out = read_fold_files(fold_dir, soundscapes=fresh)
            out.result.reused = not fresh
            for e, h in enumerate(out.result.history):
                tracker.log_metrics(h, step=e)
            if out.result.reused:
                log.info("fold %d: reusing finished fold from %s", k, fold_dir)
        else:
            log_epoch = lambda e, m: tracker.log_metrics(m, step=e)  # noqa: E731
            out = train_fold_files(cfg, k, fold_dir, log_epoch, data, noise)
        res = out.result
        if data.soundscapes is not None:
            if out.soundscapes is None:  # a reused fold: scored with this run's tta
                out.soundscapes = _score_fold_soundscapes(cfg, data, fold_dir, settings)
            res.soundscape_macro_auc = _fold_soundscape_auc(data, out.soundscapes, context_of(cfg))
        tracker.set_tags({"checkpoint": res.checkpoint})
        tracker.log_metrics(
            {
                "best_val_macro_auc": res.val_macro_auc,
                "best_epoch": res.best_epoch,
                "soundscape_macro_auc": res.soundscape_macro_auc,
                "fold_seconds": res.seconds,
            }
        )
    return out


@dataclass
class _Folds:
    """The finished folds of a job, in order: what the summary is computed from."""

    results: list[FoldResult] = field(default_factory=list)
    oof_probs: list[np.ndarray] = field(default_factory=list)  # held-out windows' probabilities
    oof_targets: list[np.ndarray] = field(default_factory=list)
    soundscapes: list[SoundscapeProbs] = field(default_factory=list)  # every soundscape window
    train_counts: list[np.ndarray] = field(default_factory=list)  # training clips per class

    def add(
        self, out: FoldOutput, val_targets: np.ndarray, train_rows: pd.DataFrame, data: Any
    ) -> None:
        """Add one fold's output, its held-out targets and its training clips."""
        self.results.append(out.result)
        self.oof_probs.append(out.val_probs)
        self.oof_targets.append(val_targets)
        self.train_counts.append(_clips_per_class(train_rows, data.meta.labels))
        if out.soundscapes is not None:
            self.soundscapes.append(out.soundscapes)


def _write_stage_pointer(
    cfg: DictConfig, ckpt_root: Path, summary: KFoldSummary, labels: list[str]
) -> None:
    """Record where this task's folds are, for a later stage's ``init.from_task``."""
    atomic_write_json(
        stage_pointer(cfg, str(cfg.task_name)),
        {
            "checkpoint_dir": str(ckpt_root),
            "cv_macro_auc": summary.cv_macro_auc,
            "run_id": summary.run_id,
            "labels": list(labels),
        },
    )


def _fold_objects(
    cfg: DictConfig, data: PreparedData, k: int, noise: Callable[[], list[np.ndarray]]
) -> tuple[Any, Any, FoldInputs]:
    """Loss, augmentation (bound to the background clips ``noise()``, decoded only when the
    augmentation needs them) and datasets of fold ``k``."""
    loss_fn = build(cfg.loss)
    aug = build(cfg.aug)
    if getattr(aug, "needs_noise", True):
        aug.bind_noise(noise(), data.sample_rate)
    inputs = _fold_inputs(cfg, data, k, loss_fn, getattr(aug, "clip_transform", None))
    return loss_fn, aug, inputs


@dataclass
class FoldOutput:
    """What training a fold leaves besides its checkpoints.

    Attributes:
        result: the fold's scores and history.
        val_probs: ``[N, C]`` probabilities of its held-out windows (best epoch).
        soundscapes: probabilities of every labelled soundscape's windows (None: the data set
            has none, or they were not read back).
    """

    result: FoldResult
    val_probs: np.ndarray
    soundscapes: SoundscapeProbs | None = None


def train_fold_files(
    cfg: DictConfig,
    k: int,
    fold_dir: Path,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    data: PreparedData | None = None,
    noise: Callable[[], list[np.ndarray]] | None = None,
) -> FoldOutput:
    """Train fold ``k`` of ``cfg`` into ``fold_dir`` and write its files: the trainer's
    ``last.pt`` / ``best.pt``, ``val_probs.npy``, the labelled soundscapes' probabilities
    (:data:`~birdsweep.train.soundscapes.SOUNDSCAPE_PROBS`) and, last, ``result.json`` (a fold
    with a ``result.json`` is finished; :func:`read_fold_files` reads them back).

    The one way a fold is trained: :func:`run_kfold` calls it for each fold in its own process
    and hands it to the fold workers (``trainer.fold_workers``), which call it with the resolved
    config alone.

    Args:
        cfg: the run's config.
        k: the fold.
        fold_dir: the fold's folder.
        on_epoch: called with ``(epoch, metrics)`` after each epoch.
        data: the prepared data (None: prepared here, from the cache).
        noise: the decoded background clips, when the augmentation needs them (None: decoded
            here).
    """
    settings = TrainerSettings.from_config(cfg.trainer)
    if data is None:
        data = prepare_data(cfg.data, cfg.paths.cache_dir, int(cfg.seed), progress=False)
    if noise is None:
        noise = functools.partial(data.noise_clips, int(cfg.data.decode_workers), False)
    seed_everything(int(cfg.seed) + k)
    objects = _fold_objects(cfg, data, k, noise)
    res, probs = _train_fold(cfg, k, objects, settings, fold_dir, data.meta.labels, on_epoch)
    out = FoldOutput(res, probs)
    if data.soundscapes is not None:
        out.soundscapes = _score_fold_soundscapes(cfg, data, fold_dir, settings)
        res.soundscape_macro_auc = _fold_soundscape_auc(data, out.soundscapes, context_of(cfg))
    if D.current().is_main:
        atomic_write_bytes(fold_dir / VAL_PROBS, lambda f: np.save(f, probs))
        if out.soundscapes is not None:
            out.soundscapes.save(fold_dir / SOUNDSCAPE_PROBS)
        atomic_write_json(fold_dir / RESULT, {**res.__dict__, "reused": False})
    return out


def read_fold_files(fold_dir: Path, soundscapes: bool = True) -> FoldOutput:
    """What :func:`train_fold_files` wrote to ``fold_dir`` (``soundscapes=False``: without the
    soundscape probabilities)."""
    out = FoldOutput(
        FoldResult(**json.loads((fold_dir / RESULT).read_text())), np.load(fold_dir / VAL_PROBS)
    )
    if soundscapes and (fold_dir / SOUNDSCAPE_PROBS).is_file():
        out.soundscapes = SoundscapeProbs.load(fold_dir / SOUNDSCAPE_PROBS)
    return out


def _train_fold(
    cfg: DictConfig,
    k: int,
    objects: tuple[Any, Any, FoldInputs],
    settings: TrainerSettings,
    fold_dir: Path,
    labels: list[str],
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> tuple[FoldResult, np.ndarray]:
    """Build the model (from an earlier stage when ``init.from_task``) and train fold ``k``
    with its ``(loss, augmentation, inputs)``; without ``trainer.resume`` it starts afresh."""
    loss_fn, aug, inputs = objects
    if not settings.resume:
        for f in ("last.pt", "best.pt"):
            (fold_dir / f).unlink(missing_ok=True)
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    tr, train_ds = inputs.train_rows, inputs.train_ds
    model = build(cfg.model, num_classes=len(labels))
    if cfg.get("init") and cfg.init.get("from_task"):
        init_from_stage(model, cfg, k, labels)
    if D.current().enabled:  # different augmentation draws (DDP starts all from rank 0's weights)
        torch.manual_seed(int(cfg.seed) + k + 1000 * D.current().rank)
    if settings.freeze_backbone:
        for part in (model.frontend, model.backbone):
            part.requires_grad_(False)
    sampler = build(
        cfg.sampler,
        primary=tr["label_idx"].tolist() * train_ds.repeats,
        secondary=tr["secondary_idx"].tolist() * train_ds.repeats,
        num_classes=len(labels),
        num_samples=len(train_ds),
    )
    trainer = FoldTrainer(
        model,
        loss_fn,
        aug,
        build(cfg.optimizer),
        build(cfg.scheduler),
        settings,
        fold_dir,
        extra_state={"labels": list(labels), "config": config_yaml, "fold": k},
    )
    fit = trainer.fit(
        train_ds,
        inputs.val_ds,
        inputs.val_targets,
        sampler=sampler,
        on_epoch=on_epoch or (lambda e, m: None),
        desc=f"fold {k}",
    )
    res = FoldResult(
        fold=k,
        val_macro_auc=float(fit.best_auc),
        best_epoch=fit.best_epoch,
        seconds=fit.seconds,
        checkpoint=str(fold_dir / "best.pt"),
        history=fit.history,
    )
    return res, fit.val_probs


def stage_pointer(cfg: DictConfig, task_name: str) -> Path:
    """File recording where the folds of the last finished run of ``task_name`` are."""
    return Path(str(cfg.paths.output_root)).absolute() / "stages" / f"{task_name}.json"


def init_from_stage(model: torch.nn.Module, cfg: DictConfig, fold: int, labels: list[str]) -> None:
    """Start fold ``fold`` from the same fold of the stage named by ``init.from_task``.

    The head is re-initialised when the previous stage had another label list; any other
    tensor whose shape differs is skipped with a warning.
    """
    task = cfg.init.from_task
    pointer = stage_pointer(cfg, task)
    if not pointer.is_file():
        raise FileNotFoundError(
            f"init.from_task={task!r}: no finished run of that task ({pointer} missing); "
            f"run its stage first (python run.py experiment=... task_name={task})"
        )
    ckpt_dir = Path(json.loads(pointer.read_text())["checkpoint_dir"])
    path = fold_dir_of(ckpt_dir, fold) / "best.pt"
    if not path.is_file():
        path = sorted(ckpt_dir.glob("fold*/best.pt"))[0]
        log.warning("init: %s has no fold %d; using %s", ckpt_dir, fold, path)
    ck = load_checkpoint(path)
    state = ck["state_dict"]
    if list(ck.get("labels", [])) != list(labels):
        log.info("init: label list differs from %s; the head is re-initialised", path)
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
    own = model.state_dict()
    skipped = [k for k, v in state.items() if k in own and v.shape != own[k].shape]
    if skipped:
        log.warning(
            "init: %d tensor(s) of %s skipped (shape differs): %s", len(skipped), path, skipped[:5]
        )
    state = {k: v for k, v in state.items() if k not in skipped}
    model.load_state_dict(state, strict=False)
    log.info("fold %d starts from %s", fold, path)


def _clips_per_class(clips: pd.DataFrame, labels: list[str]) -> np.ndarray:
    """Clips of each label (primary labels of ``clips``), in ``labels`` order."""
    counts = clips["primary_label"].value_counts()
    return np.array([int(counts.get(lab, 0)) for lab in labels])


def _score_fold_soundscapes(
    cfg: DictConfig, data: PreparedData, fold_dir: Path, settings: TrainerSettings
) -> SoundscapeProbs:
    """Fold ``fold_dir``'s best model on every window of the labelled soundscapes."""
    labels = data.meta.labels
    return score_soundscapes(
        load_model(fold_dir / "best.pt")[0],
        soundscape_files(data.soundscapes),
        labels,
        data.sample_rate,
        float(cfg.data.window_seconds),
        shifts_of(cfg),
        settings.eval_batch_size,
        settings.device,
        settings.amp,
        settings.progress,
    )


def _fold_soundscape_auc(
    data: PreparedData, probs: SoundscapeProbs, context: FileMaxContext
) -> float:
    """One fold's soundscape macro AUC, with the recording context."""
    return macro_auc(
        data.soundscapes.targets, soundscape_scores([probs], data.soundscapes, context).scores
    )


def _summarise(
    data: PreparedData,
    done: _Folds,
    context: FileMaxContext,
    ckpt_root: Path,
    tracker: Any,
) -> KFoldSummary:
    """The job's metrics over its folds (CV, out-of-fold, the fold ensemble on the labelled
    soundscapes), logged with the per-class table, ``folds.csv`` and ``predictions.npz``."""
    results, sc_probs = done.results, done.soundscapes
    oof_probs, oof_targets = np.concatenate(done.oof_probs), np.concatenate(done.oof_targets)
    train_counts = np.stack(done.train_counts)
    labels = data.meta.labels
    aucs = np.array([r.val_macro_auc for r in results], dtype=float)
    cv, cv_std = float(np.nanmean(aucs)), float(np.nanstd(aucs))
    table = pd.DataFrame(
        {
            "label": labels,
            "n_train_clips": _clips_per_class(data.clips, labels),
            "oof_auc": per_class_auc(oof_targets, oof_probs),
            "n_oof_windows_pos": (oof_targets >= 0.5).sum(0).astype(int),
        }
    )
    sc_auc = sc_auc_raw = sc_auc_rank = float("nan")
    if sc_probs:  # the fold ensemble, as `birdsweep infer --combine mean` scores it
        sc = soundscape_scores(sc_probs, data.soundscapes, context, "mean")
        raw, ens = sc.raw, sc.scores
        sc_auc = macro_auc(data.soundscapes.targets, ens)
        sc_auc_raw = macro_auc(data.soundscapes.targets, raw)
        # the folds rank-averaged instead (`birdsweep infer --combine rank`)
        ranked = soundscape_scores(sc_probs, data.soundscapes, context, "rank").scores
        sc_auc_rank = macro_auc(data.soundscapes.targets, ranked)
        table["soundscape_auc"] = per_class_auc(data.soundscapes.targets, ens)
        table["n_soundscape_windows_pos"] = (data.soundscapes.targets >= 0.5).sum(0).astype(int)
    oof_auc = macro_auc(oof_targets, oof_probs)
    metrics = {
        "cv_macro_auc": cv,
        "cv_macro_auc_std": cv_std,
        "oof_macro_auc": oof_auc,
        "soundscape_macro_auc": sc_auc,
        "soundscape_macro_auc_raw": sc_auc_raw,
        "soundscape_macro_auc_rank": sc_auc_rank,
        "soundscape_macro_auc_fold_mean": float(
            np.nanmean([r.soundscape_macro_auc for r in results])
        )
        if sc_probs
        else float("nan"),
        "n_folds_done": len(results),
    }
    tracker.log_metrics(metrics)
    tracker.log_dataframe(table, "per_class_auc.csv")
    tracker.log_dataframe(
        pd.DataFrame([{k: v for k, v in r.__dict__.items() if k != "history"} for r in results]),
        "folds.csv",
    )
    preds = {
        "labels": np.array(labels),
        "oof_probs": oof_probs,
        "oof_targets": oof_targets,
        "fold_train_counts": train_counts,  # [F, C] training clips of each class per fold
    }
    if sc_probs:
        preds.update(
            soundscape_probs=raw,
            soundscape_scores=ens,
            soundscape_fold_probs=sc.fold_probs,  # each window alone
            soundscape_fold_scores=sc.fold_scores,  # with the recording context
            soundscape_targets=data.soundscapes.targets,
            soundscape_row_ids=np.array(data.soundscapes.row_ids),
        )
    if D.current().is_main:
        pred_file = ckpt_root / "predictions.npz"
        atomic_write_bytes(pred_file, lambda f: np.savez_compressed(f, **preds))
        tracker.log_artifact(pred_file)
    return KFoldSummary(
        folds=results,
        cv_macro_auc=cv,
        cv_macro_auc_std=cv_std,
        oof_macro_auc=oof_auc,
        soundscape_macro_auc=sc_auc,
        soundscape_macro_auc_raw=sc_auc_raw,
        per_class=table,
        checkpoint_dir=str(ckpt_root),
        run_id=tracker.parent_id,
        n_bad_files=len(data.bad_files),
    )
