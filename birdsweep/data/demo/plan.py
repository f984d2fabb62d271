"""The random plan of the demo data set: clip counts, ``train.csv`` rows, soundscape names
and the species heard at each site."""

from __future__ import annotations

import numpy as np
import pandas as pd

from birdsweep.data.demo.species import _FIRST, _LAST, _LICENSES, Species

SECONDARY_CLIP_FRACTION = 0.1  # share of clips carrying a call of a secondary species


def _clip_counts(n_classes: int, max_clips: int, rng: np.random.Generator) -> np.ndarray:
    """Long-tailed clip counts per species: ~10 % at max, a tail of 1-2 (random ranks)."""
    top = max(1, round(0.1 * n_classes))
    ranks = np.arange(n_classes)
    x = np.clip((ranks - top + 1) / max(1, n_classes - top), 0.0, 1.0)
    counts = 1 + np.round((max_clips - 1) * (1 - x) ** 1.5).astype(int)
    return counts[rng.permutation(n_classes)]


def _train_rows(species: list[Species], counts: np.ndarray, rng: np.random.Generator) -> list[dict]:
    """Metadata rows of the training clips (audio keys in '_'-prefixed fields)."""
    used_ids: set[str] = set()
    rows = []
    for sp, count in zip(species, counts, strict=True):
        weights = (0.7, 0.2, 0.1) if sp.class_name == "Aves" else (0.1, 0.6, 0.3)
        for clip in range(int(count)):
            coll = str(rng.choice(["XC", "iNat", "CSA"], p=weights))
            while True:
                digits = {"XC": (100_000, 999_999), "iNat": (10_000, 2_000_000)}.get(
                    coll, (10_000, 99_999)
                )
                rec = f"{coll}{int(rng.integers(*digits))}"
                if rec not in used_ids:
                    used_ids.add(rec)
                    break
            secondary: list[Species] = []
            if len(species) > 1 and rng.random() < SECONDARY_CLIP_FRACTION:
                others = [s for s in species if s is not sp]
                k = 1 if rng.random() < 0.8 or len(others) < 2 else 2
                secondary = [others[i] for i in rng.choice(len(others), k, replace=False)]
            if sp.class_name == "Aves":
                kinds = [["call"], ["song"], ["call", "song"], ["alarm call"], ["flight call"]]
                kind = kinds[int(rng.choice(len(kinds), p=(0.4, 0.3, 0.15, 0.1, 0.05)))]
            else:
                kind = [["call"], ["advertisement call"], []][int(rng.integers(3))]
            rating = (
                float(rng.choice(np.arange(2.5, 5.01, 0.5), p=(0.05, 0.1, 0.2, 0.25, 0.2, 0.2)))
                if coll == "XC"
                else 0.0  # as in BirdCLEF: iNat / CSA recordings are unrated
            )
            rows.append(
                {
                    "primary_label": sp.primary_label,
                    "secondary_labels": str([s.primary_label for s in secondary]),
                    "type": str(kind),
                    "filename": f"{sp.primary_label}/{rec}.ogg",
                    "collection": coll,
                    "rating": rating,
                    "url": f"https://example.org/birdsweep-demo/{rec}",
                    "latitude": round(float(rng.uniform(4.0, 9.0)), 4),
                    "longitude": round(float(rng.uniform(-76.5, -72.5)), 4),
                    "scientific_name": sp.scientific_name,
                    "common_name": sp.common_name,
                    "author": f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
                    "license": str(rng.choice(_LICENSES)),
                    "_species": sp,
                    "_clip": clip,
                    "_secondary": secondary,
                }
            )
    return rows


def _soundscape_stems(n_train: int, n_test: int, rng: np.random.Generator):
    train: list[str] = []
    while len(train) < n_train:
        day = int(rng.integers(0, 60))
        date = pd.Timestamp("2023-04-01") + pd.Timedelta(days=day)
        minute = int(rng.integers(0, 24 * 6)) * 10
        stem = (
            f"H{int(rng.integers(1, 70)):02d}_{date:%Y%m%d}_{minute // 60:02d}{minute % 60:02d}00"
        )
        if stem not in train:
            train.append(stem)
    test: list[str] = []
    while len(test) < n_test:
        stem = f"soundscape_{int(rng.integers(1_000_000, 9_999_999))}"
        if stem not in test:
            test.append(stem)
    return train, sorted(test)


def _community(
    species: list[Species], must: list[Species], rng: np.random.Generator
) -> list[Species]:
    """Species heard at one site: `must` plus a random handful."""
    n = len(species)
    size = int(rng.integers(max(2, n // 4), max(3, n // 2) + 1))
    pool = [s for s in species if s not in must]
    extra = max(0, min(size - len(must), len(pool)))
    return list(must) + [pool[i] for i in rng.choice(len(pool), extra, replace=False)]
