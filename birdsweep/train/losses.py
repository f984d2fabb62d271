"""SED training losses (config group ``loss``).

The loss sees the model's two heads and mixes them::

    clip_weight * L(out["clip"]) + frame_weight * L(max over frames of out["frame"])

with ``L`` one of ``bce`` (binary cross-entropy), ``focal`` (BCE focal) or ``ce`` (softmax
cross-entropy). It also carries two settings the Dataset reads when it builds targets:
``secondary_target`` (target value of secondary labels) and ``rating_weighted`` (per-sample
weight from the recording's rating).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

KINDS = ("bce", "focal", "ce")
CE_TARGETS = ("primary", "soft")
_EPS = 1e-8  # guards divisions by a weight sum or a target-row sum


def focal_bce(
    logits: torch.Tensor, target: torch.Tensor, gamma: float, alpha: float | None
) -> torch.Tensor:
    """Element-wise BCE focal loss (Lin et al. 2017) that also accepts soft targets.

    The modulating factor is ``|target - sigmoid(logits)| ** gamma``, which equals the usual
    ``(1 - p_t) ** gamma`` for 0/1 targets.

    Args:
        logits: float32 logits, any shape.
        target: float32 targets in [0, 1], same shape.
        gamma: focusing exponent (0 gives plain BCE).
        alpha: weight of positives in [0, 1] (negatives get ``1 - alpha``), or ``None``.

    Returns:
        Element-wise loss, same shape as ``logits``.
    """
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    if gamma:
        err = (target - torch.sigmoid(logits)).abs().clamp_min(_EPS)
        bce = bce * err.pow(gamma)
    if alpha is not None:
        bce = bce * (alpha * target + (1.0 - alpha) * (1.0 - target))
    return bce


def pairwise_auc_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Smooth per-class ROC-AUC surrogate over the batch (RankNet's logistic pair loss).

    For each class, every pair of a positive row (target >= 0.5) and a negative row (target
    == 0) costs ``softplus(s_neg - s_pos)``; the pairs of a class are averaged, then the classes
    that have a pair. Softmax CE compares the classes of one row; this compares the rows of one
    class, which is what the metric ranks.

    Args:
        logits: float32 [B, C].
        target: float32 [B, C] in [0, 1].

    Returns:
        Scalar loss (0, with a gradient path, when no class has a pair).
    """
    pos = (target >= 0.5).to(logits.dtype)
    neg = (target <= 0.0).to(logits.dtype)
    pairs = pos[:, None, :] * neg[None, :, :]  # [i positive, j negative, C]
    gap = logits[None, :, :] - logits[:, None, :]  # [i, j, C] = s_j - s_i
    n = pairs.sum(dim=(0, 1))  # [C]
    per_class = (F.softplus(gap) * pairs).sum(dim=(0, 1)) / n.clamp_min(1.0)  # 0 without pairs
    return per_class.sum() / (n > 0).sum().clamp_min(1)


class SEDLoss(nn.Module):
    """Loss on the clip and frame heads of an SED model.

    Args:
        kind: ``"bce"``, ``"focal"`` or ``"ce"``.
        clip_weight: weight of the loss on ``out["clip"]``.
        frame_weight: weight of the loss on the max over frames of ``out["frame"]``; 0 ignores
            the frame head.
        label_smoothing: bce/focal: positives -> ``1 - ls/2``, negatives -> ``ls/2``; ce: mixes
            the target distribution with uniform (as ``torch.nn.CrossEntropyLoss``).
        secondary_target: target value the Dataset gives secondary labels (0 ignores them).
        rating_weighted: weight samples by the ``weight`` the Dataset derives from ratings,
            normalised by the batch mean; False ignores ``weight``.
        focal_gamma: focusing exponent of ``focal``.
        focal_alpha: positive-class weight of ``focal`` in [0, 1], or ``None`` for none.
        ce_target: ``ce`` only: ``"primary"`` (class = argmax of the target row) or ``"soft"``
            (target row normalised to sum 1, so mixed clips share the mass).
        bce_weight: ``ce`` only: adds ``bce_weight`` times the BCE summed over classes. Softmax
            CE fixes a sample's logits only up to a constant, while each class's AUC ranks that
            class's logit across windows; the BCE term trains those absolute values (a class
            scored on another class's look-alike call is pushed down even once the right class
            wins the softmax). Rows with no label count for it (as negatives of every class).
        auc_weight: adds ``auc_weight`` times :func:`pairwise_auc_loss` of the same head
            outputs: each class's positives ranked above its negatives across the batch.
    """

    def __init__(
        self,
        kind: str = "bce",
        clip_weight: float = 0.5,
        frame_weight: float = 0.5,
        label_smoothing: float = 0.0,
        secondary_target: float = 0.5,
        rating_weighted: bool = False,
        focal_gamma: float = 2.0,
        focal_alpha: float | None = None,
        ce_target: str = "primary",
        bce_weight: float = 0.0,
        auc_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"loss.kind: expected one of {KINDS}, got {kind!r}")
        if ce_target not in CE_TARGETS:
            raise ValueError(f"loss.ce_target: expected one of {CE_TARGETS}, got {ce_target!r}")
        if clip_weight < 0 or frame_weight < 0 or clip_weight + frame_weight <= 0:
            raise ValueError(
                f"loss.clip_weight / loss.frame_weight: need non-negative weights with a "
                f"positive sum, got {clip_weight} / {frame_weight}"
            )
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"loss.label_smoothing: must lie in [0, 1), got {label_smoothing}")
        if not 0.0 <= secondary_target <= 1.0:
            raise ValueError(f"loss.secondary_target: must lie in [0, 1], got {secondary_target}")
        if bce_weight < 0 or (bce_weight and kind != "ce"):
            raise ValueError(
                f"loss.bce_weight: a non-negative weight, used with kind=ce only; got "
                f"{bce_weight} with kind={kind!r}"
            )
        if auc_weight < 0:
            raise ValueError(f"loss.auc_weight: a non-negative weight, got {auc_weight}")
        if focal_alpha is not None and not 0.0 <= focal_alpha <= 1.0:
            raise ValueError(f"loss.focal_alpha: must lie in [0, 1] or be null, got {focal_alpha}")
        self.kind = kind
        self.clip_weight = float(clip_weight)
        self.frame_weight = float(frame_weight)
        self.label_smoothing = float(label_smoothing)
        self.secondary_target = float(secondary_target)
        self.rating_weighted = bool(rating_weighted)
        self.focal_gamma = float(focal_gamma)
        self.focal_alpha = None if focal_alpha is None else float(focal_alpha)
        self.ce_target = ce_target
        self.bce_weight = float(bce_weight)
        self.auc_weight = float(auc_weight)

    def per_sample(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Loss per sample for one head.

        Args:
            logits: float32 [B, C].
            target: float32 [B, C] in [0, 1].

        Returns:
            ``(loss [B], valid [B] bool)``; ``ce`` marks rows without any label invalid.
        """
        ls = self.label_smoothing
        valid = torch.ones(logits.shape[0], dtype=torch.bool, device=logits.device)
        if self.kind in ("bce", "focal"):
            t = target * (1.0 - ls) + 0.5 * ls if ls else target
            if self.kind == "bce":
                el = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
            else:
                el = focal_bce(logits, t, self.focal_gamma, self.focal_alpha)
            return el.mean(dim=1), valid
        row_sum = target.sum(dim=1)
        valid = row_sum > 0
        if self.ce_target == "primary":
            ce = F.cross_entropy(logits, target.argmax(dim=1), reduction="none", label_smoothing=ls)
        else:
            q = target / row_sum.clamp_min(_EPS)[:, None]
            if ls:
                q = q * (1.0 - ls) + ls / logits.shape[1]
            ce = -(q * F.log_softmax(logits, dim=1)).sum(dim=1)
        if not self.bce_weight:
            return ce, valid
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(dim=1)
        return torch.where(valid, ce, 0.0) + self.bce_weight * bce, torch.ones_like(valid)

    def _reduce(
        self, loss: torch.Tensor, valid: torch.Tensor, weight: torch.Tensor | None
    ) -> torch.Tensor:
        w = valid.float()
        if self.rating_weighted and weight is not None:
            w = w * weight.float().clamp_min(0.0)
        # == mean of loss * weight / mean(weight) over the valid rows
        return (loss * w).sum() / w.sum().clamp_min(_EPS)

    def forward(
        self,
        out: dict[str, torch.Tensor],
        target: torch.Tensor,
        weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Weighted SED loss for one batch (computed in float32, outside autocast).

        Args:
            out: model outputs ``{"clip": [B, C] logits, "frame": [B, T', C] logits}``.
            target: [B, C] targets in [0, 1].
            weight: [B] per-sample weights (used when ``rating_weighted``).

        Returns:
            Scalar loss.
        """
        clip = out["clip"]
        with torch.autocast(device_type=clip.device.type, enabled=False):
            target = target.float()
            total = clip.new_zeros((), dtype=torch.float32)
            if self.clip_weight:
                total = total + self.clip_weight * self._head_loss(clip.float(), target, weight)
            if self.frame_weight:
                if out.get("frame") is None:
                    raise KeyError(
                        "loss.frame_weight > 0 but the model returned no 'frame' logits; "
                        "set loss.frame_weight=0 for a model without a frame head"
                    )
                frame_max = out["frame"].float().amax(dim=1)  # [B, T', C] -> [B, C]
                total = total + self.frame_weight * self._head_loss(frame_max, target, weight)
        return total

    def _head_loss(
        self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None
    ) -> torch.Tensor:
        loss = self._reduce(*self.per_sample(logits, target), weight)
        if self.auc_weight:
            loss = loss + self.auc_weight * pairwise_auc_loss(logits, target)
        return loss

    def extra_repr(self) -> str:
        return (
            f"kind={self.kind!r}, clip_weight={self.clip_weight}, "
            f"frame_weight={self.frame_weight}, label_smoothing={self.label_smoothing}, "
            f"secondary_target={self.secondary_target}, rating_weighted={self.rating_weighted}, "
            f"bce_weight={self.bce_weight}, auc_weight={self.auc_weight}"
        )
