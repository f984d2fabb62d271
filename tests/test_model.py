"""Mel front end, SED/CNN models and the conf/model presets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import scipy.signal
import torch
from hydra.utils import instantiate

from birdsweep.features.dft import FactoredDFTPower, split_size
from birdsweep.features.frontend import MelFrontend, delta
from birdsweep.model.heads import AttentionHead
from birdsweep.model.sed import SEDModel
from tests.conftest import compose_config

MODEL_CONF = Path(__file__).resolve().parents[1] / "conf" / "model"
PRESETS = sorted(p.stem for p in MODEL_CONF.glob("*.yaml"))
SR = 32000
C = 3
TINY_BACKBONE = "mobilenetv3_small_050"
# one channel, hop 320: several frames after the backbone even for a 1 s wave
TINY_FRONTEND = dict(sample_rate=SR, n_mels=32, hop_length=320, normalize="instance")


def build_preset(name: str, **overrides) -> SEDModel:
    """Instantiate conf/model/<name>.yaml like the lead does (composed with its front end from
    conf/model/frontend, num_classes at instantiate)."""
    cfg = compose_config([f"model={name}", f"data.sample_rate={SR}"])
    return instantiate(cfg.model, num_classes=C, pretrained=False, **overrides)


def tiny_model(seed: int = 0, **kw) -> SEDModel:
    torch.manual_seed(seed)
    fe = kw.pop("frontend", None) or MelFrontend(**TINY_FRONTEND)
    return SEDModel(C, TINY_BACKBONE, fe, **kw).eval()


@pytest.fixture
def wave() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(2, SR)  # B=2, 1 s


def test_presets_present():
    expected = {"sed_small", "sed_v2s", "sed_b3ns", "sed_resnet34", "sed_seresnext26t", "cnn_v2s"}
    assert expected | {"cnn_b0"} <= set(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_forward_shapes(name, wave):
    model = build_preset(name).eval()
    assert isinstance(model.frontend, MelFrontend)
    assert model.frontend.sample_rate == SR  # ${data.sample_rate} resolved
    with torch.no_grad():
        out = model(wave)
    assert out["clip"].shape == (2, C)
    b, t, c = out["frame"].shape
    assert (b, c) == (2, C) and t >= 1
    assert torch.isfinite(out["clip"]).all() and torch.isfinite(out["frame"]).all()


def test_backends_agree(wave):
    kw = dict(sample_rate=SR, n_fft=1024, hop_length=320, n_mels=64, fmin=50, fmax=14000)
    kw["normalize"] = "instance"  # one channel
    fe_t, fe_n = MelFrontend(backend="torch", **kw), MelFrontend(backend="nnaudio", **kw)
    p_t, p_n = fe_t._power_mel(wave), fe_n._power_mel(wave)
    assert ((p_t - p_n).abs().max() / p_n.abs().max()).item() < 1e-4
    y_t, y_n = fe_t(wave), fe_n(wave)
    assert y_t.shape == y_n.shape == (2, 1, 64, SR // 320 + 1)
    assert torch.allclose(y_t, y_n, atol=1e-3)


@pytest.mark.parametrize("backend", ["torch", "nnaudio"])
def test_frontend_fp32_under_autocast(backend, wave):
    fe = MelFrontend(sample_rate=SR, n_mels=32, backend=backend)
    ref = fe(wave)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = fe(wave)
        got_bf16_in = fe(wave.bfloat16())
        out = tiny_model()(wave)
    assert got.dtype == got_bf16_in.dtype == torch.float32
    assert torch.allclose(got, ref, atol=1e-5)  # a bf16 matmul would be off by ~1e-2
    assert out["clip"].dtype == out["frame"].dtype == torch.float32  # heads run in fp32


def test_instance_norm_and_top_db(wave):
    fe = MelFrontend(sample_rate=SR, n_mels=32, normalize="none", top_db=30.0)
    db = fe(wave * 0.01)[:, 0]  # [B, M, T]
    span = db.amax(dim=(1, 2)) - db.amin(dim=(1, 2))
    assert torch.all(span <= 30.0 + 1e-4)
    x = MelFrontend(**TINY_FRONTEND)(wave)[:, 0]
    assert torch.allclose(x.mean(dim=(1, 2)), torch.zeros(2), atol=1e-4)
    assert torch.allclose(x.std(dim=(1, 2)), torch.ones(2), atol=1e-3)


HUM_CALL_KW = dict(sample_rate=SR, n_mels=32, hop_length=320, top_db=None)
CALL_FRAMES = slice(SR * 45 // 100 // 320, SR * 55 // 100 // 320)  # inside the call (hop 320)


def hum_and_call() -> torch.Tensor:
    """1 s [1, SR]: a stationary 3 kHz band (insect chorus, hum) + a 0.2 s call at 1.2 kHz."""
    t = torch.arange(SR) / SR
    torch.manual_seed(0)
    hum = 0.5 * torch.sin(2 * torch.pi * 3000 * t)
    call = torch.sin(2 * torch.pi * 1200 * t) * ((t > 0.4) & (t < 0.6))
    return (0.01 * torch.randn(SR) + hum + call).unsqueeze(0)


def test_band_norm_removes_stationary_band_keeps_transient():
    x, kw = hum_and_call(), HUM_CALL_KW
    inst = MelFrontend(normalize="instance", **kw)(x)[0, 0]  # [M, T]
    band = MelFrontend(normalize="band", **kw)(x)[0, 0]
    hum_row = int(inst.mean(1).argmax())  # the brightest band over time is the hum
    assert inst[hum_row].mean() > 1.5  # far above the image mean (0) with instance norm
    assert abs(band[hum_row].mean()) < 0.5  # gone with band norm: its floor is the hum itself
    on = CALL_FRAMES
    call_row = int(band[:, on].mean(1).argmax())
    assert call_row != hum_row and band[call_row, on].mean() > 2.0  # the call stands out
    assert torch.allclose(band.mean(), torch.zeros(()), atol=1e-4)  # then instance-normalised
    with pytest.raises(ValueError, match="band_quantile"):
        MelFrontend(normalize="band", band_quantile=1.5)
    # dual: both images as two channels, for callers whose own sound is stationary
    fe = MelFrontend(normalize="dual", **kw)
    both = fe(x)[0]
    assert fe.out_channels == 2 and both.shape == (2, *inst.shape)
    assert torch.allclose(both[0], inst, atol=1e-5) and torch.allclose(both[1], band, atol=1e-5)
    with pytest.raises(ValueError, match="channels=1"):
        MelFrontend(normalize="dual", channels=3)
    model = tiny_model(frontend=MelFrontend(normalize="dual", **kw), readout="frame_max")
    with torch.no_grad():
        out = model(x)
    assert out["score"].shape == (1, C) and torch.isfinite(out["score"]).all()


def test_pcen_is_the_recursive_smoother_and_removes_stationary_bands():
    x, kw = hum_and_call(), HUM_CALL_KW
    fe = MelFrontend(normalize="pcen", **kw)
    power = fe._power_mel(x).double()
    # reference: the IIR smoother M[t] = (1 - s) M[t-1] + s E[t] of scipy, steady state on E[0]
    s = fe.pcen_smooth
    mag = power.sqrt().numpy() * 2.0**31
    zi = scipy.signal.lfilter_zi([s], [1, s - 1]) * mag[..., :1]
    smooth, _ = scipy.signal.lfilter([s], [1, s - 1], mag, zi=zi, axis=-1)
    ref = (mag / (1e-6 + smooth) ** 0.98 + 2.0) ** 0.5 - 2.0**0.5
    assert np.abs(fe._pcen(power.float()).numpy() - ref).max() < 1e-4 * np.abs(ref).max()
    img = fe(x)[0, 0]
    inst = MelFrontend(normalize="instance", **kw)(x)[0, 0]
    hum_row = int(inst.mean(1).argmax())
    on = CALL_FRAMES
    call_row = int(img[:, on].mean(1).argmax())
    assert call_row != hum_row and img[call_row, on].mean() > img[hum_row, on].mean() + 2.0
    both = MelFrontend(normalize="dual_pcen", **kw)(x)[0]
    assert both.shape == (2, *img.shape)
    assert torch.allclose(both[0], inst, atol=1e-5) and torch.allclose(both[1], img, atol=1e-5)
    with pytest.raises(ValueError, match="pcen_gain"):
        MelFrontend(normalize="pcen", pcen_gain=1.5)
    with pytest.raises(ValueError, match="channels=1"):
        MelFrontend(normalize="pcen", channels=3)


@pytest.mark.parametrize("readout", ["clip", "frame_max", "mean"])
def test_readout_picks_the_window_score(readout, wave):
    with torch.no_grad():
        out = tiny_model(readout=readout)(wave)
    fmax = out["frame"].amax(dim=1)
    want = {"clip": out["clip"], "frame_max": fmax, "mean": (out["clip"] + fmax) / 2}[readout]
    assert torch.allclose(out["score"], want)
    assert not torch.allclose(out["clip"], fmax)  # the read-outs really differ
    with pytest.raises(ValueError, match="model.readout"):
        tiny_model(readout="median")


def test_delta_of_ramp_is_slope():
    ramp = 0.5 * torch.arange(20.0).view(1, 1, 20)  # [B, M, T]
    assert torch.allclose(delta(ramp, 5)[..., 2:-2], torch.full((1, 1, 16), 0.5))


def test_three_channel_mode(wave):
    fe = MelFrontend(sample_rate=SR, n_mels=32, hop_length=320, normalize="instance", channels=3)
    spec = fe(wave)
    assert spec.shape == (2, 3, 32, SR // 320 + 1)
    assert not torch.allclose(spec[:, 0], spec[:, 1])  # deltas are not copies of the mel
    model = tiny_model(frontend=fe)
    assert model.backbone.conv_stem.in_channels == 3  # in_chans defaults to frontend.channels
    with torch.no_grad():
        out = model(wave)
    assert out["clip"].shape == (2, C) and out["frame"].shape[::2] == (2, C)


@pytest.mark.parametrize("head", ["attention", "cnn"])
def test_forward_equals_forward_spec_of_frontend(head, wave):
    model = tiny_model(head=head)
    with torch.no_grad():
        a = model(wave)
        b = model.forward_spec(model.frontend(wave))
    assert a.keys() == b.keys() == {"clip", "frame", "score"}
    for k in a:
        assert torch.equal(a[k], b[k])


def test_attention_clip_is_attention_mean_of_frames(wave):
    with torch.no_grad():
        out = tiny_model(head="attention")(wave)
    clip = torch.sigmoid(out["clip"])
    frame = torch.sigmoid(out["frame"])  # [B, T', C]
    assert torch.all(clip >= frame.amin(dim=1) - 1e-5)
    assert torch.all(clip <= frame.amax(dim=1) + 1e-5)


def test_attention_clip_logit_exact_and_not_saturated():
    torch.manual_seed(0)
    head = AttentionHead(8, C, dropout=0.0).eval()
    feat = torch.randn(2, 8, 2, 10)  # [B, F, f, t]
    out = head(feat)
    x = feat.mean(2)
    x = torch.nn.functional.max_pool1d(x, 3, 1, 1) + torch.nn.functional.avg_pool1d(x, 3, 1, 1)
    x = torch.relu(head.fc(x.transpose(1, 2))).transpose(1, 2)
    p = (torch.softmax(torch.tanh(head.att(x)), -1) * torch.sigmoid(head.cla(x))).sum(-1)
    assert torch.allclose(out["clip"], torch.logit(p), atol=1e-4)
    with torch.no_grad():
        head.cla.bias.fill_(40.0)  # every frame sigmoid ~ 1: p rounds to 1.0 in fp32
    clip = head(feat)["clip"]
    clip.sum().backward()
    assert torch.isfinite(clip).all() and clip.min() > 35  # a clamp(eps, 1-eps) caps it at ~14
    assert head.cla.bias.grad.abs().sum() > 0


def test_unknown_backbone_error():
    with pytest.raises(ValueError, match="model.backbone") as err:
        SEDModel(C, "efficentnet_b0", MelFrontend(sample_rate=SR, n_mels=32))
    assert "efficentnet_b0" in str(err.value) and "'efficientnet_b0'" in str(err.value)


def test_unknown_head_error():
    with pytest.raises(ValueError, match="model.head"):
        SEDModel(C, TINY_BACKBONE, MelFrontend(sample_rate=SR, n_mels=32), head="nope")


@pytest.mark.parametrize("wrap", [False, True])
def test_checkpoint_path_round_trip(tmp_path, wave, wrap):
    src = tiny_model(seed=0)
    path = tmp_path / "w.pt"
    state = src.state_dict()
    torch.save({"state_dict": state, "labels": ["a", "b", "c"]} if wrap else state, path)
    fresh = tiny_model(seed=1)
    loaded = tiny_model(seed=1, checkpoint_path=str(path))
    with torch.no_grad():
        ref, got, other = src(wave)["clip"], loaded(wave)["clip"], fresh(wave)["clip"]
    assert torch.allclose(got, ref) and not torch.allclose(other, ref)


def test_checkpoint_backbone_only_adapts_in_chans(tmp_path):
    fe = MelFrontend(**TINY_FRONTEND)
    rgb = SEDModel(C, TINY_BACKBONE, fe, in_chans=3)
    path = tmp_path / "timm_backbone.pth"
    torch.save(rgb.backbone.state_dict(), path)  # a bare timm state dict, 3 input channels
    mono = tiny_model(checkpoint_path=str(path))
    w = rgb.backbone.conv_stem.weight
    assert torch.allclose(mono.backbone.conv_stem.weight, w.sum(dim=1, keepdim=True))
    assert torch.equal(
        mono.backbone.blocks[0][0].conv_dw.weight, rgb.backbone.blocks[0][0].conv_dw.weight
    )


def test_checkpoint_missing_file(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match="model.checkpoint_path") as err:
        tiny_model(checkpoint_path=str(missing))
    assert str(missing) in str(err.value)


@pytest.mark.parametrize(
    ("stft", "dynamo", "normalize"),
    [
        ("factored", False, "instance"),
        ("onnx", False, "instance"),
        ("factored", True, "instance"),
        ("factored", True, "band"),
        ("factored", True, "dual"),
        ("factored", False, "pcen"),
        ("factored", True, "dual_pcen"),
    ],
)
def test_frontend_onnx_parity(tmp_path, wave, stft, dynamo, normalize):
    ort = pytest.importorskip("onnxruntime")
    channels = 3 if normalize in ("instance", "band") else 1
    fe = MelFrontend(sample_rate=SR, n_mels=32, channels=channels, normalize=normalize).eval()
    fe.export_stft = stft
    path = tmp_path / "fe.onnx"
    kw = (
        {"dynamic_shapes": ({0: torch.export.Dim("batch")},)}
        if dynamo
        else {"dynamic_axes": {"wave": {0: "batch"}}}
    )
    torch.onnx.export(
        fe, (wave,), path, dynamo=dynamo, opset_version=18 if dynamo else 17,
        input_names=["wave"], **kw,
    )  # fmt: skip
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert ("STFT" in ops) == (stft == "onnx")  # the factored graph is MatMuls, no STFT op
    x = torch.randn(3, SR)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"wave": x.numpy()}
    )[0]
    ref = fe(x).numpy()
    assert np.abs(got - ref).max() < 1e-4


def stft_power(x: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor) -> torch.Tensor:
    """The reference: ``|torch.stft(center=True, reflect)|^2`` [B, F, T]."""
    spec = torch.stft(x, n_fft, hop, window=window, center=True, pad_mode="reflect",
                      return_complex=True)  # fmt: skip
    return spec.abs().pow(2)


@pytest.mark.parametrize(("n_fft", "hop"), [(1024, 512), (512, 160), (1000, 320), (257, 100)])
def test_factored_dft_power_equals_torch_stft(n_fft, hop):
    window = torch.hann_window(n_fft)
    x = torch.randn(2, 8000) * 0.1
    ref = stft_power(x, n_fft, hop, window)
    got = FactoredDFTPower(n_fft, hop, window)(x)
    assert got.shape == ref.shape
    assert float((got - ref).abs().max() / ref.abs().max()) < 1e-5
    assert split_size(n_fft) == {1024: 32, 512: 16, 1000: 25, 257: 1}[n_fft]


@pytest.mark.parametrize(("n_fft", "hop", "samples"), [(1024, 512, 8000), (512, 160, 513)])
def test_eager_power_is_torch_stft(n_fft, hop, samples):
    """The eager front end's framed rfft (edge-slice reflect padding) is torch.stft's power."""
    fe = MelFrontend(sample_rate=SR, n_fft=n_fft, hop_length=hop, n_mels=32)
    x = torch.randn(3, samples) * 0.1
    ref = stft_power(x, n_fft, hop, fe.window)
    got = fe._rfft_power(x)
    assert got.shape == ref.shape
    assert float((got - ref).abs().max() / ref.abs().max()) < 1e-5


def test_band_floor_eager_equals_export_formulation():
    """kthvalue (eager) and topk (ONNX export) give the same band floor, ties included."""
    fe = MelFrontend(sample_rate=SR, n_mels=8, band_quantile=0.25)
    x = torch.randn(2, 8, 41).round(decimals=1)  # many ties
    k = int(0.25 * 40) + 1
    ref = x.topk(k, dim=-1, largest=False, sorted=True).values[..., -1:]
    assert torch.equal(fe._band_floor(x), ref)
    assert torch.equal(fe._band_floor(x), x.sort(dim=-1).values[..., k - 1 : k])
