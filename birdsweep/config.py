"""Building objects from config: ``hydra.utils.instantiate`` behind target checks.

Two levels of trust:

- **Your own config** (``conf/`` plus overrides): :func:`build` admits the targets the config
  groups need (:data:`TRUSTED_TARGETS`): birdsweep's augmentations, front ends, models, losses,
  samplers, schedules, recording context, test-time shifts and tracker, ``torch.optim`` and
  ``audiomentations``.
- **A stored artefact** (a checkpoint someone shared, an ensemble's manifest): only birdsweep's
  registered models and front ends (:data:`ARTEFACT_TARGETS`) may be rebuilt, from a config
  checked field by field before anything is imported or called (:func:`build_artefact_model`).

Hydra's own ``_execution_whitelist_`` matches the target *string*, so
``birdsweep.augment.wave.torch.save`` passes ``birdsweep.*``; every target here is therefore also
resolved and must be *defined* inside an allowed package (``torch.save`` is defined in
``torch.serialization``, and is refused).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

__all__ = [
    "ARTEFACT_TARGETS",
    "TRUSTED_TARGETS",
    "UntrustedConfigError",
    "build",
    "build_artefact_model",
    "check_artefact_model",
    "check_target",
    "check_targets",
    "refuse_interpolations",
]

# what a config group's ``_target_`` may name: a trailing ``.*`` admits a package, else exact
TRUSTED_TARGETS = (
    "birdsweep.augment.*",
    "birdsweep.features.frontend.*",
    "birdsweep.model.*",
    "birdsweep.train.losses.*",
    "birdsweep.train.samplers.*",
    "birdsweep.train.schedule.*",
    "birdsweep.scoring.context.*",
    "birdsweep.scoring.shifts.*",
    "birdsweep.track.mlflow_tracker.*",
    "torch.optim.*",
    "audiomentations.*",
)

# config-group targets that moved: a conf file of your own may still name the old place (no
# stored artefact rebuilds these; export reads only their values), so refusals name the new one
MOVED_TARGETS = {
    "birdsweep.infer.context.": "birdsweep.scoring.context.",
    "birdsweep.infer.shifts.": "birdsweep.scoring.shifts.",
}

# what a stored artefact may rebuild: config key -> registered targets at that place
ARTEFACT_TARGETS = {
    "model": ("birdsweep.model.sed.SEDModel",),
    "frontend": ("birdsweep.features.frontend.MelFrontend",),
}


class UntrustedConfigError(ValueError):
    """A config names code it may not run; the message names the key and the target."""


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(name == p or (p.endswith(".*") and name.startswith(p[:-1])) for p in patterns)


def _walk(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    """``(dotted key, value)`` of ``node`` and of every value nested in it, parents first."""
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{path}[{i}]")


def check_target(target: Any, patterns: Sequence[str], where: str) -> None:
    """Refuse ``target`` unless it names, and resolves to, a class or function of ``patterns``.

    Raises:
        UntrustedConfigError: naming ``where`` (the config key) and the target.
    """
    from hydra._internal.utils import _locate

    if not isinstance(target, str) or not _matches(target, patterns):
        moved = [
            f"; it moved to {new + target[len(old) :]!r}"
            for old, new in MOVED_TARGETS.items()
            if isinstance(target, str) and target.startswith(old)
        ]
        raise UntrustedConfigError(
            f"{where}._target_={target!r} is not allowed here (allowed: {', '.join(patterns)})"
            + "".join(moved)
        )
    try:
        obj = _locate(target)
    except Exception as exc:
        raise UntrustedConfigError(f"{where}._target_={target!r} cannot be found ({exc})") from exc
    defined = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"
    if not (inspect.isclass(obj) or inspect.isfunction(obj)) or not _matches(defined, patterns):
        raise UntrustedConfigError(
            f"{where}._target_={target!r} resolves to {defined!r}, which is not allowed here "
            f"(allowed: {', '.join(patterns)})"
        )


def check_targets(cfg: Any, patterns: Sequence[str] = TRUSTED_TARGETS, where: str = "") -> None:
    """Run :func:`check_target` on every ``_target_`` in ``cfg`` (nested ones included)."""
    container = (
        OmegaConf.to_container(cfg, resolve=True)
        if isinstance(cfg, DictConfig | ListConfig)
        else cfg
    )
    for path, node in _walk(container, where):
        if isinstance(node, dict) and "_target_" in node:
            check_target(node["_target_"], patterns, path or "config")


def build(cfg: Any, *args: Any, **kwargs: Any) -> Any:
    """Instantiate a ``_target_`` config node of your own config (:data:`TRUSTED_TARGETS`).

    Args:
        cfg: a config node with ``_target_`` (nested nodes are built recursively).
        *args, **kwargs: passed to the target (e.g. ``num_classes`` of a model).

    Returns:
        The built object (or a partial, for ``_partial_: true`` nodes).

    Raises:
        UntrustedConfigError: a target outside :data:`TRUSTED_TARGETS`, before anything runs.
    """
    check_targets(cfg)
    return instantiate(cfg, *args, _execution_whitelist_=list(TRUSTED_TARGETS), **kwargs)


def check_artefact_model(model_cfg: Any, source: str) -> dict:
    """Check a model config stored in an artefact; return it as a plain dict.

    Accepted: a registered model target (:data:`ARTEFACT_TARGETS`) at the top, a registered
    front end under ``frontend``, plain values elsewhere. Refused: any other ``_target_``,
    Hydra's other special keys (``_args_``, ``_partial_``, ...), interpolations (``${...}``,
    which may call resolvers), and backbone names that point outside timm's registry
    (``hf-hub:``, ``local-dir:``).

    Raises:
        UntrustedConfigError: ``"<source>: model.<key> ..."``, naming what is wrong.
    """
    if isinstance(model_cfg, DictConfig | ListConfig):
        model_cfg = OmegaConf.to_container(model_cfg, resolve=False)
    if not isinstance(model_cfg, dict):
        raise UntrustedConfigError(f"{source}: model config is not a mapping")

    for path, node in _walk(model_cfg, "model"):
        if not isinstance(node, dict):
            continue
        for k in node:
            if not isinstance(k, str):
                raise UntrustedConfigError(f"{source}: {path} has a non-string key {k!r}")
            if k.startswith("_") and k != "_target_":
                raise UntrustedConfigError(f"{source}: {path}.{k} is not allowed in an artefact")
        if "_target_" in node:
            place = path.rsplit(".", 1)[-1]  # "model", "frontend", ... (a list item: none)
            allowed = ARTEFACT_TARGETS.get(place, ())
            if node["_target_"] not in allowed:
                raise UntrustedConfigError(
                    f"{source}: {path}._target_={node['_target_']!r} is not a registered "
                    f"birdsweep {place if allowed else 'model part'} (allowed here: "
                    f"{list(allowed)})"
                )
    refuse_interpolations(model_cfg, source, "model")
    if "_target_" not in model_cfg:
        raise UntrustedConfigError(f"{source}: model config has no _target_")
    backbone = model_cfg.get("backbone")
    if backbone is not None and (not isinstance(backbone, str) or ":" in backbone):
        raise UntrustedConfigError(
            f"{source}: model.backbone={backbone!r} is not a timm registry name"
        )
    return model_cfg


def refuse_interpolations(node: Any, source: str, path: str = "config") -> None:
    """Refuse ``${...}`` anywhere in a stored config: a resolver may read the environment or
    run code, and a saved config is written resolved, so a genuine one has none.

    Raises:
        UntrustedConfigError: naming the key.
    """
    if isinstance(node, DictConfig | ListConfig):
        node = OmegaConf.to_container(node, resolve=False)
    for key, value in _walk(node, path):
        if isinstance(value, str) and "${" in value:
            raise UntrustedConfigError(f"{source}: {key}={value!r} is an interpolation")


def build_artefact_model(model_cfg: Any, source: str, **kwargs: Any) -> Any:
    """Rebuild a model from an artefact's stored config, after :func:`check_artefact_model`.

    ``pretrained`` and ``checkpoint_path`` are switched off: the artefact's own weights replace
    them, so nothing is downloaded or read besides the artefact.

    Args:
        model_cfg: the stored ``model`` node.
        source: the artefact's path, for messages.
        **kwargs: passed to the model (e.g. ``num_classes``).
    """
    node = check_artefact_model(model_cfg, source)
    off = (("pretrained", False), ("pretrained_file", None), ("checkpoint_path", None))
    node.update({k: v for k, v in off if k in node})
    allowed = [t for targets in ARTEFACT_TARGETS.values() for t in targets]
    return instantiate(OmegaConf.create(node), _execution_whitelist_=allowed, **kwargs)
