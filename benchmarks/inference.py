"""Inference throughput: the ONNX Runtime CPU ensemble against a plain PyTorch eager loop.

Every number is end to end on the same soundscapes: decode + front end + models + combine +
write the submission CSV (model loading excluded). One table from one run::

    python benchmarks/inference.py --quick                       # minutes, small model
    python benchmarks/inference.py --backbone efficientnet_b0    # the 5-fold target setting
    python benchmarks/inference.py --checkpoints outputs/checkpoints/<hash>  # trained folds:
                                                                 # + int8 macro AUC change

Without ``--checkpoints`` the fold checkpoints are random-weight models built from the real
config (``conf/train.yaml`` + overrides) and saved in the real checkpoint format: speed does not
depend on training. The int8 AUC check needs trained checkpoints (their config's labelled
soundscapes are used).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from birdsweep.data.audio import list_audio_files, load_audio  # noqa: E402
from birdsweep.data.windows import WINDOW_SECONDS, window_samples  # noqa: E402
from birdsweep.export.ensemble import export_ensemble  # noqa: E402
from birdsweep.export.select import select_checkpoints  # noqa: E402
from birdsweep.infer.ensemble import Ensemble  # noqa: E402
from birdsweep.infer.output import write_table  # noqa: E402
from birdsweep.model.sed import window_score  # noqa: E402
from birdsweep.scoring.combine import combine  # noqa: E402
from birdsweep.scoring.manifest import MANIFEST, sha256_of  # noqa: E402
from birdsweep.scoring.metric import score_submission  # noqa: E402
from birdsweep.scoring.session import installed_runtimes  # noqa: E402
from birdsweep.scoring.submission import INDEX_NAMES, submission_table  # noqa: E402
from birdsweep.train.checkpoint import load_model, save_checkpoint  # noqa: E402

log = logging.getLogger("bench")


# ------------------------------------------------------------------------------------ setup


def random_checkpoints(out: Path, n: int, overrides: list[str], labels: list[str]) -> Path:
    """Random-weight fold checkpoints of the composed config, in the real format."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf, open_dict

    from birdsweep.config import build

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
        if "pretrained" in cfg.model:
            cfg.model.pretrained = False
    yaml = OmegaConf.to_yaml(cfg, resolve=True)
    for k in range(n):
        torch.manual_seed(k)
        model = build(cfg.model, num_classes=len(labels)).eval()
        save_checkpoint(
            out / f"fold{k}" / "best.pt",
            {
                "state_dict": model.state_dict(),
                "labels": labels,
                "config": yaml,
                "fold": k,
                "epoch": 0,
                "val_macro_auc": 0.5,
            },
        )
    return out


def demo_audio(workdir: Path, n_soundscapes: int, n_classes: int) -> Path:
    from birdsweep.data.demo import generate_demo_dataset

    return generate_demo_dataset(
        workdir / f"demo_{n_soundscapes}x60s_c{n_classes}",
        seed=0,
        n_classes=n_classes,
        n_train_soundscapes=1,
        n_test_soundscapes=n_soundscapes,
        soundscape_seconds=60,
        clips_per_class_max=2,
        progress=False,
    )


def write_long_file(path: Path, minutes: float, sr: int = 32000) -> Path:
    """A long noisy ogg written block by block (never the whole signal in memory)."""
    import soundfile as sf

    if path.is_file():
        return path
    rng = np.random.default_rng(0)
    tmp = path.with_suffix(".tmp.ogg")
    with sf.SoundFile(str(tmp), "w", sr, 1, format="OGG", subtype="VORBIS") as f:
        for _ in range(int(minutes * 6)):  # 10 s blocks
            t = np.arange(10 * sr) / sr
            y = 0.05 * rng.standard_normal(10 * sr) + 0.1 * np.sin(
                2 * np.pi * rng.uniform(1e3, 6e3) * t
            )
            f.write(y.astype(np.float32))
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------- measurements


def eager_run(
    checkpoints: list[str], files: list[Path], out: Path, batch_size: int
) -> tuple[float, int]:
    """The baseline: load_audio per file, then every model's forward in PyTorch eager mode."""
    models = [load_model(c)[0] for c in checkpoints]
    ck_labels = torch.load(checkpoints[0], weights_only=True)["labels"]
    sr = models[0].frontend.sample_rate
    secs = WINDOW_SECONDS
    win = window_samples(secs, sr)
    with torch.inference_mode():  # warm-up (allocator, oneDNN primitives), not timed
        for m in models:
            m(torch.zeros(min(batch_size, 2), win))
    t0 = time.perf_counter()
    probs, index = [], []
    with torch.inference_mode():
        for f in files:
            wave = load_audio(f, sr)
            n = max(1, -(-len(wave) // win))
            wave = np.pad(wave, (0, n * win - len(wave))).reshape(n, win)
            for i in range(0, n, batch_size):
                x = torch.from_numpy(wave[i : i + batch_size])
                probs.append(
                    torch.stack([torch.sigmoid(window_score(m(x))) for m in models], 1).numpy()
                )
                index += [
                    (str(f), secs * w, secs * (w + 1)) for w in range(i, min(n, i + batch_size))
                ]
    scores = pd.DataFrame(
        combine(np.concatenate(probs), "rank"),
        index=pd.MultiIndex.from_tuples(index, names=list(INDEX_NAMES)),
        columns=ck_labels,
    )
    write_table(submission_table(scores), out)
    return time.perf_counter() - t0, len(scores)


def ort_run(model_dir: Path, files: list[Path], out: Path, **kw) -> tuple[float, int]:
    ens = Ensemble.load(model_dir, **kw)
    ens.predict_windows(np.zeros((2, ens.reader.window_samples), dtype=np.float32))  # warm-up
    t0 = time.perf_counter()
    scores = ens.predict_files(files)
    write_table(submission_table(scores), out)
    return time.perf_counter() - t0, len(scores)


# int8 rows of the table: name -> ensemble folder key
INT8_VARIANTS = {
    "int8 dynamic (all ops)": "int8",
    "int8 dynamic (MatMul/Gemm only)": "int8_matmul",
    "int8 static QDQ (Conv, calibrated)": "int8_static",
}


def quantize(src: Path, dst: Path, op_types: list[str] | None) -> Path:
    """Dynamic int8 quantisation of every graph of an ensemble folder."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    return _per_graph(
        src,
        dst,
        lambda a, b: quantize_dynamic(
            a, b, weight_type=QuantType.QInt8, op_types_to_quantize=op_types
        ),
    )


def _per_graph(src: Path, dst: Path, fn: Callable[[Path, Path], None]) -> Path:
    """Copy ensemble folder ``src`` to ``dst`` and rewrite each graph with ``fn(src, dst)``
    (the manifest's checksums follow, or ``infer`` refuses the rewritten graphs)."""
    shutil.copytree(src, dst, dirs_exist_ok=True)
    man = json.loads((src / MANIFEST).read_text())
    for g in man["graphs"]:
        fn(src / g["file"], dst / g["file"])
        g["sha256"], g["bytes"] = sha256_of(dst / g["file"]), (dst / g["file"]).stat().st_size
    (dst / MANIFEST).write_text(json.dumps(man, indent=2))
    return dst


def quantize_static_convs(src: Path, dst: Path, windows: np.ndarray, batch: int = 4) -> Path:
    """Static int8 (QDQ, per-channel weights) of every Conv of an ensemble folder, activation
    ranges calibrated (min/max) on ``windows`` [N, samples]; the front end stays fp32."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Windows(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([windows[i : i + batch] for i in range(0, len(windows), batch)])

        def get_next(self) -> dict | None:
            x = next(self.batches, None)
            return None if x is None else {"wave": x}

    return _per_graph(
        src,
        dst,
        lambda a, b: quantize_static(
            a,
            b,
            Windows(),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["Conv"],
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        ),
    )


def calibration_windows(files: list[Path], n: int, sample_rate: int, window: int) -> np.ndarray:
    """Up to ``n`` consecutive windows from the first files (int8 calibration data)."""
    out: list[np.ndarray] = []
    for f in files:
        y = load_audio(f, sample_rate)
        out += [y[s : s + window] for s in range(0, len(y) - window + 1, window)]
        if len(out) >= n:
            break
    return np.stack(out[:n]).astype(np.float32)


def peak_rss_mb(model_dir: Path, audio: Path, out: Path, threads: int) -> tuple[float, float]:
    """Peak RSS (MB) and seconds of ``birdsweep infer`` on ``audio`` in a fresh process."""
    code = (
        "import sys; from birdsweep.cli import main; "
        f"rc = main(['infer', '--model', {str(model_dir)!r}, '--audio', {str(audio)!r}, "
        f"'--out', {str(out)!r}, '--threads', '{threads}', '--no-progress']); "
        # VmHWM: peak RSS of this process image (ru_maxrss would include the forking parent)
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]; "
        "print('MAXRSS', hwm.split()[1]); sys.exit(rc)"
    )
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    sec = time.perf_counter() - t0
    if res.returncode:
        raise RuntimeError(res.stderr[-2000:])
    kb = next(int(line.split()[1]) for line in res.stdout.splitlines() if line.startswith("MAXRSS"))
    return kb / 1024, sec


# --------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="small model, 2 soundscapes, 1 repeat")
    p.add_argument(
        "--checkpoints", nargs="+", help="trained fold checkpoints (enables the int8 AUC check)"
    )
    p.add_argument(
        "--backbone", default="efficientnet_b0", help="timm backbone of the random models"
    )
    p.add_argument(
        "--override", nargs="*", default=[], help="extra Hydra overrides for the random models"
    )
    p.add_argument("--folds", type=int, default=5, help="models in the ensemble")
    p.add_argument("--soundscapes", type=int, default=None, help="60 s demo soundscapes to label")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (onnxruntime and torch)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=None, help="runs per variant (best kept)")
    p.add_argument(
        "--long-file-minutes", type=float, default=None, help="peak RSS on a file this long"
    )
    p.add_argument(
        "--legacy-exporter", action="store_true", help="TorchScript exporter (faster export)"
    )
    p.add_argument("--workdir", default=str(ROOT / ".cache" / "bench_inference"))
    p.add_argument("--json", help="also write the results here")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("birdsweep", "bench"):
        logging.getLogger(name).setLevel(logging.INFO)
    n_sc = a.soundscapes or (2 if a.quick else 8)
    repeats = a.repeats or (1 if a.quick else 2)
    long_min = a.long_file_minutes if a.long_file_minutes is not None else (5 if a.quick else 60)
    torch.set_num_threads(a.threads)
    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)

    solution = None
    if a.checkpoints:
        sources = select_checkpoints(a.checkpoints, a.folds)
        _, ck = load_model(sources[0].checkpoint)
        from omegaconf import OmegaConf

        dcfg = OmegaConf.create(ck["config"]).data
        files = list_audio_files(str(dcfg.soundscape_dir))
        if Path(str(dcfg.soundscape_labels)).is_file():
            solution = pd.read_csv(str(dcfg.soundscape_labels))
        backbone = OmegaConf.select(OmegaConf.create(ck["config"]), "model.backbone")
    else:
        demo = demo_audio(work, n_sc, 24)
        files = list_audio_files(demo / "test_soundscapes")
        labels = pd.read_csv(demo / "taxonomy.csv")["primary_label"].tolist()
        backbone = "default preset" if a.quick and a.backbone == "efficientnet_b0" else a.backbone
        overrides = list(a.override) + (
            [] if backbone == "default preset" else [f"model.backbone={backbone}"]
        )
        ck_dir = random_checkpoints(Path(tempfile.mkdtemp(dir=work)), a.folds, overrides, labels)
        sources = select_checkpoints([ck_dir])
        sources.sort(key=lambda s: s.fold or 0)
    n_models = len(sources)
    ckpts = [s.checkpoint for s in sources]
    exp_kw = dict(dynamo=not a.legacy_exporter, overwrite=True, parity_audio=files[:1])
    dirs: dict[str, Path] = {}
    t0 = time.perf_counter()
    dirs["shared"] = export_ensemble(sources, work / "ens_shared", **exp_kw).out_dir
    export_s = time.perf_counter() - t0
    dirs["one"] = export_ensemble(sources[:1], work / "ens_one", **exp_kw).out_dir
    dirs["stft_op"] = export_ensemble(sources, work / "ens_stft_op", stft="onnx", **exp_kw).out_dir
    if n_models > 1:
        dirs["separate"] = export_ensemble(
            sources, work / "ens_separate", shared_frontend=False, **exp_kw
        ).out_dir
    dirs["int8"] = quantize(dirs["shared"], work / "ens_int8", None)
    dirs["int8_matmul"] = quantize(dirs["shared"], work / "ens_int8_matmul", ["MatMul", "Gemm"])
    man = json.loads((dirs["shared"] / MANIFEST).read_text())
    calib = calibration_windows(files, 32, man["sample_rate"], man["window_samples"])
    dirs["int8_static"] = quantize_static_convs(dirs["shared"], work / "ens_int8_static", calib)

    out = work / "submission.csv"
    bs, th = a.batch_size, a.threads
    k = n_models

    def eager(n: int, threads: int):
        def fn():
            torch.set_num_threads(threads)
            try:
                return eager_run(ckpts[:n], files, out, bs)
            finally:
                torch.set_num_threads(th)

        return fn

    def ort(key: str, **kw):
        # each window once, as the eager loop scores it (the manifest's test-time shifts would
        # make 5 forward passes a window: benchmarks/test_time_shifts.py measures those)
        kw = {"threads": th, "batch_size": bs, "shifts": [0.0], **kw}
        return lambda: ort_run(dirs[key], files, out, **kw)

    # (name, models, baseline name, note, run) -- the baseline is the eager row with as many
    # models at the same thread count
    openvino = "openvino" in installed_runtimes()
    variants = [
        ("pytorch eager (baseline)", 1, None, "", eager(1, th)),
        ("onnxruntime", 1, "pytorch eager (baseline)", "", ort("one")),
    ]
    if openvino:
        variants += [
            ("openvino", 1, "pytorch eager (baseline)", "", ort("one", runtime="openvino"))
        ]
    if k > 1:
        variants += [
            ("pytorch eager (baseline)", k, None, "", eager(k, th)),
            (
                "onnxruntime shared front end",
                k,
                "pytorch eager (baseline)",
                "default",
                ort("shared"),
            ),
            *(
                [
                    (
                        "openvino shared front end (--runtime openvino)",
                        k,
                        "pytorch eager (baseline)",
                        "",
                        ort("shared", runtime="openvino"),
                    )
                ]
                if openvino
                else []
            ),
            (
                "  same, ONNX STFT operator (export --stft onnx)",
                k,
                "pytorch eager (baseline)",
                "",
                ort("stft_op"),
            ),
            (
                "  same, decode inline (no prefetch)",
                k,
                "pytorch eager (baseline)",
                "",
                ort("shared", prefetch=0),
            ),
            (
                "  same, spinning onnxruntime threads",
                k,
                "pytorch eager (baseline)",
                "",
                ort("shared", spinning=True),
            ),
            *[
                (
                    f"  same, batch size {b}",
                    k,
                    "pytorch eager (baseline)",
                    "",
                    ort("shared", batch_size=b),
                )
                for b in sorted({1, 4, 32} - {bs})
            ],
            (
                "onnxruntime separate graph per fold",
                k,
                "pytorch eager (baseline)",
                "",
                ort("separate"),
            ),
        ]
    if th > 1:
        variants += [
            ("pytorch eager, 1 thread", k, None, "", eager(k, 1)),
            (
                "onnxruntime shared, 1 thread",
                k,
                "pytorch eager, 1 thread",
                "",
                ort("shared", threads=1),
            ),
        ]
    variants += [
        (name, k, "pytorch eager (baseline)", "", ort(key)) for name, key in INT8_VARIANTS.items()
    ]
    # round-robin repeats, best kept: on a shared CPU every variant sees similar load
    best: dict[int, float] = {}
    for r in range(repeats):
        for i, (name, models, *_rest, fn) in enumerate(variants):
            sec, n = fn()
            best[i] = max(best.get(i, 0.0), n / sec)
            log.info("repeat %d: %s (%d models): %.2f windows/s", r + 1, name, models, n / sec)

    rows = []
    for i, (name, models, base, note, _) in enumerate(variants):
        ref = next(
            (best[j] for j, v in enumerate(variants) if v[0] == (base or name) and v[1] == models),
            None,
        )
        rows.append(
            {
                "variant": name,
                "models": models,
                "windows/s": round(best[i], 2),
                "x eager": round(best[i] / ref, 2) if ref else None,
                "note": note,
            }
        )

    def macro_auc_of(key: str) -> float:
        scores = Ensemble.load(dirs[key]).predict_files(files)
        return score_submission(solution, submission_table(scores))

    fp32 = macro_auc_of("shared") if solution is not None else None
    for row in rows:
        key = INT8_VARIANTS.get(row["variant"])
        if key is None:
            continue
        row["note"] = "AUC check needs --checkpoints (trained folds)"
        if fp32 is not None:
            q = macro_auc_of(key)
            ok = "usable" if abs(q - fp32) <= 0.002 else "NOT usable"
            row["note"] = f"macro AUC {q:.4f} vs fp32 {fp32:.4f} ({q - fp32:+.4f}: {ok})"

    rss = None
    if long_min:
        one_min = write_long_file(work / "long_1min.ogg", 1)
        long = write_long_file(work / f"long_{long_min:g}min.ogg", long_min)
        small, _ = peak_rss_mb(dirs["one"], one_min, work / "rss_small.csv", th)
        big, sec = peak_rss_mb(dirs["one"], long, work / "rss_long.csv", th)
        rss = {
            "minutes": long_min,
            "peak_rss_mb": round(big, 1),
            "peak_rss_mb_1min": round(small, 1),
            "seconds": round(sec, 1),
        }

    table = pd.DataFrame(rows)
    n_windows = sum(Ensemble.load(dirs["one"]).reader.header_windows(f) or 0 for f in files)
    print()
    print(
        f"birdsweep inference benchmark: {n_models} fold(s) of {backbone}, {len(files)} soundscape(s) "
        f"= {n_windows} windows, {th} thread(s), batch {bs}, best of {repeats} run(s); "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s); export {export_s:.0f} s"
    )
    print(table.to_string(index=False))
    if rss:
        print(
            f"peak RSS of `birdsweep infer` (1 model): {rss['peak_rss_mb']:.0f} MB on a {long_min:g}-min "
            f"file ({rss['seconds']:.0f} s) vs {rss['peak_rss_mb_1min']:.0f} MB on a 1-min file"
        )
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"(benchmark process peak RSS {usage.ru_maxrss / 1024:.0f} MB)")
    if a.json:
        Path(a.json).write_text(
            json.dumps({"rows": rows, "rss": rss, "windows": n_windows}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
