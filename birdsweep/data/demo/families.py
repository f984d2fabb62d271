"""Call families of the demo data set: taxon class, parameter ranges and synthesiser.

Each family: the taxon class it belongs to, parameter ranges (lo, hi; log-uniform for
frequencies/rates/durations, uniform otherwise) and a synthesiser. Parameter naming matters:
keys starting with "f" are frequencies (pitch-jittered together), "dur"/"note" durations,
"rate" repetition/modulation rates, "gap" the mean silence between calls in a sequence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from birdsweep.data.demo.synth import (
    Synth,
    _syn_buzzy_note,
    _syn_cicada_drone,
    _syn_cricket_chirp,
    _syn_descending_trill,
    _syn_drum_roll,
    _syn_frog_croak,
    _syn_frog_peep,
    _syn_frog_pulse_train,
    _syn_frog_tink,
    _syn_harmonic_stack,
    _syn_hoot,
    _syn_insect_buzz,
    _syn_katydid_rasp,
    _syn_mammal_bark,
    _syn_mammal_grunt,
    _syn_mammal_howl,
    _syn_nasal_caw,
    _syn_sweep,
    _syn_trill,
    _syn_two_note,
    _syn_warble,
    _syn_whistle,
)


@dataclass(frozen=True)
class CallFamily:
    """A kind of animal call: its taxon class, parameter ranges and synthesiser."""

    class_name: str
    ranges: dict[str, tuple[float, float]]
    synth: Synth
    log_keys: tuple[str, ...] = field(default=("f0", "fc", "bw", "rate", "dur", "note", "gap"))


FAMILIES: dict[str, CallFamily] = {
    # --- Aves
    "tonal_whistle": CallFamily(
        "Aves",
        {
            "f0": (1500, 6000),
            "dur": (0.3, 1.2),
            "vib": (0.0, 0.03),
            "rate": (4, 10),
            "gap": (0.5, 3),
        },
        _syn_whistle,
    ),
    "fm_upsweep": CallFamily(
        "Aves",
        {
            "f0": (1000, 4000),
            "span": (1.3, 2.5),
            "dur": (0.1, 0.6),
            "h2": (0, 0.3),
            "gap": (0.3, 2),
        },
        _syn_sweep(+1.0),
    ),
    "fm_downsweep": CallFamily(
        "Aves",
        {
            "f0": (2500, 8000),
            "span": (1.3, 2.5),
            "dur": (0.1, 0.6),
            "h2": (0, 0.3),
            "gap": (0.3, 2),
        },
        _syn_sweep(-1.0),
    ),
    "harmonic_stack": CallFamily(
        "Aves",
        {
            "f0": (400, 1600),
            "n_harm": (3, 7),
            "tilt": (0.5, 1.5),
            "bend": (-0.1, 0.1),
            "dur": (0.2, 0.8),
            "gap": (0.4, 2.5),
        },
        _syn_harmonic_stack,
    ),
    "trill": CallFamily(
        "Aves",
        {
            "f0": (2000, 7000),
            "rate": (8, 25),
            "note": (0.015, 0.04),
            "sweep": (0, 0.3),
            "dur": (0.5, 2.0),
            "gap": (1, 4),
        },
        _syn_trill,
    ),
    "chirp_series": CallFamily(
        "Aves",
        {
            "f0": (3000, 8000),
            "rate": (2, 6),
            "note": (0.03, 0.08),
            "sweep": (0.3, 0.5),
            "dur": (0.6, 2.0),
            "gap": (1, 4),
        },
        _syn_trill,
    ),
    "warble": CallFamily(
        "Aves",
        {
            "f0": (1500, 5000),
            "depth": (0.08, 0.25),
            "rate": (4, 15),
            "dur": (0.5, 1.5),
            "h2": (0, 0.4),
            "gap": (0.5, 3),
        },
        _syn_warble,
    ),
    "two_note": CallFamily(
        "Aves",
        {
            "f0": (1500, 5000),
            "interval": (0.6, 0.85),
            "note": (0.15, 0.4),
            "pause": (0.05, 0.15),
            "gap": (0.8, 4),
        },
        _syn_two_note,
    ),
    "drum_roll": CallFamily(
        "Aves",
        {
            "fc": (800, 3000),
            "bw": (500, 2000),
            "rate": (10, 25),
            "note": (0.002, 0.006),
            "dur": (0.8, 2.0),
            "decay": (0.5, 2.0),
            "gap": (2, 6),
        },
        _syn_drum_roll,
    ),
    "hoot": CallFamily(
        "Aves",
        {"f0": (250, 700), "dur": (0.3, 0.8), "h2": (0.05, 0.3), "gap": (0.5, 2.5)},
        _syn_hoot,
    ),
    "nasal_caw": CallFamily(
        "Aves",
        {
            "f0": (500, 1200),
            "n_harm": (8, 12),
            "rough": (0.3, 0.8),
            "dur": (0.2, 0.5),
            "gap": (0.4, 2),
        },
        _syn_nasal_caw,
    ),
    "descending_trill": CallFamily(
        "Aves",
        {
            "f0": (3000, 7000),
            "rate": (10, 20),
            "note": (0.02, 0.05),
            "drop": (0.3, 0.6),
            "dur": (0.8, 2.0),
            "gap": (1.5, 5),
        },
        _syn_descending_trill,
    ),
    "buzzy_note": CallFamily(
        "Aves",
        {
            "fc": (3000, 8000),
            "bw": (300, 1200),
            "rate": (50, 150),
            "dur": (0.3, 1.0),
            "gap": (0.5, 3),
        },
        _syn_buzzy_note,
    ),
    # --- Amphibia
    "frog_pulse_train": CallFamily(
        "Amphibia",
        {
            "f0": (800, 3000),
            "n_harm": (2, 4),
            "rate": (15, 60),
            "note": (0.005, 0.015),
            "dur": (0.3, 1.5),
            "gap": (0.3, 2),
        },
        _syn_frog_pulse_train,
    ),
    "frog_croak": CallFamily(
        "Amphibia",
        {"f0": (150, 500), "n_harm": (6, 10), "rate": (20, 60), "dur": (0.2, 0.6), "gap": (0.3, 2)},
        _syn_frog_croak,
    ),
    "frog_peep": CallFamily(
        "Amphibia",
        {"f0": (2500, 3800), "span": (1.05, 1.25), "dur": (0.1, 0.2), "gap": (0.5, 1.5)},
        _syn_frog_peep,
    ),
    "frog_tink": CallFamily(
        "Amphibia", {"f0": (2000, 5000), "dur": (0.008, 0.025), "gap": (0.2, 1)}, _syn_frog_tink
    ),
    # --- Insecta
    "insect_buzz": CallFamily(
        "Insecta",
        {
            "fc": (3000, 10000),
            "bw": (100, 500),
            "rate": (20, 100),
            "depth": (0.3, 0.9),
            "dur": (2, 6),
            "gap": (0.2, 1.5),
        },
        _syn_insect_buzz,
    ),
    "cricket_chirp": CallFamily(
        "Insecta",
        {
            "f0": (3000, 7000),
            "rate": (25, 60),
            "note": (0.008, 0.02),
            "pulses": (3, 6),
            "gap": (0.2, 1),
        },
        _syn_cricket_chirp,
    ),
    "cicada_drone": CallFamily(
        "Insecta",
        {
            "fc": (4000, 9000),
            "bw": (1000, 3000),
            "rate": (100, 250),
            "dur": (2, 6),
            "gap": (0.5, 3),
        },
        _syn_cicada_drone,
    ),
    "katydid_rasp": CallFamily(
        "Insecta",
        {
            "fc": (8000, 13000),
            "bw": (1500, 4000),
            "rate": (20, 80),
            "note": (0.003, 0.01),
            "dur": (0.2, 1.0),
            "gap": (0.5, 3),
        },
        _syn_katydid_rasp,
    ),
    # --- Mammalia (energy below ~1 kHz)
    "mammal_grunt": CallFamily(
        "Mammalia",
        {
            "f0": (80, 250),
            "n_harm": (4, 8),
            "noise": (0.2, 0.6),
            "dur": (0.15, 0.5),
            "gap": (0.3, 2),
        },
        _syn_mammal_grunt,
    ),
    "mammal_howl": CallFamily(
        "Mammalia",
        {"f0": (200, 500), "arch": (0.2, 0.5), "n_harm": (2, 5), "dur": (1, 3), "gap": (1, 4)},
        _syn_mammal_howl,
    ),
    "mammal_bark": CallFamily(
        "Mammalia",
        {
            "f0": (250, 550),
            "n_harm": (3, 6),
            "noise": (0.3, 0.7),
            "dur": (0.08, 0.2),
            "gap": (0.3, 2),
        },
        _syn_mammal_bark,
    ),
}
