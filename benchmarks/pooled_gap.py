"""Pooled paired gap of two backbones over several data sets (the "pooled" row of the
real-recording table in benchmarks/README.md).

Reads every run under a checkpoint folder (``<root>/outputs/checkpoints/<key>/``: the fold
checkpoints and ``predictions.npz`` that ``benchmarks/default_recipe.py`` leaves), groups them by
data set and ``model.backbone`` (``backbone@epochs`` names one schedule of it), and prints each set's soundscape macro AUC of both and the mean
gap over the sets with a 95 % bootstrap interval: whole test soundscapes are resampled within
each set, both systems are scored on each resample, and the per-set gaps are averaged::

    python benchmarks/pooled_gap.py outputs/benchmarks/real mobilenetv4_conv_small tf_efficientnet_lite0
    python benchmarks/pooled_gap.py outputs/benchmarks/real tf_efficientnet_lite0@40 tf_efficientnet_lite0@25
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from birdsweep.scoring.metric import macro_auc  # noqa: E402
from birdsweep.train.checkpoint import load_checkpoint  # noqa: E402


def runs_by_set_and_backbone(root: Path) -> dict[tuple[str, str], np.lib.npyio.NpzFile]:
    """``(data set folder name, name) -> predictions.npz`` of every run under ``root``, each run
    under two names: its backbone and ``backbone@epochs`` (when a backbone was run with several
    schedules, the plain name is the one with the most epochs)."""
    runs, epochs_of = {}, {}
    for pred in sorted((root / "outputs" / "checkpoints").glob("*/predictions.npz")):
        config = load_checkpoint(pred.parent / "fold0" / "best.pt")["config"]
        cfg = yaml.safe_load(config) if isinstance(config, str) else config
        data_set, backbone = Path(cfg["data"]["root"]).name, cfg["model"]["backbone"]
        epochs = int(cfg["trainer"]["epochs"])
        runs[(data_set, f"{backbone}@{epochs}")] = np.load(pred)
        if epochs >= epochs_of.get((data_set, backbone), -1):
            epochs_of[(data_set, backbone)] = epochs
            runs[(data_set, backbone)] = runs[(data_set, f"{backbone}@{epochs}")]
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("root", type=Path, help="the --root of benchmarks/default_recipe.py")
    ap.add_argument("baseline", help="model.backbone of the reference runs")
    ap.add_argument("other", help="model.backbone of the runs compared with it")
    ap.add_argument("--resamples", type=int, default=1000)
    args = ap.parse_args()
    runs = runs_by_set_and_backbone(args.root)
    sets = sorted({s for s, b in runs if (s, args.baseline) in runs and (s, args.other) in runs})
    if not sets:
        raise SystemExit(f"{args.root}: no data set has runs of both backbones")
    data = []
    for s in sets:
        a, b = runs[(s, args.baseline)], runs[(s, args.other)]
        if list(a["soundscape_row_ids"]) != list(b["soundscape_row_ids"]):
            raise SystemExit(f"{s}: the two runs scored different soundscape windows")
        files = np.array([r.rsplit("_", 1)[0] for r in a["soundscape_row_ids"]])
        y = a["soundscape_targets"]
        data.append((files, y, a["soundscape_scores"], b["soundscape_scores"]))
        print(
            f"{s}: {args.baseline} {macro_auc(y, a['soundscape_scores']):.4f}, "
            f"{args.other} {macro_auc(y, b['soundscape_scores']):.4f}"
        )
    point = np.mean([macro_auc(y, sb) - macro_auc(y, sa) for _, y, sa, sb in data])
    rng = np.random.default_rng(0)
    gaps = []
    for _ in range(args.resamples):
        per_set = []
        for files, y, sa, sb in data:
            names = np.unique(files)
            idx = np.concatenate(
                [np.flatnonzero(files == f) for f in rng.choice(names, len(names))]
            )
            per_set.append(macro_auc(y[idx], sb[idx]) - macro_auc(y[idx], sa[idx]))
        gaps.append(np.nanmean(per_set))
    lo, hi = np.nanpercentile(gaps, [2.5, 97.5])
    print(
        f"pooled gap {args.other} - {args.baseline} over {len(sets)} sets: "
        f"{point:+.4f} [{lo:+.4f}, {hi:+.4f}]"
    )


if __name__ == "__main__":
    main()
