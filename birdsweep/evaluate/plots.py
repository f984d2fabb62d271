"""Figures of the error-analysis report (``birdsweep report``).

Every function returns a :class:`matplotlib.figure.Figure` built without ``pyplot`` (no global
state, Agg rendering); :func:`save_figure` writes it as a PNG.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter, MaxNLocator
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

# one colour per taxonomic class (BirdCLEF 2025 has these four); others cycle through the rest
CLASS_NAME_COLORS = {
    "Aves": "tab:blue",
    "Amphibia": "tab:green",
    "Insecta": "tab:orange",
    "Mammalia": "tab:red",
}
_EXTRA_COLORS = ("tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray")


def class_name_color(name: str, seen: dict[str, str] | None = None) -> str:
    """Colour of a taxonomic ``class_name`` (stable for the four BirdCLEF classes)."""
    if name in CLASS_NAME_COLORS:
        return CLASS_NAME_COLORS[name]
    seen = seen if seen is not None else {}
    if name not in seen:
        seen[name] = _EXTRA_COLORS[len(seen) % len(_EXTRA_COLORS)]
    return seen[name]


def save_figure(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` as a PNG (tight bounding box).

    Args:
        fig: the figure.
        path: the ``.png`` file to write.
        dpi: resolution.

    Returns:
        The written path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight", facecolor="white")
    return path


def _plain_log(axis) -> None:
    """Plain numbers (2, 20, 200) on a log axis instead of 2×10^1-style labels."""
    axis.set_major_formatter(LogFormatter(labelOnlyBase=False))
    axis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.6)))


def curve_grid(
    y_true: np.ndarray,
    y_score: np.ndarray,
    labels: Sequence[str],
    classes: Sequence[int],
    kind: str,
    title: str,
    ncols: int = 6,
    panel_size: tuple[float, float] = (2.7, 2.5),
) -> Figure:
    """Small multiples of per-class ROC (``kind="roc"``) or precision-recall (``"pr"``) curves.

    Args:
        y_true: ``[N, C]`` targets (≥ 0.5 = positive).
        y_score: ``[N, C]`` scores.
        labels: the ``C`` class ids.
        classes: column indices to draw, one panel each (each needs a positive and a negative).
        kind: ``"roc"`` or ``"pr"``.
        title: the figure title.
        ncols: panels per row.
        panel_size: inches per panel (width, height).

    Returns:
        The figure; each panel title holds the class, its AUC (or AP) and its positive count.
    """
    if kind not in ("roc", "pr"):
        raise ValueError(f"kind must be 'roc' or 'pr', got {kind!r}")
    n = len(classes)
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows + 0.6))
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)
    pos = np.asarray(y_true) >= 0.5
    for ax, c in zip(axes.flat, classes, strict=False):
        t, s = pos[:, c], np.asarray(y_score)[:, c]
        npos = int(t.sum())
        if kind == "roc":
            fpr, tpr, _ = roc_curve(t, s)
            ax.plot([0, 1], [0, 1], ls="--", lw=0.8, color="0.6")
            ax.plot(fpr, tpr, lw=1.5, color="tab:blue")
            head = f"AUC {roc_auc_score(t, s):.3f}"
        else:
            prec, rec, _ = precision_recall_curve(t, s)
            base = npos / len(t)
            ax.axhline(base, ls="--", lw=0.8, color="0.6")
            ax.step(rec, prec, where="post", lw=1.5, color="tab:purple")
            head = f"AP {average_precision_score(t, s):.3f} (base {base:.2f})"
        ax.set_title(f"{labels[c]}\n{head} · n+={npos}", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    xl, yl = (
        ("false positive rate", "true positive rate") if kind == "roc" else ("recall", "precision")
    )
    for ax in axes[-1]:
        ax.set_xlabel(xl, fontsize=9)
    for ax in axes[:, 0]:
        ax.set_ylabel(yl, fontsize=9)
    # a hidden panel leaves the row above without x tick labels: give them back
    for j in range(ncols):
        col = [axes[i, j] for i in range(nrows) if axes[i, j].get_visible()]
        if col:
            col[-1].xaxis.set_tick_params(labelbottom=True)
            col[-1].set_xlabel(xl, fontsize=9)
    fig.suptitle(title, fontsize=13)
    fig.tight_layout()
    return fig


def auc_by_train_clips(
    per_class: pd.DataFrame, macro: dict[str, float] | None = None, classes_per_row: int = 70
) -> Figure:
    """Per-class AUC with classes sorted by training-clip count (the long tail at a glance).

    Args:
        per_class: ``per_class_auc.csv`` (``label``, ``n_train_clips``, ``oof_auc`` and
            optionally ``soundscape_auc``).
        macro: macro AUCs drawn as horizontal lines, e.g. ``{"OOF": 0.81}``.
        classes_per_row: classes per panel; more classes wrap into further panels below, so
            every class keeps a readable tick label.

    Returns:
        Bars = OOF AUC (``x`` = not scored: no held-out positive), dots = soundscape AUC, line on a
        second log axis = training clips (0 clips drawn at 0.8).
    """
    df = per_class.sort_values("n_train_clips", ascending=False, kind="stable").reset_index(
        drop=True
    )
    n = len(df)
    per_row = max(1, min(classes_per_row, n))
    nrows = int(np.ceil(n / per_row))
    fig = Figure(figsize=(max(8.0, 0.22 * per_row + 2.5), 4.6 * nrows + 0.6))
    axes = fig.subplots(nrows, 1, squeeze=False)[:, 0]
    clips = df["n_train_clips"].clip(lower=0.8).to_numpy(dtype=float)
    clip_lim = (0.6, max(clips.max(), 1.0) * 1.6)
    oof_all = df["oof_auc"].to_numpy(dtype=float)
    sc_all = df["soundscape_auc"].to_numpy(dtype=float) if "soundscape_auc" in df else None
    for r, ax in enumerate(axes):
        sl = slice(r * per_row, min((r + 1) * per_row, n))
        x = np.arange(sl.start, sl.stop)
        oof = oof_all[sl]
        ok = np.isfinite(oof)
        ax.bar(x[ok], oof[ok], width=0.8, color="tab:blue", alpha=0.75,
               label="OOF AUC (held-out clips)")  # fmt: skip
        if (~ok).any():
            ax.scatter(x[~ok], np.full((~ok).sum(), 0.02), marker="x", color="0.4", zorder=3,
                       label="not scored (no held-out positive)")  # fmt: skip
        if sc_all is not None:
            sc = sc_all[sl]
            m = np.isfinite(sc)
            ax.scatter(x[m], sc[m], s=18, color="black", zorder=4, label="soundscape AUC")
        ax.axhline(0.5, ls=":", color="0.5", lw=1)
        for (name, val), color in zip((macro or {}).items(), ("tab:blue", "black"), strict=False):
            if np.isfinite(val):
                ax.axhline(val, ls="--", lw=1, color=color, alpha=0.7,
                           label=f"{name} macro {val:.3f}")  # fmt: skip
        ax.set_ylim(0, 1.05)
        ax.set_xlim(sl.start - 0.7, sl.start + per_row - 0.3)
        ax.set_ylabel("ROC-AUC", fontsize=11)
        ax.set_xticks(x)
        ax.set_xticklabels(df["label"].iloc[sl], rotation=90, fontsize=8)
        ax2 = ax.twinx()
        ax2.plot(x, clips[sl], color="tab:orange", lw=2, marker=".", ms=4)
        ax2.set_yscale("log")
        ax2.set_ylim(*clip_lim)
        _plain_log(ax2.yaxis)
        ax2.set_ylabel("training clips (log)", color="tab:orange", fontsize=11)
        ax2.tick_params(axis="y", colors="tab:orange")
        if r == 0:
            h1, l1 = ax.get_legend_handles_labels()
            ax.legend(
                h1 + ax2.get_lines(), l1 + ["training clips"], fontsize=9, ncol=3, frameon=False,
                loc="lower left", bbox_to_anchor=(0.0, 1.01, 1.0, 0.1), mode="expand",
            )  # fmt: skip
    axes[-1].set_xlabel("class (sorted by training clips, most first)", fontsize=11)
    fig.suptitle("Per-class ROC-AUC along the long tail", fontsize=13)
    fig.tight_layout()
    return fig


def auc_scatter(per_class: pd.DataFrame) -> Figure:
    """Per-class AUC against training clips (log x): does AUC fall with fewer clips?

    Args:
        per_class: ``per_class_auc.csv``.

    Returns:
        The figure (one series per AUC column present).
    """
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.subplots()
    for col, name, color in (
        ("oof_auc", "OOF (held-out clips)", "tab:blue"),
        ("soundscape_auc", "soundscapes", "black"),
    ):
        if col not in per_class:
            continue
        d = per_class[np.isfinite(per_class[col].to_numpy(dtype=float))]
        ax.scatter(
            d["n_train_clips"].clip(lower=0.8), d[col], s=22, alpha=0.7, color=color, label=name
        )
    ax.axhline(0.5, ls=":", color="0.5")
    ax.set_xscale("log")
    _plain_log(ax.xaxis)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("training clips of the class (log)", fontsize=11)
    ax.set_ylabel("ROC-AUC", fontsize=11)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=9)
    ax.set_title("Per-class ROC-AUC vs training clips", fontsize=13)
    fig.tight_layout()
    return fig


def score_heatmap(
    matrix: np.ndarray,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    title: str,
    annotate_max: int = 16,
) -> Figure:
    """Heatmap of mean scores: row = true class, column = scored class (same class hidden).

    Args:
        matrix: ``[R, K]`` mean score of the column class on positive windows of the row class.
        row_labels: the ``R`` true classes.
        col_labels: the ``K`` scored classes.
        title: figure title.
        annotate_max: write the values in the cells when ``K`` and ``R`` are at most this.

    Returns:
        The figure; grey cells pair a class with itself or have no windows to average.
    """
    r, k = len(row_labels), len(col_labels)
    m = np.array(matrix, dtype=float)
    same = np.array([[a == b for b in col_labels] for a in row_labels], dtype=bool).reshape(r, k)
    m[same] = np.nan
    cell = 0.3
    fig = Figure(figsize=(min(max(6.0, cell * k + 3.5), 26.0), min(max(4.0, cell * r + 2.5), 26.0)))
    ax = fig.subplots()
    cmap = matplotlib.colormaps["magma_r"].with_extremes(bad="0.85")
    finite = m[np.isfinite(m)]
    # colour range = the values shown, so small differences between confusions stay visible
    vmin = float(finite.min()) if finite.size else 0.0
    vmax = float(finite.max()) if finite.size else 1.0
    vmax = max(vmax, vmin + 1e-6)
    im = ax.imshow(np.ma.masked_invalid(m), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    n = max(r, k)
    fs = 9 if n <= 30 else 8 if n <= 60 else 6
    ax.set_xticks(range(k))
    ax.set_yticks(range(r))
    ax.set_xticklabels(col_labels, rotation=90, fontsize=fs)
    ax.set_yticklabels(row_labels, fontsize=fs)
    ax.set_xlabel("scored class", fontsize=11)
    ax.set_ylabel("true class (its positive windows)", fontsize=11)
    if n <= annotate_max:
        for i in range(r):
            for j in range(k):
                if np.isfinite(m[i, j]):
                    dark = (m[i, j] - vmin) > 0.55 * (vmax - vmin)
                    ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=8,
                            color="white" if dark else "black")  # fmt: skip
    cb = fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02, shrink=0.8)
    cb.set_label("mean score", fontsize=10)
    ax.set_title(title, fontsize=12)
    fig.tight_layout()
    return fig


def zipf_plot(counts: pd.Series, class_names: pd.Series | None = None) -> Figure:
    """Rank vs training-clip count of every class with at least one clip (log-log).

    Args:
        counts: clips per class (index = label).
        class_names: ``class_name`` per label (colours the points), optional.

    Returns:
        The figure.
    """
    c = counts[counts > 0].sort_values(ascending=False)
    rank = np.arange(1, len(c) + 1)
    fig = Figure(figsize=(7.5, 5.0))
    ax = fig.subplots()
    ax.plot(rank, c.to_numpy(), color="0.6", lw=1, zorder=1)
    if class_names is not None:
        names = class_names.reindex(c.index).fillna("unknown")
        seen: dict[str, str] = {}
        for name in sorted(names.unique(), key=lambda v: (-(names == v).sum(), v)):
            m = (names == name).to_numpy()
            ax.scatter(rank[m], c.to_numpy()[m], s=20, zorder=2,
                       color=class_name_color(name, seen), label=f"{name} ({m.sum()})")  # fmt: skip
        ax.legend(fontsize=9, title="class_name (species)", title_fontsize=9)
    else:
        ax.scatter(rank, c.to_numpy(), s=20, zorder=2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log(ax.xaxis)
    _plain_log(ax.yaxis)
    ax.set_xlabel("class rank (by training clips)", fontsize=11)
    ax.set_ylabel("training clips", fontsize=11)
    ax.grid(alpha=0.3, which="both")
    zero = int((counts == 0).sum())
    note = f"; {zero} class(es) without clips not shown" if zero else ""
    ax.set_title(
        f"Clips per class (Zipf): {len(c)} classes, {int(c.sum())} clips{note}", fontsize=12
    )
    fig.tight_layout()
    return fig


def duration_histogram(durations: np.ndarray, window_seconds: float, note: str = "") -> Figure:
    """Histogram of clip durations on log-spaced bins, with the scoring window marked.

    Args:
        durations: seconds per clip.
        window_seconds: the window length (a vertical line).
        note: appended to the title (e.g. a sampling note).

    Returns:
        The figure.
    """
    d = np.asarray(durations, dtype=float)
    d = d[np.isfinite(d) & (d > 0)]
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.subplots()
    if d.size:
        lo, hi = max(d.min() * 0.9, 0.1), d.max() * 1.1
        bins = np.geomspace(lo, hi if hi > lo else lo * 2, 40)
        ax.hist(d, bins=bins, color="tab:blue", alpha=0.8, edgecolor="white")
        ax.axvline(window_seconds, color="tab:red", ls="--", label=f"window ({window_seconds:g} s)")
        med = float(np.median(d))
        ax.axvline(med, color="black", ls=":", label=f"median ({med:.1f} s)")
        ax.legend(fontsize=9)
        short = float((d < window_seconds).mean())
        total = f"{d.sum() / 3600:.1f} h" if d.sum() >= 3600 else f"{d.sum() / 60:.1f} min"
        title = f"Clip durations: {d.size} clips, {total}, {short:.0%} shorter than the window"
    else:
        title = "Clip durations: no readable clip"
    ax.set_xscale("log")
    _plain_log(ax.xaxis)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("duration (s, log)", fontsize=11)
    ax.set_ylabel("clips", fontsize=11)
    ax.grid(alpha=0.3)
    ax.set_title(title + (f"\n{note}" if note else ""), fontsize=12)
    fig.tight_layout()
    return fig


def class_name_breakdown(species: pd.Series, clips: pd.Series) -> Figure:
    """Species and training clips per taxonomic ``class_name`` (two bar panels).

    Args:
        species: number of species per ``class_name``.
        clips: number of training clips per ``class_name``.

    Returns:
        The figure.
    """
    names = list(species.sort_values(ascending=False).index)
    names += [n for n in clips.index if n not in names]
    fig = Figure(figsize=(10.0, 0.55 * len(names) + 2.0))
    axes = fig.subplots(1, 2, sharey=True)
    seen: dict[str, str] = {}
    colors = [class_name_color(n, seen) for n in names]
    y = np.arange(len(names))
    for ax, ser, what in ((axes[0], species, "species"), (axes[1], clips, "training clips")):
        vals = ser.reindex(names).fillna(0).to_numpy()
        ax.barh(y, vals, color=colors)
        total = vals.sum()
        for yi, v in zip(y, vals, strict=True):
            ax.text(v, yi, f" {int(v)} ({v / total:.0%})" if total else " 0", va="center",
                    fontsize=9)  # fmt: skip
        ax.set_xlim(0, max(vals.max(), 1) * 1.35)
        ax.set_xlabel(what, fontsize=11)
        ax.set_title(f"{what} per class_name", fontsize=12)
        ax.grid(alpha=0.3, axis="x")
    axes[0].set_yticks(y)
    axes[0].set_yticklabels(names, fontsize=10)
    axes[0].invert_yaxis()
    fig.tight_layout()
    return fig


def rating_distribution(ratings: pd.Series, groups: pd.Series | None = None) -> Figure:
    """Bar chart of ``train.csv`` ratings (0 = unrated), stacked by ``groups`` (e.g. collection).

    Args:
        ratings: rating per clip.
        groups: a group per clip (stacked bars), optional.

    Returns:
        The figure.
    """
    r = pd.to_numeric(ratings, errors="coerce").round(2)
    values = sorted(r.dropna().unique())
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.subplots()
    x = np.arange(len(values))
    g = (groups.astype(str) if groups is not None else pd.Series("all", index=r.index)).fillna("?")
    bottom = np.zeros(len(values))
    for name in g.value_counts().index:
        cnt = r[g == name].value_counts().reindex(values).fillna(0).to_numpy()
        ax.bar(x, cnt, bottom=bottom, label=str(name), edgecolor="white")
        bottom += cnt
    for xi, v in zip(x, bottom, strict=True):
        ax.text(xi, v, f"{int(v)}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x)
    ax.set_xticklabels([f"{v:g}" + ("\n(unrated)" if v == 0 else "") for v in values], fontsize=9)
    ax.set_xlabel("rating", fontsize=11)
    ax.set_ylabel("clips", fontsize=11)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(0, max(bottom.max(), 1) * 1.12)
    if groups is not None:
        ax.legend(fontsize=9, title=groups.name or None, title_fontsize=9)
    missing = int(r.isna().sum())
    extra = f" ({missing} missing)" if missing else ""
    ax.set_title(f"Rating distribution of {len(r)} clips{extra}", fontsize=12)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig
