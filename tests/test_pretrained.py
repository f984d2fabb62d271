"""Pretrained backbones with no network: model.pretrained_file, the offline HF cache, sed_lite0."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import safetensors.torch
import timm
import torch
from timm.models import adapt_input_conv

from birdsweep.config import build
from birdsweep.features.frontend import MelFrontend
from birdsweep.model.pretrained import (
    LITE0_FILE,
    convert_efficientnet_pytorch,
    resolve_file,
)
from birdsweep.model.sed import SEDModel
from tests.conftest import compose_config

ROOT = Path(__file__).resolve().parents[1]
TINY = "mobilenetv3_small_050"
SR = 32000


def imagenet_weights(name: str = TINY, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights of ``name`` in its pretrained layout (3 channels, 1000 classes)."""
    torch.manual_seed(seed)
    return timm.create_model(name).state_dict()


def assert_backbone_from(model: SEDModel, src: dict[str, torch.Tensor], stem: str) -> None:
    """Backbone = ``src`` minus its classifier, with the stem adapted to 2 input channels."""
    own = model.backbone.state_dict()
    assert model.backbone.get_submodule(stem.rsplit(".", 1)[0]).in_channels == 2
    assert torch.allclose(own[stem], adapt_input_conv(2, src[stem]))
    rest = [k for k in own if k != stem]
    assert rest and all(torch.equal(own[k], src[k]) for k in rest)


def sed(**kw) -> SEDModel:
    fe = MelFrontend(sample_rate=SR, n_mels=32, normalize="dual")  # 2 channels, our default
    return SEDModel(3, kw.pop("backbone", TINY), fe, **kw)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_pretrained_file_loads_through_timm(tmp_path, suffix):
    src = imagenet_weights()
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        safetensors.torch.save_file(src, path)
    else:
        torch.save({"state_dict": src}, path)
    assert_backbone_from(sed(pretrained=True, pretrained_file=str(path)), src, "conv_stem.weight")


def test_pretrained_file_errors_and_precedence(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.pretrained_file"):
        sed(pretrained=True, pretrained_file=str(tmp_path / "none.pth"))
    with pytest.raises(FileNotFoundError, match="not installed"):
        resolve_file("pkg://no_such_package_xyz/w.pth")
    wrong = tmp_path / "resnet.safetensors"
    safetensors.torch.save_file(imagenet_weights("resnet18"), wrong)
    with pytest.raises(RuntimeError, match="model.pretrained_file"):
        sed(pretrained=True, pretrained_file=str(wrong))
    # pretrained=false (what export / fold reloading set) never reads the file
    sed(pretrained=False, pretrained_file=str(tmp_path / "none.pth"))
    # checkpoint_path keeps working, and wins over the pretrained weights
    ref = sed()
    torch.save(ref.state_dict(), tmp_path / "full.pt")
    got = sed(pretrained=True, pretrained_file="/no.pth", checkpoint_path=str(tmp_path / "full.pt"))
    own, want = got.state_dict(), ref.state_dict()
    assert all(torch.equal(own[k], want[k]) for k in want)


HF_SCRIPT = textwrap.dedent(
    """
    import sys, torch
    from tests.test_pretrained import sed
    torch.save(sed(pretrained=True).backbone.state_dict(), sys.argv[1])
    """
)


def run_offline(tmp_path: Path, hf_home: Path) -> subprocess.CompletedProcess:
    """Build ``sed(pretrained=True)`` in a fresh process with HF_HOME, offline."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_HOME=str(hf_home), HF_HUB_OFFLINE="1")
    out = tmp_path / "backbone.pt"
    return subprocess.run(
        [sys.executable, "-c", HF_SCRIPT, str(out)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )


def test_pretrained_from_offline_hf_cache(tmp_path):
    hub_id = timm.models.get_pretrained_cfg(TINY).hf_hub_id  # timm/mobilenetv3_small_050.lamb_in1k
    repo = tmp_path / "hf" / "hub" / f"models--{hub_id.replace('/', '--')}"
    rev = "0" * 40
    (repo / "snapshots" / rev).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(rev)
    src = imagenet_weights(seed=1)
    safetensors.torch.save_file(src, repo / "snapshots" / rev / "model.safetensors")
    proc = run_offline(tmp_path, tmp_path / "hf")
    assert proc.returncode == 0, proc.stderr[-2000:]
    own = torch.load(tmp_path / "backbone.pt", weights_only=True)
    model = sed()
    model.backbone.load_state_dict(own)
    assert_backbone_from(model, src, "conv_stem.weight")
    # an empty cache: a clear error that names model.pretrained_file
    proc = run_offline(tmp_path, tmp_path / "empty")
    assert proc.returncode != 0 and "model.pretrained_file" in proc.stderr


def lite0_state() -> dict[str, torch.Tensor]:
    return torch.load(resolve_file(LITE0_FILE), map_location="cpu", weights_only=True)


@pytest.mark.parametrize("name", ["tf_efficientnet_lite0", "efficientnet_lite0"])
def test_lite0_converts_strict(name):
    src = lite0_state()
    assert len(src) == 296 and "_blocks.0._depthwise_conv.weight" in src
    model = timm.create_model(name)
    model.load_state_dict(convert_efficientnet_pytorch(src, name), strict=True)
    with pytest.raises(ValueError, match="not the same architecture"):
        convert_efficientnet_pytorch(src, "efficientnet_b0")


def test_lite0_classifies_the_cat():
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    img = Image.fromarray(data.chelsea())  # a tabby cat, 451 x 300
    w, h = img.size
    img = img.resize((round(w * 256 / h), 256), Image.BICUBIC)
    left = (img.size[0] - 224) // 2
    img = img.crop((left, 16, left + 224, 240))
    x = torch.tensor(list(img.getdata()), dtype=torch.float32).T.reshape(1, 3, 224, 224) / 255
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    x = (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    model = timm.create_model("tf_efficientnet_lite0").eval()
    model.load_state_dict(convert_efficientnet_pytorch(lite0_state()))
    with torch.no_grad():
        p = model(x).softmax(-1)[0]
    assert 281 <= int(p.argmax()) <= 285  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert p[281:286].sum() > 0.7


def test_sed_lite0_preset_loads_the_package_weights():
    cfg = compose_config(["model=sed_lite0"])
    assert cfg.model.pretrained and cfg.model.pretrained_file == LITE0_FILE
    model = build(cfg.model, num_classes=3)
    src = convert_efficientnet_pytorch(lite0_state(), cfg.model.backbone)
    src = {k: v for k, v in src.items() if not k.startswith("classifier.")}
    assert_backbone_from(model, src, "conv_stem.weight")
    with torch.no_grad():
        out = model.eval()(torch.randn(1, SR))
    assert out["score"].shape == (1, 3) and torch.isfinite(out["score"]).all()
