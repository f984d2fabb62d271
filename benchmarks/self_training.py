"""Self-training rounds on the demo: train, export, pseudo-label the unlabelled soundscapes, repeat.

    python benchmarks/self_training.py                    # all folds, default epochs, 3 rounds
    python benchmarks/self_training.py --quick            # 2 folds x 20 short epochs (smoke run)
    python benchmarks/self_training.py --rounds 4 optimizer.lr=3e-3   # extra Hydra overrides

Round 0 is plain training (``python run.py``). After each round but the last, its best folds are
exported as an ONNX ensemble (``birdsweep export``) and score the demo's unlabelled
``train_soundscapes/`` (``birdsweep pseudo-label``: mean over models of a softmax over classes
for ``loss=ce`` models, of the sigmoid outputs otherwise; scores below ``--floor`` set to 0,
windows whose max is below ``--threshold`` dropped). Round r+1 trains again with
``data.pseudo_labels=<round r's file>``.

Validation stays honest: the training side puts each pseudo-labelled soundscape in one fold and
keeps its windows out of that fold's training, and the labelled test soundscapes (the
soundscape score) are never pseudo-labelled (checked before round 0).

Each round is its own MLflow parent run (``task_name=self_training_r<r>``, tags
``self_training_round`` and ``benchmark=self_training``) holding its CV and soundscape scores,
``n_pseudo_windows_used`` and, when it made one, ``n_pseudo_windows_written`` plus the
pseudo-label file as an artifact. Prints one table and writes it to ``<root>/self_training.csv``.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
import time
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from benchmarks._common import REPO, compose_run_config, soundscape_fold_mean, timed_kfold
from birdsweep.data.audio import list_audio_files
from birdsweep.data.prepare import ensure_dataset
from birdsweep.data.windows import parse_row_id
from birdsweep.export.ensemble import export_ensemble
from birdsweep.export.select import select_checkpoints
from birdsweep.infer.output import write_table
from birdsweep.infer.pseudo import pseudo_label

log = logging.getLogger("benchmarks.self_training")


def _check_no_test_leak(data_cfg, unlabelled: Path) -> None:
    """Stop when an unlabelled soundscape is also a labelled (scored) one."""
    labels_csv = Path(str(data_cfg.soundscape_labels))
    if not labels_csv.is_file():
        return
    scored = {m[0] for r in pd.read_csv(labels_csv)["row_id"] if (m := parse_row_id(str(r)))}
    both = scored & {p.stem for p in list_audio_files(unlabelled)}
    if both:
        raise SystemExit(
            f"{unlabelled}: {len(both)} soundscape(s) (e.g. {sorted(both)[0]}) are also labelled "
            f"in {labels_csv}; pseudo-labelling them would leak the test set into training"
        )


def _log_to_run(tracking_uri: str, run_id: str | None, metrics: dict, artifact: Path | None):
    """Add the round's pseudo-label numbers (and file) to its finished MLflow parent run."""
    if not run_id or not tracking_uri:
        return
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    for k, v in metrics.items():
        client.log_metric(run_id, k, float(v))
    if artifact is not None:
        client.log_artifact(run_id, str(artifact), "pseudo_labels")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--root", type=Path, default=REPO / "outputs" / "benchmarks" / "self_training")
    ap.add_argument(
        "--cache-dir",
        type=Path,
        default=REPO / ".cache",
        help="demo data + decoded-audio cache (default: the project's, shared with run.py)",
    )
    ap.add_argument("--quick", action="store_true", help="2 folds x 20 short epochs")
    ap.add_argument("--rounds", type=int, default=3, help="training rounds, round 0 included")
    ap.add_argument("--demo-seed", type=int, default=0)
    ap.add_argument("--demo-noise", default="moderate", choices=["moderate", "hard"])
    ap.add_argument("--top-k", type=int, default=5, help="best folds exported per round")
    ap.add_argument("--floor", type=float, default=0.05, help="pseudo-label scores below -> 0")
    ap.add_argument("--threshold", type=float, default=0.5, help="keep windows with max >= this")
    ap.add_argument(
        "--activation",
        choices=["auto", "sigmoid", "softmax"],
        default="auto",
        help="pseudo-label scores: auto = softmax for loss=ce, else sigmoid",
    )
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime threads")
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="reuse folds finished by an earlier run of the same rounds (minutes then are not "
        "training times); default: train every fold afresh",
    )
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for every round")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be >= 1")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    base = [
        f"data.demo.seed={args.demo_seed}",
        f"data.demo.noise={args.demo_noise}",
        f"paths.cache_dir={args.cache_dir}",
        "trainer.progress=false",
        f"trainer.resume={str(args.reuse).lower()}",
        "+tags.benchmark=self_training",
    ]
    if args.quick:
        base += ["data.n_folds=2", "trainer.epochs=20"]
    cfg = compose_run_config([*base, *args.overrides], args.root)
    unlabelled = Path(str(cfg.data.pseudo_audio_dir))
    ensure_dataset(cfg.data)
    _check_no_test_leak(cfg.data, unlabelled)
    uri = str(cfg.logger.tracking_uri) if cfg.logger.get("enabled", True) else ""
    used_activations: set[str] = set()

    rows, pseudo_file, n_used = [], None, 0
    for r in range(args.rounds):
        t0 = time.monotonic()
        over = [*base, f"task_name=self_training_r{r}", f"+tags.self_training_round={r}"]
        if pseudo_file is not None:
            over.append(f"data.pseudo_labels={pseudo_file}")
        summary, train_min = timed_kfold([*over, *args.overrides], args.root)
        row = {
            "round": r,
            "pseudo_windows_used": n_used,
            "cv_macro_auc": summary.cv_macro_auc,
            "soundscape_auc_fold_mean": soundscape_fold_mean(summary),
            "soundscape_auc_ensemble": summary.soundscape_macro_auc,
            "pseudo_windows_written": None,
            "windows_scored": None,
            "train_minutes": train_min,
        }
        metrics = {"n_pseudo_windows_used": n_used}
        if r < args.rounds - 1:
            rdir = args.root / f"round{r}"
            sources = select_checkpoints(
                [summary.checkpoint_dir], min(args.top_k, len(summary.folds))
            )
            export_ensemble(sources, rdir / "ensemble", threads=args.threads, overwrite=True)
            df = pseudo_label(
                rdir / "ensemble",
                unlabelled,
                rdir / "pseudo_labels.csv",
                floor=args.floor,
                threshold=args.threshold,
                combine="mean",
                threads=args.threads,
                activation=args.activation,
            )
            used_activations.update(df.attrs["activations"])
            # named by content: the fold checkpoints are keyed by the config, which holds
            # only the path, so another content must mean another path (safe --reuse)
            digest = hashlib.sha1((rdir / "pseudo_labels.csv").read_bytes()).hexdigest()[:10]
            pseudo_file = rdir / f"pseudo_labels_{digest}.csv"
            os.replace(rdir / "pseudo_labels.csv", pseudo_file)
            n_used = len(df)
            row["pseudo_windows_written"] = n_used
            row["windows_scored"] = df.attrs["n_windows"]
            metrics["n_pseudo_windows_written"] = n_used
            log.info(
                "round %d pseudo-labels: %s",
                r,
                ", ".join(f"{k} {v}" for k, v in df.attrs["class_counts"].items() if v),
            )
        row["minutes"] = (time.monotonic() - t0) / 60
        _log_to_run(uri, summary.run_id, metrics, pseudo_file if r < args.rounds - 1 else None)
        rows.append(row)

    command = "python benchmarks/self_training.py " + " ".join(
        (["--quick"] if args.quick else [])
        + [f"--rounds {args.rounds}", f"--demo-seed {args.demo_seed}"]
        + ([f"--demo-noise {args.demo_noise}"] if args.demo_noise != "moderate" else [])
        + [f"--floor {args.floor:g}", f"--threshold {args.threshold:g}", f"--top-k {args.top_k}"]
        + [f"--activation {args.activation}"]
        + (["--reuse"] if args.reuse else [])
        + args.overrides
    )
    table = Table(
        title=f"self-training rounds (demo seed {args.demo_seed}, {args.demo_noise} noise; "
        f"pseudo-labels: {'/'.join(sorted(used_activations)) or '-'}, floor {args.floor:g}, threshold {args.threshold:g})"
    )
    for col in (
        "round",
        "pseudo windows used",
        "CV AUC (clips)",
        "soundscape AUC (fold mean)",
        "soundscape AUC (ensemble)",
        "pseudo windows written",
        "minutes (train / round)",
    ):
        table.add_column(col, justify="right")
    for w in rows:
        written = (
            "-"
            if w["pseudo_windows_written"] is None
            else f"{w['pseudo_windows_written']} of {w['windows_scored']}"
        )
        table.add_row(
            str(w["round"]),
            str(w["pseudo_windows_used"]),
            f"{w['cv_macro_auc']:.4f}",
            f"{w['soundscape_auc_fold_mean']:.4f}",
            f"{w['soundscape_auc_ensemble']:.4f}",
            written,
            f"{w['train_minutes']:.1f} / {w['minutes']:.1f}",
        )
    console = Console(width=160)
    console.print(table)
    console.print(f"command: {command}")
    write_table(pd.DataFrame(rows).assign(command=command), args.root / "self_training.csv")


if __name__ == "__main__":
    main()
