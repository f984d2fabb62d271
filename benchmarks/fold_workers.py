"""Training throughput of one fold on all cores against several folds side by side
(``trainer.fold_workers``), for the default recipe's real training step.

    python benchmarks/fold_workers.py                                  # built-in demo data
    python benchmarks/fold_workers.py --workers 2 -- data=birdclef data.root=/path/to/set

Each layout runs as processes started together: ``1 x C`` is one process with all C cores'
threads (``trainer.fold_workers=1``), ``W x C/W`` is W processes with C/W threads each, as the
fold workers train. Every process times ``--steps`` training steps of fold 0 (after a warm-up,
see ``benchmarks/train_step.py``); the layouts alternate for ``--rounds`` rounds, and the table
shows ms per step in each process, the summed steps per second and the ratio against ``1 x C``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = """
import json, sys, torch
sys.path.insert(0, {root!r})
torch.set_num_threads({threads})
from benchmarks.train_step import time_steps
res = time_steps({overrides!r}, {steps}, {warmup}, False)
print(json.dumps(sum(res.values())))
"""


def run_layout(processes: int, threads: int, overrides: list[str], steps: int, warmup: int):
    """ms per step of each of ``processes`` processes started together."""
    code = CHILD.format(
        root=str(ROOT), threads=threads, overrides=overrides, steps=steps, warmup=warmup
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    out = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        sys.exit("a timing process failed (run it alone to see why)")
    return [float(o.strip().splitlines()[-1]) for o in out]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--workers", type=int, default=2, help="fold workers of the variant")
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--steps", type=int, default=30, help="timed steps per process")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("overrides", nargs="*", help="Hydra overrides (after --)")
    args = ap.parse_args()
    from rich.console import Console
    from rich.table import Table

    layouts = [(1, args.cores), (args.workers, max(1, args.cores // args.workers))]
    runs: dict[tuple[int, int], list[list[float]]] = {lay: [] for lay in layouts}
    for r in range(args.rounds):
        for lay in layouts:
            runs[lay].append(run_layout(*lay, args.overrides, args.steps, args.warmup))
            print(f"round {r + 1}/{args.rounds}, {lay[0]} x {lay[1]}: done", flush=True)
    table = Table(
        title=f"training steps, {args.cores} cores (mean of {args.rounds} rounds x {args.steps})"
    )
    for col in ("processes x threads", "ms per step (each process)", "steps / s", "ratio"):
        table.add_column(col, justify="right")
    base = None
    for lay, rounds in runs.items():
        per_proc = [sum(r[i] for r in rounds) / len(rounds) for i in range(lay[0])]
        rate = sum(1e3 / ms for ms in per_proc)
        base = base or rate
        ms = ", ".join(f"{m:.0f}" for m in per_proc)
        table.add_row(f"{lay[0]} x {lay[1]}", ms, f"{rate:.2f}", f"{rate / base:.2f}")
    Console().print(table)
    print("command:", " ".join(["python", "benchmarks/fold_workers.py", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
