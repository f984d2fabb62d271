"""The command-line entry points: the ``birdsweep`` command (data generation, export, inference
and report sub-commands) and :func:`train_task`, the Hydra task of ``python run.py``.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from birdsweep.atomic import WriteError

if TYPE_CHECKING:
    from omegaconf import DictConfig
    from rich.console import Console

    from birdsweep.train.kfold import KFoldSummary

log = logging.getLogger(__name__)


# ------------------------------------------------------------------- python run.py (training)


def print_summary(summary: KFoldSummary, console: Console | None = None) -> None:
    """Print the per-fold table and the K-fold mean."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title="K-fold results (macro ROC-AUC)")
    for col in ("fold", "val AUC", "best epoch", "soundscape AUC", "minutes", "note"):
        table.add_column(col, justify="right")
    for r in summary.folds:
        table.add_row(
            str(r.fold),
            f"{r.val_macro_auc:.4f}",
            str(r.best_epoch + 1),
            f"{r.soundscape_macro_auc:.4f}",
            f"{r.seconds / 60:.1f}",
            "reused" if r.reused else "",
        )
    table.add_section()
    table.add_row(
        "mean",
        f"{summary.cv_macro_auc:.4f} ± {summary.cv_macro_auc_std:.4f}",
        "",
        f"{summary.soundscape_macro_auc:.4f} (ens)",
        f"{sum(r.seconds for r in summary.folds) / 60:.1f}",
        "",
    )
    console.print(table)
    if summary.n_bad_files:
        console.print(f"[yellow]{summary.n_bad_files} audio file(s) skipped (see log)[/yellow]")
    console.print(f"checkpoints: {summary.checkpoint_dir}")
    if summary.run_id:
        console.print(f"MLflow parent run: {summary.run_id}")


def train_task(cfg: DictConfig) -> float:
    """The task of ``python run.py``: run :func:`~birdsweep.train.kfold.run_kfold` (as a sweep
    trial when the sweeper set ``sweep_trial``), print the summary, return the metric.

    Errors are logged with the run folder before they propagate, so a failed run is
    always explained next to its outputs.
    """
    from hydra.core.hydra_config import HydraConfig
    from rich.console import Console

    from birdsweep.sweep.trial import attach_trial
    from birdsweep.train.distributed import current as current_rank
    from birdsweep.train.kfold import StopJob, run_kfold

    out_dir = HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else None
    try:
        # inside an Optuna sweep: report each fold to the trial and prune (birdsweep.sweep)
        cfg, on_fold_end = attach_trial(cfg)
        summary = run_kfold(cfg, on_fold_end=on_fold_end)
    except StopJob as exc:  # stopped on purpose (a pruned sweep trial): not an error
        log.info("%s; outputs in %s", exc, out_dir)
        raise
    except Exception:
        log.exception("training failed; outputs in %s", out_dir)
        raise
    if not current_rank().is_main:  # under torchrun only rank 0 reports
        return float(summary.cv_macro_auc)
    print_summary(summary)
    if out_dir:
        Console().print(f"outputs: {out_dir}")
    value = getattr(summary, str(cfg.get("optimized_metric", "cv_macro_auc")))
    return float(value) if math.isfinite(value) else float("nan")


# ------------------------------------------------------------------------- birdsweep <command>


def _demo_data(args: argparse.Namespace) -> int:
    from birdsweep.data.demo import generate_demo_dataset

    out = generate_demo_dataset(
        args.out,
        seed=args.seed,
        n_classes=args.classes,
        noise=args.noise,
        n_train_soundscapes=args.train_soundscapes,
        n_test_soundscapes=args.test_soundscapes,
        overwrite=args.overwrite,
    )
    print(f"demo data set written to {out}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from birdsweep.export.ensemble import export_ensemble
    from birdsweep.export.select import select_checkpoints, select_from_mlflow
    from birdsweep.track.store import default_tracking_uri

    uri = args.tracking_uri
    if args.checkpoints:
        sources = select_checkpoints(args.checkpoints, args.top_k)
    else:
        uri = uri or default_tracking_uri()
        sources = select_from_mlflow(uri, args.experiment, args.runs, args.top_k, args.metric)
    selection = {
        "experiment": args.experiment,
        "runs": args.runs,
        "checkpoints": args.checkpoints,
        "top_k": args.top_k,
        "metric": args.metric,
    }
    res = export_ensemble(
        sources,
        args.out,
        shared_frontend=not args.separate_graphs,
        opset=args.opset,
        dynamo=not args.legacy_exporter,
        stft=args.stft,
        combine=args.combine,
        file_max_power=args.file_max_power,
        shifts=args.shifts,
        parity_audio=args.parity_audio,
        tolerance=args.tolerance,
        tracking_uri=uri,
        experiment=args.experiment or "birdsweep",
        selection={k: v for k, v in selection.items() if v is not None},
        overwrite=args.overwrite,
    )
    man = res.manifest
    for m in man["models"]:
        print(f"  model {m['index']}: fold {m['fold']} score {m['score']:.4f}  {m['checkpoint']}")
    diff = man["parity"]["max_abs_diff"]
    real = "n/a" if diff["real"] is None else f"{diff['real']:.2e}"
    print(
        f"ensemble of {len(man['models'])} model(s) in {len(man['graphs'])} graph(s) -> {res.out_dir} "
        f"(parity max |onnx - torch|: random {diff['random']:.2e}, real {real})"
    )
    if res.mlflow_run_id:
        print(f"MLflow run {res.mlflow_run_id} (tag ensemble) at {uri}")
    return 0


def _infer(args: argparse.Namespace) -> int:
    from birdsweep.infer.ensemble import label_files

    s = label_files(
        args.model,
        args.audio,
        args.out,
        output_format=args.format,
        combine=args.combine,
        threshold=args.threshold,
        threads=args.threads,
        file_max_power=args.file_max_power,
        shifts=args.shifts,
        batch_size=args.batch_size,
        fail_windows=args.fail_windows,
        progress=not args.no_progress,
    )
    rate = s.n_windows / s.seconds if s.seconds > 0 else float("nan")
    print(
        f"{s.n_rows} row(s) from {s.n_windows} window(s) of {s.n_files} file(s) -> {s.out} "
        f"({s.seconds:.1f} s, {rate:.1f} windows/s)"
    )
    if s.failures:
        print(f"WARNING: {len(s.failures)} file(s) could not be decoded; their rows hold 0:")
        for f in s.failures[:20]:
            print(f"  {f.error}")
    return 0


def _pseudo_label(args: argparse.Namespace) -> int:
    import textwrap

    from birdsweep.infer.pseudo import pseudo_label

    df = pseudo_label(
        args.model,
        args.audio,
        args.out,
        floor=args.floor,
        threshold=args.threshold,
        combine=args.combine,
        threads=args.threads,
        activation=args.activation,
        progress=not args.no_progress,
    )
    print(
        f"{len(df)} of {df.attrs['n_windows']} window(s) kept "
        f"({'/'.join(sorted(set(df.attrs['activations'])))}, max score >= {args.threshold:g}, "
        f"scores < {args.floor:g} set to 0) -> {args.out}"
    )
    counts = " ".join(f"{k}:{v}" for k, v in df.attrs["class_counts"].items())
    print(f"windows per class with score >= {args.threshold:g}:")
    print(
        textwrap.fill(
            counts,
            width=100,
            initial_indent="  ",
            subsequent_indent="  ",
            break_long_words=False,
            break_on_hyphens=False,
        )
    )
    if df.attrs["failures"]:
        print(f"WARNING: {len(df.attrs['failures'])} file(s) could not be decoded (no rows):")
        for f in df.attrs["failures"][:20]:
            print(f"  {f['error']}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from birdsweep.evaluate.report import write_report

    page = write_report(
        args.run,
        args.out,
        args.tracking_uri,
        args.data_root,
        classes_per_page=args.classes_per_page,
        top_pairs=args.top_pairs,
        log_to_mlflow=not args.no_log,
    )
    logged = "" if args.no_log else f" (and logged to run {args.run} as report/)"
    print(f"report written to {page}{logged}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``birdsweep`` command."""
    parser = argparse.ArgumentParser(prog="birdsweep", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo-data", help="write a synthetic BirdCLEF 2025-layout data set")
    p.add_argument("--out", required=True, help="folder to write")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--classes", type=int, default=24, help="number of species (default 24)")
    p.add_argument(
        "--train-soundscapes", type=int, default=6, help="unlabelled 60 s soundscapes (default 6)"
    )
    p.add_argument(
        "--test-soundscapes",
        type=int,
        default=8,
        help="labelled 60 s test soundscapes (default 8; more = a steadier soundscape AUC)",
    )
    p.add_argument(
        "--noise", choices=["moderate", "hard"], default="moderate", help="soundscape noise level"
    )
    p.add_argument("--overwrite", action="store_true", help="rewrite an existing data set")
    p.set_defaults(func=_demo_data)

    p = sub.add_parser("export", help="export the best fold checkpoints as an ONNX CPU ensemble")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--experiment", help="MLflow experiment: pick its best folds")
    src.add_argument("--runs", nargs="+", help="MLflow run ids (a job run = all its folds)")
    src.add_argument("--checkpoints", nargs="+", help="best.pt files or their folders")
    p.add_argument("--top-k", type=int, default=None, help="keep the K best folds (default all)")
    p.add_argument(
        "--metric",
        default=None,
        help="pick the best job by this parent-run metric (e.g. cv_macro_auc) and use its folds; "
        "default: best folds by best_val_macro_auc across jobs",
    )
    p.add_argument(
        "--tracking-uri",
        help="MLflow URI (default $MLFLOW_TRACKING_URI or sqlite:///outputs/mlflow.db)",
    )
    p.add_argument("--out", required=True, help="ensemble folder to write")
    p.add_argument(
        "--combine", choices=["rank", "mean"], default="rank", help="default combination"
    )
    p.add_argument(
        "--file-max-power",
        type=float,
        default=None,
        help="recording context of submission scores: window × recording max^POWER per class "
        "(default: the training config's postprocess.power; 0 = off)",
    )
    p.add_argument(
        "--shifts",
        type=float,
        nargs="+",
        default=None,
        help="test-time shifts in seconds, probabilities averaged, e.g. -0.625 0 0.625 "
        "(default: the training config's tta.seconds; 0 = each window once)",
    )
    p.add_argument(
        "--separate-graphs", action="store_true", help="one graph per model (no shared front end)"
    )
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    p.add_argument(
        "--legacy-exporter", action="store_true", help="TorchScript exporter instead of dynamo"
    )
    p.add_argument(
        "--stft",
        choices=["factored", "onnx"],
        default="factored",
        help="the front end's STFT in the graph: factored (matrix products, faster in "
        "onnxruntime; default) or onnx (the STFT operator)",
    )
    p.add_argument(
        "--parity-audio",
        nargs="+",
        help="audio for the parity check (default: training soundscapes)",
    )
    p.add_argument("--tolerance", type=float, default=1e-4, help="max |onnx - torch| probability")
    p.add_argument("--overwrite", action="store_true", help="replace an ensemble already in --out")
    p.set_defaults(func=_export)

    p = sub.add_parser("infer", help="label recordings with an exported ensemble")
    p.add_argument("--model", required=True, help="ensemble folder from birdsweep export")
    p.add_argument("--audio", required=True, nargs="+", help="audio files and/or folders")
    p.add_argument("--out", required=True, help="CSV to write")
    p.add_argument("--format", choices=["submission", "detections"], default="submission")
    p.add_argument(
        "--combine",
        choices=["rank", "mean"],
        default=None,
        help="default: the manifest's for submission, mean for detections",
    )
    p.add_argument("--threshold", type=float, default=0.5, help="detections: smallest score kept")
    p.add_argument(
        "--file-max-power",
        type=float,
        default=None,
        help="recording context: window × recording max^POWER per class (default: the "
        "manifest's for a submission, 0 for detections)",
    )
    p.add_argument(
        "--shifts",
        type=float,
        nargs="+",
        default=None,
        help="test-time shifts in seconds, probabilities averaged (default: the manifest's; "
        "0 = each window once, the fastest)",
    )
    p.add_argument(
        "--threads", type=int, default=None, help="onnxruntime threads (default: all cores)"
    )
    p.add_argument("--batch-size", type=int, default=8, help="windows per onnxruntime call")
    p.add_argument(
        "--fail-windows",
        type=int,
        default=12,
        help="rows for an undecodable file without a readable duration (default 12 = 60 s)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_infer)

    p = sub.add_parser(
        "pseudo-label", help="soft labels of unlabelled soundscape windows (self-training)"
    )
    p.add_argument("--model", required=True, help="ensemble folder from birdsweep export")
    p.add_argument(
        "--audio", required=True, nargs="+", help="unlabelled soundscapes (files and/or folders)"
    )
    p.add_argument("--out", required=True, help="CSV to write (data.pseudo_labels reads it)")
    p.add_argument("--floor", type=float, default=0.05, help="scores below it are written as 0")
    p.add_argument(
        "--threshold", type=float, default=0.5, help="keep windows whose max score is >= this"
    )
    p.add_argument(
        "--combine",
        choices=["mean", "rank"],
        default="mean",
        help="mean probability (default: targets need probabilities) or rank average",
    )
    p.add_argument(
        "--activation",
        choices=["auto", "sigmoid", "softmax"],
        default="auto",
        help="auto (default): per model from its training loss in the manifest (softmax for "
        "loss=ce, sigmoid otherwise); sigmoid: the models' outputs; softmax: per-model softmax "
        "over classes",
    )
    p.add_argument(
        "--threads", type=int, default=None, help="onnxruntime threads (default: all cores)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_pseudo_label)

    p = sub.add_parser("report", help="error-analysis report (PNGs + one HTML page) of a run")
    p.add_argument("--run", required=True, help="MLflow parent run id of a `python run.py` job")
    p.add_argument("--out", required=True, help="folder to write the report into")
    p.add_argument(
        "--tracking-uri",
        help="MLflow URI (default $MLFLOW_TRACKING_URI or sqlite:///outputs/mlflow.db)",
    )
    p.add_argument(
        "--data-root", help="data folder for the data-set page (default: the run's data.root)"
    )
    p.add_argument("--classes-per-page", type=int, default=24, help="classes per ROC/PR figure")
    p.add_argument("--top-pairs", type=int, default=20, help="rows of the confused-pairs tables")
    p.add_argument("--no-log", action="store_true", help="do not log the report to the run")
    p.set_defaults(func=_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``birdsweep`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError, WriteError) as exc:
        logging.getLogger("birdsweep").error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
