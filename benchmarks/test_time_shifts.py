"""Soundscape AUC of trained folds with and without test-time shifts (config group ``tta``).

    python benchmarks/test_time_shifts.py outputs/checkpoints/<config hash> [more dirs ...]

Shifts change only how windows are scored, so one training run per recipe is enough: for every
``fold*/last.pt`` under each directory this prints the macro ROC-AUC on the labelled
soundscapes of the data set it was trained on, each window alone and with the recording
context of ``conf/postprocess/file_max.yaml``, for several shift sets (the first, no shift, is
the baseline of each row's Δ).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from birdsweep.data.prepare import prepare_data  # noqa: E402
from birdsweep.scoring.context import FileMaxContext  # noqa: E402
from birdsweep.scoring.metric import macro_auc  # noqa: E402
from birdsweep.scoring.shifts import TestTimeShifts  # noqa: E402
from birdsweep.train.checkpoint import (
    load_checkpoint,  # noqa: E402
    load_model,  # noqa: E402
)
from birdsweep.train.soundscapes import (  # noqa: E402
    score_soundscapes,
    soundscape_files,
    soundscape_scores,
)

SHIFT_SETS = {
    "none": [0.0],
    "±0.625": [-0.625, 0.0, 0.625],
    "±1.25": [-1.25, 0.0, 1.25],
    "5 × 0.625 (default)": [-1.25, -0.625, 0.0, 0.625, 1.25],
}


def _cells(targets: np.ndarray, ens: dict[str, list], fold: int | None) -> list[str]:
    """``alone / context (Δ context vs no shift)`` per shift set, of one fold or their mean."""
    cells, base = [], 0.0
    for i, runs in enumerate(ens.values()):
        pick = runs[fold:] if fold is not None else runs
        alone = macro_auc(targets, np.mean([p for p, _ in pick], 0))
        ctx = macro_auc(targets, np.mean([c for _, c in pick], 0))
        base = ctx if i == 0 else base
        cells.append(f"{alone:.4f} / {ctx:.4f}" + (f" ({ctx - base:+.4f})" if i else ""))
    return cells


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("dirs", nargs="+", type=Path, help="checkpoint directories (config hashes)")
    ap.add_argument("--power", type=float, default=1.0, help="recording context power")
    args = ap.parse_args(argv)
    table = Table(title="soundscape macro AUC: alone / with recording context (Δ vs none)")
    for col in ["checkpoint", *SHIFT_SETS]:
        table.add_column(col)
    data_cache: dict = {}
    for d in args.dirs:
        ens: dict[str, list] = {k: [] for k in SHIFT_SETS}  # per shift set: (probs, scores)
        for ckpt in sorted(d.glob("fold*/last.pt")):
            cfg = OmegaConf.create(load_checkpoint(ckpt)["config"])
            key = str(cfg.data.root)
            if key not in data_cache:
                data_cache[key] = prepare_data(cfg.data, cfg.paths.cache_dir, progress=False)
            sc = data_cache[key].soundscapes
            if sc is None or not len(sc.items):
                raise SystemExit(f"{ckpt}: its data set {key} has no labelled soundscapes")
            sr, labels = data_cache[key].sample_rate, data_cache[key].meta.labels
            model = load_model(ckpt)[0]
            secs = float(cfg.data.window_seconds)
            for name, shifts in SHIFT_SETS.items():
                tta = TestTimeShifts(shifts)
                p = [score_soundscapes(model, soundscape_files(sc), labels, sr, secs, tta)]
                alone = soundscape_scores(p, sc, FileMaxContext(0.0)).scores
                ens[name].append(
                    (alone, soundscape_scores(p, sc, FileMaxContext(args.power)).scores)
                )
            table.add_row(f"{d.name}/{ckpt.parent.name}", *_cells(sc.targets, ens, -1))
        if len(ens["none"]) > 1:  # the fold ensemble, as `python run.py` scores it
            table.add_row(f"{d.name}/ensemble", *_cells(sc.targets, ens, None))
    Console().print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
