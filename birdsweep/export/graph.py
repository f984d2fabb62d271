"""PyTorch → ONNX: one graph per group of fold models that share a front end.

A group graph maps ``wave [B, samples] float32`` to ``probs [B, M, C]`` (``sigmoid`` of each
model's clip logits). The mel front end runs once per group; every model reads the same
spectrogram through ``forward_spec``.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from birdsweep.atomic import atomic_write_via
from birdsweep.model.sed import window_score
from birdsweep.scoring.session import INPUT_NAME, OUTPUT_NAME

log = logging.getLogger(__name__)


def frontend_signature(model: nn.Module) -> str | None:
    """A hash of the model's front end (settings and every tensor); None when it has none.

    Models with the same signature compute the same spectrogram and can share one front end.
    """
    fe = getattr(model, "frontend", None)
    if fe is None or not hasattr(model, "forward_spec"):
        return None
    settings = {  # every plain attribute (sample_rate, n_fft, amin, eps, ...) and the repr
        k: v
        for k, v in sorted(vars(fe).items())
        if isinstance(v, (int, float, str, bool, type(None)))
    }
    h = hashlib.sha1(f"{type(fe).__module__}.{type(fe).__qualname__}|{settings}|{fe!r}".encode())
    tensors = dict(fe.named_parameters())
    tensors.update(dict(fe.named_buffers()))
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()[:16]


class EnsembleGraph(nn.Module):
    """Waveform → per-model probabilities, with one front end shared by all models.

    Args:
        models: fold models; with ``shared_frontend`` they must have equal front ends.
        shared_frontend: compute the spectrogram once with ``models[0].frontend`` and feed
            it to every ``model.forward_spec``; False calls each ``model(wave)``.
    """

    def __init__(self, models: Sequence[nn.Module], shared_frontend: bool = True) -> None:
        super().__init__()
        self.models = nn.ModuleList(models)
        self.shared_frontend = shared_frontend

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """``wave [B, samples]`` → ``probs [B, M, C]``."""
        if self.shared_frontend:
            spec = self.models[0].frontend(wave)  # [B, ch, n_mels, T], computed once
            outs = [window_score(m.forward_spec(spec)) for m in self.models]
        else:
            outs = [window_score(m(wave)) for m in self.models]
        return torch.sigmoid(torch.stack(outs, dim=1))  # [B, M, C]


def group_by_frontend(models: Sequence[nn.Module], shared: bool = True) -> list[list[int]]:
    """Indices of models grouped by equal front ends (one group per model when not shared)."""
    if not shared:
        return [[i] for i in range(len(models))]
    groups: dict[str, list[int]] = {}
    solo: list[list[int]] = []
    for i, m in enumerate(models):
        sig = frontend_signature(m)
        if sig is None:
            solo.append([i])
        else:
            groups.setdefault(sig, []).append(i)
    return sorted([*groups.values(), *solo], key=lambda g: g[0])


def export_onnx(
    module: nn.Module,
    path: str | Path,
    window_samples: int,
    opset: int = 18,
    dynamo: bool = True,
) -> None:
    """Export ``module`` (``wave [B, window_samples]`` → ``probs``) to ONNX with a dynamic
    batch axis; the file is written to a temp name and renamed into place.

    Args:
        module: e.g. an :class:`EnsembleGraph` in eval mode.
        path: destination ``.onnx`` file.
        window_samples: fixed number of samples of one window.
        opset: ONNX opset (>= 17; the dynamo exporter needs >= 18).
        dynamo: use ``torch.export`` (the maintained exporter); False = the legacy
            TorchScript exporter (faster to export, deprecated upstream).
    """
    if opset < 17:
        raise ValueError(f"opset {opset}: the front end's STFT needs opset >= 17")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    example = (torch.randn(2, window_samples) * 0.1,)
    noisy = [logging.getLogger(n) for n in ("onnx_ir", "onnxscript", "torch.onnx")]
    levels = [lg.level for lg in noisy]
    if dynamo:
        axes = dict(
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            opset_version=max(opset, 18),
            external_data=False,
            verbose=False,
        )
    else:
        axes = dict(
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=opset,
        )

    def write_to(tmp: Path) -> None:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                example,
                str(tmp),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamo=dynamo,
                **axes,
            )

    try:
        for lg in noisy:  # the exporter logs every graph pass at INFO
            lg.setLevel(logging.WARNING)
        atomic_write_via(path, write_to, suffix=".onnx")
    finally:
        for lg, level in zip(noisy, levels, strict=True):
            lg.setLevel(level)
    log.info("exported %s (%.1f MB)", path, path.stat().st_size / 2**20)


def max_abs_diff(
    module: nn.Module, session: Any, windows: np.ndarray, batch_size: int = 8
) -> float:
    """Largest ``|onnx - torch|`` probability over ``windows [N, samples]`` (``session``: a
    :class:`birdsweep.scoring.session.GraphSession`)."""
    worst = 0.0
    with torch.inference_mode():
        for i in range(0, len(windows), batch_size):
            x = np.ascontiguousarray(windows[i : i + batch_size], dtype=np.float32)
            ref = module(torch.from_numpy(x)).numpy()
            got = session(x)
            if got.shape != ref.shape:
                raise RuntimeError(f"ONNX output shape {got.shape} != PyTorch {ref.shape}")
            worst = max(worst, float(np.abs(got.astype(np.float64) - ref).max()))
    return worst
