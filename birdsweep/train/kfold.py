"""K-fold training from a composed Hydra config: the body of ``python run.py``."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import random
from collections.abc import Callable
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
from birdsweep.data.prepare import PreparedData, SoundscapeSet, prepare_data
from birdsweep.evaluate.metric import macro_auc, per_class_auc
from birdsweep.infer.combine import combine
from birdsweep.infer.context import FileMaxContext
from birdsweep.infer.shifts import TestTimeShifts
from birdsweep.train import distributed as D
from birdsweep.train.checkpoint import load_checkpoint
from birdsweep.train.fold_pool import train_folds_in_workers, worker_threads
from birdsweep.train.loop import FoldTrainer, TrainerSettings, predict
from birdsweep.train.validate import validate_config

log = logging.getLogger(__name__)

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

# test soundscapes' window probabilities written by a fold worker (used by the parent of that
# run only: a reused fold is scored again, since conf/tta may have changed since)
WORKER_SOUNDSCAPE_PROBS = "soundscape_probs.npy"

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
    win = int(round(float(cfg.data.window_seconds) * sr))
    crop = int(round(float(cfg.data.crop_seconds) * sr))
    tr = data.clips[data.clips["fold"] != k]
    va = data.clips[data.clips["fold"] == k]
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
    vpaths = va["path"].tolist()
    wins = clip_windows(data.cache, vpaths, win, int(cfg.data.val_windows_per_clip))
    vt = np.zeros((len(wins), data.meta.num_classes), dtype=np.float32)
    for i, (j, _) in enumerate(wins):
        vt[i, va["label_idx"].iloc[j]] = 1.0
    val_ds = Windows(data.cache, [(vpaths[j], s) for j, s in wins], vt, win)
    return FoldInputs(tr, train_ds, val_ds, vt)


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
    if not dist.is_main:  # rank 0 generates/decodes first; the others then reuse its cache
        logging.getLogger("birdsweep").setLevel(logging.WARNING)  # rank 0 reports
        D.barrier()
    data = prepare_data(cfg.data, cfg.paths.cache_dir, int(cfg.seed), settings.progress)
    if dist.is_main:
        D.barrier()
    labels = data.meta.labels
    fingerprint = data.fingerprint()
    chash = run_key(cfg, fingerprint)
    if cfg.get("init") and cfg.init.get("from_task"):  # a new earlier stage means new folds
        prev = stage_pointer(cfg, cfg.init.from_task)
        prev_dir = json.loads(prev.read_text())["checkpoint_dir"] if prev.is_file() else ""
        chash = hashlib.sha1(f"{chash}|{prev_dir}".encode()).hexdigest()[:16]
    ckpt_root = Path(str(cfg.paths.checkpoint_dir)).absolute() / chash
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    folds = (
        list(cfg.data.folds)
        if cfg.data.get("folds") is not None
        else list(range(int(cfg.data.n_folds)))
    )

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
    context = build(cfg.postprocess) if cfg.get("postprocess") else FileMaxContext(0.0)
    tta = _test_time_shifts(cfg)
    tta.validate(float(cfg.data.window_seconds))  # before any fold trains (or run starts)
    tracker.start(params=OmegaConf.to_container(cfg, resolve=True), config_yaml=config_yaml)
    noise = functools.cache(
        lambda: data.noise_clips(int(cfg.data.decode_workers), settings.progress)
    )  # decoded once, on the first fold that needs it
    oof_probs: list[np.ndarray] = []
    oof_targets: list[np.ndarray] = []
    sc_probs: list[np.ndarray] = []  # per fold: each window alone
    sc_scores: list[np.ndarray] = []  # per fold: with the recording context
    results: list[FoldResult] = []
    train_counts: list[np.ndarray] = []  # per fold: training clips of each class
    status = "FAILED"
    try:
        tracker.log_metrics(
            {"n_train_clips": len(data.clips), "n_bad_audio_files": len(data.bad_files)}
        )
        if len(data.bad_files):
            tracker.log_dataframe(data.bad_files, "bad_audio_files.csv")
        workers = int(settings.fold_workers) if not dist.enabled else 1
        pending = [
            k
            for k in folds
            if not (settings.resume and (fold_dir_of(ckpt_root, k) / "result.json").is_file())
        ]
        fresh: set[int] = set()  # folds trained by the workers of this run
        for k in folds:
            fold_dir = fold_dir_of(ckpt_root, k)
            done = fold_dir / "result.json"
            wave = [j for j in pending if j not in fresh][:workers]
            if workers > 1 and k in wave and len(wave) > 1:  # the next folds, side by side
                train_folds_in_workers(
                    cfg,
                    {j: fold_dir_of(ckpt_root, j) for j in wave},
                    worker_threads(workers, settings.threads),
                    settings.progress,
                )
                fresh.update(wave)
            seed_everything(int(cfg.seed) + k)
            loss_fn, aug, inputs = _fold_objects(cfg, data, k, noise)
            with tracker.child(f"fold{k}", tags={"fold": k}):
                tracker.log_params(
                    {
                        "fold": k,
                        "n_train": len(inputs.train_rows),
                        "n_val_windows": len(inputs.val_ds),
                    }
                )
                if (settings.resume or k in fresh) and done.is_file():
                    res = FoldResult(**json.loads(done.read_text()))
                    res.reused = k not in fresh
                    probs = np.load(fold_dir / "val_probs.npy")
                    for e, h in enumerate(res.history):
                        tracker.log_metrics(h, step=e)
                    if res.reused:
                        log.info("fold %d: reusing finished fold from %s", k, fold_dir)
                else:
                    log_epoch = lambda e, m: tracker.log_metrics(m, step=e)  # noqa: E731
                    objects = (loss_fn, aug, inputs)
                    res, probs = _train_fold(cfg, k, objects, settings, fold_dir, labels, log_epoch)
                if data.soundscapes is not None:
                    scored = fold_dir / WORKER_SOUNDSCAPE_PROBS  # by this run's fold worker
                    if k in fresh and scored.is_file():
                        sp = np.load(scored)
                    else:
                        sp = _soundscape_probs(cfg, data, fold_dir, settings, labels, tta)
                    sc_probs.append(sp)
                    sc_scores.append(context(sp, data.soundscapes.files))
                    res.soundscape_macro_auc = macro_auc(data.soundscapes.targets, sc_scores[-1])
                if not res.reused and dist.is_main:
                    atomic_write_bytes(fold_dir / "val_probs.npy", lambda f, p=probs: np.save(f, p))
                    atomic_write_json(done, {**res.__dict__, "reused": False})
                tracker.set_tags({"checkpoint": res.checkpoint})
                tracker.log_metrics(
                    {
                        "best_val_macro_auc": res.val_macro_auc,
                        "best_epoch": res.best_epoch,
                        "soundscape_macro_auc": res.soundscape_macro_auc,
                        "fold_seconds": res.seconds,
                    }
                )
            oof_probs.append(probs)
            oof_targets.append(inputs.val_targets)
            train_counts.append(_clips_per_class(inputs.train_rows, labels))
            results.append(res)
            running = float(np.mean([r.val_macro_auc for r in results]))
            tracker.log_metrics({"cv_macro_auc_running": running}, step=len(results))
            if on_fold_end is not None:
                on_fold_end(k, running, res)
        pointer = stage_pointer(cfg, str(cfg.task_name))
        summary = _summarise(
            data,
            results,
            np.concatenate(oof_probs),
            np.concatenate(oof_targets),
            sc_probs,
            sc_scores,
            np.stack(train_counts),
            ckpt_root,
            tracker,
        )
        if dist.is_main:
            atomic_write_json(
                pointer,
                {
                    "checkpoint_dir": str(ckpt_root),
                    "cv_macro_auc": summary.cv_macro_auc,
                    "run_id": summary.run_id,
                    "labels": list(labels),
                },
            )
        status = "FINISHED"
        return summary
    except StopJob as exc:
        status = "KILLED"
        tracker.set_tags({"state": exc.state, "stopped_after_folds": len(results)})
        raise
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        tracker.end(status)


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


def train_fold_files(
    cfg: DictConfig,
    k: int,
    fold_dir: Path,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> None:
    """Train fold ``k`` of a resolved config into ``fold_dir`` as :func:`run_kfold` does and
    write its ``val_probs.npy``, its test soundscapes' probabilities (when the data set has
    labelled ones: scored here, side by side with the other workers, not one fold after the
    other in the parent) and ``result.json`` (the body of a ``trainer.fold_workers`` process;
    the parent tracks the fold and applies the recording context afterwards)."""
    settings = TrainerSettings.from_config(cfg.trainer)
    data = prepare_data(cfg.data, cfg.paths.cache_dir, int(cfg.seed), progress=False)
    seed_everything(int(cfg.seed) + k)
    loss_fn, aug, inputs = _fold_objects(
        cfg, data, k, lambda: data.noise_clips(int(cfg.data.decode_workers), False)
    )
    res, probs = _train_fold(
        cfg, k, (loss_fn, aug, inputs), settings, fold_dir, data.meta.labels, on_epoch
    )
    atomic_write_bytes(fold_dir / "val_probs.npy", lambda f: np.save(f, probs))
    if data.soundscapes is not None:
        tta = _test_time_shifts(cfg)
        sp = _soundscape_probs(cfg, data, fold_dir, settings, data.meta.labels, tta)
        atomic_write_bytes(fold_dir / WORKER_SOUNDSCAPE_PROBS, lambda f: np.save(f, sp))
    atomic_write_json(fold_dir / "result.json", {**res.__dict__, "reused": False})


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
    if D.current().enabled:  # same start on every rank, different augmentation draws
        D.broadcast_module(model)
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


def load_fold_model(cfg: DictConfig, checkpoint: str | Path, num_classes: int) -> torch.nn.Module:
    """Rebuild the model of ``cfg.model`` and load a fold checkpoint into it (eval mode)."""
    # the checkpoint holds every weight: never fetch or load the initial ones again
    model = build(cfg.model, num_classes=num_classes, pretrained=False, checkpoint_path=None)
    model.load_state_dict(load_checkpoint(checkpoint)["state_dict"])
    return model.eval()


def score_soundscapes(
    model: torch.nn.Module,
    sc: SoundscapeSet,
    window_samples: int,
    sample_rate: int,
    tta: TestTimeShifts,
    batch_size: int = 64,
    device: str = "cpu",
    amp: bool = False,
    progress: bool = False,
) -> np.ndarray:
    """``[N, C]`` probabilities of labelled soundscape windows, averaged over ``tta``'s shifts."""
    starts = [tta.starts(s, sc.cache.length(p), window_samples, sample_rate) for p, s in sc.items]
    items = [(p, st[j]) for j in range(tta.n) for (p, _), st in zip(sc.items, starts, strict=True)]
    ds = Windows(sc.cache, items, np.tile(sc.targets, (tta.n, 1)), window_samples)
    probs = predict(model, ds, batch_size, device, amp, progress, desc="soundscapes")
    return tta.combine(probs.reshape(tta.n, len(sc.items), -1))


def _clips_per_class(clips: pd.DataFrame, labels: list[str]) -> np.ndarray:
    """Clips of each label (primary labels of ``clips``), in ``labels`` order."""
    counts = clips["primary_label"].value_counts()
    return np.array([int(counts.get(lab, 0)) for lab in labels])


def _test_time_shifts(cfg: DictConfig) -> TestTimeShifts:
    return build(cfg.tta) if cfg.get("tta") else TestTimeShifts()


def _soundscape_probs(
    cfg, data: PreparedData, fold_dir: Path, settings, labels, tta: TestTimeShifts
) -> np.ndarray:
    return score_soundscapes(
        load_fold_model(cfg, fold_dir / "best.pt", len(labels)),
        data.soundscapes,
        int(round(float(cfg.data.window_seconds) * data.sample_rate)),
        data.sample_rate,
        tta,
        settings.eval_batch_size,
        settings.device,
        settings.amp,
        settings.progress,
    )


def _summarise(
    data: PreparedData,
    results: list[FoldResult],
    oof_probs: np.ndarray,
    oof_targets: np.ndarray,
    sc_probs: list[np.ndarray],
    sc_scores: list[np.ndarray],
    train_counts: np.ndarray,
    ckpt_root: Path,
    tracker: Any,
) -> KFoldSummary:
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
    if sc_probs:
        fold_probs, fold_scores = np.stack(sc_probs), np.stack(sc_scores)  # [F, N, C]
        raw = fold_probs.mean(axis=0)
        ens = fold_scores.mean(axis=0)
        sc_auc = macro_auc(data.soundscapes.targets, ens)
        sc_auc_raw = macro_auc(data.soundscapes.targets, raw)
        # the folds rank-averaged instead (`birdsweep infer --combine rank`)
        ranked = combine(fold_scores.swapaxes(0, 1), "rank")
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
            soundscape_fold_probs=fold_probs,  # each window alone
            soundscape_fold_scores=fold_scores,  # with the recording context
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
