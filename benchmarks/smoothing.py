"""Neighbour smoothing of window scores (``postprocess.smooth``), measured on finished runs.

    python benchmarks/smoothing.py outputs/benchmarks/real outputs/benchmarks/recipe

Smoothing is applied after training, so it needs no retraining: for every run that
``benchmarks/default_recipe.py`` left under each root (``outputs/checkpoints/*/predictions.npz``:
each fold's probabilities of every labelled soundscape window), the windows are put in time
order per recording and scored as ``python run.py`` and ``birdsweep infer`` score them
(:class:`birdsweep.scoring.context.FileMaxContext` with the run's recording context, then the
mean over folds) with each set of weights. Prints one table: run, soundscape macro AUC without
smoothing (checked against the score the run logged) and with each kernel, and the gap with a
95 % paired bootstrap interval (whole test soundscapes resampled).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import yaml
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from birdsweep.scoring.context import FileMaxContext  # noqa: E402
from birdsweep.scoring.metric import macro_auc, paired_bootstrap_gap  # noqa: E402
from birdsweep.train.checkpoint import load_checkpoint  # noqa: E402

KERNELS = {"3: .25 .5 .25": (0.25, 0.5, 0.25), "5: .1 .2 .4 .2 .1": (0.1, 0.2, 0.4, 0.2, 0.1)}


def run_name(cfg: dict) -> str:
    """``<data set> <backbone>@<epochs> lr <lr>`` of a run's config."""
    return (
        f"{Path(cfg['data']['root']).name} {cfg['model']['backbone']}@{cfg['trainer']['epochs']}"
        f" lr {cfg['optimizer']['lr']:g}"
    )


def smoothed_scores(pred: np.lib.npyio.NpzFile, power: float, smooth: tuple[float, ...]):
    """``(targets, scores, recordings)`` of the labelled windows in time order per recording."""
    rows = [str(r) for r in pred["soundscape_row_ids"]]
    rec = np.array([r.rsplit("_", 1)[0] for r in rows])
    end = np.array([int(r.rsplit("_", 1)[1]) for r in rows])
    order = np.lexsort((end, rec))
    ctx = FileMaxContext(power, smooth)
    folds = pred["soundscape_fold_probs"][:, order]
    scores = np.mean([ctx(f, rec[order]) for f in folds], axis=0)
    return pred["soundscape_targets"][order], scores, rec[order]


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("roots", nargs="+", type=Path, help="--root folders of default_recipe.py")
    ap.add_argument("--resamples", type=int, default=1000)
    args = ap.parse_args()
    table = Table(title="neighbour smoothing of window scores (fold ensemble, mean)")
    table.add_column("run")
    table.add_column("none", justify="right")
    for k in KERNELS:
        table.add_column(k, justify="right")
        table.add_column(f"{k.split(':')[0]} vs none [95 %]", justify="right")
    gaps: dict[str, list[float]] = {k: [] for k in KERNELS}
    for root in args.roots:
        for path in sorted((root / "outputs" / "checkpoints").glob("*/predictions.npz")):
            config = load_checkpoint(path.parent / "fold0" / "best.pt")["config"]
            cfg = yaml.safe_load(config) if isinstance(config, str) else config
            power = float((cfg.get("postprocess") or {}).get("power", 0.0))
            pred = np.load(path)
            y, base, rec = smoothed_scores(pred, power, ())
            logged = macro_auc(pred["soundscape_targets"], pred["soundscape_scores"])
            if abs(macro_auc(y, base) - logged) > 1e-9:
                raise SystemExit(f"{path}: rescored {macro_auc(y, base)} != logged {logged}")
            cells = [run_name(cfg), f"{logged:.4f}"]
            for name, w in KERNELS.items():
                _, s, _ = smoothed_scores(pred, power, w)
                gap, lo, hi = paired_bootstrap_gap(y, s, base, rec, n_resamples=args.resamples)
                gaps[name].append(gap)
                cells += [f"{macro_auc(y, s):.4f}", f"{gap:+.3f} [{lo:+.3f}, {hi:+.3f}]"]
            table.add_row(*cells)
    Console(width=200).print(table)
    for name, g in gaps.items():
        if g:
            print(
                f"kernel {name}: mean gap {np.mean(g):+.4f}, better on {sum(x > 0 for x in g)}/{len(g)}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
