"""In-model mel front end: waveform [B, samples] -> log-mel image [B, ch, n_mels, T].

It lives inside the model, so the same module trains on GPU and exports to ONNX with the
waveform as input. It always computes in fp32, even under autocast.

Two interchangeable backends give the same numbers (max rel diff ~1e-6):

- ``"torch"``: framed ``torch.fft.rfft`` (the numbers of ``torch.stft(center=True)``) + a fixed
  mel filterbank buffer. Several times faster in eager PyTorch on CPU. In an ONNX export the STFT
  is a factored DFT of plain MatMuls (:mod:`birdsweep.features.dft`, ``export_stft="factored"``)
  or the ONNX ``STFT`` op (``export_stft="onnx"``; legacy exporter opset 17, dynamo opset 18).
- ``"nnaudio"``: ``nnAudio.features.MelSpectrogram`` (STFT as conv1d with Fourier kernels;
  exports to plain ``Conv`` ops, ~17 MB of kernels at n_fft 2048).
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from birdsweep.features.dft import FactoredDFTPower

log = logging.getLogger(__name__)

__all__ = [
    "BACKENDS",
    "EXPORT_STFT",
    "NORMALIZE",
    "TWO_CHANNEL",
    "MelFrontend",
    "delta",
    "mel_filterbank",
]

EXPORT_STFT = ("factored", "onnx")  # STFT formulations of an ONNX export

BACKENDS = ("nnaudio", "torch")
NORMALIZE = ("instance", "band", "dual", "pcen", "dual_pcen", "none")
TWO_CHANNEL = ("dual", "dual_pcen")  # normalisations that make their own 2 channels


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float, htk: bool = False
) -> torch.Tensor:
    """Slaney-normalised (librosa-compatible) mel filterbank.

    Args:
        sample_rate: Audio sample rate in Hz.
        n_fft: FFT size; the filterbank covers its ``n_fft // 2 + 1`` bins.
        n_mels: Number of mel bands.
        fmin: Lowest band edge in Hz.
        fmax: Highest band edge in Hz.
        htk: Use the HTK mel formula instead of Slaney's.

    Returns:
        Float32 tensor [n_mels, n_fft // 2 + 1].
    """
    from nnAudio.librosa_functions import get_mel  # the same helper nnAudio itself uses

    return torch.from_numpy(
        get_mel(sample_rate, n_fft, n_mels, fmin, fmax, htk=htk, norm=1)
    ).float()


def delta(x: torch.Tensor, width: int) -> torch.Tensor:
    """Regression delta along time (as torchaudio ``compute_deltas``), replicate-padded.

    Args:
        x: Tensor [B, n_mels, T].
        width: Odd window length (>= 3).

    Returns:
        Tensor [B, n_mels, T].
    """
    n = width // 2
    kernel = torch.arange(-n, n + 1, dtype=x.dtype, device=x.device)
    kernel = kernel / (2 * (kernel[n + 1 :] ** 2).sum())
    b, m, t = x.shape
    y = F.pad(x.reshape(b * m, 1, t), (n, n), mode="replicate")
    return F.conv1d(y, kernel.view(1, 1, -1)).reshape(b, m, t)


class MelFrontend(nn.Module):
    """Waveform -> normalised log-mel "image" for a timm backbone.

    The defaults are the default model's front end, ``conf/model/frontend/default.yaml`` (the
    config is their home; ``tests/test_config_sources.py`` keeps the two equal).

    Args:
        sample_rate: Audio sample rate in Hz.
        n_fft: FFT size (Hann window of the same length).
        hop_length: Hop between frames in samples; T = samples // hop_length + 1.
        n_mels: Number of mel bands (image height).
        fmin: Lowest mel band edge in Hz.
        fmax: Highest mel band edge in Hz (<= sample_rate / 2).
        backend: ``"torch"`` (torch.stft, fast on CPU) or ``"nnaudio"`` (conv1d STFT).
        top_db: Clamp dB values to (per-sample max - top_db); ``None`` disables the clamp.
        amin: Power floor before log10 (avoids log(0)).
        normalize: ``"instance"`` = per-sample, per-channel mean/std over (mel, time);
            ``"band"`` = first subtract each mel band's ``band_quantile`` over time (its noise
            floor: removes stationary hum, wind and insect-chorus bands), then ``"instance"``;
            ``"dual"`` = both as two channels (instance, band: a caller whose own sound is
            stationary, e.g. an insect, stays in the first); ``"pcen"`` = per-channel energy
            normalisation (Wang et al. 2017; Lostanlen et al. 2019: each band's energy over an
            adaptive gain from its own recent past, which suppresses slowly varying noise)
            instead of the log, then ``"instance"``; ``"dual_pcen"`` = instance log-mel and
            PCEN as two channels; ``"none"`` leaves dB values.
        band_quantile: Quantile over time taken as a band's noise floor (``"band"`` only;
            0.5 = the median, as in median-clipping noise reduction).
        channels: 1 = log-mel; 3 = log-mel + delta + delta-delta (not with ``"pcen"`` or
            the 2-channel normalisations).
        pcen_time_constant: PCEN smoother time constant in seconds (librosa's default 0.4).
        pcen_gain: PCEN gain exponent alpha (0.98).
        pcen_bias: PCEN bias delta (2.0).
        pcen_power: PCEN compression exponent r (0.5).
        delta_width: Window length of the delta filter (3-channel mode only).
        eps: Added to the std in instance normalisation.
        htk: HTK mel scale instead of Slaney's (what some pretrained audio networks, e.g.
            aiSFX, were trained on).
    """

    def __init__(
        self,
        sample_rate: int = 32000,
        n_fft: int = 1024,
        hop_length: int = 512,
        n_mels: int = 64,
        fmin: float = 50.0,
        fmax: float = 14000.0,
        backend: str = "torch",
        top_db: float | None = 80.0,
        amin: float = 1e-10,
        normalize: str = "dual",
        band_quantile: float = 0.5,
        channels: int = 1,
        delta_width: int = 5,
        eps: float = 1e-6,
        pcen_time_constant: float = 0.4,
        pcen_gain: float = 0.98,
        pcen_bias: float = 2.0,
        pcen_power: float = 0.5,
        htk: bool = False,
    ) -> None:
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"model.frontend.backend: {backend!r} is not one of {BACKENDS}")
        if normalize not in NORMALIZE:
            raise ValueError(f"model.frontend.normalize: {normalize!r} is not one of {NORMALIZE}")
        if channels not in (1, 3):
            raise ValueError(f"model.frontend.channels: {channels} must be 1 or 3")
        if normalize in (*TWO_CHANNEL, "pcen") and channels != 1:
            raise ValueError(
                f"model.frontend: normalize={normalize} makes its own channels (no deltas); "
                f"use channels=1, got {channels}"
            )
        if pcen_time_constant <= 0 or not 0 <= pcen_gain <= 1 or pcen_bias < 0 or pcen_power <= 0:
            raise ValueError(
                "model.frontend: need pcen_time_constant > 0, 0 <= pcen_gain <= 1, "
                f"pcen_bias >= 0, pcen_power > 0; got {pcen_time_constant}, {pcen_gain}, "
                f"{pcen_bias}, {pcen_power}"
            )
        if not 0 <= fmin < fmax <= sample_rate / 2:
            raise ValueError(
                f"model.frontend: need 0 <= fmin ({fmin}) < fmax ({fmax}) <= sample_rate/2 "
                f"({sample_rate / 2})"
            )
        if not 0.0 <= band_quantile <= 1.0:
            raise ValueError(f"model.frontend.band_quantile: {band_quantile} is not in [0, 1]")
        if delta_width < 3 or delta_width % 2 == 0:
            raise ValueError(f"model.frontend.delta_width: {delta_width} must be odd and >= 3")
        self.sample_rate, self.n_fft, self.hop_length = sample_rate, n_fft, hop_length
        self.n_mels, self.backend, self.top_db, self.amin = n_mels, backend, top_db, amin
        self.normalize, self.channels, self.delta_width, self.eps = (
            normalize,
            channels,
            delta_width,
            eps,
        )
        self.band_quantile, self.htk = band_quantile, htk
        self.pcen_gain, self.pcen_bias, self.pcen_power = pcen_gain, pcen_bias, pcen_power
        # librosa.pcen's smoothing coefficient for a time constant in frames
        frames = pcen_time_constant * sample_rate / hop_length
        self.pcen_smooth = ((1 + 4 * frames**2) ** 0.5 - 1) / (2 * frames**2)
        if backend == "nnaudio":
            from nnAudio.features import MelSpectrogram

            self.mel = MelSpectrogram(
                sr=sample_rate,
                n_fft=n_fft,
                hop_length=hop_length,
                n_mels=n_mels,
                fmin=fmin,
                fmax=fmax,
                htk=htk,
                center=True,
                pad_mode="reflect",
                power=2.0,
                trainable_mel=False,
                trainable_STFT=False,
                verbose=False,
            )
        else:
            self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
            self.register_buffer(
                "mel_fb",
                mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax, htk=htk),
                persistent=False,
            )
            # the STFT of ONNX exports (onnxruntime's STFT operator is slow); no state
            self.dft_power = FactoredDFTPower(n_fft, hop_length, self.window)
        # how an ONNX export computes the STFT: "factored" (MatMuls) | "onnx" (the STFT op);
        # set by `birdsweep export --stft`, never used in eager PyTorch
        self.export_stft = "factored"

    def _power_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """[B, samples] fp32 -> mel power [B, n_mels, T]."""
        if self.backend == "nnaudio":
            return self.mel(wave)
        if not torch.onnx.is_in_onnx_export():
            power = self._rfft_power(wave)
        elif self.export_stft == "factored":
            power = self.dft_power(wave)
        elif torch.jit.is_tracing():  # legacy ONNX exporter: its STFT takes no complex output
            kw = dict(window=self.window, center=True, pad_mode="reflect")
            spec = torch.stft(wave, self.n_fft, self.hop_length, return_complex=False, **kw)
            power = spec.pow(2).sum(-1)  # [B, F, T, 2] -> [B, F, T]
        else:
            kw = dict(window=self.window, center=True, pad_mode="reflect")
            spec = torch.stft(wave, self.n_fft, self.hop_length, return_complex=True, **kw)
            power = spec.real.pow(2) + spec.imag.pow(2)  # [B, F, T]
        return torch.matmul(self.mel_fb, power)  # [n_mels, F] @ [B, F, T] -> [B, n_mels, T]

    def _rfft_power(self, wave: torch.Tensor) -> torch.Tensor:
        """``|torch.stft(center=True, reflect)|^2`` as framed ``rfft``: the same numbers (to the
        last bit's rounding), and about 2x faster than ``torch.stft`` on 2 CPU threads (it
        parallelises over frames)."""
        pad = self.n_fft // 2
        if wave.shape[-1] > pad:  # reflect padding as two edge slices: ~2x faster than F.pad
            x = torch.cat(
                [wave[:, 1 : pad + 1].flip(-1), wave, wave[:, -pad - 1 : -1].flip(-1)], -1
            )
        else:  # too short to reflect: F.pad raises its own error
            x = F.pad(wave.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
        spec = torch.fft.rfft(x.unfold(-1, self.n_fft, self.hop_length) * self.window)
        power = spec.real.square()
        return power.addcmul_(spec.imag, spec.imag).transpose(1, 2)  # [B, F, T]

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """Compute the log-mel image.

        Args:
            wave: Waveform [B, samples] (any float dtype; computed in fp32).

        Returns:
            Float32 tensor [B, out_channels, n_mels, samples // hop_length + 1].
        """
        if wave.dim() != 2:
            raise ValueError(
                f"MelFrontend expects a waveform [B, samples], got {tuple(wave.shape)}"
            )
        with torch.autocast(device_type=wave.device.type, enabled=False):
            power = self._power_mel(wave.float())  # [B, M, T]
            if self.normalize == "pcen":
                return self._instance_norm(self._pcen(power)).unsqueeze(1)  # [B, 1, M, T]
            x = 10.0 * torch.log10(power.clamp(min=self.amin))
            if self.top_db is not None:
                x = torch.maximum(x, x.amax(dim=(1, 2), keepdim=True) - self.top_db)
            if self.normalize in TWO_CHANNEL:  # instance log-mel + a noise-floor-free image
                second = (
                    self._pcen(power) if self.normalize == "dual_pcen" else x - self._band_floor(x)
                )
                return torch.stack([self._instance_norm(x), self._instance_norm(second)], dim=1)
            if self.normalize == "band":
                x = x - self._band_floor(x)
            if self.normalize != "none":
                x = self._instance_norm(x)
            if self.channels == 1:
                return x.unsqueeze(1)  # [B, 1, M, T]
            d1 = delta(x, self.delta_width)
            d2 = delta(d1, self.delta_width)
            if self.normalize != "none":
                d1, d2 = self._instance_norm(d1), self._instance_norm(d2)
            return torch.stack([x, d1, d2], dim=1)  # [B, 3, M, T]

    @property
    def out_channels(self) -> int:
        """Channels of the output image (the backbone's ``in_chans``)."""
        return 2 if self.normalize in TWO_CHANNEL else self.channels

    def _band_floor(self, x: torch.Tensor) -> torch.Tensor:
        """Each mel band's ``band_quantile`` over time of [B, M, T] -> [B, M, 1].

        The k-th smallest value: ``kthvalue`` in eager PyTorch (about 2x faster), ``topk`` in an
        ONNX export (it exports to ``TopK``; ``kthvalue`` and ``median`` do not); same values."""
        k = min(x.shape[-1], int(self.band_quantile * (x.shape[-1] - 1)) + 1)
        if torch.onnx.is_in_onnx_export():
            return x.topk(k, dim=-1, largest=False, sorted=True).values[..., -1:]
        return x.kthvalue(k, dim=-1, keepdim=True).values

    def _pcen(self, power: torch.Tensor) -> torch.Tensor:
        """Per-channel energy normalisation of mel power [B, M, T] (librosa.pcen's formula).

        The smoother ``M[t] = (1 - s) M[t-1] + s E[t]`` (started at steady state on ``E[0]``;
        librosa starts it at 1, which over-amplifies the first frames) is a matrix product
        with a lower-triangular [T, T] kernel built for the input's length, so it runs as one
        MatMul and exports to ONNX."""
        s, t = self.pcen_smooth, power.shape[-1]
        mag = power.clamp(min=self.amin).sqrt() * 2.0**31  # librosa's scaling of float audio
        idx = torch.arange(t, device=power.device, dtype=power.dtype)
        lag = idx.unsqueeze(1) - idx.unsqueeze(0)  # [T_out, T_in]: t - tau
        decay = torch.pow(torch.full_like(lag, 1.0 - s), lag.clamp(min=0.0))
        kernel = torch.where(lag >= 0, s * decay, torch.zeros_like(lag))
        start = (1.0 - s) * decay[:, 0:1]  # steady-state start: the weight M[-1] = E[0] carries
        kernel = torch.cat([kernel[:, :1] + start, kernel[:, 1:]], dim=1)
        smooth = torch.matmul(mag, kernel.transpose(0, 1))  # [B, M, T]
        gain = mag / (1e-6 + smooth).pow(self.pcen_gain)
        return (gain + self.pcen_bias).pow(self.pcen_power) - self.pcen_bias**self.pcen_power

    def _instance_norm(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample mean/std normalisation over (mel, time) of [B, M, T]."""
        mean = x.mean(dim=(1, 2), keepdim=True)
        std = x.std(dim=(1, 2), keepdim=True)
        return (x - mean) / (std + self.eps)

    def extra_repr(self) -> str:
        return (
            f"backend={self.backend}, sample_rate={self.sample_rate}, n_fft={self.n_fft}, "
            f"hop_length={self.hop_length}, n_mels={self.n_mels}, channels={self.channels}, "
            f"normalize={self.normalize}, band_quantile={self.band_quantile}, top_db={self.top_db}"
        )
