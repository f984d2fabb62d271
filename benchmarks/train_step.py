"""Where a CPU training step of the default recipe goes, stage by stage, and whether glibc's
malloc settings change it.

    python benchmarks/train_step.py                                  # built-in demo data
    python benchmarks/train_step.py -- data=birdclef data.root=/path/to/set model=sed_v2s

Builds the real objects of ``conf/train.yaml`` (data, augmentation, model, loss, optimizer) with
the given overrides and times the stages of ``FoldTrainer.train_step`` on fold 0's training
crops: batch loading, waveform augmentations, mel front end, spectrogram augmentations,
forward + loss, backward, clip + optimizer step. Each variant runs in its own process, the
variants alternate (``--rounds``), and the table shows the mean ms per step and the ratio
against the baseline of the same run. The variant raises glibc's mmap and trim thresholds to
1 GiB (``mallopt``), so the step's 20-40 MB temporaries are reused from the heap instead of
being mapped and unmapped each time.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STAGES = ("load", "wave augment", "front end", "spec augment", "forward + loss", "backward", "step")
VARIANTS = {"baseline": False, "mallopt 1 GiB": True}
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers


def time_steps(overrides: list[str], steps: int, warmup: int, mallopt: bool) -> dict[str, float]:
    """Mean ms per stage over ``steps`` training steps (after ``warmup``) of fold 0."""
    if mallopt:
        libc = ctypes.CDLL("libc.so.6")
        for param in (M_MMAP_THRESHOLD, M_TRIM_THRESHOLD):
            libc.mallopt(param, 1 << 30)
    import torch

    from benchmarks._common import compose_run_config
    from birdsweep.config import build
    from birdsweep.data.prepare import prepare_data
    from birdsweep.train.kfold import _fold_inputs
    from birdsweep.train.loop import FoldTrainer, TrainerSettings

    cfg = compose_run_config(
        ["trainer.progress=false", *overrides], ROOT / "outputs" / "benchmarks"
    )
    data = prepare_data(cfg.data, cfg.paths.cache_dir, int(cfg.seed), progress=False)
    settings = TrainerSettings.from_config(cfg.trainer)
    if settings.threads:
        torch.set_num_threads(int(settings.threads))
    loss_fn, aug = build(cfg.loss), build(cfg.aug)
    if aug.needs_noise:
        aug.bind_noise(data.noise_clips(int(cfg.data.decode_workers), False), data.sample_rate)
    inputs = _fold_inputs(cfg, data, 0, loss_fn, aug.clip_transform)
    trainer = FoldTrainer(
        build(cfg.model, num_classes=len(data.meta.labels)),
        loss_fn,
        aug,
        build(cfg.optimizer),
        build(cfg.scheduler),
        settings,
        ROOT / "outputs" / "benchmarks" / "train_step",
    )
    optimizer, scheduler, _ = trainer.make_optimization(steps + warmup)
    model = trainer.model.train()
    loader = torch.utils.data.DataLoader(
        inputs.train_ds, batch_size=settings.batch_size, shuffle=True, drop_last=True
    )
    totals = dict.fromkeys(STAGES, 0.0)
    batches = iter(loader)
    for i in range(warmup + steps):
        marks = [time.perf_counter()]
        try:
            wave, target, weight = next(batches)
        except StopIteration:
            batches = iter(loader)
            wave, target, weight = next(batches)
        marks.append(time.perf_counter())
        wave, target, weight = aug.wave(wave, target, weight)
        marks.append(time.perf_counter())
        spec = model.frontend(wave)
        marks.append(time.perf_counter())
        spec, target, weight = aug.spec(spec, target, weight)
        marks.append(time.perf_counter())
        loss = loss_fn(model.forward_spec(spec), target, weight)
        marks.append(time.perf_counter())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        marks.append(time.perf_counter())
        if settings.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
        scheduler.step()
        marks.append(time.perf_counter())
        if i >= warmup:
            for stage, t0, t1 in zip(STAGES, marks[:-1], marks[1:], strict=True):
                totals[stage] += t1 - t0
    return {k: 1e3 * v / steps for k, v in totals.items()}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--steps", type=int, default=30, help="timed steps per process")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2, help="processes per variant, alternated")
    ap.add_argument("--variant", choices=list(VARIANTS), help=argparse.SUPPRESS)  # child run
    ap.add_argument("overrides", nargs="*", help="Hydra overrides (after --)")
    args = ap.parse_args()
    if args.variant:
        res = time_steps(args.overrides, args.steps, args.warmup, VARIANTS[args.variant])
        print(json.dumps(res))
        return
    from rich.console import Console
    from rich.table import Table

    runs: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    for r in range(args.rounds):
        for variant in VARIANTS:
            cmd = [sys.executable, __file__, "--variant", variant, "--steps", str(args.steps)]
            cmd += ["--warmup", str(args.warmup), "--", *args.overrides]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"{variant} failed:\n{out.stderr[-3000:]}")
            runs[variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1}/{args.rounds}, {variant}: done", flush=True)
    mean = {v: {s: sum(x[s] for x in xs) / len(xs) for s in STAGES} for v, xs in runs.items()}
    base = next(iter(VARIANTS))
    table = Table(title=f"training step, ms (mean of {args.rounds} x {args.steps} steps)")
    table.add_column("stage")
    for v in VARIANTS:
        table.add_column(v, justify="right")
        if v != base:
            table.add_column(f"{v} / {base}", justify="right")
    for stage in [*STAGES, "total"]:
        vals = {v: sum(m.values()) if stage == "total" else m[stage] for v, m in mean.items()}
        row = [stage]
        for v in VARIANTS:
            row.append(f"{vals[v]:.1f}")
            if v != base:
                row.append(f"{vals[v] / vals[base]:.2f}")
        table.add_row(*row)
    Console().print(table)
    print("command:", " ".join(["python", "benchmarks/train_step.py", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
