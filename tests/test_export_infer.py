"""ONNX ensemble export and CPU inference: parity, submission layout, failures, combination."""

from __future__ import annotations

import json
import logging

import mlflow
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from birdsweep.cli import main
from birdsweep.config import build
from birdsweep.data.audio import list_audio_files, load_audio
from birdsweep.export.ensemble import export_ensemble
from birdsweep.export.select import select_checkpoints, select_from_mlflow
from birdsweep.infer.ensemble import Ensemble, label_files
from birdsweep.scoring.combine import combine
from birdsweep.scoring.context import FileMaxContext
from birdsweep.scoring.metric import macro_auc, per_class_auc, score_submission
from birdsweep.scoring.stream import WindowReader
from birdsweep.train.checkpoint import load_model, save_checkpoint

LABELS = ["aaa", "bbb", "ccc"]


def _fake_fold(path, labels=LABELS, n_mels=32, fold=0, score=0.5, seed=0):
    """A fold checkpoint in the real format holding a random-weight tiny model."""
    cfg = OmegaConf.create(
        {
            "model": {
                "_target_": "birdsweep.model.sed.SEDModel",
                "backbone": "mobilenetv3_small_050",
                "pretrained": False,
                "frontend": {
                    "_target_": "birdsweep.features.frontend.MelFrontend",
                    "n_mels": n_mels,
                },
            },
            "data": {"sample_rate": 32000, "window_seconds": 5.0},
        }
    )
    torch.manual_seed(seed)
    model = build(cfg.model, num_classes=len(labels))
    save_checkpoint(
        path,
        {
            "state_dict": model.state_dict(),
            "labels": list(labels),
            "config": OmegaConf.to_yaml(cfg),
            "fold": fold,
            "epoch": 0,
            "val_macro_auc": score,
        },
    )
    return path


# ------------------------------------------------------------------- trained folds (shared)


@pytest.fixture(scope="module")
def trained(tiny_run):
    """2 folds × 1 epoch of the tiny default recipe, tracked in a fresh MLflow database."""
    return tiny_run


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    cfg, _ = trained
    uri = cfg.logger.tracking_uri
    sources = select_from_mlflow(uri, experiment="birdsweep", top_k=2)
    out = tmp_path_factory.mktemp("ens") / "ensemble"
    res = export_ensemble(
        sources, out, tracking_uri=uri, selection={"experiment": "birdsweep", "top_k": 2}
    )
    yield res
    mlflow.set_tracking_uri("")  # leave no global state behind


def test_export_from_mlflow_writes_manifest_and_logs_run(trained, exported):
    cfg, summary = trained
    man = exported.manifest
    assert man["labels"] == summary.per_class["label"].tolist()
    assert man["sample_rate"] == cfg.data.sample_rate and man["window_seconds"] == 5.0
    assert len(man["models"]) == 2 and len(man["graphs"]) == 1  # one shared front end
    assert man["graphs"][0]["shared_frontend"] is True
    assert sorted(m["fold"] for m in man["models"]) == [0, 1]
    scores = [m["score"] for m in man["models"]]
    assert scores == sorted(scores, reverse=True)
    assert {m["checkpoint"] for m in man["models"]} == {r.checkpoint for r in summary.folds}
    par = man["parity"]
    assert par["real_windows"] > 0 and par["random_windows"] > 0
    assert 0 <= par["max_abs_diff"]["random"] <= 1e-4 and 0 <= par["max_abs_diff"]["real"] <= 1e-4
    client = MlflowClient(cfg.logger.tracking_uri)
    run = client.get_run(exported.mlflow_run_id)
    assert run.data.tags["ensemble"] == "true" and run.info.status == "FINISHED"
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "ensemble")}
    assert {"ensemble/manifest.json", "ensemble/ensemble.onnx"} <= arts
    # the other selection modes: best job by a parent metric, and explicit run ids
    uri = cfg.logger.tracking_uri
    by_job = select_from_mlflow(uri, experiment="birdsweep", metric="cv_macro_auc")
    assert len(by_job) == 2 and by_job[0].parent_score == pytest.approx(summary.cv_macro_auc)
    assert len(select_from_mlflow(uri, run_ids=[summary.run_id])) == 2
    one = select_from_mlflow(uri, run_ids=[by_job[1].run_id])
    assert [s.checkpoint for s in one] == [by_job[1].checkpoint]
    with pytest.raises(ValueError, match="no such MLflow experiment"):
        select_from_mlflow(uri, experiment="nope")
    with pytest.raises(ValueError, match="--runs 'f00'.*no such MLflow run"):
        select_from_mlflow(uri, run_ids=["f00"])


def _torch_window_probs(cfg, checkpoints, files, n_classes, shifts=(0.0,)):
    """[N, M, C] PyTorch probabilities of every 5 s window, averaged over windows moved by
    ``shifts`` seconds (kept inside the file), row ids in file/window order."""
    models = [load_model(c)[0] for c in checkpoints]
    sr, win = int(cfg.data.sample_rate), int(5 * cfg.data.sample_rate)
    probs, row_ids = [], []
    with torch.inference_mode():
        for f in files:
            wave = load_audio(f, sr)
            n = -(-len(wave) // win)
            padded = np.pad(wave, (0, n * win))
            per_shift = []
            for s in shifts:
                starts = [
                    min(max(w * win + round(s * sr), 0), max(len(wave) - win, w * win))
                    for w in range(n)
                ]
                x = torch.from_numpy(np.stack([padded[a : a + win] for a in starts]))
                per_shift.append(torch.stack([torch.sigmoid(m(x)["score"]) for m in models], 1))
            probs.append(torch.stack(per_shift).mean(0).numpy())
            row_ids += [f"{f.stem}_{5 * (w + 1)}" for w in range(n)]
    return np.concatenate(probs), row_ids


def test_infer_submission_matches_pytorch_score(trained, exported, tmp_path):
    cfg, _ = trained
    root = cfg.data.root
    files = list_audio_files(f"{root}/test_soundscapes")
    out = tmp_path / "submission.csv"
    s = label_files(exported.out_dir, [f"{root}/test_soundscapes"], out, combine="mean")
    sub = pd.read_csv(out)
    sample = pd.read_csv(f"{root}/sample_submission.csv")
    assert list(sub.columns) == list(sample.columns)
    assert sorted(sub["row_id"]) == sorted(sample["row_id"]) and s.n_rows == len(sample)
    assert not s.failures
    solution = pd.read_csv(f"{root}/test_soundscapes_labels.csv")
    labels = exported.manifest["labels"]
    ckpts = [m["checkpoint"] for m in exported.manifest["models"]]
    # the training config's test-time shifts travel in the manifest too
    shifts = list(cfg.tta.seconds)
    assert len(shifts) > 1 and exported.manifest["tta"] == {"shifts_seconds": shifts}
    probs, row_ids = _torch_window_probs(cfg, ckpts, files, len(labels), shifts)
    truth = solution.set_index("row_id").loc[row_ids, labels].to_numpy()
    # the training config's recording context travels in the manifest and is applied per model
    power = float(cfg.postprocess.power)
    assert power > 0 and exported.manifest["context"] == {"file_max_power": power, "smooth": []}
    rec = [r.rsplit("_", 1)[0] for r in row_ids]
    file_max = pd.DataFrame(probs.reshape(len(probs), -1)).groupby(rec).transform("max")
    want_mean = (probs * file_max.to_numpy().reshape(probs.shape) ** power).mean(1)
    got = score_submission(solution, sub)
    values = sub.set_index("row_id").loc[row_ids, labels].to_numpy()
    # the submission holds PyTorch's scores; its AUC is not compared with PyTorch's directly:
    # a 1-epoch model's windows differ by ~1e-7 here, so float noise may swap near-ties
    assert values == pytest.approx(want_mean, abs=1e-4)
    assert got == pytest.approx(macro_auc(truth, values), abs=1e-12)  # rows/columns by name
    assert got != pytest.approx(macro_auc(truth, probs.mean(1)), abs=1e-6)  # context changed it

    # rank: a 1-epoch model's scores differ by ~1e-4 between windows, so float noise between
    # runtimes may swap near-ties; compare with the ONNX per-model probabilities instead
    res = Ensemble.load(exported.out_dir).run(files)
    np.testing.assert_allclose(res.probs, probs, atol=1e-4)
    once, _ = _torch_window_probs(cfg, ckpts, files, len(labels))
    res_once = Ensemble.load(exported.out_dir, shifts=[0.0]).run(files)
    np.testing.assert_allclose(res_once.probs, once, atol=1e-4)
    # the shifts changed the scores by far more than the ONNX/PyTorch difference
    assert np.abs(res_once.probs - res.probs).max() > 10 * np.abs(res.probs - probs).max()
    label_files(exported.out_dir, files, out, combine="rank")
    ranked = pd.read_csv(out).set_index("row_id").loc[row_ids, labels].to_numpy()
    want = combine(FileMaxContext(power)(res.probs, res.file_index), "rank")  # ranks, averaged
    diff = np.abs(ranked - want)
    assert diff.max() <= 2.0 / (len(want) - 1) + 1e-6  # at most a swap of near-tied neighbours
    assert np.mean(diff < 1e-6) > 0.9


def test_cli_infer_fills_undecodable_file_and_warns(exported, trained, tmp_path, capsys, caplog):
    cfg, _ = trained
    good = list_audio_files(f"{cfg.data.root}/test_soundscapes")[0]
    audio = tmp_path / "audio"
    audio.mkdir()
    (audio / good.name).write_bytes(good.read_bytes())
    (audio / "broken.ogg").write_bytes(b"OggS" + bytes(range(256)) * 8)
    out = tmp_path / "sub.csv"
    with caplog.at_level(logging.WARNING, logger="birdsweep"):
        rc = main(["infer", "--model", str(exported.out_dir), "--audio", str(audio),
                   "--out", str(out), "--fail-windows", "3", "--no-progress"])  # fmt: skip
    assert rc == 0
    sub = pd.read_csv(out)
    broken = sub[sub["row_id"].str.startswith("broken_")]
    assert broken["row_id"].tolist() == ["broken_5", "broken_10", "broken_15"]
    assert (broken.drop(columns="row_id").to_numpy() == 0).all()
    n_good = WindowReader(32000).header_windows(good)
    assert len(sub) == 3 + n_good
    assert "1 file(s) could not be decoded" in capsys.readouterr().out
    assert any("broken.ogg" in r.getMessage() for r in caplog.records)

    det = tmp_path / "det.csv"
    rc = main(["infer", "--model", str(exported.out_dir), "--audio", str(audio / good.name),
               "--out", str(det), "--format", "detections", "--threshold", "0.3", "--no-progress"])  # fmt: skip
    assert rc == 0
    d = pd.read_csv(det)
    assert list(d.columns) == ["file", "start", "end", "label", "score"]
    assert (d["score"] >= 0.3).all() and set(d["label"]) <= set(exported.manifest["labels"])
    assert ((d["end"] - d["start"]) == 5.0).all()


def test_openvino_runtime_matches_onnxruntime_and_is_parity_checked(
    exported, trained, tmp_path, capsys
):
    pytest.importorskip("openvino")  # in the dev extra, so CI has it
    cfg, _ = trained
    man = exported.manifest
    # export checked the same graph in both runtimes against PyTorch
    assert man["parity"]["runtimes"] == ["onnxruntime", "openvino"]
    ov_diff = man["graphs"][0]["parity_by_runtime"]["openvino"]
    assert 0 <= ov_diff["random"] <= 1e-4 and 0 <= ov_diff["real"] <= 1e-4
    files = list_audio_files(f"{cfg.data.root}/test_soundscapes")
    ort_res = Ensemble.load(exported.out_dir).run(files)
    ov = Ensemble.load(exported.out_dir, runtime="openvino", threads=1)
    assert ov.runtime == "openvino"
    ov_res = ov.run(files)
    assert ov_res.row_ids() == ort_res.row_ids()
    np.testing.assert_allclose(ov_res.probs, ort_res.probs, atol=1e-5)
    solution = pd.read_csv(f"{cfg.data.root}/test_soundscapes_labels.csv")
    outs = {}
    for runtime in ("onnxruntime", "openvino"):
        outs[runtime] = tmp_path / f"{runtime}.csv"
        rc = main(["infer", "--model", str(exported.out_dir), "--audio", *map(str, files),
                   "--out", str(outs[runtime]), "--combine", "mean", "--runtime", runtime,
                   "--no-progress"])  # fmt: skip
        assert rc == 0
    a, b = (score_submission(solution, pd.read_csv(o)) for o in outs.values())
    assert a == pytest.approx(b, abs=1e-3)
    with pytest.raises(SystemExit):
        main(["infer", "--model", str(exported.out_dir), "--audio", str(files[0]),
              "--out", str(tmp_path / "x.csv"), "--runtime", "tensorrt"])  # fmt: skip
    assert "invalid choice: 'tensorrt'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--runtime 'tensorrt' is not one of"):
        Ensemble.load(exported.out_dir, runtime="tensorrt")


def test_infer_labels_and_score_command_print_the_submission_auc(
    exported, trained, tmp_path, capsys, caplog
):
    cfg, _ = trained
    root = cfg.data.root
    labels = f"{root}/test_soundscapes_labels.csv"
    out = tmp_path / "sub.csv"
    rc = main(["infer", "--model", str(exported.out_dir), "--audio", f"{root}/test_soundscapes",
               "--out", str(out), "--labels", labels, "--no-progress"])  # fmt: skip
    assert rc == 0
    want = score_submission(pd.read_csv(labels), pd.read_csv(out))
    assert f"macro ROC-AUC {want:.4f} over " in capsys.readouterr().out
    rc = main(["score", "--submission", str(out), "--labels", labels, "--per-class", "2"])
    assert rc == 0
    printed = capsys.readouterr().out
    truth = pd.read_csv(labels)
    per = per_class_auc(truth.drop(columns="row_id").to_numpy(),
                        pd.read_csv(out).set_index("row_id").loc[truth["row_id"],
                        truth.columns[1:]].to_numpy())  # fmt: skip
    n = int(np.isfinite(per).sum())
    assert f"macro ROC-AUC {want:.4f} over {n} of {len(per)} classes" in printed
    worst = truth.columns[1:][np.nanargmin(per)]
    assert printed.splitlines()[2].split()[0] == worst  # header, then the worst class first
    with caplog.at_level(logging.ERROR, logger="birdsweep"):
        assert main(["score", "--submission", str(tmp_path / "nope.csv"), "--labels", labels]) == 2
    assert "--submission" in caplog.text and "nope.csv: no such file" in caplog.text


# ----------------------------------------------------------------------- fast, no training


def test_mismatched_label_lists_are_refused(tmp_path):
    a = _fake_fold(tmp_path / "a" / "fold0" / "best.pt")
    b = _fake_fold(tmp_path / "b" / "fold0" / "best.pt", labels=["aaa", "ccc", "bbb"])
    sources = select_checkpoints([a, b])
    with pytest.raises(ValueError, match="label lists differ") as err:
        export_ensemble(sources, tmp_path / "out")
    assert str(a) in str(err.value) and str(b) in str(err.value)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_different_front_ends_get_one_graph_each(tmp_path):
    a = _fake_fold(tmp_path / "h" / "fold0" / "best.pt", n_mels=32, fold=0, score=0.7, seed=0)
    b = _fake_fold(tmp_path / "h" / "fold1" / "best.pt", n_mels=24, fold=1, score=0.6, seed=1)
    c = _fake_fold(tmp_path / "h" / "fold2" / "best.pt", n_mels=32, fold=2, score=0.8, seed=2)
    sources = select_checkpoints([tmp_path / "h"])
    assert [s.fold for s in sources] == [2, 0, 1]  # best first
    res = export_ensemble(sources, tmp_path / "ens", dynamo=False)
    assert [g["models"] for g in res.manifest["graphs"]] == [[0, 1], [2]]
    ens = Ensemble.load(tmp_path / "ens", threads=1)
    x = (np.random.default_rng(0).standard_normal((3, 160000)) * 0.1).astype(np.float32)
    got = ens.predict_windows(x)
    with torch.inference_mode():
        for i, ck in enumerate((c, a, b)):
            ref = torch.sigmoid(load_model(ck)[0](torch.from_numpy(x))["score"]).numpy()
            np.testing.assert_allclose(got[:, i], ref, atol=1e-4)
    with pytest.raises(ValueError, match="overwrite"):
        export_ensemble(sources, tmp_path / "ens", dynamo=False)


def test_graph_openvino_cannot_convert_still_exports_for_onnxruntime(tmp_path, caplog):
    pytest.importorskip("openvino")
    _fake_fold(tmp_path / "h" / "fold0" / "best.pt")
    with caplog.at_level(logging.WARNING, logger="birdsweep"):
        # the ONNX STFT operator with a dynamic batch: OpenVINO's ONNX front end refuses it
        res = export_ensemble(select_checkpoints([tmp_path / "h"]), tmp_path / "ens", stft="onnx")
    graph = res.manifest["graphs"][0]
    assert res.manifest["parity"]["runtimes"] == ["onnxruntime"]
    assert "STFT" in graph["parity_by_runtime"]["openvino"]["error"]
    assert graph["parity_by_runtime"]["onnxruntime"]["random"] <= 1e-4
    assert any("openvino cannot load it" in r.getMessage() for r in caplog.records)
    Ensemble.load(tmp_path / "ens", threads=1)  # onnxruntime runs it
    with pytest.raises(ValueError, match=r"not a loadable ONNX model in openvino \(STFT") as err:
        Ensemble.load(tmp_path / "ens", runtime="openvino")
    assert "\n" not in str(err.value)


def _job(uri, tmp_path, config_hash, scores, seed):
    """A finished ``python run.py``-like job in MLflow: a parent run and one fold run per score,
    each pointing at a real (random-weight) fold checkpoint."""
    from birdsweep.track.mlflow_tracker import MLflowTracker

    tracker = MLflowTracker(uri, tags={"config_hash": config_hash, "task_name": "train"})
    tracker.start()
    for k, score in enumerate(scores):
        ck = _fake_fold(tmp_path / config_hash / f"fold{k}" / "best.pt", fold=k, seed=seed + k)
        with tracker.child(f"fold{k}", tags={"fold": k}):
            tracker.log_metrics({"best_val_macro_auc": score})
            tracker.set_tags({"checkpoint": str(ck)})
    tracker.end()
    return tracker.parent_id


def test_export_takes_the_latest_job_and_refuses_mixed_recipes(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    old = _job(uri, tmp_path, "aaaa", [0.9, 0.95], seed=0)  # better folds, older job
    new = _job(uri, tmp_path, "bbbb", [0.7, 0.8], seed=5)
    latest = select_from_mlflow(uri, experiment="birdsweep")
    assert {s.parent_run_id for s in latest} == {new} and [s.score for s in latest] == [0.8, 0.7]
    assert [s.fold for s in select_from_mlflow(uri, experiment="birdsweep", top_k=1)] == [1]
    # the best folds of the experiment come from two recipes: refused, unless asked for
    with pytest.raises(ValueError, match=r"2 different configs \(aaaa, bbbb.*--mix-jobs"):
        select_from_mlflow(uri, run_ids=[old, new])
    mixed = select_from_mlflow(uri, experiment="birdsweep", top_k=3, mix_jobs=True)
    assert [s.score for s in mixed] == [0.95, 0.9, 0.8]
    assert {s.config_hash for s in mixed} == {"aaaa", "bbbb"}
    out = tmp_path / "ens"
    rc = main(["export", "--experiment", "birdsweep", "--tracking-uri", uri, "--out", str(out)])
    assert rc == 0
    man = json.loads((out / "manifest.json").read_text())
    assert {m["parent_run_id"] for m in man["models"]} == {new}


def test_select_checkpoints_top_k_and_dedupe(tmp_path):
    for k, score in enumerate([0.6, 0.9, 0.7]):
        _fake_fold(tmp_path / "h" / f"fold{k}" / "best.pt", fold=k, score=score)
    picked = select_checkpoints([tmp_path / "h", tmp_path / "h" / "fold1" / "best.pt"], top_k=2)
    assert [s.fold for s in picked] == [1, 2] and picked[0].score == pytest.approx(0.9)
    assert picked[0].config_hash == "h"
    with pytest.raises(FileNotFoundError, match="no fold"):
        select_checkpoints([tmp_path])


@pytest.mark.parametrize(
    ("rate", "channels", "seconds"), [(48000, 2, 13.0), (32000, 1, 10.4), (22050, 1, 3.0)]
)
def test_streamed_windows_equal_whole_file_decode(tmp_path, rate, channels, seconds):
    rng = np.random.default_rng(0)
    y = (0.1 * rng.standard_normal((int(rate * seconds), channels))).astype(np.float32)
    path = tmp_path / "x.flac"
    sf.write(path, y, rate)
    whole = load_audio(path, 32000)
    for chunk in (1, 2, 12):
        reader = WindowReader(32000, 5.0, chunk_windows=chunk, min_last_window_seconds=1.0)
        chunks = list(reader.iter_windows(path))
        w = np.concatenate([c.windows for c in chunks])
        assert [c.first_window for c in chunks] == list(range(0, len(w), chunk))
        assert len(w) == reader.header_windows(path) == {13.0: 3, 10.4: 2, 3.0: 1}[seconds]
        flat = w.reshape(-1)
        n = min(len(flat), len(whole))
        np.testing.assert_allclose(flat[:n], whole[:n], atol=1e-6)
        assert not flat[len(whole) :].any()  # zero padding after the end
        # context for test-time shifts: the same audio plus up to 1.25 s each side, unpadded
        ctx_reader = WindowReader(32000, 5.0, chunk_windows=chunk, context_seconds=1.25)
        for c, plain in zip(ctx_reader.iter_windows(path), chunks, strict=True):
            np.testing.assert_array_equal(c.windows, plain.windows)
            a = c.first_window * 160000
            assert c.context_start == max(0, a - 40000)
            b = min(len(whole), a + len(c.windows) * 160000 + 40000)
            assert len(c.context) == b - c.context_start
            np.testing.assert_allclose(c.context, whole[c.context_start : b], atol=1e-6)


def test_combine_rank_and_mean_properties():
    rng = np.random.default_rng(0)
    probs = rng.random((40, 3, 4)).astype(np.float32)
    y = (rng.random((40, 4)) < 0.3).astype(float)
    mean, rank = combine(probs, "mean"), combine(probs, "rank")
    np.testing.assert_allclose(mean, probs.mean(1), rtol=1e-6)
    assert rank.shape == (40, 4) and rank.min() >= 0 and rank.max() <= 1
    # one model: ranks keep every class's ordering, so per-class AUC is unchanged
    np.testing.assert_allclose(
        per_class_auc(y, combine(probs[:, :1], "rank")), per_class_auc(y, probs[:, 0])
    )
    # rank is blind to a monotone recalibration of one model; mean is not
    warped = probs.copy()
    warped[:, 1] = warped[:, 1] ** 4
    np.testing.assert_allclose(combine(warped, "rank"), rank, atol=1e-6)
    assert not np.allclose(combine(warped, "mean"), mean)
    # ties share a rank; a single row is returned unchanged
    assert np.allclose(combine(np.full((5, 2, 1), 0.3), "rank"), 0.5)
    np.testing.assert_allclose(combine(probs[:1], "rank"), probs[:1].mean(1), rtol=1e-6)
    with pytest.raises(ValueError, match="not one of"):
        combine(probs, "median")
