"""Classification heads: backbone feature map [B, F, f, t] -> {"clip": [B, C], "frame": [B, t, C]}.

Heads are registered by name in ``HEADS`` (timm-style), so ``model.head=cnn`` is all a config
needs. Every head returns logits; the head maths runs in fp32 even under autocast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AttentionHead(nn.Module):
    """PANNs / BirdCLEF SED head: attention pooling of frame-wise class probabilities.

    mean over freq -> (max + avg pool1d over time) -> dropout -> fc + ReLU -> dropout ->
    ``att`` conv1d (tanh, softmax over time) and ``cla`` conv1d (frame logits);
    clip prob p = sum_t softmax(att) * sigmoid(cla), returned as ``logit(p)`` computed in log
    space (1 - p = sum_t softmax(att) * sigmoid(-cla)), so it is exact and keeps its gradient
    where p saturates in fp32 (a ``clamp(eps, 1 - eps)`` would zero it).

    Args:
        in_features: Backbone channels F.
        num_classes: Number of classes C.
        hidden: Width of the fc layer (``None`` = ``in_features``).
        dropout: Dropout probability before and after the fc layer.
        pool_kernel: Kernel of the max/avg smoothing over time (odd).
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden: int | None = None,
        dropout: float = 0.2,
        pool_kernel: int = 3,
    ) -> None:
        super().__init__()
        hidden = hidden or in_features
        self.pool_kernel = pool_kernel
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(in_features, hidden)
        self.att = nn.Conv1d(hidden, num_classes, kernel_size=1)
        self.cla = nn.Conv1d(hidden, num_classes, kernel_size=1)

    def forward(self, feat: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.autocast(device_type=feat.device.type, enabled=False):
            x = feat.float().mean(dim=2)  # [B, F, f, t] -> [B, F, t]
            pad = self.pool_kernel // 2
            x = F.max_pool1d(x, self.pool_kernel, 1, pad) + F.avg_pool1d(
                x, self.pool_kernel, 1, pad
            )
            x = self.drop(x)
            x = F.relu(self.fc(x.transpose(1, 2))).transpose(1, 2)  # [B, H, t]
            x = self.drop(x)
            log_att = torch.log_softmax(torch.tanh(self.att(x)), dim=-1)  # [B, C, t]
            cla = self.cla(x)  # [B, C, t] frame logits
            log_p = torch.logsumexp(log_att + F.logsigmoid(cla), dim=-1)  # [B, C] log p
            log_q = torch.logsumexp(log_att + F.logsigmoid(-cla), dim=-1)  # [B, C] log(1 - p)
            clip = log_p - log_q  # = logit(p)
        return {"clip": clip, "frame": cla.transpose(1, 2)}  # [B, C], [B, t, C]


class CNNHead(nn.Module):
    """Global-pool head: (adaptive avg + max pool) -> dropout -> linear.

    ``frame`` applies the same linear layer to the freq-mean features of each time step, so the
    model contract (clip and frame logits) holds for plain CNN classifiers too.

    Args:
        in_features: Backbone channels F.
        num_classes: Number of classes C.
        dropout: Dropout probability before the linear layer.
    """

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, feat: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.autocast(device_type=feat.device.type, enabled=False):
            feat = feat.float()
            pooled = 0.5 * (feat.mean(dim=(2, 3)) + feat.amax(dim=(2, 3)))  # timm avgmax, [B, F]
            clip = self.fc(self.drop(pooled))  # [B, C]
            frame = self.fc(self.drop(feat.mean(dim=2).transpose(1, 2)))  # [B, t, F] -> [B, t, C]
        return {"clip": clip, "frame": frame}


HEADS: dict[str, type[nn.Module]] = {"attention": AttentionHead, "cnn": CNNHead}


def create_head(name: str, in_features: int, num_classes: int, **kwargs) -> nn.Module:
    """Build a registered head by name.

    Args:
        name: Key of ``HEADS``.
        in_features: Backbone channels F.
        num_classes: Number of classes C.
        **kwargs: Passed to the head class.

    Returns:
        The head module.
    """
    if name not in HEADS:
        raise ValueError(f"model.head: unknown head {name!r}; choose one of {sorted(HEADS)}")
    return HEADS[name](in_features, num_classes, **kwargs)
