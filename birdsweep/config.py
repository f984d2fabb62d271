"""Building objects from config: ``hydra.utils.instantiate`` with an execution whitelist."""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate

# packages whose classes and functions a config's ``_target_`` may name
TRUSTED_TARGETS = ["birdsweep.*", "torch.*", "timm.*", "audiomentations.*"]


def build(cfg: Any, *args: Any, **kwargs: Any) -> Any:
    """Instantiate a ``_target_`` config node, allowing only :data:`TRUSTED_TARGETS`.

    Args:
        cfg: a config node with ``_target_`` (nested nodes are built recursively).
        *args, **kwargs: passed to the target (e.g. ``num_classes`` of a model).

    Returns:
        The built object (or a partial, for ``_partial_: true`` nodes).
    """
    return instantiate(cfg, *args, _execution_whitelist_=TRUSTED_TARGETS, **kwargs)
