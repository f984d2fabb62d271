"""The plain PyTorch training loop for one fold, and batched prediction."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from timm.utils import ModelEmaV3
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler, Subset
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from birdsweep.model.sed import window_score
from birdsweep.scoring.metric import macro_auc
from birdsweep.train import distributed as D
from birdsweep.train.checkpoint import load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)


def weight_average(model: nn.Module, decay: float) -> ModelEmaV3:
    """timm's exponential moving average of ``model``'s weights (``trainer.ema_decay``).

    Its ``update(model, step=step)`` after optimisation step ``step`` (1 = the first) averages
    with the decay ``min(decay, (1 + step) / (10 + step))``, as TensorFlow's
    ``ExponentialMovingAverage(num_updates=step)``: timm's warm-up ``1 - (1 + s / 9) ** -1``
    at ``s = step + 1`` (``update_after_step=-2``). A constant ``decay`` keeps ``decay ** step``
    of the random initial weights in the average (4 % after 640 steps at 0.995; 20 % after 160
    steps at 0.99), a drag on short CPU schedules; with the ramp the first steps mostly copy
    the model and the initial weights fade out at once. BatchNorm statistics are averaged like
    the weights; integer buffers (batch counters) are copied.
    """
    return ModelEmaV3(
        model,
        decay=decay,
        use_warmup=True,
        warmup_gamma=9.0,
        warmup_power=1.0,
        update_after_step=-2,
    )


class TrainForward(nn.Module):
    """The differentiable part of a training step as one module call, ``(wave, target, weight)
    -> loss``: front end, spectrogram augmentation, backbone, head and loss.

    Under ``torchrun`` it is wrapped in :class:`~torch.nn.parallel.DistributedDataParallel`
    (:func:`birdsweep.train.distributed.data_parallel`), which averages the gradients of what
    runs through its ``forward``; ending at the loss lets DDP tell the parameters that got no
    gradient from the output.
    """

    def __init__(self, model: nn.Module, spec_aug: Callable, loss_fn: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.spec_aug = spec_aug  # a plain callable: no parameters of its own
        self.loss_fn = loss_fn

    def forward(
        self, wave: torch.Tensor, target: torch.Tensor, weight: torch.Tensor
    ) -> torch.Tensor:
        spec = self.model.frontend(wave)
        spec, target, weight = self.spec_aug(spec, target, weight)
        return self.loss_fn(self.model.forward_spec(spec), target, weight)


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


KEEP = ("best", "last")


@dataclass
class TrainerSettings:
    """Knobs of ``conf/trainer`` that the loop reads (see the YAML for their meaning)."""

    device: str = "cpu"
    epochs: int = 10
    batch_size: int = 32
    eval_batch_size: int = 64
    num_workers: int = 0
    amp: bool = False
    grad_clip: float | None = 2.0
    ema_decay: float | None = None
    threads: int | None = None
    fold_workers: int = 1  # folds trained side by side, one process each (see fold_pool)
    progress: bool = True
    max_minutes: float | None = None  # fit a fold's schedule into this wall time (see fit)
    resume: bool = True
    freeze_backbone: bool = False  # train only the head (front end and backbone frozen)
    dist_backend: str = "gloo"  # process-group backend under torchrun (gloo | nccl)
    channels_last: bool = False  # NHWC memory layout for the backbone's convolutions
    keep: str = "best"  # which epoch a fold keeps as best.pt: best (validation AUC) | last
    val_every: int = 1  # validate every N epochs and always after the last one

    def __post_init__(self) -> None:
        if self.keep not in KEEP:
            raise ValueError(f"trainer.keep: {self.keep!r} is not one of {KEEP}")
        if int(self.val_every) < 1:
            raise ValueError(f"trainer.val_every: must be an integer >= 1, got {self.val_every}")
        if int(self.fold_workers) < 1:
            raise ValueError(
                f"trainer.fold_workers: must be an integer >= 1, got {self.fold_workers}"
            )

    @classmethod
    def from_config(cls, cfg: Any) -> TrainerSettings:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in dict(cfg).items() if k in names})


@dataclass
class FitResult:
    """What training one fold produced."""

    best_epoch: int
    best_auc: float
    history: list[dict[str, float]] = field(default_factory=list)
    val_probs: np.ndarray | None = None  # predictions of the best epoch on the validation set
    seconds: float = 0.0


def _autocast(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()


@torch.inference_mode()
def predict(
    model: nn.Module,
    dataset: Dataset,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    amp: bool = False,
    progress: bool = False,
    desc: str = "predict",
) -> np.ndarray:
    """Window probabilities ``sigmoid(model(wave)["score"])`` (``"clip"`` for a model that
    returns no ``"score"``) for every item of ``dataset``.

    Args:
        model: a model following the ``forward(wave) -> {"clip", "frame"}`` contract.
        dataset: yields ``(wave, ...)`` tuples.
        batch_size: windows per forward pass.
        device: where to run.
        amp: fp16 autocast for the backbone on CUDA.
        progress: show a progress bar.
        desc: progress bar label.

    Returns:
        ``[len(dataset), C]`` float32 probabilities.
    """
    device = torch.device(device)
    model.eval().to(device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    out = []
    for batch in tqdm(loader, desc=desc, leave=False, disable=not progress):
        out.append(_probs(model, batch[0].to(device, non_blocking=True), device, amp, desc))
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def _probs(model: nn.Module, wave: torch.Tensor, device: torch.device, amp: bool, desc: str):
    """``sigmoid`` of the model's window scores of one batch, as a numpy array."""
    with _autocast(device, amp):
        logits = window_score(model(wave))
    if not torch.isfinite(logits).all():
        if amp:  # fp16 overflow (e.g. early BatchNorm statistics): this batch again in fp32
            log.warning("%s: non-finite outputs under AMP; batch recomputed in fp32", desc)
            logits = window_score(model(wave.float()))
        if not torch.isfinite(logits).all():
            raise NonFiniteLossError(
                f"{desc}: the model's outputs are NaN/inf in fp32: its weights or BatchNorm "
                "statistics are not finite (training diverged; lower optimizer.lr)"
            )
    return torch.sigmoid(logits.float()).cpu().numpy()


def window_predictor(
    model: nn.Module, device: str | torch.device = "cpu", amp: bool = False, desc: str = "predict"
) -> Callable[[np.ndarray], np.ndarray]:
    """``[B, samples]`` float32 windows → ``[B, 1, C]`` probabilities of ``model`` (as
    :func:`predict`): the ``predict`` of :func:`birdsweep.scoring.files.score_files`."""
    device = torch.device(device)
    model.eval().to(device)

    @torch.inference_mode()
    def run(windows: np.ndarray) -> np.ndarray:
        wave = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)).to(device)
        return _probs(model, wave, device, amp, desc)[:, None, :]

    return run


def epochs_within(minutes: float, epoch_seconds: float, epochs: int) -> int:
    """How many epochs of ``epoch_seconds`` each fit ``minutes`` (at least 1, at most
    ``epochs``)."""
    return max(1, min(int(epochs), int(60.0 * minutes // max(epoch_seconds, 1e-9))))


def rebuild_schedule(
    scheduler_factory: Callable, optimizer: Any, total_steps: int, done_steps: int
) -> Any:
    """A new LR schedule over ``total_steps``, advanced by the ``done_steps`` already taken
    (they count as the start of the new schedule)."""
    scheduler = scheduler_factory(optimizer, total_steps=total_steps)
    for _ in range(done_steps):
        scheduler.step()
    return scheduler


class FoldTrainer:
    """Train one model on one fold, keeping the best epoch by validation macro AUC (or the
    last epoch, ``trainer.keep=last``).

    Args:
        model: the model (front end inside).
        loss_fn: ``loss_fn(outputs, target, weight) -> scalar``.
        aug: batch augmentation pipeline with ``wave(...)`` and ``spec(...)`` (see conf/aug).
        optimizer_factory: ``f(params) -> Optimizer`` (a partial from conf/optimizer).
        scheduler_factory: ``f(optimizer, total_steps) -> LRScheduler`` (conf/scheduler).
        settings: trainer settings.
        checkpoint_dir: where ``best.pt`` and ``last.pt`` go.
        extra_state: primitives stored in every checkpoint (labels, config, fold...).
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: nn.Module,
        aug: Any,
        optimizer_factory: Callable,
        scheduler_factory: Callable,
        settings: TrainerSettings,
        checkpoint_dir: str | Path,
        extra_state: dict[str, Any] | None = None,
    ):
        self.device = torch.device(settings.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("trainer.device=cuda but no CUDA device is visible; use trainer=cpu")
        self.model = model.to(self.device)
        if settings.channels_last:  # same maths; faster convolutions on CPU (oneDNN) and GPU
            self.model = self.model.to(memory_format=torch.channels_last)
        self.loss_fn = loss_fn
        self.aug = aug
        self.optimizer_factory = optimizer_factory
        self.scheduler_factory = scheduler_factory
        self.s = settings
        self.dir = Path(checkpoint_dir)
        self.extra = dict(extra_state or {})
        # under torchrun: DDP, which starts every rank from rank 0's weights
        self.train_forward = D.data_parallel(TrainForward(self.model, aug.spec, loss_fn))

    def _state(self, model: nn.Module, epoch: int, auc: float) -> dict[str, Any]:
        return {
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "epoch": epoch,
            "val_macro_auc": auc,
            **self.extra,
        }

    def make_optimization(self, total_steps: int) -> tuple[Any, Any, torch.amp.GradScaler]:
        """The optimizer, LR scheduler (over ``total_steps``) and AMP grad scaler of a fit."""
        optimizer = self.optimizer_factory([p for p in self.model.parameters() if p.requires_grad])
        scheduler = self.scheduler_factory(optimizer, total_steps=total_steps)
        scaler = torch.amp.GradScaler("cuda", enabled=self.s.amp and self.device.type == "cuda")
        return optimizer, scheduler, scaler

    def fit(
        self,
        train_ds: Dataset,
        val_ds: Dataset,
        val_targets: np.ndarray,
        sampler: Sampler | None = None,
        on_epoch: Callable[[int, dict[str, float]], None] | None = None,
        desc: str = "train",
    ) -> FitResult:
        """Train for ``settings.epochs`` epochs, resuming from ``last.pt`` when it exists.

        The validation set is scored every ``settings.val_every`` epochs and after the last one;
        ``keep=best`` picks among the scored epochs. With ``settings.max_minutes``, the mean
        epoch time so far re-plans the fold after each epoch: when all the epochs would not fit
        the budget, fewer are trained and the LR schedule is rebuilt over them (it still decays
        to its end); a slow first epoch (a busy machine) is made up for when later ones are
        faster.

        Args:
            train_ds: training crops (``wave, target, weight``).
            val_ds: validation windows (``wave, target``).
            val_targets: ``[len(val_ds), C]`` labels for the metric.
            sampler: optional sampler (None = shuffle).
            on_epoch: called with ``(epoch, metrics)`` after each epoch (for tracking).
            desc: progress bar label.

        Returns:
            The :class:`FitResult` of the best epoch; ``best.pt`` holds its weights.
        """
        s = self.s
        dist = D.current()
        gen = torch.Generator().manual_seed(int(torch.initial_seed()) % 2**31)
        if dist.enabled:
            if sampler is not None:
                raise ValueError(
                    "trainer=ddp shards the data with a DistributedSampler; use sampler=random"
                )
            sampler = DistributedSampler(train_ds, shuffle=True, seed=int(gen.initial_seed()))
        loader = DataLoader(
            train_ds,
            batch_size=s.batch_size,
            shuffle=sampler is None,
            sampler=sampler,
            num_workers=s.num_workers,
            drop_last=(len(sampler) if sampler is not None else len(train_ds)) > s.batch_size,
            pin_memory=self.device.type == "cuda",
            persistent_workers=s.num_workers > 0,
            generator=gen,
        )
        steps_per_epoch = max(1, len(loader))
        optimizer, scheduler, scaler = self.make_optimization(steps_per_epoch * s.epochs)
        ema = weight_average(self.model, s.ema_decay) if s.ema_decay else None

        start_epoch, best = 0, FitResult(best_epoch=-1, best_auc=-math.inf)
        epochs = s.epochs  # re-planned after each epoch when trainer.max_minutes is set
        spent_before = 0.0  # training seconds of this fold before a resume
        last_path, best_path = self.dir / "last.pt", self.dir / "best.pt"
        if last_path.is_file():
            ck = load_checkpoint(last_path, map_location=self.device)
            self.model.load_state_dict(ck["state_dict"])
            optimizer.load_state_dict(ck["optimizer"])
            epochs = int(ck.get("planned_epochs", epochs))
            if epochs != s.epochs:  # the schedule was fitted to trainer.max_minutes
                scheduler = self.scheduler_factory(optimizer, total_steps=steps_per_epoch * epochs)
            scheduler.load_state_dict(ck["scheduler"])
            if ema is not None and "ema_state_dict" in ck:
                ema.module.load_state_dict(ck["ema_state_dict"])
            torch.set_rng_state(ck["rng"])
            gen.set_state(ck["loader_rng"])
            start_epoch = int(ck["epoch"]) + 1
            spent_before = float(ck.get("train_seconds", 0.0))
            best.history = [dict(h) for h in ck["history"]]
            best.best_epoch, best.best_auc = int(ck["best_epoch"]), float(ck["best_auc"])
            if best_path.is_file() and ck.get("best_val_probs") is not None:
                best.val_probs = np.asarray(ck["best_val_probs"].numpy())
            log.info("%s: resumed from %s at epoch %d", desc, last_path, start_epoch)

        t0 = time.monotonic()
        epoch = start_epoch - 1
        while epoch + 1 < epochs:
            epoch += 1
            for obj in (train_ds, sampler):
                if hasattr(obj, "set_epoch"):
                    obj.set_epoch(epoch)
            train_loss = self._train_epoch(
                loader, optimizer, scheduler, scaler, ema, f"{desc} ep{epoch + 1}/{epochs}"
            )
            train_loss = D.mean_across_ranks(train_loss)
            now = time.monotonic()
            spent = spent_before + now - t0  # this fold's training seconds, resumes included
            if s.max_minutes:  # re-plan from the mean epoch time so far (one plan for all ranks)
                per_epoch = D.mean_across_ranks(spent) / (epoch + 1)
                plan = max(epoch + 1, epochs_within(s.max_minutes, per_epoch, s.epochs))
                if plan != epochs:
                    (log.warning if plan < s.epochs and epochs == s.epochs else log.info)(
                        "%s: %.1f s per epoch so far, so %d of trainer.epochs=%d fit "
                        "trainer.max_minutes=%g; the LR schedule now spans them "
                        "(trainer.max_minutes=null trains them all)",
                        desc,
                        per_epoch,
                        plan,
                        s.epochs,
                        s.max_minutes,
                    )
                    epochs = plan
                    scheduler = rebuild_schedule(
                        self.scheduler_factory,
                        optimizer,
                        steps_per_epoch * epochs,
                        scheduler.last_epoch,
                    )
            eval_model = ema.module if ema is not None else self.model
            validated = (epoch + 1) % int(s.val_every) == 0 or epoch + 1 >= epochs
            auc, probs = float("nan"), None
            if validated:
                D.broadcast_buffers(eval_model)  # every rank scores with rank 0's statistics
                shard = Subset(val_ds, D.shard_indices(len(val_ds)).tolist())
                probs = D.gather_rows(
                    predict(eval_model, shard, s.eval_batch_size, self.device, s.amp)
                )
                auc = macro_auc(val_targets, probs)
            metrics = {
                "train_loss": train_loss,
                **({"val_macro_auc": auc} if validated else {}),
                "lr": optimizer.param_groups[0]["lr"],
                "epoch_seconds": now - t0,
            }
            best.history.append(metrics)
            if on_epoch is not None:
                on_epoch(epoch, metrics)
            score = auc if math.isfinite(auc) else -train_loss  # no validation windows: loss
            if s.keep == "last" or (validated and (score > best.best_auc or best.best_epoch < 0)):
                best.best_epoch, best.best_auc, best.val_probs = epoch, score, probs
                if dist.is_main:
                    save_checkpoint(best_path, self._state(eval_model, epoch, auc))
            last = self._state(self.model, epoch, auc)
            last.update(
                optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(),
                rng=torch.get_rng_state(),
                loader_rng=gen.get_state(),
                history=best.history,
                best_epoch=best.best_epoch,
                best_auc=best.best_auc,
                best_val_probs=None if best.val_probs is None else torch.from_numpy(best.val_probs),
                planned_epochs=epochs,
                train_seconds=spent,
            )
            if ema is not None:
                last["ema_state_dict"] = {k: v.cpu() for k, v in eval_model.state_dict().items()}
            if dist.is_main:
                save_checkpoint(last_path, last)
            D.barrier()
            log.info(
                "%s epoch %d/%d: loss %.4f%s",
                desc,
                epoch + 1,
                epochs,
                train_loss,
                f", val macro AUC {auc:.4f}" if validated else "",
            )
        best.seconds = time.monotonic() - t0
        return best

    def _train_epoch(self, loader, optimizer, scheduler, scaler, ema, desc) -> float:
        s, model = self.s, self.model
        self.train_forward.train()  # the model and, under torchrun, its DDP wrapper
        if s.freeze_backbone:
            model.backbone.eval()  # frozen: keep BatchNorm statistics as loaded
        total, count = 0.0, 0
        bar = tqdm(
            loader,
            desc=desc,
            leave=False,
            disable=not s.progress or not D.current().is_main,
        )
        for wave, target, weight in bar:
            loss = self.train_step(wave, target, weight, optimizer, scheduler, scaler, ema, desc)
            total += loss * len(wave)
            count += len(wave)
            bar.set_postfix(loss=f"{total / count:.4f}")
        return total / max(count, 1)

    def train_step(
        self,
        wave: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor,
        optimizer: Any,
        scheduler: Any,
        scaler: torch.amp.GradScaler,
        ema: ModelEmaV3 | None = None,
        desc: str = "train",
    ) -> float:
        """One optimisation step on a batch: augment, mel (fp32), forward (autocast when
        ``amp``), loss, backward (gradients averaged over ranks under torchrun), clip, step,
        weight average; returns the batch loss."""
        s, model = self.s, self.model
        wave = wave.to(self.device, non_blocking=True)
        target = target.to(self.device, non_blocking=True)
        weight = weight.to(self.device, non_blocking=True)
        wave, target, weight = self.aug.wave(wave, target, weight)
        with _autocast(self.device, s.amp):
            loss = self.train_forward(wave, target, weight)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"{desc}: loss is {loss.item()}; lower optimizer.lr "
                "or check the data for silent/NaN clips"
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if s.grad_clip:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), s.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        if ema is not None:
            ema.update(model, step=scheduler.last_epoch)
        return loss.item()
