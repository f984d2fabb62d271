"""Batch transforms on spectrograms ``[B, ch, M, T]`` (mel bins M, frames T), on their device.

Same calling convention as :mod:`birdsweep.augment.wave`:
``t(spec, target, weight) -> (spec, target, weight)``, per-sample probability ``p``, random
numbers from torch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from birdsweep.augment._common import (
    as_range,
    check_p,
    coin,
    uniform,
)

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _nothing_to_do(spec: torch.Tensor, p: float, name: str) -> bool:
    """True when a masking/warping transform leaves the batch as is; rejects non-4-D specs."""
    if p == 0.0 or spec.shape[0] == 0:
        return True
    if spec.dim() != 4:
        raise ValueError(f"{name}: expected spec [B, ch, M, T], got {tuple(spec.shape)}")
    return False


def _band_mask(b: int, size: int, param: int, n_masks: int, device: torch.device) -> torch.Tensor:
    """Bool [b, size]: union of ``n_masks`` bands per row, width ~ U{0..param}, random start."""
    if n_masks <= 0 or param <= 0:
        return torch.zeros(b, size, dtype=torch.bool, device=device)
    width = (torch.rand(b, n_masks, device=device) * (min(param, size) + 1)).long()
    start = (torch.rand(b, n_masks, device=device) * (size - width + 1)).long()
    pos = torch.arange(size, device=device)
    inside = (pos >= start[..., None]) & (pos < (start + width)[..., None])  # [b, n, size]
    return inside.any(dim=1)


class SpecAugment:
    """Time and frequency masking (Park et al. 2019), vectorised over the batch.

    Args:
        time_mask_param: widest time mask, in frames (width drawn from 0..param).
        freq_mask_param: widest frequency mask, in mel bins.
        n_time_masks: time masks per sample.
        n_freq_masks: frequency masks per sample.
        p: probability that a sample is masked.
        fill: ``"mean"`` (each sample's own mean, safe for any spectrogram scaling) or a number.
    """

    def __init__(
        self,
        time_mask_param: int = 30,
        freq_mask_param: int = 16,
        n_time_masks: int = 2,
        n_freq_masks: int = 2,
        p: float = 0.5,
        fill: str | float = "mean",
    ) -> None:
        if not (isinstance(fill, int | float) or fill == "mean"):
            raise ValueError(f"SpecAugment.fill: expected 'mean' or a number, got {fill!r}")
        self.time_mask_param = int(time_mask_param)
        self.freq_mask_param = int(freq_mask_param)
        self.n_time_masks = int(n_time_masks)
        self.n_freq_masks = int(n_freq_masks)
        self.p = check_p(p, "SpecAugment.p")
        self.fill = fill

    def __call__(self, spec: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> Batch:
        """Return ``(masked spec, target, weight)``; shapes and dtypes unchanged."""
        if _nothing_to_do(spec, self.p, "SpecAugment"):
            return spec, target, weight
        b, _, m, t = spec.shape
        dev = spec.device
        apply = coin(b, self.p, dev)
        fmask = _band_mask(b, m, self.freq_mask_param, self.n_freq_masks, dev)  # [b, M]
        tmask = _band_mask(b, t, self.time_mask_param, self.n_time_masks, dev)  # [b, T]
        mask = (fmask[:, None, :, None] | tmask[:, None, None, :]) & apply[:, None, None, None]
        if self.fill == "mean":
            value = spec.mean(dim=(1, 2, 3), keepdim=True)
        else:
            value = torch.tensor(float(self.fill), dtype=spec.dtype, device=dev)
        return torch.where(mask, value, spec), target, weight

    def __repr__(self) -> str:
        return (
            f"SpecAugment(time_mask_param={self.time_mask_param}, "
            f"freq_mask_param={self.freq_mask_param}, n_time_masks={self.n_time_masks}, "
            f"n_freq_masks={self.n_freq_masks}, p={self.p}, fill={self.fill!r})"
        )


class SpecWarp:
    """Small random pitch shifts and tempo changes of each spectrogram (bilinear resampling).

    A call of one species varies between individuals and bouts in pitch and tempo; with few
    training clips a class is seen at only a few of them. On the mel axis (log-like above
    ~1 kHz) a pitch shift is close to a translation, so each sample is moved by a random
    fraction of a mel bin and stretched in time about its centre; edges repeat the border.

    With ``local_tempo > 0`` the tempo also varies along the clip (SpecAugment's time warp,
    generalised): the crop is cut into ``segments`` equal parts whose durations are scaled by
    independent factors in ``1 ± local_tempo`` (renormalised, so the crop keeps its length), as
    syllables and gaps of one song vary in length between bouts. With ``local_pitch > 0`` the
    pitch shift bends along the clip too: an extra offset of up to ``± local_pitch`` bins at each
    segment boundary, linear in between, as the pitch contour of a call varies between singers.

    Args:
        max_shift_bins: largest pitch shift, in mel bins up or down (at 64 mels from 50 Hz to
            14 kHz one bin is ~6 % of frequency above 1 kHz).
        time_stretch: ``[min, max]`` time-scale factor (> 1 slows the sound down).
        p: probability that a sample is warped.
        local_tempo: largest relative change of one segment's tempo (0 = one tempo per crop).
        segments: number of segments of the local tempo and pitch changes.
        local_pitch: largest extra pitch offset, mel bins, at each segment boundary (0 = one
            shift per crop).
    """

    def __init__(
        self,
        max_shift_bins: float = 0.75,
        time_stretch: float | tuple[float, float] = (0.8, 1.25),
        p: float = 0.5,
        local_tempo: float = 0.0,
        segments: int = 4,
        local_pitch: float = 0.0,
    ) -> None:
        if max_shift_bins < 0:
            raise ValueError(f"SpecWarp.max_shift_bins: must be >= 0, got {max_shift_bins!r}")
        self.max_shift_bins = float(max_shift_bins)
        self.time_stretch = as_range(time_stretch, "SpecWarp.time_stretch")
        if self.time_stretch[0] <= 0:
            raise ValueError(f"SpecWarp.time_stretch: factors must be > 0, got {time_stretch!r}")
        self.p = check_p(p, "SpecWarp.p")
        if not 0.0 <= local_tempo < 1.0:
            raise ValueError(f"SpecWarp.local_tempo: must be in [0, 1), got {local_tempo!r}")
        if int(segments) < 1:
            raise ValueError(f"SpecWarp.segments: must be >= 1, got {segments!r}")
        if local_pitch < 0:
            raise ValueError(f"SpecWarp.local_pitch: must be >= 0, got {local_pitch!r}")
        self.local_tempo = float(local_tempo)
        self.segments = int(segments)
        self.local_pitch = float(local_pitch)

    @staticmethod
    def _along_time(knots: torch.Tensor, t: int) -> torch.Tensor:
        """``[b, t]``: values at ``k + 1`` equally spaced knots ``[b, k + 1]`` (first and last
        at the crop's ends), linearly interpolated at the centres of ``t`` frames."""
        b, k = knots.shape[0], knots.shape[1] - 1
        x = (torch.arange(t, device=knots.device, dtype=torch.float32) + 0.5) * (2.0 / t) - 1.0
        pos = (x + 1.0) * (k / 2.0)
        seg = pos.floor().clamp(0, k - 1).long()
        frac = (pos - seg).expand(b, t)
        lo, hi = knots[:, seg], knots[:, seg + 1]
        return lo + (hi - lo) * frac

    def _local_time(self, b: int, t: int, dev: torch.device) -> torch.Tensor:
        """``[b, t]`` input time coordinates in [-1, 1] of the output frames: a random monotone
        piecewise-linear map (fixed end points) with per-segment tempo ``1 ± local_tempo``."""
        dur = 1.0 + self.local_tempo * (2.0 * torch.rand(b, self.segments, device=dev) - 1.0)
        knots = torch.cat([torch.zeros(b, 1, device=dev), dur.cumsum(dim=1)], dim=1)
        return self._along_time(2.0 * knots / knots[:, -1:] - 1.0, t)

    def _local_pitch(self, b: int, t: int, dev: torch.device) -> torch.Tensor:
        """``[b, t]`` extra pitch offset (mel bins) of each output frame: random offsets in
        ``± local_pitch`` at the segment boundaries, linear in between."""
        knots = uniform(b * (self.segments + 1), -self.local_pitch, self.local_pitch, dev)
        return self._along_time(knots.view(b, self.segments + 1), t)

    def __call__(self, spec: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> Batch:
        """Return ``(warped spec, target, weight)``; shapes and dtypes unchanged."""
        if _nothing_to_do(spec, self.p, "SpecWarp"):
            return spec, target, weight
        b, _, m, _ = spec.shape
        dev = spec.device
        apply = coin(b, self.p, dev)
        shift = uniform(b, -self.max_shift_bins, self.max_shift_bins, dev)
        stretch = uniform(b, *self.time_stretch, dev)
        t = spec.shape[-1]
        local = self._local_time(b, t, dev) if self.local_tempo > 0 else None
        bend = self._local_pitch(b, t, dev) if self.local_pitch > 0 else None
        idx = apply.nonzero().squeeze(1)  # only the selected samples are resampled
        n = len(idx)
        if n == 0:
            return spec, target, weight
        # affine_grid maps output to input coordinates in [-1, 1]: x = time, y = mel bin
        theta = torch.zeros(n, 2, 3, device=dev)
        theta[:, 0, 0] = 1.0 / stretch[idx]
        theta[:, 1, 1] = 1.0
        theta[:, 1, 2] = -2.0 * shift[idx] / m  # content moves up by `shift` bins
        grid = F.affine_grid(theta, [n, *spec.shape[1:]], align_corners=False)
        if local is not None or bend is not None:  # [n, M, T, 2]: per-frame coordinates
            x, y = grid[..., 0], grid[..., 1]
            if local is not None:
                x = (local[idx] / stretch[idx, None])[:, None, :].expand(n, m, -1)
            if bend is not None:
                y = y - (2.0 / m) * bend[idx][:, None, :]
            grid = torch.stack([x, y], dim=-1)
        warped = F.grid_sample(
            spec[idx].float(), grid, mode="bilinear", padding_mode="border", align_corners=False
        )
        out = spec.clone()
        out[idx] = warped.to(spec.dtype)
        return out, target, weight

    def __repr__(self) -> str:
        return (
            f"SpecWarp(max_shift_bins={self.max_shift_bins}, "
            f"time_stretch={list(self.time_stretch)}, p={self.p}, "
            f"local_tempo={self.local_tempo}, segments={self.segments}, "
            f"local_pitch={self.local_pitch})"
        )
