"""Samplers: random -> None, class-balanced weights and the frequencies they produce."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.data import WeightedRandomSampler

from birdsweep.train.samplers import balanced_sampler, balanced_weights, label_counts

CONF = Path(__file__).resolve().parents[1] / "conf"


def _imbalanced(n_common: int = 90, n_rare: int = 10):
    primary = [0] * n_common + [1] * n_rare
    secondary: list[list[int]] = [[] for _ in primary]
    return primary, secondary


def _rare_fraction(sampler, primary) -> float:
    drawn = np.asarray(primary)[list(sampler)]
    return float((drawn == 1).mean())


def test_label_counts_weight_secondary_labels():
    counts = label_counts([0, 0, 1], [[1], [2], []], num_classes=4, secondary_weight=0.5)
    assert counts.tolist() == [2.0, 1.5, 0.5, 0.0]
    assert label_counts([0], [[1]], 2, secondary_weight=0.0).tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="num_classes"):
        label_counts([0, 3], [[], []], num_classes=2)


def test_balanced_weights_hand_case():
    # counts: class0 = 2, class1 = 1 + 0.5 = 1.5, class2 = 1
    w = balanced_weights([0, 0, 1, 2], [[1], [], [], []], 3, alpha=1.0, secondary_weight=0.5)
    raw = np.array([(1 / 2 + 1 / 1.5) / 2, 1 / 2, 1 / 1.5, 1.0])
    assert np.allclose(w, raw / raw.mean())
    assert np.allclose(balanced_weights([0, 0, 1], [[], [], []], 2, alpha=0.0), 1.0)


@pytest.mark.parametrize(("alpha", "expected"), [(0.0, 0.1), (0.5, 0.25), (1.0, 0.5)])
def test_balanced_sampler_oversamples_the_rare_class(alpha: float, expected: float):
    primary, secondary = _imbalanced()
    sampler = balanced_sampler(primary, secondary, 2, num_samples=4000, alpha=alpha, seed=1)
    assert isinstance(sampler, WeightedRandomSampler) and len(sampler) == 4000
    # rare share: 10 * 10^-a / (10 * 10^-a + 90 * 90^-a)
    analytic = 10 * 10**-alpha / (10 * 10**-alpha + 90 * 90**-alpha)
    assert abs(analytic - expected) < 0.01
    assert abs(_rare_fraction(sampler, primary) - analytic) < 0.03


def test_secondary_labels_raise_a_clips_weight():
    primary, secondary = _imbalanced()
    secondary[0] = [1]  # a common-class clip where the rare species is also heard
    w = balanced_weights(primary, secondary, 2, alpha=1.0, secondary_weight=0.5)
    assert w[0] > w[1]
    w0 = balanced_weights(primary, secondary, 2, alpha=1.0, secondary_weight=0.0)
    assert w0[0] == w0[1]


def test_seeded_sampler_is_reproducible_and_global_rng_otherwise():
    primary, secondary = _imbalanced(20, 5)
    a = list(balanced_sampler(primary, secondary, 2, 50, seed=3))
    b = list(balanced_sampler(primary, secondary, 2, 50, seed=3))
    assert a == b
    torch.manual_seed(7)
    c = list(balanced_sampler(primary, secondary, 2, 50))
    torch.manual_seed(7)
    d = list(balanced_sampler(primary, secondary, 2, 50))
    assert c == d and c != a


@pytest.mark.parametrize("path", sorted((CONF / "sampler").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_sampler_yaml_instantiates(path: Path):
    primary, secondary = _imbalanced(30, 3)
    sampler = instantiate(
        OmegaConf.load(path),
        primary=primary,
        secondary=secondary,
        num_classes=2,
        num_samples=len(primary),
    )
    if path.stem == "random":
        assert sampler is None
    else:
        idx = list(sampler)
        assert len(idx) == len(primary) and all(0 <= i < len(primary) for i in idx)
