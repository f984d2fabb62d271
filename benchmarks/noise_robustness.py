"""Does training noise help on noisy soundscapes? Same model and budget, three aug options.

    python benchmarks/noise_robustness.py                 # all folds, default epochs
    python benchmarks/noise_robustness.py --quick         # 2 folds x 12 short epochs (smoke run)

Prints one table: for each ``aug`` option, the K-fold mean macro AUC on held-out clean clips,
the K-fold mean macro AUC of the fold models on the demo's noisy test soundscapes, the AUC of
their ensemble, the wall time, and the soundscape AUC relative to ``aug=clean`` (the baseline,
measured in the same run).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from benchmarks._common import REPO, soundscape_fold_mean, timed_kfold

AUGS = ["clean", "noisy", "noisy_mixup"]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--root", type=Path, default=REPO / "outputs" / "benchmarks" / "noise")
    ap.add_argument("--quick", action="store_true", help="2 folds x 12 short epochs")
    ap.add_argument("--demo-seed", type=int, default=0)
    ap.add_argument("--demo-noise", default="moderate", choices=["moderate", "hard"])
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = ap.parse_args()
    base = [
        f"data.demo.seed={args.demo_seed}",
        f"data.demo.noise={args.demo_noise}",
        "trainer.progress=false",
        "+tags.benchmark=noise_robustness",
        "trainer.resume=false",
    ]
    if args.quick:
        base += ["data.n_folds=2", "trainer.epochs=12"]
    rows = []
    for aug in AUGS:
        summary, minutes = timed_kfold([*base, f"aug={aug}", *args.overrides], args.root)
        rows.append((aug, summary, minutes))
    ref = soundscape_fold_mean(rows[0][1])
    table = Table(
        title=f"aug vs noisy soundscapes (demo seed {args.demo_seed}, {args.demo_noise} noise)"
    )
    for col in (
        "aug",
        "CV AUC (clips)",
        "soundscape AUC (fold mean)",
        "soundscape AUC (ensemble)",
        "minutes",
        "vs clean",
    ):
        table.add_column(col, justify="right")
    for aug, s, minutes in rows:
        sc = soundscape_fold_mean(s)
        table.add_row(
            aug,
            f"{s.cv_macro_auc:.4f}",
            f"{sc:.4f}",
            f"{s.soundscape_macro_auc:.4f}",
            f"{minutes:.1f}",
            f"{sc - ref:+.4f}",
        )
    Console().print(table)
    Console().print(
        "command: python benchmarks/noise_robustness.py "
        + " ".join((["--quick"] if args.quick else []) + args.overrides)
    )


if __name__ == "__main__":
    main()
