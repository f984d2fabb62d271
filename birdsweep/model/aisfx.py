"""The aiSFX sound-effects CNN as a timm backbone (``aisfx_cnn``, ``aisfx_cnn_db``).

Architecture: the 9-layer CNN of the ``aisfx`` package 0.1.2 (``aisfx/models/cnn2d.py``,
``EmbeddingNet('max', 3, 1, 64)``: the DCASE 2018 cross-task baseline "Cnn_9layers"), from
A. B. Ma and A. Lerch, "Representation Learning for the Automatic Indexing of Sound Effects
Libraries", ISMIR 2022 (https://github.com/alisonbma/aisfx). Its weights
(``aisfx/models/checkpoint.pth``, model "X-Sequential-CE") are (c) 2022 A. B. Ma and A. Lerch,
licensed CC BY 4.0; they are read from the installed package, never copied here. This module is
a re-implementation, not the package's code.

Network: 4 blocks of ``[conv3x3 (no bias) -> BN -> ReLU] x 2``, widths 64/128/256/512, a 2x2
max pool after blocks 1-3 (none after block 4). The embedding is the mean over frequency, then
the max over time of the 512 maps.

Layout: aiSFX feeds ``[B, 1, time, mel]``; here the input is ``[B, C, mel, time]`` (as
``MelFrontend``), so the 3x3 kernels are transposed when the weights load: with symmetric
padding and square pools, ``forward_features(x)`` is the aiSFX feature map transposed, exactly.

aiSFX input ("original" setting of the ISMIR paper, Essentia): 44.1 kHz audio at its file
level (no normalisation), frames of 2048 (symmetric Hann, unnormalised FFT), hop 1024, 96
HTK-mel bands 0-22050 Hz with unit-sum triangles, power, ``log10(1e4 * P + 1) / 9.4578``
(min-max with the paper's global min 0 / max 9.4578), blocks of 100 frames (~2.3 s).
``aisfx_cnn_db`` takes ``MelFrontend(normalize="none", top_db=None)`` dB values instead and
maps them to that scale (``db_input``).
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from timm.models import adapt_input_conv, register_model
from torch import nn

__all__ = ["AisfxCNN", "aisfx_cnn", "aisfx_cnn_db", "load_aisfx_state_dict"]

AISFX_PACKAGE = "aisfx"
# --no-deps: its pins (numpy==1.23.0, librosa==0.9.2) serve only its own file-based inference
AISFX_PIP = "pip install --no-deps aisfx==0.1.2"
AISFX_CHECKPOINT = ("models", "checkpoint.pth")
# the aiSFX input spectrogram (aisfx/inference.py, aisfx/preprocessing.py)
SAMPLE_RATE, N_FFT, HOP_LENGTH, N_MELS, FMIN, FMAX = 44100, 2048, 1024, 96, 0.0, 22050.0
LOG_SCALE = 1e4  # log10(LOG_SCALE * P + 1)
NORM_MAX = 9.457798957824707  # "original" min-max: (x - 0) / (NORM_MAX - 0)
# MelFrontend's Slaney (area) filters sum to ~n_fft / sr, aiSFX's unit-sum ones to 1: the dB
# gain between the two at aiSFX's 21.5 Hz FFT bins (keep n_fft / sr there and it holds)
DB_OFFSET = 10.0 * math.log10(SAMPLE_RATE / N_FFT)
WIDTHS = (64, 128, 256, 512)


class ConvBlock(nn.Module):
    """``[conv3x3 -> BN -> ReLU] x 2`` then an optional 2x2 max pool (aiSFX ``ConvBlock``)."""

    def __init__(self, in_chs: int, out_chs: int, pool: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.pool = pool
        for conv in (self.conv1, self.conv2):
            nn.init.kaiming_uniform_(conv.weight, nonlinearity="leaky_relu")  # as aiSFX

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.max_pool2d(x, 2) if self.pool else x


class AisfxCNN(nn.Module):
    """aiSFX's 9-layer CNN with timm's backbone interface.

    Args:
        in_chans: Input channels (the first conv is adapted from aiSFX's 1 on loading).
        num_classes: Classifier outputs on the pooled embedding; 0 = none (``forward`` returns
            the 512-d aiSFX embedding when ``global_pool`` is set).
        global_pool: ``"meanmax"`` (aiSFX: mean over mel, max over time), ``"avg"``, or ``""``
            (``forward`` returns the feature map).
        drop_rate: Dropout before the classifier.
        drop_path_rate: Accepted for timm's interface; unused (no residual branches).
        db_input: The input is dB mel power (``MelFrontend(normalize="none", top_db=None)``):
            map it to aiSFX's ``log10(1e4 * P + 1) / 9.4578`` scale first.
        db_offset: dB added before that mapping (the filterbank gain, see ``DB_OFFSET``).
        freeze: Freeze the first ``freeze`` conv blocks (``True`` = all 4): no gradients, and
            their BatchNorms stay in eval mode (running stats kept) under ``train()``.
    """

    def __init__(
        self,
        in_chans: int = 1,
        num_classes: int = 0,
        global_pool: str = "meanmax",
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        db_input: bool = False,
        db_offset: float = DB_OFFSET,
        freeze: bool | int = False,
    ) -> None:
        super().__init__()
        if global_pool not in ("", "meanmax", "avg"):
            raise ValueError(f"aisfx_cnn: global_pool {global_pool!r} not in '', meanmax, avg")
        n_frozen = len(WIDTHS) if freeze is True else int(freeze)
        if not 0 <= n_frozen <= len(WIDTHS):
            raise ValueError(f"aisfx_cnn: freeze={freeze!r} must be a bool or 0..{len(WIDTHS)}")
        self.in_chans, self.db_input, self.db_offset = in_chans, db_input, db_offset
        self.num_classes, self.global_pool, self.drop_rate = num_classes, global_pool, drop_rate
        chs = (in_chans, *WIDTHS)
        self.blocks = nn.Sequential(
            *(ConvBlock(chs[i], chs[i + 1], pool=i < len(WIDTHS) - 1) for i in range(len(WIDTHS)))
        )
        self.num_features = WIDTHS[-1]
        self.feature_info = [
            dict(num_chs=w, reduction=2 ** min(i + 1, 3), module=f"blocks.{i}")
            for i, w in enumerate(WIDTHS)
        ]
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
        self.n_frozen = n_frozen
        for p in self.blocks[:n_frozen].parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> AisfxCNN:
        """Set train/eval mode; frozen blocks always stay in eval (their BN stats fixed)."""
        super().train(mode)
        for block in list(self.blocks)[: self.n_frozen]:
            block.eval()
        return self

    def to_aisfx_scale(self, x: torch.Tensor) -> torch.Tensor:
        """dB mel power -> ``log10(1e4 * 10**((x + db_offset) / 10) + 1) / 9.4578``."""
        ln10 = math.log(10.0)
        z = ln10 * ((x + self.db_offset) / 10.0 + math.log10(LOG_SCALE))
        return F.softplus(z) / (ln10 * NORM_MAX)  # log1p(exp(z)) without overflow

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, in_chans, n_mels, T]`` -> ``[B, 512, n_mels // 8, T // 8]``."""
        if self.db_input:
            x = self.to_aisfx_scale(x)
        return self.blocks(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool the feature map (aiSFX: mean over mel, max over time), dropout, classifier."""
        if self.global_pool == "meanmax":
            x = x.mean(dim=2).amax(dim=2)
        elif self.global_pool == "avg":
            x = x.mean(dim=(2, 3))
        x = F.dropout(x, self.drop_rate, self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        return self.forward_head(x) if self.global_pool else x

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = global_pool
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()


def aisfx_checkpoint_path() -> Path:
    """Path of ``checkpoint.pth`` inside the installed ``aisfx`` package (not imported)."""
    spec = importlib.util.find_spec(AISFX_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"aisfx_cnn pretrained=True reads its weights from the '{AISFX_PACKAGE}' package "
            f"(CC BY 4.0), which is not installed: {AISFX_PIP} (or set model.pretrained=false)"
        )
    path = Path(next(iter(spec.submodule_search_locations)), *AISFX_CHECKPOINT)
    if not path.is_file():
        raise FileNotFoundError(f"aisfx_cnn: the '{AISFX_PACKAGE}' package has no {path}")
    return path


def read_aisfx_checkpoint(path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The raw aiSFX ``CrossNet`` state dict (``torch.load(weights_only=True)``).

    The file pickles ``(state_dict, {dataset: (numpy int index, n_classes)})``; the numpy scalar
    and dtype classes are allow-listed for that load only.
    """
    import numpy as np

    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    safe = [(scalar, "numpy.core.multiarray.scalar"), np.dtype, type(np.dtype(np.int64))]
    with torch.serialization.safe_globals(safe):
        obj = torch.load(path or aisfx_checkpoint_path(), map_location="cpu", weights_only=True)
    return obj[0] if isinstance(obj, tuple | list) else obj


def load_aisfx_state_dict(
    model: AisfxCNN, state: dict[str, torch.Tensor] | None = None
) -> AisfxCNN:
    """Load aiSFX weights into ``model``'s conv blocks, strictly (classifiers are dropped).

    Args:
        model: The target network.
        state: aiSFX's state dict (``embedding_net.conv_blockN.*``: kernels are transposed to
            the [mel, time] layout; its per-dataset ``fc`` heads are dropped) or one of this
            module's (``blocks.N.*``); ``None`` = the installed package's checkpoint. The first
            conv is adapted to ``model.in_chans`` (timm ``adapt_input_conv``).
    """
    state = read_aisfx_checkpoint() if state is None else state
    prefix = "embedding_net.conv_block"
    out = {}
    for k, v in state.items():
        if k.startswith("blocks."):
            out[k] = v
        elif k.startswith(prefix):
            block, name = k[len(prefix) :].split(".", 1)  # "1", "conv1.weight"
            if name.startswith("conv"):
                v = v.transpose(-1, -2)  # [O, I, time, mel] -> [O, I, mel, time]
            out[f"blocks.{int(block) - 1}.{name}"] = v
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    missing, unexpected = sorted(set(own) - set(out)), sorted(set(out) - set(own))
    if missing or unexpected:
        raise RuntimeError(f"aisfx weights: missing {missing}, unexpected {unexpected}")
    first = "blocks.0.conv1.weight"
    out[first] = adapt_input_conv(model.in_chans, out[first], base_chans=out[first].shape[1])
    model.load_state_dict(out, strict=False)  # strict over the blocks; fc stays as built
    return model


def _create(
    name: str, pretrained: bool, pretrained_cfg_overlay: dict | None = None, **kwargs: Any
) -> AisfxCNN:
    for key in ("pretrained_cfg", "cache_dir"):
        kwargs.pop(key, None)  # timm factory arguments with no meaning here
    model = AisfxCNN(**kwargs)
    overlay = dict(pretrained_cfg_overlay or {})  # timm's way to pass a local weights file
    state, file = overlay.pop("state_dict", None), overlay.get("file")
    model.pretrained_cfg = {"architecture": name, "license": "cc-by-4.0", **overlay}
    if pretrained:  # a given state dict / file, else the installed aisfx package's checkpoint
        load_aisfx_state_dict(
            model, read_aisfx_checkpoint(file) if state is None and file else state
        )
    return model


@register_model
def aisfx_cnn(pretrained: bool = False, **kwargs: Any) -> AisfxCNN:
    """aiSFX CNN; input = aiSFX's own scaled log-mel (or any normalised image)."""
    return _create("aisfx_cnn", pretrained, **kwargs)


@register_model
def aisfx_cnn_db(pretrained: bool = False, **kwargs: Any) -> AisfxCNN:
    """aiSFX CNN taking ``MelFrontend(normalize="none", top_db=None)`` dB values."""
    kwargs.setdefault("db_input", True)
    return _create("aisfx_cnn_db", pretrained, **kwargs)
