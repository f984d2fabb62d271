"""Synthetic species: made-up names and taxonomy, call family and parameters.

The word lists the names are drawn from live in ``words.json`` next to this module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

import numpy as np

from birdsweep.data.demo.families import FAMILIES

SIBLING_PROB = 0.3  # chance a species is a near-copy of an earlier one of its class

_WORDS = json.loads(resources.files(__package__).joinpath("words.json").read_text("utf-8"))
_ADJECTIVES: list[str] = _WORDS["adjectives"]
_NOUNS: dict[str, list[str]] = _WORDS["nouns"]
_SYLLABLES: list[str] = _WORDS["syllables"]
_EPITHETS: list[str] = _WORDS["epithets"]
_FIRST: list[str] = _WORDS["first_names"]
_LAST: list[str] = _WORDS["last_names"]
_LICENSES: tuple[str, ...] = tuple(_WORDS["licenses"])
_NON_BIRD_CYCLE = ("Amphibia", "Insecta", "Amphibia", "Mammalia")


@dataclass(frozen=True)
class Species:
    """One synthetic species: taxonomy fields plus its call family and parameters."""

    index: int  # generation index (random-stream key), not the taxonomy position
    primary_label: str
    inat_taxon_id: int
    scientific_name: str
    common_name: str
    class_name: str
    family: str
    params: dict[str, float]
    sibling_of: str = ""  # label of the species this one near-copies ("" if none)


def _class_of(index: int) -> str:
    """Every 4th species is not a bird (cycling Amphibia/Insecta/Amphibia/Mammalia)."""
    if index % 4 != 3:
        return "Aves"
    return _NON_BIRD_CYCLE[(index // 4) % len(_NON_BIRD_CYCLE)]


def _sample_params(family: str, rng: np.random.Generator) -> dict[str, float]:
    spec = FAMILIES[family]
    out = {}
    for key, (lo, hi) in spec.ranges.items():
        if key in spec.log_keys and lo > 0:
            out[key] = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        else:
            out[key] = float(rng.uniform(lo, hi))
    return out


def _sibling_params(params: dict[str, float], rng: np.random.Generator) -> dict[str, float]:
    """A near-copy: same family, pitch shifted 5-12 %, rate/duration within ~15 %."""
    fpitch = float(rng.uniform(1.05, 1.12)) ** rng.choice([-1, 1])
    frate, fdur = np.exp(rng.uniform(-0.15, 0.15, 2))
    out = {}
    for k, v in params.items():
        if k.startswith("f"):
            v = v * fpitch
        elif k == "rate":
            v = v * frate
        elif k in ("dur", "note"):
            v = v * fdur
        out[k] = float(v)
    return out


def _make_species(
    seed: int, stream: int, index: int, pool: list[Species], used: set[str]
) -> Species:
    """Build species `index` from its own random stream; may near-copy one of `pool`."""
    rng = np.random.default_rng([seed, stream, index])
    class_name = _class_of(index)
    # near-copies come in pairs: the parent is neither a copy nor already copied
    taken = {s.sibling_of for s in pool}
    same = [
        s
        for s in pool
        if s.class_name == class_name and not s.sibling_of and s.primary_label not in taken
    ]
    sibling_of = ""
    if same and rng.random() < SIBLING_PROB:
        parent = same[int(rng.integers(len(same)))]
        family, params = parent.family, _sibling_params(parent.params, rng)
        sibling_of = parent.primary_label
    else:
        names = sorted(f for f, spec in FAMILIES.items() if spec.class_name == class_name)
        family = names[int(rng.integers(len(names)))]
        params = _sample_params(family, rng)
    for _ in range(1000):
        adj = _ADJECTIVES[int(rng.integers(len(_ADJECTIVES)))]
        noun = _NOUNS[class_name][int(rng.integers(len(_NOUNS[class_name])))]
        common = f"{adj} {noun}"
        genus = "".join(rng.choice(_SYLLABLES, 2 + int(rng.integers(2)))).capitalize()
        epithet = "".join(rng.choice(_SYLLABLES, 1 + int(rng.integers(2)))) + rng.choice(_EPITHETS)
        taxon_id = int(rng.integers(100_000, 2_000_000))
        if class_name == "Aves":
            base = (adj[:3] + noun[:3]).lower()
            label = base
            k = 1
            while label in used:
                label, k = f"{base}{k}", k + 1
        else:
            label = str(taxon_id)
        if label not in used:
            break
    used.add(label)
    return Species(
        index=index,
        primary_label=label,
        inat_taxon_id=taxon_id,
        scientific_name=f"{genus} {epithet}",
        common_name=common,
        class_name=class_name,
        family=family,
        params=params,
        sibling_of=sibling_of,
    )
