"""Up-front checks of config values, so a bad value fails before any work with its key named."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf


class ConfigError(ValueError):
    """A config value is out of range; the message names the key."""


def _check(ok: bool, key: str, value: Any, rule: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r}: {rule}")


def validate_config(cfg: DictConfig) -> None:
    """Check the values of ``cfg`` that the code cannot recover from later.

    Raises:
        ConfigError: naming the first offending key, its value and the allowed range.
    """
    opt = cfg.optimizer
    if "lr" in opt:
        _check(float(opt.lr) > 0, "optimizer.lr", opt.lr, "must be > 0")
    if "weight_decay" in opt:
        _check(
            float(opt.weight_decay) >= 0, "optimizer.weight_decay", opt.weight_decay, "must be >= 0"
        )
    t = cfg.trainer
    _check(int(t.epochs) >= 1, "trainer.epochs", t.epochs, "must be >= 1")
    _check(int(t.batch_size) >= 1, "trainer.batch_size", t.batch_size, "must be >= 1")
    _check(
        t.device in ("cpu", "cuda") or str(t.device).startswith("cuda:"),
        "trainer.device",
        t.device,
        "must be cpu or cuda[:N]",
    )
    d = cfg.data
    # data=demo writes its synthetic set to its own cache folder; a folder the user names is
    # their data, never a place to generate into (nor to delete from with overwrite)
    _check(
        not d.get("demo") or OmegaConf.is_interpolation(d, "root"),
        "data.root",
        d.root,
        "the demo data config (data=demo, the default) generates its own synthetic set and "
        "does not read a folder you name; to train on your folder add data=birdclef: "
        "python run.py data=birdclef data.root=...",
    )
    _check(int(d.n_folds) >= 2, "data.n_folds", d.n_folds, "must be >= 2")
    _check(float(d.window_seconds) > 0, "data.window_seconds", d.window_seconds, "must be > 0")
    _check(float(d.crop_seconds) > 0, "data.crop_seconds", d.crop_seconds, "must be > 0")
    _check(int(d.sample_rate) >= 8000, "data.sample_rate", d.sample_rate, "must be >= 8000 Hz")
    frontend = cfg.model.get("frontend") or {}
    if frontend.get("sample_rate") is not None:
        # the model's mel bands are built for this rate; training and the exported ensemble
        # feed it audio decoded at data.sample_rate (export refuses the mismatch too)
        _check(
            int(frontend.sample_rate) == int(d.sample_rate),
            "model.frontend.sample_rate",
            frontend.sample_rate,
            f"must equal data.sample_rate={d.sample_rate} (audio is decoded at that rate); "
            "leave it at ${data.sample_rate} as conf/model/frontend does",
        )
    _check(
        int(d.val_windows_per_clip) >= 1,
        "data.val_windows_per_clip",
        d.val_windows_per_clip,
        "must be >= 1",
    )
    if d.get("folds") is not None:
        bad = [f for f in d.folds if not 0 <= int(f) < int(d.n_folds)]
        _check(not bad, "data.folds", list(d.folds), f"fold ids must be in [0, {d.n_folds})")
    loss = cfg.loss
    if "secondary_target" in loss:
        _check(
            0 <= float(loss.secondary_target) <= 1,
            "loss.secondary_target",
            loss.secondary_target,
            "must be in [0, 1]",
        )
    if "label_smoothing" in loss:
        _check(
            0 <= float(loss.label_smoothing) < 1,
            "loss.label_smoothing",
            loss.label_smoothing,
            "must be in [0, 1)",
        )
