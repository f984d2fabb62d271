"""GPU checks (needs a CUDA device; never part of CI): training throughput of every model
preset with and without AMP (the mel front end stays fp32), then export parity of a
GPU-trained checkpoint.

1. **Throughput**: each ``conf/model`` preset with ``trainer=gpu`` and ``aug=noisy`` (noise
   bank bound to synthetic noise), ``data=birdclef`` crops and 206 classes (BirdCLEF 2025),
   timed over ``--steps`` real :meth:`FoldTrainer.train_step` calls after ``--warmup`` steps,
   fp32 first (the baseline), then AMP; plus eval windows/s. Random batches already on the
   GPU: this is the model's speed, not the data loader's.
2. **Parity**: ``python run.py trainer=gpu`` on the demo data for ``--epochs`` epochs of
   ``--folds``, ``birdsweep export`` of those GPU-trained folds (its own torch-CPU vs ONNX
   check), then the same labelled soundscape windows through torch on the GPU (fp32, AMP),
   torch on the CPU and the ONNX ensemble on the CPU: max |Δp| and macro AUC of each.

Usage::

    python benchmarks/gpu_check.py                              # all presets + parity
    python benchmarks/gpu_check.py --presets sed_small sed_v2s --steps 10 --no-parity
    python benchmarks/gpu_check.py --device cpu --presets sed_small --steps 2 --epochs 1  # smoke
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import compose_run_config, timed_kfold  # noqa: E402
from birdsweep.config import build  # noqa: E402
from birdsweep.data.dataset import Windows  # noqa: E402
from birdsweep.data.prepare import prepare_data  # noqa: E402
from birdsweep.export.ensemble import export_ensemble  # noqa: E402
from birdsweep.export.select import select_checkpoints  # noqa: E402
from birdsweep.infer.ensemble import Ensemble  # noqa: E402
from birdsweep.scoring.metric import macro_auc  # noqa: E402
from birdsweep.train.checkpoint import load_model  # noqa: E402
from birdsweep.train.loop import FoldTrainer, TrainerSettings, predict  # noqa: E402

PRESETS = sorted(p.stem for p in (ROOT / "conf" / "model").glob("*.yaml"))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def throughput(preset: str, amp: bool, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Train and eval speed of one preset on random batches (one row of the table)."""
    over = [f"model={preset}", "trainer=gpu", "aug=noisy", "data=birdclef", "logger=none"]
    over += [f"trainer.device={args.device}", f"trainer.amp={str(amp).lower()}"]
    if args.batch_size:
        over.append(f"trainer.batch_size={args.batch_size}")
    over += list(args.overrides)
    cfg = compose_run_config(over, root)
    s = TrainerSettings.from_config(cfg.trainer)
    device = torch.device(s.device)
    sr = int(cfg.data.sample_rate)
    crop = int(round(float(cfg.data.crop_seconds) * sr))
    rng = np.random.default_rng(0)
    aug = build(cfg.aug)
    aug.bind_noise([rng.standard_normal(60 * sr).astype(np.float32) * 0.05] * 4, sr)
    model = build(cfg.model, num_classes=args.classes)
    tr = FoldTrainer(
        model,
        build(cfg.loss),
        aug,
        build(cfg.optimizer),
        build(cfg.scheduler),
        s,
        root / f"ck_{preset}",
    )
    optimizer, scheduler, scaler = tr.make_optimization(args.warmup + args.steps)
    b = s.batch_size
    wave = (torch.randn(b, crop, generator=torch.Generator().manual_seed(0)) * 0.1).to(device)
    target = torch.zeros(b, args.classes, device=device)
    target[torch.arange(b), torch.randint(0, args.classes, (b,))] = 1.0
    weight = torch.ones(b, device=device)
    tr.model.train()
    for _ in range(args.warmup):
        tr.train_step(wave, target, weight, optimizer, scheduler, scaler)
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = tr.train_step(wave, target, weight, optimizer, scheduler, scaler)
    _sync(device)
    train_s = time.perf_counter() - t0
    peak = (
        torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    )
    with torch.autocast(device_type=device.type, enabled=amp and device.type == "cuda"):
        mel_dtype = str(tr.model.frontend(wave[:2]).dtype).replace("torch.", "")
    # eval: the same predict() the loop and soundscape scoring use
    n_eval = s.eval_batch_size * args.eval_batches
    ds = torch.utils.data.TensorDataset(torch.randn(n_eval, crop) * 0.1)
    predict(tr.model, ds, s.eval_batch_size, device, amp)  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    predict(tr.model, ds, s.eval_batch_size, device, amp)
    _sync(device)
    eval_s = time.perf_counter() - t0
    return {
        "preset": preset,
        "amp": amp,
        "batch": b,
        "train_clips_s": args.steps * b / train_s,
        "ms_step": 1e3 * train_s / args.steps,
        "eval_windows_s": n_eval / eval_s,
        "peak_gib": peak,
        "mel_dtype": mel_dtype,
        "loss": loss,
        "params_m": sum(p.numel() for p in tr.model.parameters()) / 1e6,
    }


def throughput_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table; AMP rows carry the ratio against the fp32 row of the same preset."""
    base = {r["preset"]: r for r in rows if not r["amp"]}
    head = (
        "| preset | params (M) | AMP | batch | train clips/s | ms/step | vs fp32 | "
        "eval windows/s | vs fp32 | peak GiB | mel dtype |\n"
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"
    )
    out = [head]
    for r in rows:
        b = base.get(r["preset"], r)
        out.append(
            f"| {r['preset']} | {r['params_m']:.1f} | {'yes' if r['amp'] else 'no'} | "
            f"{r['batch']} | {r['train_clips_s']:.0f} | {r['ms_step']:.1f} | "
            f"{r['train_clips_s'] / b['train_clips_s']:.2f}× | {r['eval_windows_s']:.0f} | "
            f"{r['eval_windows_s'] / b['eval_windows_s']:.2f}× | {r['peak_gib']:.2f} | "
            f"{r['mel_dtype']} |"
        )
    return "\n".join(out)


def parity(preset: str, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Train ``preset`` on the demo data on ``args.device``, export it, and compare torch
    (GPU fp32/AMP, CPU) with the ONNX ensemble on the labelled soundscape windows."""
    over = [
        "trainer=gpu",
        f"trainer.device={args.device}",
        f"model={preset}",
        f"data.min_epoch_samples={args.epoch_samples}",
        "logger=none",
        f"trainer.epochs={args.epochs}",
        f"data.folds=[{','.join(map(str, args.folds))}]",
        "trainer.progress=false",
        "trainer.resume=false",
    ]
    summary, minutes = timed_kfold(over, root)
    cfg = compose_run_config(over, root)
    sources = select_checkpoints([f.checkpoint for f in summary.folds])
    res = export_ensemble(sources, root / f"ensemble_{preset}", overwrite=True)
    man = res.manifest
    data = prepare_data(cfg.data, cfg.paths.cache_dir, int(cfg.seed), progress=False)
    sc = data.soundscapes
    win = int(round(float(cfg.data.window_seconds) * data.sample_rate))
    ds = Windows(sc.cache, sc.items, sc.targets, win)
    windows = np.stack([ds[i][0].numpy() for i in range(len(ds))])
    onnx = Ensemble.load(root / f"ensemble_{preset}").predict_windows(windows)  # [N, M, C]
    probs: dict[str, list[np.ndarray]] = {"gpu_fp32": [], "gpu_amp": [], "cpu_fp32": []}
    for m in man["models"]:
        model = load_model(m["checkpoint"])[0]
        probs["gpu_fp32"].append(predict(model, ds, 64, args.device, amp=False))
        probs["gpu_amp"].append(predict(model, ds, 64, args.device, amp=True))
        probs["cpu_fp32"].append(predict(model, ds, 64, "cpu", amp=False))
    stacked = {k: np.stack(v, axis=1) for k, v in probs.items()}
    stacked["onnx_cpu"] = onnx

    def diff(a: str, b: str) -> float:
        return float(np.abs(stacked[a] - stacked[b]).max())

    return {
        "model": preset,
        "device": args.device,
        "epochs": args.epochs,
        "folds": args.folds,
        "train_minutes": minutes,
        "fold_val_auc": [f.val_macro_auc for f in summary.folds],
        "n_windows": len(ds),
        "export_parity_max_abs_diff": man["parity"]["max_abs_diff"],
        "max_abs_diff": {
            "onnx_cpu vs gpu_fp32": diff("onnx_cpu", "gpu_fp32"),
            "onnx_cpu vs cpu_fp32": diff("onnx_cpu", "cpu_fp32"),
            "cpu_fp32 vs gpu_fp32": diff("cpu_fp32", "gpu_fp32"),
            "gpu_amp vs gpu_fp32": diff("gpu_amp", "gpu_fp32"),
        },
        "soundscape_macro_auc_mean_prob": {
            k: macro_auc(sc.targets, v.mean(axis=1)) for k, v in stacked.items()
        },
    }


def main() -> None:
    """Run the checks and print the tables (and write them as JSON with ``--json``)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", nargs="+", default=PRESETS, choices=PRESETS)
    ap.add_argument("--steps", type=int, default=20, help="timed training steps per row")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first (cuDNN autotune)")
    ap.add_argument("--eval-batches", type=int, default=4, help="timed eval batches per row")
    ap.add_argument("--batch-size", type=int, default=None, help="default: trainer=gpu's")
    ap.add_argument("--classes", type=int, default=206, help="head size (BirdCLEF 2025: 206)")
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu for a smoke run")
    ap.add_argument("--overrides", nargs="*", default=[], help="throughput: extra config overrides")
    ap.add_argument(
        "--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark = True"
    )
    ap.add_argument("--no-throughput", action="store_true")
    ap.add_argument("--no-parity", action="store_true")
    ap.add_argument("--parity-models", nargs="+", default=["sed_small", "sed_v2s"], choices=PRESETS)
    ap.add_argument("--epochs", type=int, default=8, help="parity: training epochs")
    ap.add_argument("--epoch-samples", type=int, default=1024, help="parity: crops per epoch")
    ap.add_argument("--folds", type=int, nargs="+", default=[0, 1], help="parity: folds")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device visible (use --device cpu for a smoke run)")
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    if args.device == "cuda":
        print(f"# {torch.cuda.get_device_name()} · torch {torch.__version__}", flush=True)
    results: dict[str, Any] = {"torch": torch.__version__}

    def save() -> None:  # after each part: a timed-out run still leaves what it measured
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))

    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        root = Path(tmp)
        if not args.no_throughput:
            rows = []
            for preset in args.presets:
                for amp in (False, True):
                    try:
                        rows.append(throughput(preset, amp, args, root))
                    except Exception as exc:  # one preset's failure must not hide the others
                        print(f"{preset} amp={amp}: FAILED {type(exc).__name__}: {exc}")
                        continue
                    print(
                        f"{preset} amp={amp}: {rows[-1]['train_clips_s']:.0f} clips/s",
                        flush=True,
                    )
                    results["throughput"] = rows
                    save()
            print("\n" + throughput_table(rows), flush=True)
        if not args.no_parity:
            results["parity"] = []
            for preset in args.parity_models:
                results["parity"].append(parity(preset, args, root))
                save()
                print("\n" + json.dumps(results["parity"][-1], indent=2), flush=True)


if __name__ == "__main__":
    main()
