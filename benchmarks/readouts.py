"""Score trained fold checkpoints on labelled soundscapes with each window read-out.

    python benchmarks/readouts.py outputs/checkpoints/<config hash> [more dirs ...]

A model's window score can come from its clip logits or from the max over its frame logits
(``model.readout``); the read-out does not change training, so one run per recipe is enough to
compare them. For every ``fold*/best.pt`` and ``fold*/last.pt`` under each directory this
prints the macro ROC-AUC on the labelled soundscapes of the data set the checkpoint was trained
on (``data.soundscape_labels`` of its config), for the read-outs ``clip`` (sigmoid), ``clip
softmax``, ``frame_max`` and ``mean``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from birdsweep.data.dataset import Windows  # noqa: E402
from birdsweep.data.prepare import prepare_data  # noqa: E402
from birdsweep.model.sed import READOUTS, window_logits  # noqa: E402
from birdsweep.scoring.metric import macro_auc  # noqa: E402
from birdsweep.train.checkpoint import (
    load_checkpoint,  # noqa: E402
    load_model,  # noqa: E402
)


def score_readouts(checkpoint: Path, data_cache: dict) -> dict[str, float]:
    """Soundscape macro AUC of one checkpoint for every read-out."""
    cfg = OmegaConf.create(load_checkpoint(checkpoint)["config"])
    key = str(cfg.data.root)
    if key not in data_cache:
        data_cache[key] = prepare_data(cfg.data, cfg.paths.cache_dir, progress=False)
    data = data_cache[key]
    sc = data.soundscapes
    if sc is None or not len(sc.items):
        raise ValueError(f"{checkpoint}: its data set {key} has no labelled soundscapes")
    model = load_model(checkpoint)[0]
    win = int(round(float(cfg.data.window_seconds) * data.sample_rate))
    loader = torch.utils.data.DataLoader(Windows(sc.cache, sc.items, sc.targets, win), 64)
    outs: dict[str, list[torch.Tensor]] = {"clip": [], "frame": []}
    with torch.no_grad():
        for wave, _ in loader:
            o = model(wave)
            outs["clip"].append(o["clip"])
            outs["frame"].append(o["frame"])
    out = {k: torch.cat(v) for k, v in outs.items()}
    scores = {r: torch.sigmoid(window_logits(out, r)).numpy() for r in READOUTS}
    scores["clip softmax"] = torch.softmax(out["clip"], -1).numpy()
    return {k: macro_auc(sc.targets, np.asarray(v)) for k, v in scores.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("dirs", nargs="+", type=Path, help="checkpoint dirs (holding fold*/)")
    ap.add_argument("--csv", type=Path, help="also write the table here")
    a = ap.parse_args(argv)
    rows, cache = [], {}
    for d in a.dirs:
        found = sorted(d.glob("fold*/best.pt")) + sorted(d.glob("fold*/last.pt"))
        if not found:
            raise SystemExit(f"{d}: no fold*/best.pt or fold*/last.pt under it")
        for ck in found:
            rows.append({"run": d.name, "checkpoint": f"{ck.parent.name}/{ck.stem}"})
            rows[-1].update(score_readouts(ck, cache))
    df = pd.DataFrame(rows)
    table = Table(title="soundscape macro ROC-AUC by read-out")
    for c in df.columns:
        table.add_column(c, justify="left" if c in ("run", "checkpoint") else "right")
    for r in df.itertuples(index=False):
        table.add_row(*[f"{v:.4f}" if isinstance(v, float) else str(v) for v in r])
    Console().print(table)
    if a.csv:
        df.to_csv(a.csv, index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
