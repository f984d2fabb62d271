"""Batch transforms on waveforms ``[B, N]`` that run on the batch's device.

Every transform is a small callable ``t(wave, target, weight) -> (wave, target, weight)`` with a
per-sample probability ``p``. Random numbers come from torch on the tensor's device, so the loop's
``torch.manual_seed`` makes them reproducible. Noise transforms leave ``target`` and ``weight``
unchanged; mixup combines them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from birdsweep.augment._common import (
    as_range,
    beta,
    check_p,
    coin,
    expand_like,
    partner,
    uniform,
)
from birdsweep.data.audio import load_audio

log = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]

_EPS = 1e-10  # power below this (about -100 dBFS) counts as silence: nothing is mixed in


def _power(x: torch.Tensor) -> torch.Tensor:
    """Mean power per sample of ``x`` [B, N] -> [B] (float32, no [B, N] temporary)."""
    return torch.linalg.vector_norm(x, dim=-1, dtype=torch.float32).pow(2) / x.shape[-1]


def _snr_scale(
    p_sig: torch.Tensor, p_noise: torch.Tensor, snr_db: torch.Tensor, apply: torch.Tensor
) -> torch.Tensor:
    """Per-sample factor on the noise so that ``p_sig / (scale^2 p_noise) = 10^(snr/10)``."""
    ok = apply & (p_sig > _EPS) & (p_noise > _EPS)
    scale = torch.sqrt(p_sig / (p_noise.clamp_min(_EPS) * torch.pow(10.0, snr_db / 10.0)))
    return torch.where(ok, scale, torch.zeros_like(scale))


def mix_at_snr(
    wave: torch.Tensor, noise: torch.Tensor, snr_db: torch.Tensor, apply: torch.Tensor
) -> torch.Tensor:
    """Add ``noise`` to ``wave`` so that signal/noise power equals ``snr_db`` per sample.

    Args:
        wave: clean batch [B, N].
        noise: noise [B, N] (any level; it is rescaled).
        snr_db: target SNR per sample [B] in dB.
        apply: bool [B]; samples where False are returned unchanged.

    Returns:
        Noisy batch [B, N] with ``wave``'s dtype. Silent signals or silent noise get no noise.
    """
    scale = _snr_scale(_power(wave), _power(noise), snr_db, apply)
    return torch.addcmul(wave.float(), scale[:, None], noise.float()).to(wave.dtype)


def add_noise(
    wave: torch.Tensor,
    apply: torch.Tensor,
    snr_db: torch.Tensor,
    make_noise: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Mix noise into the rows where ``apply`` is True, making noise only where needed on CPU.

    Args:
        wave: batch [B, N].
        apply: bool [B].
        snr_db: target SNR per sample [B].
        make_noise: ``rows (long [R]) -> noise [R, N]``.

    Returns:
        Batch [B, N]. On CPU only the selected rows are computed (noise generation is the
        cost there); on accelerators all rows are, so the mask never forces a device sync.
    """
    if wave.device.type != "cpu":
        rows = torch.arange(wave.shape[0], device=wave.device)
        return mix_at_snr(wave, make_noise(rows), snr_db, apply)
    rows = apply.nonzero().squeeze(1)
    if rows.numel() == 0:
        return wave
    noise = make_noise(rows)
    scale = _snr_scale(_power(wave)[rows], _power(noise), snr_db[rows], apply[rows])
    return wave.index_add(0, rows, (noise * scale[:, None]).to(wave.dtype))


def colored_noise(exponent: torch.Tensor, n: int) -> torch.Tensor:
    """Unit-power noise with power spectrum ``1 / f**exponent`` (0 white, 1 pink, 2 brown).

    Args:
        exponent: spectral exponent per row [B] (its device is used).
        n: samples per row.

    Returns:
        float32 noise [B, n], each row with mean power 1 and no DC.
    """
    white = torch.randn(exponent.shape[0], n, device=exponent.device)
    spec = torch.fft.rfft(white, dim=-1)
    freqs = torch.arange(spec.shape[-1], device=exponent.device, dtype=torch.float32)
    shaping = freqs.clamp_min(1.0).pow(-exponent[:, None] / 2.0)  # amplitude ~ f^(-e/2)
    shaping[:, 0] = 0.0  # drop DC
    noise = torch.fft.irfft(spec * shaping, n=n, dim=-1)
    return noise / _power(noise).clamp_min(_EPS).sqrt()[:, None]


class ColoredNoise:
    """Add white / pink / brown noise at a random SNR.

    Args:
        snr_db: SNR in dB, a number or ``[min, max]`` drawn uniformly per sample.
        p: probability that a sample gets noise.
        exponent: spectral exponent, a number or ``[min, max]`` (0 white, 1 pink, 2 brown).
    """

    def __init__(
        self,
        snr_db: float | Sequence[float] = (10.0, 30.0),
        p: float = 0.5,
        exponent: float | Sequence[float] = (0.0, 2.0),
    ) -> None:
        self.snr_db = as_range(snr_db, "ColoredNoise.snr_db")
        self.exponent = as_range(exponent, "ColoredNoise.exponent")
        self.p = check_p(p, "ColoredNoise.p")

    def __call__(self, wave: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> Batch:
        """Return ``(noisy wave, target, weight)``; shapes and dtypes unchanged."""
        if self.p == 0.0 or wave.shape[0] == 0:
            return wave, target, weight
        b, n = wave.shape
        dev = wave.device
        apply = coin(b, self.p, dev)
        snr = uniform(b, *self.snr_db, dev)
        exponent = uniform(b, *self.exponent, dev)
        noisy = add_noise(wave, apply, snr, lambda rows: colored_noise(exponent[rows], n))
        return noisy, target, weight

    def __repr__(self) -> str:
        return f"ColoredNoise(snr_db={self.snr_db}, p={self.p}, exponent={self.exponent})"


def load_noise_dirs(dirs: Sequence[str | Path], sample_rate: int) -> list[np.ndarray]:
    """Decode every audio file under ``dirs`` (recursively) to mono float32 at ``sample_rate``
    with :func:`birdsweep.data.audio.load_audio`.

    Args:
        dirs: folders to search; formats are those soundfile can read (wav, flac, ogg, mp3, ...).
        sample_rate: target rate; other rates are resampled.

    Returns:
        One 1-D float32 array per file, in sorted path order.

    Raises:
        AudioError: a file that cannot be used (unreadable, empty, NaN samples, truncated),
            named in the message.
    """
    exts = {f".{k.lower()}" for k in sf.available_formats()}
    clips: list[np.ndarray] = []
    for d in dirs:
        root = Path(d).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(
                f"aug BackgroundNoise.noise_dirs: {root} is not a folder; point noise_dirs at "
                "folders of audio files or set it to []"
            )
        files = sorted(f for f in root.rglob("*") if f.suffix.lower() in exts and f.is_file())
        if not files:
            log.warning("BackgroundNoise: no audio files under %s", root)
        clips.extend(load_audio(f, sample_rate) for f in files)
        log.info("BackgroundNoise: %d noise files from %s", len(files), root)
    return clips


class BackgroundNoise:
    """Mix a random crop of a real noise recording into each sample at a random SNR.

    Noise comes from the clips given to :meth:`bind_noise` (the loop passes decoded
    ``train_soundscapes``) plus every audio file under ``noise_dirs``. A clip shorter than the
    batch is tiled. When no noise is available it falls back to coloured noise (logged once).

    Args:
        snr_db: SNR in dB, a number or ``[min, max]`` drawn uniformly per sample.
        p: probability that a sample gets noise.
        noise_dirs: extra folders of noise recordings, decoded once with soundfile.
        max_bank_seconds: cap on the total noise kept in memory (and on the device); a random
            subset of clips is kept beyond it. ``None`` keeps everything.
        fallback_exponent: spectral exponent range of the coloured-noise fallback.
        suppress_calls: a callable ``(audio, sample_rate) -> audio`` run once on every bound
            clip, e.g. :class:`birdsweep.augment.background.CallSuppressor`, which turns the
            calls in soundscapes down so that no unlabelled call of a listed species is mixed
            into a clip of another; ``None`` mixes the recordings as they are.
    """

    def __init__(
        self,
        snr_db: float | Sequence[float] = (-5.0, 20.0),
        p: float = 0.8,
        noise_dirs: Sequence[str] = (),
        max_bank_seconds: float | None = None,
        fallback_exponent: float | Sequence[float] = (0.0, 2.0),
        suppress_calls: Callable[[np.ndarray, int], np.ndarray] | None = None,
    ) -> None:
        self.snr_db = as_range(snr_db, "BackgroundNoise.snr_db")
        self.p = check_p(p, "BackgroundNoise.p")
        self.noise_dirs = [str(d) for d in noise_dirs]
        self.max_bank_seconds = max_bank_seconds
        self.suppress_calls = suppress_calls
        self._fallback = ColoredNoise(snr_db=self.snr_db, p=self.p, exponent=fallback_exponent)
        self._dir_clips: dict[int, list[np.ndarray]] = {}  # sample_rate -> decoded noise_dirs
        self._bank: torch.Tensor | None = None  # all clips concatenated, float32 [total]
        self._starts: torch.Tensor | None = None  # [K] start of each clip in the bank
        self._lens: torch.Tensor | None = None  # [K] length of each clip
        self._on_device: dict[torch.device, tuple[torch.Tensor, ...]] = {}
        self._warned = False

    @property
    def num_clips(self) -> int:
        """Number of noise clips currently bound."""
        return 0 if self._lens is None else int(self._lens.numel())

    def bind_noise(self, noise_clips: Sequence[np.ndarray], sample_rate: int) -> None:
        """Set the noise bank from decoded clips plus the files under ``noise_dirs``.

        Args:
            noise_clips: mono float32 arrays at ``sample_rate`` (may be empty).
            sample_rate: sample rate of the batches this transform will see.
        """
        if sample_rate not in self._dir_clips:
            self._dir_clips[sample_rate] = load_noise_dirs(self.noise_dirs, sample_rate)
        clips = [np.asarray(c, dtype=np.float32).reshape(-1) for c in noise_clips]
        clips = [c for c in clips + self._dir_clips[sample_rate] if c.size > 0]
        if self.max_bank_seconds is not None:
            clips = self._cap(clips, int(self.max_bank_seconds * sample_rate))
        if self.suppress_calls is not None and clips:
            clips = [self.suppress_calls(c, sample_rate) for c in clips]
            log.info("BackgroundNoise: calls turned down in %d noise clips", len(clips))
        self._on_device = {}
        if not clips:
            self._bank = self._starts = self._lens = None
            return
        lens = torch.tensor([c.size for c in clips], dtype=torch.long)
        self._starts = torch.cumsum(lens, 0) - lens
        self._lens = lens
        self._bank = torch.from_numpy(np.concatenate(clips))
        log.info(
            "BackgroundNoise: %d noise clips, %.1f s in total",
            len(clips),
            self._bank.numel() / sample_rate,
        )

    @staticmethod
    def _cap(clips: list[np.ndarray], max_samples: int) -> list[np.ndarray]:
        """Keep a random subset of ``clips`` (torch RNG) holding at most ``max_samples``."""
        if sum(c.size for c in clips) <= max_samples:
            return clips
        kept, total = [], 0
        for i in torch.randperm(len(clips)).tolist():
            if total >= max_samples:
                break
            clip = clips[i][: max_samples - total]
            kept.append(clip)
            total += clip.size
        log.info("BackgroundNoise: noise bank capped at %d samples (max_bank_seconds)", total)
        return kept

    def _device_bank(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        if device not in self._on_device:
            assert self._bank is not None and self._starts is not None and self._lens is not None
            self._on_device[device] = (
                self._bank.to(device),
                self._starts.to(device),
                self._lens.to(device),
            )
        return self._on_device[device]

    def crop(
        self, b: int, n: int, device: torch.device, gather: bool | None = None
    ) -> torch.Tensor:
        """Draw ``b`` random noise crops of ``n`` samples from the bound bank.

        Args:
            b: number of crops.
            n: samples per crop; clips shorter than ``n`` are tiled from a random phase.
            device: where the crops live.
            gather: one vectorised gather (default on accelerators) or per-row slices (default
                on CPU, where a [b, n] index tensor costs more than the copies).

        Returns:
            float32 noise [b, n].
        """
        bank, starts, lens = self._device_bank(device)
        k = torch.randint(0, lens.numel(), (b,), device=device)
        length = lens[k]
        # offset range: [0, L - n] when the clip is long enough, else any phase in [0, L)
        high = torch.where(length >= n, length - n + 1, length)
        off = (torch.rand(b, device=device) * high).long().clamp_max(high - 1)
        if gather if gather is not None else device.type != "cpu":
            pos = (off[:, None] + torch.arange(n, device=device)[None, :]) % length[:, None]
            return bank[starts[k][:, None] + pos]
        rows = []
        for s, length_i, o in zip(starts[k].tolist(), length.tolist(), off.tolist(), strict=True):
            clip = bank[s : s + length_i]
            if o + n <= length_i:
                rows.append(clip[o : o + n])
            else:
                reps = (o + n + length_i - 1) // length_i
                rows.append(clip.repeat(reps)[o : o + n])
        return torch.stack(rows)

    def __call__(self, wave: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> Batch:
        """Return ``(noisy wave, target, weight)``; shapes and dtypes unchanged."""
        if self.p == 0.0 or wave.shape[0] == 0:
            return wave, target, weight
        if self._bank is None:
            if not self._warned:
                log.warning(
                    "BackgroundNoise: no noise bound (no train_soundscapes and no noise_dirs); "
                    "using coloured noise instead"
                )
                self._warned = True
            return self._fallback(wave, target, weight)
        b, n = wave.shape
        dev = wave.device
        apply = coin(b, self.p, dev)
        snr = uniform(b, *self.snr_db, dev)
        noisy = add_noise(wave, apply, snr, lambda rows: self.crop(rows.numel(), n, dev))
        return noisy, target, weight

    def __repr__(self) -> str:
        return (
            f"BackgroundNoise(snr_db={self.snr_db}, p={self.p}, noise_dirs={self.noise_dirs}, "
            f"clips={self.num_clips}, suppress_calls={self.suppress_calls})"
        )


class Gain:
    """Scale each sample by a random gain in dB.

    Args:
        min_db: lowest gain in dB.
        max_db: highest gain in dB.
        p: probability that a sample is scaled.
    """

    def __init__(self, min_db: float = -6.0, max_db: float = 6.0, p: float = 0.5) -> None:
        self.min_db, self.max_db = as_range((min_db, max_db), "Gain.min_db/max_db")
        self.p = check_p(p, "Gain.p")

    def __call__(self, wave: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> Batch:
        """Return ``(scaled wave, target, weight)``."""
        if self.p == 0.0 or wave.shape[0] == 0:
            return wave, target, weight
        b, dev = wave.shape[0], wave.device
        db = torch.where(coin(b, self.p, dev), uniform(b, self.min_db, self.max_db, dev), 0.0)
        gain = torch.pow(10.0, db / 20.0)
        return (wave.float() * expand_like(gain, wave)).to(wave.dtype), target, weight

    def __repr__(self) -> str:
        return f"Gain(min_db={self.min_db}, max_db={self.max_db}, p={self.p})"


class WaveMixup:
    """Mix each sample with another sample of the batch (a random partner, never itself).

    ``wave = lam * wave + (1 - lam) * wave[partner]`` with ``lam ~ Beta(alpha, alpha)``; targets
    are combined by element-wise max (``mode="or"``: both calls are present) or by sum clipped
    to 1 (``mode="sum"``); the sample weight is the max of the two.

    Args:
        alpha: Beta concentration; large values keep ``lam`` near 0.5 (both sounds audible),
            ``alpha <= 0`` fixes ``lam = 0.5``.
        p: probability that a sample is mixed.
        mode: ``"or"`` or ``"sum"``, how targets combine.
    """

    def __init__(self, alpha: float = 1.0, p: float = 0.5, mode: str = "or") -> None:
        if mode not in ("or", "sum"):
            raise ValueError(f"WaveMixup.mode: expected 'or' or 'sum', got {mode!r}")
        self.alpha = float(alpha)
        self.p = check_p(p, "WaveMixup.p")
        self.mode = mode

    def __call__(self, wave: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> Batch:
        """Return mixed ``(wave, target, weight)``; shapes and dtypes unchanged."""
        b = wave.shape[0]
        if self.p == 0.0 or b < 2:
            return wave, target, weight
        dev = wave.device
        perm = partner(b, dev)
        apply = coin(b, self.p, dev)
        lam = beta(b, self.alpha, dev) if self.alpha > 0 else torch.full((b,), 0.5, device=dev)
        lam = torch.where(apply, lam, torch.ones_like(lam))
        lw = expand_like(lam, wave)
        mixed = torch.lerp(wave[perm].float(), wave.float(), lw).to(wave.dtype)
        if self.mode == "or":
            combined = torch.maximum(target, target[perm])
        else:
            combined = (target + target[perm]).clamp(max=1.0)
        target = torch.where(apply[:, None], combined, target)
        weight = torch.where(apply, torch.maximum(weight, weight[perm]), weight)
        return mixed, target, weight

    def __repr__(self) -> str:
        return f"WaveMixup(alpha={self.alpha}, p={self.p}, mode={self.mode!r})"
