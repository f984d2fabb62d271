"""The command-line entry points: the ``birdsweep`` command (data generation, export, inference
and report sub-commands) and :func:`train_task`, the Hydra task of ``python run.py``.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import math
import sys
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
        sources = select_from_mlflow(
            uri, args.experiment, args.runs, args.top_k, args.metric, args.mix_jobs
        )
    selection = {
        "experiment": args.experiment,
        "runs": args.runs,
        "checkpoints": args.checkpoints,
        "top_k": args.top_k,
        "metric": args.metric,
        "mix_jobs": args.mix_jobs or None,
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
        smooth=args.smooth,
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
        f"(parity max |onnx - torch| in {' and '.join(man['parity']['runtimes'])}: random "
        f"{diff['random']:.2e}, real {real})"
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
        runtime=args.runtime,
        file_max_power=args.file_max_power,
        smooth=args.smooth,
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
    if args.labels:
        if args.format != "submission":
            raise ValueError("--labels scores a submission: use it with --format submission")
        _print_score(s.out, args.labels, per_class=0)
    return 0


def _print_score(submission: str | Path, labels: str | Path, per_class: int) -> float:
    """Print the macro ROC-AUC of a submission CSV against a labels CSV (and the worst
    classes); returns it."""
    import pandas as pd

    from birdsweep.scoring.metric import score_submission, submission_per_class

    for flag, path in (("--submission", submission), ("--labels", labels)):
        if not Path(path).is_file():
            raise FileNotFoundError(f"{flag} {path}: no such file")
    solution, table = pd.read_csv(labels), pd.read_csv(submission)
    auc = score_submission(solution, table)
    classes = submission_per_class(solution, table)
    scored = classes["auc"].notna()
    print(
        f"macro ROC-AUC {auc:.4f} over {int(scored.sum())} of {len(classes)} classes with a "
        f"positive window ({len(solution)} labelled windows; {labels})"
    )
    if per_class:
        print(classes[scored].head(per_class).to_string(index=False, float_format="%.4f"))
    return auc


def _score(args: argparse.Namespace) -> int:
    _print_score(args.submission, args.labels, args.per_class)
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
        runtime=args.runtime,
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


def _defaults(fn: Callable[..., Any]) -> dict[str, Any]:
    """The parameter defaults of ``fn``: a flag's default is the library's own."""
    return {
        name: p.default
        for name, p in inspect.signature(fn).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def _option(p: argparse.ArgumentParser, flag: str, default: Any, text: str, **kw: Any) -> None:
    """A flag whose default (the library's) ends its help text."""
    p.add_argument(flag, default=default, help=f"{text} (default %(default)s)", **kw)


def _tracking_uri_option(p: argparse.ArgumentParser) -> None:
    from birdsweep.track.store import DEFAULT_TRACKING_URI_TEXT

    p.add_argument("--tracking-uri", help=f"MLflow URI (default {DEFAULT_TRACKING_URI_TEXT})")


def _shifts_option(p: argparse.ArgumentParser, default_text: str) -> None:
    p.add_argument(
        "--shifts",
        type=float,
        nargs="+",
        default=None,
        help=f"test-time shifts in seconds, probabilities averaged{default_text}",
    )


def _smooth_option(p: argparse.ArgumentParser, default_text: str) -> None:
    p.add_argument(
        "--smooth",
        type=float,
        nargs="*",
        default=None,
        metavar="W",
        help="weights over neighbouring windows of a recording, centred, applied before the "
        f"recording context, e.g. 0.1 0.2 0.4 0.2 0.1 (default: {default_text}; no value = off)",
    )


def _runtime_options(p: argparse.ArgumentParser) -> None:
    from birdsweep.infer.ensemble import Ensemble
    from birdsweep.scoring.session import RUNTIMES

    _option(
        p,
        "--runtime",
        _defaults(Ensemble.load)["runtime"],
        "what runs the exported ONNX graphs on the CPU (openvino: pip install "
        '"birdsweep[openvino]")',
        choices=RUNTIMES,
    )
    p.add_argument("--threads", type=int, help="the runtime's threads (default: all cores)")


def _demo_data_options(p: argparse.ArgumentParser) -> None:
    from birdsweep.data.demo import NOISE_PRESETS, generate_demo_dataset

    d = _defaults(generate_demo_dataset)
    sc = f"{d['soundscape_seconds']} s soundscapes"
    p.add_argument("--out", required=True, help="folder to write")
    _option(p, "--seed", d["seed"], "random seed", type=int)
    _option(p, "--classes", d["n_classes"], "number of species", type=int)
    _option(p, "--train-soundscapes", d["n_train_soundscapes"], f"unlabelled {sc}", type=int)
    more = "more = a steadier soundscape AUC"
    _option(
        p, "--test-soundscapes", d["n_test_soundscapes"], f"labelled test {sc}; {more}", type=int
    )
    p.add_argument(
        "--noise", choices=tuple(NOISE_PRESETS), default=d["noise"], help="soundscape noise level"
    )
    p.add_argument("--overwrite", action="store_true", help="rewrite an existing data set")
    p.set_defaults(func=_demo_data)


def _export_options(p: argparse.ArgumentParser) -> None:
    from birdsweep.export.ensemble import export_ensemble
    from birdsweep.features.frontend import EXPORT_STFT
    from birdsweep.scoring.combine import COMBINE_METHODS

    d = _defaults(export_ensemble)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--experiment", help="MLflow experiment: the folds of its latest job (see --metric)"
    )
    src.add_argument("--runs", nargs="+", help="MLflow run ids (a job run = all its folds)")
    src.add_argument("--checkpoints", nargs="+", help="best.pt files or their folders")
    p.add_argument("--top-k", type=int, default=None, help="keep the K best folds (default all)")
    p.add_argument(
        "--metric",
        default=None,
        help="pick the best job by this parent-run metric (e.g. cv_macro_auc) and use its folds; "
        "default: the latest job's folds",
    )
    p.add_argument(
        "--mix-jobs",
        action="store_true",
        help="the best folds by best_val_macro_auc across all jobs of the experiment, even of "
        "different recipes (refused without this flag)",
    )
    _tracking_uri_option(p)
    p.add_argument("--out", required=True, help="ensemble folder to write")
    _option(p, "--combine", d["combine"], "default combination", choices=COMBINE_METHODS)
    p.add_argument(
        "--file-max-power",
        type=float,
        default=None,
        help="recording context of submission scores: window × recording max^POWER per class "
        "(default: the training config's postprocess.power; 0 = off)",
    )
    _smooth_option(p, "the training config's postprocess.smooth")
    _shifts_option(
        p,
        ", e.g. -0.625 0 0.625 (default: the training config's tta.seconds; 0 = each window once)",
    )
    p.add_argument(
        "--separate-graphs", action="store_true", help="one graph per model (no shared front end)"
    )
    _option(p, "--opset", d["opset"], "ONNX opset", type=int)
    p.add_argument(
        "--legacy-exporter", action="store_true", help="TorchScript exporter instead of dynamo"
    )
    _option(
        p,
        "--stft",
        d["stft"],
        "the front end's STFT in the graph: factored, matrix products (faster in onnxruntime); "
        "onnx, the STFT operator",
        choices=EXPORT_STFT,
    )
    p.add_argument(
        "--parity-audio",
        nargs="+",
        help="audio for the parity check (default: training soundscapes)",
    )
    _option(p, "--tolerance", d["tolerance"], "max |onnx - torch| probability", type=float)
    p.add_argument("--overwrite", action="store_true", help="replace an ensemble already in --out")
    p.set_defaults(func=_export)


def _infer_options(p: argparse.ArgumentParser) -> None:
    from birdsweep.data.windows import WINDOW_SECONDS
    from birdsweep.infer.ensemble import Ensemble, label_files
    from birdsweep.infer.output import OUTPUT_FORMATS
    from birdsweep.scoring.combine import COMBINE_METHODS

    d, ens = _defaults(label_files), _defaults(Ensemble)
    p.add_argument("--model", required=True, help="ensemble folder from birdsweep export")
    p.add_argument("--audio", required=True, nargs="+", help="audio files and/or folders")
    p.add_argument("--out", required=True, help="CSV to write")
    p.add_argument("--format", choices=OUTPUT_FORMATS, default=d["output_format"])
    p.add_argument(
        "--combine",
        choices=COMBINE_METHODS,
        default=d["combine"],
        help="default: the manifest's for submission, mean for detections",
    )
    _option(p, "--threshold", d["threshold"], "detections: smallest score kept", type=float)
    p.add_argument(
        "--file-max-power",
        type=float,
        default=d["file_max_power"],
        help="recording context: window × recording max^POWER per class (default: the "
        "manifest's for a submission, 0 for detections)",
    )
    _smooth_option(p, "the manifest's for a submission, none for detections")
    _shifts_option(p, " (default: the manifest's; 0 = each window once, the fastest)")
    _runtime_options(p)
    _option(p, "--batch-size", ens["batch_size"], "windows per model call", type=int)
    fail = ens["fail_windows"]
    p.add_argument(
        "--fail-windows",
        type=int,
        default=fail,
        help="rows for an undecodable file without a readable duration (default %(default)s = "
        f"{fail * WINDOW_SECONDS:g} s)",
    )
    p.add_argument(
        "--labels",
        help="ground truth in the submission's shape (e.g. test_soundscapes_labels.csv): print "
        "the submission's macro ROC-AUC against it",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_infer)


def _score_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--submission", required=True, help="submission CSV (row_id + label columns)")
    p.add_argument("--labels", required=True, help="ground truth CSV of the same shape")
    p.add_argument(
        "--per-class", type=int, default=10, help="print the N worst classes (default 10; 0 = none)"
    )
    p.set_defaults(func=_score)


def _pseudo_label_options(p: argparse.ArgumentParser) -> None:
    from birdsweep.infer.pseudo import ACTIVATIONS, pseudo_label
    from birdsweep.scoring.combine import COMBINE_METHODS

    d = _defaults(pseudo_label)
    p.add_argument("--model", required=True, help="ensemble folder from birdsweep export")
    p.add_argument(
        "--audio", required=True, nargs="+", help="unlabelled soundscapes (files and/or folders)"
    )
    p.add_argument("--out", required=True, help="CSV to write (data.pseudo_labels reads it)")
    _option(p, "--floor", d["floor"], "scores below it are written as 0", type=float)
    _option(p, "--threshold", d["threshold"], "keep windows whose max score is >= this", type=float)
    _option(
        p,
        "--combine",
        d["combine"],
        "mean probability, which targets need, or rank average",
        choices=COMBINE_METHODS,
    )
    _option(
        p,
        "--activation",
        d["activation"],
        "auto: per model from its training loss in the manifest (softmax for loss=ce, sigmoid "
        "otherwise); sigmoid: the models' outputs; softmax: per-model softmax over classes",
        choices=ACTIVATIONS,
    )
    _runtime_options(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_pseudo_label)


def _report_options(p: argparse.ArgumentParser) -> None:
    from birdsweep.evaluate.report import write_report

    d = _defaults(write_report)
    p.add_argument("--run", required=True, help="MLflow parent run id of a `python run.py` job")
    p.add_argument("--out", required=True, help="folder to write the report into")
    _tracking_uri_option(p)
    p.add_argument(
        "--data-root", help="data folder for the data-set page (default: the run's data.root)"
    )
    _option(p, "--classes-per-page", d["classes_per_page"], "classes per ROC/PR figure", type=int)
    _option(p, "--top-pairs", d["top_pairs"], "rows of the confused-pairs tables", type=int)
    p.add_argument("--no-log", action="store_true", help="do not log the report to the run")
    p.set_defaults(func=_report)


# command -> (help, function adding its options). The options read their choices and defaults
# from the code that defines them, which they import: only the chosen command's are added.
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {
    "demo-data": ("write a synthetic BirdCLEF 2025-layout data set", _demo_data_options),
    "export": ("export the best fold checkpoints as an ONNX CPU ensemble", _export_options),
    "infer": ("label recordings with an exported ensemble", _infer_options),
    "pseudo-label": (
        "soft labels of unlabelled soundscape windows (self-training)",
        _pseudo_label_options,
    ),
    "report": ("error-analysis report (PNGs + one HTML page) of a run", _report_options),
    "score": ("macro ROC-AUC of a submission CSV against labelled windows", _score_options),
}


def build_parser(commands: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser of the ``birdsweep`` command.

    Args:
        commands: the sub-commands whose options are added (None = all). The others are listed
            with their help line only, so ``birdsweep --help`` imports none of the libraries
            that define the options' choices and defaults.
    """
    parser = argparse.ArgumentParser(prog="birdsweep", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_options) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if commands is None or name in commands:
            add_options(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``birdsweep`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = [a for a in argv if a in COMMANDS][:1]  # the command comes before its options
    args = build_parser(chosen).parse_args(argv)
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
