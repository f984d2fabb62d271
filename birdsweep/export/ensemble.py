"""Export chosen fold checkpoints as one ONNX CPU ensemble folder (ONNX graphs + manifest)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

import birdsweep
from birdsweep.atomic import atomic_write_json, replace_folder, temp_dir_next_to
from birdsweep.data.audio import AudioError, list_audio_files
from birdsweep.export.graph import (
    EnsembleGraph,
    export_onnx,
    frontend_signature,
    group_by_frontend,
    max_abs_diff,
)
from birdsweep.export.select import FoldSource
from birdsweep.features.frontend import EXPORT_STFT
from birdsweep.scoring.combine import COMBINE_METHODS
from birdsweep.scoring.context import FileMaxContext
from birdsweep.scoring.manifest import (
    FORMAT,
    FORMAT_VERSION,
    LABELS_KEY,
    MANIFEST,
    MODELS_KEY,
    sha256_of,
)
from birdsweep.scoring.session import (
    INPUT_NAME,
    OUTPUT_NAME,
    installed_runtimes,
    load_error,
    open_session,
)
from birdsweep.scoring.shifts import TestTimeShifts
from birdsweep.scoring.stream import WindowReader
from birdsweep.train.checkpoint import load_model

log = logging.getLogger(__name__)

__all__ = ["ExportResult", "ParityError", "export_ensemble"]


class ParityError(RuntimeError):
    """ONNX Runtime and PyTorch disagree by more than the tolerance."""


@dataclass
class ExportResult:
    """What :func:`export_ensemble` wrote.

    Attributes:
        out_dir: the ensemble folder.
        manifest: the manifest written to ``out_dir/manifest.json``.
        mlflow_run_id: the MLflow run tagged ``ensemble`` (None without tracking).
    """

    out_dir: Path
    manifest: dict[str, Any]
    mlflow_run_id: str | None = None


def _check_compatible(sources: Sequence[FoldSource], cks: list[dict], cfgs: list[Any]) -> None:
    ref_labels, ref_path = list(cks[0]["labels"]), sources[0].checkpoint
    ref_io = (int(cfgs[0].data.sample_rate), float(cfgs[0].data.window_seconds))
    for src, ck, cfg in zip(sources[1:], cks[1:], cfgs[1:], strict=True):
        labels = list(ck["labels"])
        if labels != ref_labels:
            diff = next(
                (i for i, (a, b) in enumerate(zip(ref_labels, labels, strict=False)) if a != b),
                min(len(labels), len(ref_labels)),
            )
            raise ValueError(
                f"label lists differ between checkpoints {ref_path} ({len(ref_labels)} labels) and "
                f"{src.checkpoint} ({len(labels)} labels), first at position {diff}: "
                f"{ref_labels[diff] if diff < len(ref_labels) else None!r} vs "
                f"{labels[diff] if diff < len(labels) else None!r}; export models trained on the "
                "same taxonomy.csv together"
            )
        io = (int(cfg.data.sample_rate), float(cfg.data.window_seconds))
        if io != ref_io:
            raise ValueError(
                f"data.sample_rate / data.window_seconds differ between checkpoints {ref_path} "
                f"{ref_io} and {src.checkpoint} {io}; one ensemble has one input size"
            )


def _check_frontend_rate(checkpoint: Path, model: Any, cfg: Any) -> None:
    """Refuse a model whose front end was built for another rate than ``data.sample_rate``: the
    ensemble feeds it audio decoded at ``data.sample_rate``, so its mel bands would be wrong."""
    frontend_rate = getattr(getattr(model, "frontend", None), "sample_rate", None)
    rate = int(cfg.data.sample_rate)
    if frontend_rate is not None and int(frontend_rate) != rate:
        raise ValueError(
            f"{checkpoint}: model.frontend.sample_rate={frontend_rate} differs from "
            f"data.sample_rate={rate}; the ensemble decodes audio at data.sample_rate, so train "
            "with model.frontend.sample_rate=${data.sample_rate} (as conf/model/frontend does)"
        )


def _real_windows(
    files: Sequence[Path], reader: WindowReader, n: int, per_file: int = 2
) -> np.ndarray | None:
    out: list[np.ndarray] = []
    for f in files:
        try:
            for chunk in reader.iter_windows(f):
                out.append(chunk.windows[:per_file])
                break
        except AudioError as exc:
            log.warning("parity audio: %s", exc)
        if sum(len(o) for o in out) >= n:
            break
    return np.concatenate(out)[:n] if out else None


def _parity_files(cfg: Any, parity_audio: Sequence[str | Path] | None) -> list[Path]:
    if parity_audio:
        files: list[Path] = []
        for p in parity_audio:
            files.extend(list_audio_files(p))
        return files
    for key in ("soundscape_dir", "noise_soundscapes_dir"):
        d = OmegaConf.select(cfg, f"data.{key}")
        if d and Path(str(d)).is_dir():
            found = list_audio_files(str(d))
            if found:
                return found
    return []


def export_ensemble(
    sources: Sequence[FoldSource],
    out_dir: str | Path,
    *,
    shared_frontend: bool = True,
    opset: int = 18,
    dynamo: bool = True,
    stft: str = "factored",
    combine: str = "rank",
    file_max_power: float | None = None,
    smooth: Sequence[float] | None = None,
    shifts: Sequence[float] | None = None,
    parity_random_windows: int = 4,
    parity_audio: Sequence[str | Path] | None = None,
    parity_real_windows: int = 8,
    tolerance: float = 1e-4,
    threads: int | None = None,
    seed: int = 0,
    tracking_uri: str | None = None,
    experiment: str = "birdsweep",
    selection: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Export fold checkpoints to an ONNX ensemble folder and check it against PyTorch.

    Models whose front ends are identical share one graph that computes the mel spectrogram
    once (``wave [B, samples]`` → ``probs [B, M, C]``); others get a graph per front end.

    Args:
        sources: the chosen folds (see :mod:`birdsweep.export.select`).
        out_dir: folder to write (``*.onnx`` + ``manifest.json``).
        shared_frontend: share the front end between models that allow it; False writes one
            graph per model.
        opset: ONNX opset (>= 17).
        dynamo: use the ``torch.export``-based exporter (False = legacy TorchScript one).
        stft: how the graph computes the ``torch``-backend front end's STFT: ``factored``
            (matrix products, :mod:`birdsweep.features.dft`; faster in onnxruntime) or
            ``onnx`` (the ONNX ``STFT`` operator).
        combine: default combination recorded in the manifest (``rank`` | ``mean``).
        file_max_power: recording context of submission scores recorded in the manifest (see
            :class:`birdsweep.scoring.context.FileMaxContext`); None = the first model's
            training config ``postprocess.power`` (0 when it has none).
        smooth: neighbour smoothing of submission scores recorded in the manifest; None = the
            first model's training config ``postprocess.smooth`` (none when it has none).
        shifts: test-time shifts (seconds) recorded in the manifest (see
            :class:`birdsweep.scoring.shifts.TestTimeShifts`); None = the first model's
            training config ``tta.seconds`` (``[0.0]``, none, when it has none).
        parity_random_windows: random-noise windows in the parity check.
        parity_audio: audio files/folders for the real-window parity check (None = the
            training config's ``data.soundscape_dir`` or ``data.noise_soundscapes_dir``).
        parity_real_windows: real windows in the parity check.
        tolerance: largest allowed ``|onnx - torch|`` probability.
        threads: runtime threads for the check (onnxruntime, and OpenVINO when installed).
        seed: seed of the random windows.
        tracking_uri: log the folder to MLflow as a new run tagged ``ensemble`` (None = no).
        experiment: MLflow experiment of that run.
        selection: how ``sources`` were chosen (recorded in the manifest).
        overwrite: replace an existing ensemble in ``out_dir``.

    Returns:
        An :class:`ExportResult`.

    Raises:
        ValueError: no sources, label lists / input sizes differ, a front end's
            ``sample_rate`` is not ``data.sample_rate``, or ``out_dir`` holds an ensemble and
            ``overwrite`` is False.
        ParityError: ONNX output differs from PyTorch by more than ``tolerance``.
    """
    if not sources:
        raise ValueError("no fold checkpoints to export")
    if combine not in COMBINE_METHODS:
        raise ValueError(f"combine: {combine!r} is not one of {COMBINE_METHODS}")
    if stft not in EXPORT_STFT:
        raise ValueError(f"stft: {stft!r} is not one of {EXPORT_STFT}")
    out_dir = Path(out_dir).absolute()
    recover_interrupted_export(out_dir)
    if (out_dir / MANIFEST).is_file() and not overwrite:
        raise ValueError(
            f"--out {out_dir}: already holds an ensemble; pass --overwrite to replace it"
        )
    if out_dir.exists() and not (out_dir / MANIFEST).is_file() and any(out_dir.iterdir()):
        raise ValueError(
            f"--out {out_dir}: holds files but no {MANIFEST}, so it is not an ensemble folder; "
            "choose a new or empty folder"
        )
    loaded = [load_model(s.checkpoint) for s in sources]
    models = [m for m, _ in loaded]
    for m in models:
        for mod in m.modules():
            if hasattr(mod, "export_stft"):
                mod.export_stft = stft
    cks = [ck for _, ck in loaded]
    cfgs = [OmegaConf.create(ck["config"]) for ck in cks]
    for src, model, cfg in zip(sources, models, cfgs, strict=True):
        _check_frontend_rate(src.checkpoint, model, cfg)
    _check_compatible(sources, cks, cfgs)
    labels = list(cks[0]["labels"])
    if file_max_power is None:
        file_max_power = float((cfgs[0].get("postprocess") or {}).get("power", 0.0))
    if smooth is None:
        smooth = list((cfgs[0].get("postprocess") or {}).get("smooth", None) or [])
    smooth = list(FileMaxContext(file_max_power, tuple(smooth)).smooth)  # validates both
    sr, window_seconds = int(cfgs[0].data.sample_rate), float(cfgs[0].data.window_seconds)
    if shifts is None:
        shifts = list((cfgs[0].get("tta") or {}).get("seconds", None) or [0.0])
    tta = TestTimeShifts(shifts)
    tta.validate(window_seconds)
    reader = WindowReader(sr, window_seconds)
    win = reader.window_samples

    tracker = None
    if tracking_uri:
        from birdsweep.track.mlflow_tracker import MLflowTracker

        src_runs = sorted({s.parent_run_id or s.run_id for s in sources if s.run_id})
        tracker = MLflowTracker(
            tracking_uri,
            experiment_name=experiment,
            run_name="ensemble",
            tags={"ensemble": "true", "source_runs": ",".join(src_runs)[:5000]},
        )
        tracker.close_stale({"ensemble": "true"})  # runs of exports that were killed
    status = "FAILED"  # the run ends FAILED on any error, KILLED on Ctrl-C
    final_dir, out_dir = out_dir, _staging_dir(out_dir)  # everything is written to a staging
    try:  # folder and swapped in whole after the parity check: a failure leaves the old one
        if tracker is not None:
            tracker.start(
                params={
                    "n_models": len(sources),
                    "combine": combine,
                    "opset": opset,
                    "dynamo": dynamo,
                    "stft": stft,
                    "shared_frontend": shared_frontend,
                    **{f"selection.{k}": v for k, v in (selection or {}).items()},
                }
            )
        rng = np.random.default_rng(seed)
        rand = (rng.standard_normal((parity_random_windows, win)) * 0.1).astype(np.float32)
        real = _real_windows(_parity_files(cfgs[0], parity_audio), reader, parity_real_windows)
        if real is None:
            log.warning("parity: no real audio found (pass parity_audio); random windows only")
        groups = group_by_frontend(models, shared_frontend)
        graphs, worst = [], {"random": 0.0, "real": 0.0 if real is not None else None}
        runtimes = installed_runtimes()  # each one that is installed is checked
        for gi, idx in enumerate(groups):
            name = "ensemble.onnx" if len(groups) == 1 else f"ensemble_{gi}.onnx"
            module = EnsembleGraph(
                [models[i] for i in idx],
                shared_frontend=frontend_signature(models[idx[0]]) is not None,
            ).eval()
            export_onnx(module, out_dir / name, win, opset=opset, dynamo=dynamo)
            stamp_labels(out_dir / name, labels, len(idx))
            by_runtime: dict[str, dict[str, Any]] = {}
            for runtime in runtimes:
                try:
                    sess = open_session(out_dir / name, runtime, threads)
                except Exception as exc:  # only onnxruntime is required to load the graph
                    if runtime == "onnxruntime":
                        raise
                    why = load_error(exc)
                    log.warning("%s: %s cannot load it (%s)", name, runtime, why)
                    by_runtime[runtime] = {"error": why}
                    continue
                d_rand = max_abs_diff(module, sess, rand)
                d_real = max_abs_diff(module, sess, real) if real is not None else None
                log.info(
                    "parity %s (%s): max |onnx - torch| random %.2e, real %s",
                    name,
                    runtime,
                    d_rand,
                    "n/a" if d_real is None else f"{d_real:.2e}",
                )
                for kind, d in (("random", d_rand), ("real", d_real)):
                    if d is not None and not d <= tolerance:
                        raise ParityError(
                            f"{final_dir / name}: {runtime} and PyTorch probabilities differ by "
                            f"{d:.3g} on {kind} windows (tolerance {tolerance:g}); try "
                            "dynamo=False or another opset, and report the model config"
                        )
                    if d is not None:
                        worst[kind] = max(worst[kind], d)
                by_runtime[runtime] = {"random": d_rand, "real": d_real}
            graphs.append(
                {
                    "file": name,
                    "models": idx,
                    "shared_frontend": module.shared_frontend,
                    "sha256": sha256_of(out_dir / name),
                    "bytes": (out_dir / name).stat().st_size,
                    "parity_max_abs_diff": by_runtime["onnxruntime"],
                    "parity_by_runtime": by_runtime,
                }
            )
        entries = []
        for i, (src, ck, cfg, m) in enumerate(zip(sources, cks, cfgs, models, strict=True)):
            entries.append(
                {
                    "index": i,
                    **src.to_dict(),
                    "epoch": ck.get("epoch"),
                    "backbone": OmegaConf.select(cfg, "model.backbone"),
                    # bce | focal | ce: how the outputs were trained (pseudo-label activation)
                    "loss": OmegaConf.select(cfg, "loss.kind"),
                    "frontend_signature": frontend_signature(m),
                }
            )
        scores = [s.score for s in sources if math.isfinite(s.score)]
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "birdsweep_version": birdsweep.__version__,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "labels": labels,
            "num_classes": len(labels),
            "sample_rate": sr,
            "window_seconds": window_seconds,
            "window_samples": win,
            "input": {"name": INPUT_NAME, "shape": ["batch", win], "dtype": "float32"},
            "output": {
                "name": OUTPUT_NAME,
                "shape": ["batch", "models_in_graph", len(labels)],
                "meaning": "sigmoid(score logits, per model.readout) of each model of the graph",
            },
            "graphs": graphs,
            "models": entries,
            "mean_fold_score": float(np.mean(scores)) if scores else None,
            "combine": combine,
            "context": {"file_max_power": file_max_power, "smooth": smooth},
            "tta": {"shifts_seconds": list(tta.seconds)},
            "selection": selection or {},
            "parity": {
                "tolerance": tolerance,
                "random_windows": int(len(rand)),
                "real_windows": 0 if real is None else int(len(real)),
                "runtimes": [
                    r
                    for r in runtimes
                    if all("error" not in g["parity_by_runtime"].get(r, {}) for g in graphs)
                ],
                "max_abs_diff": worst,
            },
            "exporter": {
                "torch": torch.__version__,
                "onnx_opset": max(opset, 18) if dynamo else opset,
                "dynamo": dynamo,
                "stft": stft,
            },
            "mlflow_run_id": tracker.parent_id if tracker else None,
        }
        atomic_write_json(out_dir / MANIFEST, manifest)
        _swap_in(out_dir, final_dir)
        out_dir = final_dir
        if tracker is not None:
            tracker.log_metrics(
                {
                    "parity_max_abs_diff_random": worst["random"],
                    "parity_max_abs_diff_real": worst["real"]
                    if worst["real"] is not None
                    else math.nan,
                    "mean_fold_score": manifest["mean_fold_score"] or math.nan,
                    "n_models": len(sources),
                }
            )
            tracker.log_artifact(out_dir, "ensemble")
        status = "FINISHED"
        log.info(
            "ensemble of %d model(s) in %d graph(s) written to %s",
            len(models),
            len(graphs),
            out_dir,
        )
        return ExportResult(out_dir, manifest, tracker.parent_id if tracker else None)
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        if out_dir != final_dir:
            shutil.rmtree(out_dir, ignore_errors=True)
        if tracker is not None:
            tracker.end(status)


_STAGING, _OLD = ".export-", ".replaced-"  # <parent>/.<name>.export-<pid>-<random>


def _staging_dir(out_dir: Path) -> Path:
    """A new staging folder next to ``out_dir`` with the mode ``mkdir`` would give it."""
    return temp_dir_next_to(out_dir, prefix=f".{out_dir.name}{_STAGING}{os.getpid()}-")


def _swap_in(staging: Path, out_dir: Path) -> None:
    """Replace ``out_dir`` by ``staging`` with two renames (the old folder is kept aside until
    the new one is in place, then deleted)."""
    replace_folder(staging, out_dir, out_dir.parent / f".{out_dir.name}{_OLD}{os.getpid()}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_interrupted_export(out_dir: Path) -> None:
    """Clean up after an export that was killed: delete its staging folder and, if it was
    killed between the two renames of the swap, put the old ensemble back."""
    if not out_dir.parent.is_dir():
        return
    for kind in (_STAGING, _OLD):
        for left in out_dir.parent.glob(f".{out_dir.name}{kind}*"):
            pid = left.name[len(f".{out_dir.name}{kind}") :].split("-")[0]
            if not pid.isdigit() or _pid_alive(int(pid)):
                continue
            if kind == _OLD and not out_dir.exists():
                os.rename(left, out_dir)
                log.warning("%s: restored the ensemble of an interrupted export", out_dir)
            else:
                shutil.rmtree(left, ignore_errors=True)
                log.warning("%s: removed the leftovers of an interrupted export", left)


def stamp_labels(path: Path, labels: Sequence[str], n_models: int) -> None:
    """Record the label order and model count inside an ONNX file (its metadata), so
    ``birdsweep infer`` can tell a manifest edited after export from the graph it describes."""
    import onnx

    model = onnx.load(str(path))
    for key, value in ((LABELS_KEY, json.dumps(list(labels))), (MODELS_KEY, str(n_models))):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
