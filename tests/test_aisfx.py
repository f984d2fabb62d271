"""The aiSFX CNN backbone (birdsweep.model.aisfx): architecture, weights, input scale, freezing.

Tests that need the pretrained weights skip when the `aisfx` package is not installed
(``pip install --no-deps aisfx==0.1.2``).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import timm
import torch

from birdsweep.features.frontend import MelFrontend, mel_filterbank
from birdsweep.model import aisfx as A
from birdsweep.model.sed import SEDModel

HAS_AISFX = importlib.util.find_spec("aisfx") is not None
needs_aisfx = pytest.mark.skipif(not HAS_AISFX, reason="aisfx package not installed")


def backbone(name: str = "aisfx_cnn", **kw) -> A.AisfxCNN:
    """As birdsweep.model.sed.create_backbone calls timm."""
    args = dict(pretrained=False, num_classes=0, global_pool="", in_chans=1, drop_rate=0.2)
    return timm.create_model(name, **{**args, "drop_path_rate": 0.1, **kw})


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    if not HAS_AISFX:
        pytest.skip("aisfx package not installed")
    return A.read_aisfx_checkpoint()


def signal(sr: int = A.SAMPLE_RATE, seconds: float = 5.0) -> np.ndarray:
    """A gated chirp in noise, peak exactly 1 (aiSFX's librosa path peak-normalises)."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    y = 0.3 * np.sin(2 * np.pi * (2000 * t + 300 * t**2)) * (np.sin(2 * np.pi * 1.3 * t) > 0)
    y = y + 0.02 * rng.standard_normal(t.size)
    return (y / np.abs(y).max()).astype(np.float32)


def test_registered_and_shapes():
    m = backbone().eval()
    assert m.num_features == 512
    x = torch.randn(2, 1, 96, 100)
    with torch.no_grad():
        f = m.forward_features(x)
    assert f.shape == (2, 512, 12, 12)  # 3 max pools of 2 over [mel, time]
    assert backbone(global_pool="meanmax").eval()(x).shape == (2, 512)  # the aiSFX embedding
    assert backbone(num_classes=5, global_pool="avg").eval()(x).shape == (2, 5)


@needs_aisfx
def test_checkpoint_loads_strict(state):
    emb = {k for k in state if k.startswith("embedding_net.")}
    assert len(emb) == 4 * 2 * 6  # 4 blocks x (conv1, conv2, bn1 x5, bn2 x5) tensors
    m = A.load_aisfx_state_dict(A.AisfxCNN(), state)  # raises on any missing/unexpected key
    own = m.state_dict()
    for k in emb:
        block, name = k.removeprefix("embedding_net.conv_block").split(".", 1)
        want = state[k].transpose(-1, -2) if name.startswith("conv") else state[k]
        assert torch.equal(own[f"blocks.{int(block) - 1}.{name}"], want), k


@needs_aisfx
def test_matches_package_embedding(state, tmp_path):
    """The package's own inference (librosa spectrogram, its CrossNet with its weights) gives the
    same 512-d embeddings as aisfx_cnn on the same (transposed) spectrogram blocks."""
    sf = pytest.importorskip("soundfile")
    pytest.importorskip("librosa")
    from aisfx import inference, preprocessing
    from aisfx.spectrogram import spectrogram_librosa

    path = tmp_path / "x.wav"
    sf.write(path, signal(), A.SAMPLE_RATE, subtype="FLOAT")
    kw = dict(sr=A.SAMPLE_RATE, block_size=A.N_FFT, hop_size=A.HOP_LENGTH, n_mels=A.N_MELS)
    spec = spectrogram_librosa.compute_spectrogram(str(path), f_min=A.FMIN, f_max=A.FMAX, **kw)
    spec = preprocessing.spectrogram_normalize(spec.T)  # [frames, mels], "original" min-max
    ref_model = inference.CrossNet(inference.EmbeddingNet("max", 3, 1, 64), {}, "cpu")
    ref_model.embedding_net.load_state_dict(
        {k.removeprefix("embedding_net."): v for k, v in state.items() if "embedding_net" in k}
    )
    ref = inference.model_get_embedding(spec, 0.5, True, ref_model.eval(), "cpu")  # [n, 512]

    blocks = preprocessing.blocking(spec, inference.EMB_BLOCK_LENGTH, 50, True)  # [n, 100, 96]
    m = backbone(pretrained=True, global_pool="meanmax").eval()
    with torch.no_grad():
        got = m(torch.from_numpy(blocks).float().transpose(1, 2).unsqueeze(1))
    assert got.shape == ref.shape == (len(blocks), 512)
    assert torch.allclose(got, ref, rtol=1e-4, atol=1e-4)


@needs_aisfx
def test_db_input_matches_package_spectrogram(tmp_path):
    """MelFrontend dB (with an HTK filterbank, the knob aiSFX needs) through ``db_input`` gives
    aiSFX's own scaled log-mel: the filterbank gain (DB_OFFSET) and log mapping are right."""
    sf = pytest.importorskip("soundfile")
    pytest.importorskip("librosa")
    from aisfx.preprocessing import spectrogram_normalize
    from aisfx.spectrogram import spectrogram_librosa

    y = signal()
    path = tmp_path / "x.wav"
    sf.write(path, y, A.SAMPLE_RATE, subtype="FLOAT")
    kw = dict(sr=A.SAMPLE_RATE, block_size=A.N_FFT, hop_size=A.HOP_LENGTH, n_mels=A.N_MELS)
    ref = spectrogram_normalize(
        spectrogram_librosa.compute_spectrogram(str(path), f_min=A.FMIN, f_max=A.FMAX, **kw)
    )  # [mels, frames]
    fe = MelFrontend(
        sample_rate=A.SAMPLE_RATE, n_fft=A.N_FFT, hop_length=A.HOP_LENGTH, n_mels=A.N_MELS,
        fmin=A.FMIN, fmax=A.FMAX, normalize="none", top_db=None,
    )  # fmt: skip
    fe.mel_fb = mel_filterbank(A.SAMPLE_RATE, A.N_FFT, A.N_MELS, A.FMIN, A.FMAX, htk=True)
    got = A.AisfxCNN(db_input=True).to_aisfx_scale(fe(torch.from_numpy(y)[None]))[0, 0].numpy()
    assert got.shape == ref.shape
    inner = np.s_[:, 2:-2]  # edge frames differ by padding (reflect here, zeros in librosa)
    assert np.abs(got[inner] - ref[inner]).mean() < 2e-3
    assert np.abs(got[inner] - ref[inner]).max() < 2e-2


@needs_aisfx
def test_first_conv_adapted_to_two_channels(state):
    m1 = A.load_aisfx_state_dict(A.AisfxCNN(in_chans=1), state).eval()
    m2 = A.load_aisfx_state_dict(A.AisfxCNN(in_chans=2), state).eval()
    w1, w2 = m1.blocks[0].conv1.weight, m2.blocks[0].conv1.weight
    assert w2.shape == (64, 2, 3, 3)
    assert torch.allclose(w2, w1.repeat(1, 2, 1, 1) / 2)
    x = torch.rand(1, 1, 96, 64)
    with torch.no_grad():  # two identical channels = the original single channel
        assert torch.allclose(
            m2.forward_features(x.repeat(1, 2, 1, 1)), m1.forward_features(x), atol=1e-5
        )


@pytest.mark.parametrize("freeze", [True, 2])
def test_freeze_keeps_weights_and_bn_stats(freeze):
    torch.manual_seed(0)
    m = backbone(freeze=freeze, global_pool="meanmax").train()
    n = 4 if freeze is True else freeze
    before = {k: v.clone() for k, v in m.state_dict().items()}
    params = [p for p in m.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params or [torch.zeros(1, requires_grad=True)], lr=0.1)
    out = m(torch.randn(4, 1, 32, 32))
    if out.requires_grad:
        out.square().mean().backward()
    opt.step()
    assert all(not b.training for blk in list(m.blocks)[:n] for b in blk.modules())
    after = m.state_dict()
    for k, v in before.items():
        frozen = int(k.split(".")[1]) < n
        assert torch.equal(after[k], v) == frozen, k  # frozen: same; trainable: BN stats move
    m.eval().train()
    assert not m.blocks[0].training and (n == 4 or m.blocks[n].training)


def test_missing_package_message(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "aisfx" else real(name, *a)
    )
    with pytest.raises(ModuleNotFoundError, match="aisfx"):
        backbone(pretrained=True)


@needs_aisfx
def test_sed_model_with_preset_frontend():
    fe = MelFrontend(
        sample_rate=32000, n_fft=1486, hop_length=743, n_mels=87, fmin=0, fmax=16000,
        top_db=None, normalize="none",
    )  # fmt: skip
    model = SEDModel(3, "aisfx_cnn_db", fe, pretrained=True).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 32000 * 2) * 0.05)
    assert out["clip"].shape == (2, 3) and out["frame"].shape[::2] == (2, 3)
    assert torch.isfinite(out["frame"]).all()


@needs_aisfx
def test_pretrained_file_overlay(state, tmp_path):
    """timm's ``pretrained_cfg_overlay`` (what model.pretrained_file becomes) loads a local file
    in either naming instead of the package's checkpoint; ``pretrained_cfg`` is a dict."""
    ref = A.load_aisfx_state_dict(A.AisfxCNN(), state).state_dict()
    ours = tmp_path / "ours.pth"
    torch.save(ref, ours)
    aisfx_named = {k: v for k, v in state.items() if k.startswith("embedding_net.")}
    for overlay in ({"file": str(ours)}, {"state_dict": aisfx_named}):
        m = backbone(pretrained=True, in_chans=2, pretrained_cfg_overlay=overlay)
        assert isinstance(m.pretrained_cfg, dict) and "state_dict" not in m.pretrained_cfg
        got = m.state_dict()
        assert torch.equal(got["blocks.3.conv2.weight"], ref["blocks.3.conv2.weight"])
        assert torch.equal(
            got["blocks.0.conv1.weight"], ref["blocks.0.conv1.weight"].repeat(1, 2, 1, 1) / 2
        )
