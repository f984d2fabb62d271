"""SEDLoss: bce/focal/ce on clip + max-over-frames, smoothing, rating weights, numerics."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from birdsweep.train.losses import SEDLoss, pairwise_auc_loss
from tests.conftest import compose_config

CONF = Path(__file__).resolve().parents[1] / "conf"


@pytest.fixture(autouse=True)
def _seed():
    torch.set_num_threads(1)
    torch.manual_seed(0)


def _out(b: int = 4, t: int = 6, c: int = 5, scale: float = 2.0) -> dict[str, torch.Tensor]:
    return {"clip": torch.randn(b, c) * scale, "frame": torch.randn(b, t, c) * scale}


def _target(b: int = 4, c: int = 5) -> torch.Tensor:
    y = torch.zeros(b, c)
    y[torch.arange(b), torch.arange(b) % c] = 1.0
    return y


def test_bce_matches_torch_on_a_hand_case():
    out = {"clip": torch.tensor([[2.0, -1.0], [0.5, 3.0]]), "frame": torch.zeros(2, 3, 2)}
    out["frame"][0, 1] = torch.tensor([4.0, -2.0])
    target = torch.tensor([[1.0, 0.0], [0.0, 0.5]])
    clip_only = SEDLoss("bce", clip_weight=1.0, frame_weight=0.0)(out, target)
    ref_clip = F.binary_cross_entropy_with_logits(out["clip"], target)
    assert torch.allclose(clip_only, ref_clip)
    frame_max = torch.tensor([[4.0, 0.0], [0.0, 0.0]])  # max over frames by hand
    ref_frame = F.binary_cross_entropy_with_logits(frame_max, target)
    both = SEDLoss("bce", clip_weight=0.5, frame_weight=0.5)(out, target)
    assert torch.allclose(both, 0.5 * ref_clip + 0.5 * ref_frame)


def test_label_smoothing_bce():
    out, target = _out(), _target()
    got = SEDLoss("bce", 1.0, 0.0, label_smoothing=0.2)(out, target)
    ref = F.binary_cross_entropy_with_logits(out["clip"], target * 0.8 + 0.1)
    assert torch.allclose(got, ref)


def test_focal_below_bce_and_focuses_on_hard_examples():
    target = _target()
    easy = {"clip": (target * 2 - 1) * 4.0}  # confident and right
    hard = {"clip": -(target * 2 - 1) * 1.0}  # wrong
    bce = SEDLoss("bce", 1.0, 0.0)
    focal = SEDLoss("focal", 1.0, 0.0, focal_gamma=2.0, focal_alpha=None)
    assert focal(easy, target) < 0.01 * bce(easy, target)
    assert focal(hard, target) > 0.3 * bce(hard, target)
    no_focus = SEDLoss("focal", 1.0, 0.0, focal_gamma=0.0, focal_alpha=None)
    assert torch.allclose(no_focus(hard, target), bce(hard, target))


def test_focal_alpha_weights_positives():
    target = torch.tensor([[1.0, 1.0, 0.0]])  # two positives, one negative
    out = {"clip": torch.zeros(1, 3)}  # same per-element loss everywhere
    plain = SEDLoss("focal", 1.0, 0.0, focal_alpha=None)(out, target)
    for alpha in (0.1, 0.25, 0.9):
        got = SEDLoss("focal", 1.0, 0.0, focal_alpha=alpha)(out, target)
        assert torch.allclose(got, plain * (2 * alpha + (1 - alpha)) / 3)


def test_ce_uses_the_primary_label():
    out = _out()
    target = _target() * 1.0
    target[0, 3] = 0.5  # a secondary label
    got = SEDLoss("ce", 1.0, 0.0, ce_target="primary")(out, target)
    ref = F.cross_entropy(out["clip"], torch.tensor([0, 1, 2, 3]))
    assert torch.allclose(got, ref)
    soft = SEDLoss("ce", 1.0, 0.0, ce_target="soft")(out, target)
    q = target / target.sum(1, keepdim=True)
    assert torch.allclose(soft, F.cross_entropy(out["clip"], q))
    smooth = SEDLoss("ce", 1.0, 0.0, label_smoothing=0.1, ce_target="primary")(out, target)
    ref = F.cross_entropy(out["clip"], torch.tensor([0, 1, 2, 3]), label_smoothing=0.1)
    assert torch.allclose(smooth, ref)


def test_ce_skips_rows_without_labels():
    out, target = _out(), _target()
    target[1] = 0.0
    got = SEDLoss("ce", 1.0, 0.0, ce_target="soft")(out, target)
    keep = torch.tensor([0, 2, 3])
    assert torch.allclose(got, F.cross_entropy(out["clip"][keep], target[keep]))


def test_secondary_target_is_exposed_and_validated():
    assert SEDLoss(secondary_target=0.3).secondary_target == 0.3
    with pytest.raises(ValueError, match="secondary_target"):
        SEDLoss(secondary_target=1.5)


def test_rating_weights_normalised_by_mean():
    out, target = _out(), _target()
    per = [
        SEDLoss("bce", 1.0, 0.0)({"clip": out["clip"][i : i + 1]}, target[i : i + 1])
        for i in range(4)
    ]
    per = torch.stack(per)
    weight = torch.tensor([1.0, 0.0, 0.5, 0.5])
    weighted = SEDLoss("bce", 1.0, 0.0, rating_weighted=True)
    got = weighted(out, target, weight)
    assert torch.allclose(got, (per * weight / weight.mean()).mean())
    assert torch.allclose(got, weighted(out, target, weight * 7.0))  # only relative weights count
    assert torch.allclose(weighted(out, target, torch.ones(4)), per.mean())
    ignored = SEDLoss("bce", 1.0, 0.0, rating_weighted=False)(out, target, weight)
    assert torch.allclose(ignored, per.mean())


def test_frame_weight_zero_ignores_frames():
    out, target = _out(), _target()
    loss = SEDLoss("bce", clip_weight=1.0, frame_weight=0.0)
    a = loss(out, target)
    out["frame"] = out["frame"] * 100
    assert torch.equal(a, loss(out, target))
    assert torch.equal(a, loss({"clip": out["clip"]}, target))
    with pytest.raises(KeyError, match="frame_weight"):
        SEDLoss(frame_weight=0.5)({"clip": out["clip"]}, target)


@pytest.mark.parametrize("kind", ["bce", "focal", "ce"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_extreme_logits_give_finite_loss_and_gradients(kind: str, dtype: torch.dtype):
    clip = (torch.randn(4, 5) * 1e4).to(dtype).requires_grad_()
    frame = (torch.randn(4, 6, 5) * 1e4).to(dtype).requires_grad_()
    target = _target()
    target[0, 2] = 0.5
    loss = SEDLoss(kind, label_smoothing=0.1)({"clip": clip, "frame": frame}, target, torch.rand(4))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(clip.grad).all() and torch.isfinite(frame.grad).all()
    assert clip.grad.abs().sum() > 0


def test_loss_under_autocast_is_float32():
    out, target = _out(), _target()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = SEDLoss("focal")({k: v.bfloat16() for k, v in out.items()}, target)
    assert loss.dtype == torch.float32


def test_bad_config_values_name_the_key():
    with pytest.raises(ValueError, match="loss.kind"):
        SEDLoss("mse")
    with pytest.raises(ValueError, match="frame_weight"):
        SEDLoss(clip_weight=0.0, frame_weight=0.0)
    with pytest.raises(ValueError, match="ce_target"):
        SEDLoss("ce", ce_target="hard")
    with pytest.raises(ValueError, match="bce_weight.*kind='bce'"):
        SEDLoss("bce", bce_weight=0.5)
    with pytest.raises(ValueError, match="bce_weight"):
        SEDLoss("ce", bce_weight=-1.0)
    with pytest.raises(ValueError, match="auc_weight"):
        SEDLoss("ce", auc_weight=-0.5)


@pytest.mark.parametrize("ce_target", ["soft", "primary"])
def test_ce_bce_adds_the_class_summed_bce_to_ce(ce_target: str):
    out, target = _out(), _target()
    target[1] = 0.0  # a row without a label: no CE, but a negative of every class for BCE
    target[2, 3] = 1.0  # a mixed clip
    ce = SEDLoss("ce", 1.0, 0.0, ce_target=ce_target)
    both = SEDLoss("ce", 1.0, 0.0, ce_target=ce_target, bce_weight=0.5)
    rows, valid = ce.per_sample(out["clip"], target)
    bce = F.binary_cross_entropy_with_logits(out["clip"], target, reduction="none").sum(1)
    ref = (torch.where(valid, rows, 0.0) + 0.5 * bce).mean()  # every row counts now
    assert not valid[1] and torch.allclose(both(out, target), ref)
    zero = SEDLoss("ce", 1.0, 0.0, ce_target=ce_target, bce_weight=0.0)
    assert torch.equal(zero(out, target), ce(out, target))


def test_ce_bce_pushes_down_a_look_alike_that_softmax_ce_ignores():
    # the right class already wins the softmax by 5 nats: CE barely moves the runner-up's
    # logit, whose absolute value still ranks it high in its own class's AUC
    clip = torch.tensor([[10.0, 5.0, -3.0]], requires_grad=True)
    target = torch.tensor([[1.0, 0.0, 0.0]])
    grads = {}
    for w in (0.0, 0.5):
        clip.grad = None
        SEDLoss("ce", 1.0, 0.0, bce_weight=w)({"clip": clip}, target).backward()
        grads[w] = clip.grad[0, 1].item()
    assert 0 < grads[0.0] < 0.01  # softmax p of the runner-up, ~e^-5
    assert grads[0.5] > 0.45  # + 0.5 * sigmoid(5)


def test_pairwise_auc_loss_on_a_hand_case():
    s = torch.tensor([[2.0, 0.0], [1.0, 3.0], [0.0, 1.0]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.4]])  # 0.4: neither positive nor negative
    # class 0: positive row 0 vs negatives 1, 2; class 1: positive row 1 vs negative row 0 only
    c0 = (F.softplus(torch.tensor(1.0 - 2.0)) + F.softplus(torch.tensor(0.0 - 2.0))) / 2
    c1 = F.softplus(torch.tensor(0.0 - 3.0))
    assert torch.allclose(pairwise_auc_loss(s, y), (c0 + c1) / 2)
    # a class without a positive/negative pair is skipped, and no pair at all gives 0
    assert torch.allclose(pairwise_auc_loss(s[:, :1], y[:, :1]), c0)
    assert pairwise_auc_loss(s, torch.zeros_like(y)) == 0


def test_auc_term_sees_what_softmax_ce_cannot():
    # CE is blind to a constant added to a row's logits; the rows' order within a class (what
    # the per-class AUC ranks) is blind to a constant added to a class's column
    out, target = _out(b=6), _target(b=6)
    row_shift = torch.arange(6.0)[:, None, None] * 3.0
    shifted = {"clip": out["clip"] + row_shift[:, 0], "frame": out["frame"] + row_shift}
    ce, both = SEDLoss("ce"), SEDLoss("ce", auc_weight=1.0)
    assert torch.allclose(ce(shifted, target), ce(out, target))
    assert not torch.allclose(both(shifted, target), both(out, target))
    col = torch.randn(5) * 4
    assert torch.allclose(
        pairwise_auc_loss(out["clip"] + col, target), pairwise_auc_loss(out["clip"], target)
    )


def test_descending_the_auc_term_raises_per_class_auc():
    from sklearn.metrics import roc_auc_score

    g = torch.Generator().manual_seed(0)  # the same draw whatever ran before
    y = (torch.rand(64, 4, generator=g) < 0.3).float()
    y[0], y[1] = 1.0, 0.0  # every class has both kinds of row
    logits = torch.randn(64, 4, generator=g).requires_grad_()
    opt = torch.optim.SGD([logits], lr=100.0)  # per-pair averages give small gradients

    def auc() -> float:
        return sum(roc_auc_score(y[:, c], logits[:, c].detach()) for c in range(4)) / 4

    before = auc()
    for _ in range(50):
        opt.zero_grad()
        pairwise_auc_loss(logits, y).backward()
        opt.step()
    assert before < 0.65 and auc() > 0.95


@pytest.mark.parametrize("path", sorted((CONF / "loss").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_loss_yaml_instantiates_and_runs(path: Path):
    loss = instantiate(compose_config([f"loss={path.stem}"]).loss)  # defaults lists resolved
    assert isinstance(loss, SEDLoss) and loss.kind == path.stem.split("_")[0]  # ce_bce: ce
    clip = torch.randn(3, 5, requires_grad=True)
    value = loss({"clip": clip, "frame": torch.randn(3, 4, 5)}, _target(3), torch.ones(3))
    value.backward()
    assert value > 0 and torch.isfinite(clip.grad).all()
    assert isinstance(loss.secondary_target, float) and isinstance(loss.rating_weighted, bool)
