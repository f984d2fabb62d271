"""Error-analysis report of a finished training run (``birdsweep report``).

Reads a run's MLflow artifacts (``per_class_auc.csv``, ``predictions.npz``, ``folds.csv``,
``config.yaml``), draws PNGs, writes one self-contained ``report.html`` (images embedded) and
logs the folder back to the run as ``report/``.
"""

from __future__ import annotations

import base64
import html
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from birdsweep.data.windows import WINDOW_SECONDS
from birdsweep.evaluate import plots
from birdsweep.scoring.metric import macro_auc
from birdsweep.track import store

log = logging.getLogger(__name__)

REPORT_ARTIFACT_DIR = "report"
PAIR_COLUMNS = (
    "true_label",
    "true_name",
    "confused_label",
    "confused_name",
    "n_windows",
    "mean_score_true",
    "mean_score_confused",
    "frac_confused_above_true",
)
SOURCES = {"oof": "held-out clips (OOF)", "soundscape": "soundscapes"}


@dataclass
class RunArtifacts:
    """What a finished ``run_kfold`` job left in MLflow."""

    run_id: str
    run_name: str
    status: str
    metrics: dict[str, float]
    config: dict[str, Any]
    config_yaml: str
    labels: list[str]
    per_class: pd.DataFrame
    folds: pd.DataFrame | None
    probs: dict[str, np.ndarray] = field(default_factory=dict)  # source -> [N, C]
    targets: dict[str, np.ndarray] = field(default_factory=dict)  # source -> [N, C]


def load_run(run_id: str, tracking_uri: str, dst: str | Path) -> RunArtifacts:
    """Download the artifacts of ``run_id`` into ``dst`` and parse them.

    Args:
        run_id: the parent run of a ``python run.py`` job.
        tracking_uri: the MLflow tracking URI.
        dst: folder for the downloaded files.

    Returns:
        The parsed :class:`RunArtifacts`.

    Raises:
        ValueError: no such run at ``tracking_uri``.
        FileNotFoundError: the run lacks ``predictions.npz`` / ``per_class_auc.csv``.
    """
    client = store.client(tracking_uri, must_exist=False)
    run = store.get_run(client, run_id, tracking_uri)
    have = store.artifact_names(client, run_id)
    need = ["predictions.npz", "per_class_auc.csv"]
    missing = [n for n in need if n not in have]
    if missing:
        child = " (it is a fold run: pass its parent run)" if "fold" in run.data.tags else ""
        raise FileNotFoundError(
            f"--run {run_id!r} (status {run.info.status}) has no artifact(s) {missing}{child}; "
            "a report needs the parent run of a finished `python run.py` job"
        )
    wanted = sorted(have & {"config.yaml", "folds.csv", *need})
    files = store.download_artifacts(client, run_id, wanted, dst)
    per_class = pd.read_csv(files["per_class_auc.csv"], dtype={"label": str})
    with np.load(files["predictions.npz"], allow_pickle=False) as z:
        labels = [str(x) for x in z["labels"]]
        probs = {"oof": z["oof_probs"]}
        targets = {"oof": z["oof_targets"]}
        if "soundscape_probs" in z:
            probs["soundscape"] = z["soundscape_probs"]
            targets["soundscape"] = z["soundscape_targets"]
    cfg_text = files["config.yaml"].read_text() if "config.yaml" in files else ""
    folds = pd.read_csv(files["folds.csv"]) if "folds.csv" in files else None
    return RunArtifacts(
        run_id=run_id,
        run_name=run.info.run_name or "",
        status=run.info.status,
        metrics=dict(run.data.metrics),
        config=yaml.safe_load(cfg_text) or {} if cfg_text else {},
        config_yaml=cfg_text,
        labels=labels,
        per_class=per_class,
        folds=folds,
        probs=probs,
        targets=targets,
    )


def score_matrix(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean score of every class on the positive windows of every class.

    ``M[i, j]`` is the mean score of class ``j`` over windows where ``i`` is present and ``j``
    is not (so a co-occurring class is never counted as a confusion); ``M[i, i]`` is the mean
    score of ``i`` on its own positives. Rows of classes without positives are NaN.

    Args:
        y_true: ``[N, C]`` targets (≥ 0.5 = positive).
        y_score: ``[N, C]`` scores.

    Returns:
        ``(M [C, C], A [C, C])`` where ``A[i, j]`` is the fraction of those windows on which
        ``j`` scores above ``i``.
    """
    pos = np.asarray(y_true) >= 0.5
    s = np.asarray(y_score, dtype=np.float64)
    if pos.shape != s.shape or pos.ndim != 2:
        raise ValueError(f"targets {pos.shape} and scores {s.shape} must be equal [N, C]")
    c = pos.shape[1]
    mean = np.full((c, c), np.nan)
    above = np.full((c, c), np.nan)
    for i in range(c):
        rows = pos[:, i]
        if not rows.any():
            continue
        si, other = s[rows], ~pos[rows]  # [n_i, C]
        cnt = other.sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean[i] = np.where(cnt > 0, (si * other).sum(0) / cnt, np.nan)
            above[i] = np.where(cnt > 0, ((si > si[:, [i]]) & other).sum(0) / cnt, np.nan)
        mean[i, i] = si[:, i].mean()
        above[i, i] = np.nan
    return mean, above


def confused_pairs(
    y_true: np.ndarray,
    y_score: np.ndarray,
    labels: list[str],
    top_n: int = 20,
    per_true_class: int = 3,
    names: dict[str, str] | None = None,
) -> pd.DataFrame:
    """The most confused (true class, other class) pairs, by the other class's mean score.

    Args:
        y_true: ``[N, C]`` targets.
        y_score: ``[N, C]`` scores.
        labels: the ``C`` class ids.
        top_n: rows to return.
        per_true_class: at most this many rows per true class (so one class cannot fill it).
        names: label -> common name (``true_name``/``confused_name``; empty when unknown).

    Returns:
        A DataFrame with columns :data:`PAIR_COLUMNS`, most confused first; never a class with
        itself.
    """
    mean, above = score_matrix(y_true, y_score)
    n_pos = (np.asarray(y_true) >= 0.5).sum(0)
    names = names or {}
    rows = []
    for i in range(len(labels)):
        if n_pos[i] == 0:
            continue
        order = [j for j in np.argsort(-np.nan_to_num(mean[i], nan=-1.0)) if j != i]
        for j in [j for j in order if np.isfinite(mean[i, j])][:per_true_class]:
            rows.append(
                (
                    labels[i],
                    names.get(labels[i], ""),
                    labels[j],
                    names.get(labels[j], ""),
                    int(n_pos[i]),
                    float(mean[i, i]),
                    float(mean[i, j]),
                    float(above[i, j]),
                )
            )
    df = pd.DataFrame(rows, columns=list(PAIR_COLUMNS))
    df = df.sort_values(
        ["mean_score_confused", "frac_confused_above_true"], ascending=False, kind="stable"
    )
    return df.head(top_n).reset_index(drop=True)


def _heatmap_classes(
    pairs: pd.DataFrame, labels: list[str], n_pos: np.ndarray, cap: int
) -> list[int]:
    if len(labels) <= cap:
        return list(range(len(labels)))
    index = {lab: i for i, lab in enumerate(labels)}
    chosen: list[int] = []
    for a, b in zip(pairs["true_label"], pairs["confused_label"], strict=True):
        for lab in (a, b):
            if index[lab] not in chosen and len(chosen) < cap:
                chosen.append(index[lab])
    for i in np.argsort(-n_pos, kind="stable"):
        if len(chosen) >= cap:
            break
        if int(i) not in chosen:
            chosen.append(int(i))
    return sorted(chosen)


@dataclass
class _Section:
    title: str
    anchor: str
    intro: str = ""
    images: list[tuple[str, Path]] = field(default_factory=list)  # (caption, png)
    tables: list[tuple[str, str]] = field(default_factory=list)  # (caption, html)


def _clip_durations(paths: list[str], sample: int | None, seed: int) -> tuple[np.ndarray, int, int]:
    import soundfile as sf

    chosen = list(paths)
    if sample is not None and len(chosen) > sample:
        rng = np.random.default_rng(seed)
        chosen = [chosen[i] for i in sorted(rng.choice(len(chosen), sample, replace=False))]
    out, bad = [], 0
    for p in chosen:
        try:
            out.append(sf.info(p).duration)
        except Exception:  # unreadable or missing files are counted, never fatal
            bad += 1
    return np.array(out, dtype=float), len(chosen), bad


def _resolve_data_root(
    data_root: str | Path | None, config: dict[str, Any]
) -> tuple[Path | None, str]:
    if data_root is not None:
        root = Path(data_root).expanduser()
        if not (root / "train.csv").is_file():
            from birdsweep.data.metadata import DataError

            raise DataError(
                f"--data-root {root}: no train.csv there; point it at the run's BirdCLEF-layout "
                "data folder"
            )
        return root, ""
    cfg_root = (config.get("data") or {}).get("root")
    if not cfg_root:
        return None, "the run's config.yaml has no data.root; pass --data-root to add this page"
    root = Path(str(cfg_root)).expanduser()
    if not (root / "train.csv").is_file():
        return None, (
            f"data.root of the run ({root}) has no train.csv here; pass --data-root DIR to add "
            "this page"
        )
    return root, ""


def _eda_section(
    root: Path, out: Path, window_seconds: float, duration_sample: int | None, seed: int, dpi: int
) -> _Section:
    from birdsweep.data.metadata import load_metadata

    meta = load_metadata(root, strict_labels=False)
    train = meta.train
    tax = pd.read_csv(root / "taxonomy.csv", dtype={"primary_label": str}).set_index(
        "primary_label"
    )
    counts = train["primary_label"].value_counts().reindex(meta.labels).fillna(0).astype(int)
    class_names = tax.get("class_name")
    sec = _Section("Data set", "data")
    p = plots.save_figure(plots.zipf_plot(counts, class_names), out / "eda_zipf.png", dpi)
    sec.images.append(("Training clips per class, rank vs count (log-log).", p))
    dur, n_tried, bad = _clip_durations(train["path"].tolist(), duration_sample, seed)
    note = f"sample of {n_tried} of {len(train)} clips" if n_tried < len(train) else ""
    if bad:
        note += ("; " if note else "") + f"{bad} unreadable"
    p = plots.save_figure(
        plots.duration_histogram(dur, window_seconds, note), out / "eda_durations.png", dpi
    )
    sec.images.append(("Clip durations (soundfile headers).", p))
    if class_names is not None:
        species = class_names.reindex(meta.labels).fillna("unknown").value_counts()
        clips = train["primary_label"].map(class_names).fillna("unknown").value_counts()
        p = plots.save_figure(
            plots.class_name_breakdown(species, clips), out / "eda_class_name.png", dpi
        )
        sec.images.append(("Species and clips per taxonomic class (taxonomy.csv class_name).", p))
    groups = train.get("collection")
    p = plots.save_figure(
        plots.rating_distribution(train["rating"], groups), out / "eda_rating.png", dpi
    )
    sec.images.append(("train.csv rating (0 = unrated, as for iNat / CSA recordings).", p))
    n_sc = (
        len(list((root / "train_soundscapes").glob("*")))
        if (root / "train_soundscapes").is_dir()
        else 0
    )
    summary = pd.DataFrame(
        {
            "value": [
                str(root),
                len(meta.labels),
                int((counts > 0).sum()),
                len(train),
                f"{np.sum(dur) / 3600:.2f}" if not note else f"{np.sum(dur) / 3600:.2f} (sample)",
                int(counts.max()) if len(counts) else 0,
                int(counts[counts > 0].min()) if (counts > 0).any() else 0,
                n_sc,
            ]
        },
        index=[
            "data folder",
            "classes (taxonomy.csv)",
            "classes with training clips",
            "training clips",
            "hours of training audio",
            "most clips of a class",
            "fewest clips of a class (with any)",
            "unlabelled train_soundscapes",
        ],
    )
    sec.tables.insert(0, ("Summary", summary.to_html(header=False, classes="tbl")))
    return sec


def _img_tag(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.name)}">'


def _render_html(title: str, sections: list[_Section]) -> str:
    css = (
        "body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1500px;color:#222}"
        "h1{font-size:26px}h2{border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:40px}"
        "img{max-width:100%;border:1px solid #eee;margin:6px 0}figure{margin:0 0 18px 0}"
        "figcaption{color:#555;font-size:14px}.tbl{border-collapse:collapse;font-size:13px}"
        ".tbl td,.tbl th{border:1px solid #ddd;padding:3px 8px;text-align:right}"
        ".tbl th{background:#f4f4f4}nav a{margin-right:14px}pre{background:#f7f7f7;padding:8px;"
        "font-size:12px;overflow:auto}.note{color:#8a5a00}"
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{css}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<nav>" + "".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in sections),
        "</nav>",
    ]
    for s in sections:
        parts.append(f'<section id="{s.anchor}"><h2>{html.escape(s.title)}</h2>')
        if s.intro:
            parts.append(s.intro)
        for cap, tbl in s.tables:
            parts.append(f"<h3>{html.escape(cap)}</h3>{tbl}")
        for cap, png in s.images:
            parts.append(
                f"<figure>{_img_tag(png)}<figcaption>{html.escape(cap)}</figcaption></figure>"
            )
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) and np.isfinite(v) else "n/a"


def write_report(
    run_id: str,
    out_dir: str | Path,
    tracking_uri: str | None = None,
    data_root: str | Path | None = None,
    *,
    classes_per_page: int = 24,
    grid_cols: int = 6,
    top_pairs: int = 20,
    pairs_per_true_class: int = 3,
    heatmap_max_classes: int = 40,
    duration_sample: int | None = 5000,
    seed: int = 0,
    dpi: int = 100,
    log_to_mlflow: bool = True,
) -> Path:
    """Write the error-analysis report of a training run and log it to that run.

    Args:
        run_id: parent MLflow run of a ``python run.py`` job.
        out_dir: folder for the PNGs, CSVs and ``report.html`` (created).
        tracking_uri: MLflow URI (None: ``$MLFLOW_TRACKING_URI`` or the project's
            ``sqlite:///outputs/mlflow.db``).
        data_root: BirdCLEF-layout folder for the data-set page (None: the run's ``data.root``;
            the page is skipped with a note when that folder is not here).
        classes_per_page: classes per ROC/PR figure (those with most positives first).
        grid_cols: panels per row of a ROC/PR figure.
        top_pairs: rows of each confused-pairs table.
        pairs_per_true_class: at most this many pairs per true class in that table.
        heatmap_max_classes: the score heatmap shows all classes up to this many, else the
            classes of the top pairs (filled up by positives).
        duration_sample: read the duration of at most this many clips (random; None = all).
        seed: seed of that sample.
        dpi: PNG resolution.
        log_to_mlflow: log ``out_dir``'s report files to the run as ``report/``.

    Returns:
        Path of ``report.html``.
    """
    if tracking_uri is None:
        tracking_uri = store.default_tracking_uri()
    with tempfile.TemporaryDirectory(prefix="birdsweep-report-") as tmp:
        art = load_run(run_id, tracking_uri, tmp)
    out = Path(out_dir)
    written: list[Path] = []

    def save(fig, name: str) -> Path:
        p = plots.save_figure(fig, out / name, dpi)
        written.append(p)
        return p

    labels, pc = art.labels, art.per_class.copy()
    data_dir, eda_note = _resolve_data_root(data_root, art.config)
    out.mkdir(parents=True, exist_ok=True)
    names: dict[str, str] = {}
    tax_root = data_dir
    if tax_root is not None and (tax_root / "taxonomy.csv").is_file():
        tax = pd.read_csv(tax_root / "taxonomy.csv", dtype={"primary_label": str})
        if "common_name" in tax:
            names = dict(zip(tax["primary_label"], tax["common_name"].astype(str), strict=True))
            pc.insert(1, "common_name", pc["label"].map(names).fillna(""))

    sections: list[_Section] = []
    m = art.metrics
    summary = pd.DataFrame(
        {
            "value": [
                art.run_id,
                art.run_name,
                art.status,
                f"{_fmt(m.get('cv_macro_auc'))} ± {_fmt(m.get('cv_macro_auc_std'))}",
                _fmt(m.get("oof_macro_auc")),
                _fmt(m.get("soundscape_macro_auc")),
                len(labels),
                ", ".join(SOURCES[s] for s in art.probs),
            ]
        },
        index=[
            "run id",
            "run name",
            "status",
            "CV macro AUC (mean ± std of folds)",
            "OOF macro AUC",
            "soundscape macro AUC (fold ensemble)",
            "classes",
            "predictions",
        ],
    )
    sec = _Section("Summary", "summary")
    sec.tables.append(("Run", summary.to_html(header=False, classes="tbl")))
    if art.folds is not None:
        cols = [c for c in art.folds.columns if c not in ("checkpoint",)]
        sec.tables.append(
            ("Folds", art.folds[cols].to_html(index=False, classes="tbl", float_format="%.4f"))
        )
    if art.config_yaml:
        sec.tables.append(
            (
                "Config",
                f"<details><summary>config.yaml</summary><pre>{html.escape(art.config_yaml)}</pre></details>",
            )
        )
    sections.append(sec)

    # the long tail
    sec = _Section("Per-class AUC and the long tail", "long-tail")
    macro = {"OOF": float(m.get("oof_macro_auc", np.nan))}
    if "soundscape_auc" in pc:
        macro["soundscape"] = float(m.get("soundscape_macro_auc", np.nan))
    sec.images.append(
        ("Per-class AUC, classes sorted by training clips (most first).",
         save(plots.auc_by_train_clips(pc, macro), "auc_by_train_clips.png"))
    )  # fmt: skip
    sec.images.append(
        ("Per-class AUC against training clips.", save(plots.auc_scatter(pc), "auc_scatter.png"))
    )
    table = pc.sort_values("oof_auc", kind="stable", na_position="last")
    sec.tables.append(
        (
            "Per-class table (worst OOF AUC first)",
            "<details><summary>show all classes</summary>"
            + table.to_html(index=False, classes="tbl", float_format="%.3f", na_rep="–")
            + "</details>",
        )
    )
    sections.append(sec)

    # ROC / PR curves and confusions, per prediction source
    for src, what in SOURCES.items():
        if src not in art.probs:
            continue
        y, s = art.targets[src], art.probs[src]
        pos = (y >= 0.5).sum(0)
        ok = [c for c in np.argsort(-pos, kind="stable") if 0 < pos[c] < len(y)]
        sec = _Section(f"ROC and PR curves — {what}", f"curves-{src}")
        sec.intro = (
            f"<p>{len(ok)} of {len(labels)} classes have positive and negative windows "
            f"(macro AUC over them: {_fmt(macro_auc(y, s))}); most positives first, "
            f"{classes_per_page} per figure.</p>"
        )
        pages = [ok[i : i + classes_per_page] for i in range(0, len(ok), classes_per_page)]
        for k, page in enumerate(pages, 1):
            tag = f" (page {k}/{len(pages)})" if len(pages) > 1 else ""
            for kind, long in (("roc", "ROC"), ("pr", "Precision-recall")):
                fig = plots.curve_grid(
                    y, s, labels, page, kind, f"{long} curves — {what}{tag}", ncols=grid_cols
                )
                sec.images.append((f"{long} per class{tag}.", save(fig, f"{kind}_{src}_p{k}.png")))
        sections.append(sec)

        pairs = confused_pairs(y, s, labels, top_pairs, pairs_per_true_class, names)
        pairs_csv = out / f"confused_pairs_{src}.csv"
        pairs.to_csv(pairs_csv, index=False)
        written.append(pairs_csv)
        mean, _ = score_matrix(y, s)
        keep = _heatmap_classes(pairs, labels, pos, heatmap_max_classes)
        sec = _Section(f"Most confused class pairs — {what}", f"confusion-{src}")
        sec.intro = (
            "<p>For each true class: the other classes that score highest on its positive "
            "windows (windows where the other class is also present are left out). "
            "<code>frac_confused_above_true</code>: share of those windows on which the other "
            "class outscores the true one.</p>"
        )
        sec.tables.append(
            (
                f"Top {len(pairs)} pairs",
                pairs.to_html(index=False, classes="tbl", float_format="%.3f"),
            )
        )
        rows = [i for i in keep if pos[i] > 0]
        shown = "" if len(keep) == len(labels) else f" ({len(keep)} of {len(labels)} classes)"
        fig = plots.score_heatmap(
            mean[np.ix_(rows, keep)],
            [labels[i] for i in rows],
            [labels[i] for i in keep],
            f"Mean score on positive windows — {what}{shown}",
        )
        sec.images.append(
            ("Row: true class (classes with positive windows); column: scored class; grey: the "
             "same class, or the column class is present on every window of the row class.",
             save(fig, f"confusion_{src}.png"))
        )  # fmt: skip
        sections.append(sec)

    # the data set
    if data_dir is not None:
        win = float((art.config.get("data") or {}).get("window_seconds", WINDOW_SECONDS))
        sec = _eda_section(data_dir, out, win, duration_sample, seed, dpi)
        written += [p for _, p in sec.images]
    else:
        log.warning("report: data-set page skipped: %s", eda_note)
        sec = _Section(
            "Data set", "data", intro=f'<p class="note">Skipped: {html.escape(eda_note)}.</p>'
        )
    sections.append(sec)

    page = out / "report.html"
    page.write_text(
        _render_html(f"birdsweep report — {art.run_name or 'run'} {art.run_id[:8]}", sections)
    )
    written.append(page)
    if log_to_mlflow:
        store.log_files(
            store.client(tracking_uri, must_exist=False), run_id, written, REPORT_ARTIFACT_DIR
        )
        log.info("report logged to run %s as %s/", run_id, REPORT_ARTIFACT_DIR)
    log.info("report written to %s (%d files)", page, len(written))
    return page
