"""Synthetic BirdCLEF 2025-layout demo dataset.

:func:`generate_demo_dataset` writes a small folder with exactly the files and columns of the
BirdCLEF 2025 Kaggle data (``taxonomy.csv``, ``train.csv``, ``train_audio/``,
``train_soundscapes/``, ``sample_submission.csv``) plus what Kaggle keeps hidden: labelled
``test_soundscapes/`` with ``test_soundscapes_labels.csv`` (the shape of a submission, 0/1).

Every species is a random *call family* (whistle, FM sweep, trill, frog pulse train, insect
buzz, mammal grunt, ...) with random frequency / rate / duration parameters; some species are
deliberate near-copies of others (same family, nearby pitch) so the task is not trivial.
Training clips are clean focal recordings; soundscapes mix wind, rain, coloured noise (and, at
``noise="hard"``, insect choruses and distractor species) with overlapping calls at low SNR.

Randomness is keyed per item (``numpy`` ``SeedSequence([seed, stream, species, item])``), so a
species' sound and a clip's audio do not change when other species are add

Modules, each importing only those above it:

- ``synth``: signal primitives and the call synthesisers;
- ``families``: the call families (taxon class, parameter ranges, synthesiser);
- ``species``: species names, taxonomy and parameters (word lists in ``words.json``);
- ``scenes``: calls, focal clips, backgrounds, soundscapes and their 5 s window labels;
- ``plan``: clip counts, ``train.csv`` rows, soundscape names, site communities;
- ``layout``: writing the folder (CSVs, Ogg audio, README, marker), ``generate_demo_dataset``.
"""

from birdsweep.data.demo.families import FAMILIES, CallFamily
from birdsweep.data.demo.layout import (
    GENERATOR_VERSION,
    MARKER,
    TAXONOMY_COLUMNS,
    TRAIN_COLUMNS,
    generate_demo_dataset,
)
from birdsweep.data.demo.scenes import (
    NOISE_PRESETS,
    WINDOW_SECONDS,
    NoisePreset,
    write_window_labels,
)
from birdsweep.data.demo.species import Species

__all__ = [
    "FAMILIES",
    "GENERATOR_VERSION",
    "MARKER",
    "NOISE_PRESETS",
    "TAXONOMY_COLUMNS",
    "TRAIN_COLUMNS",
    "WINDOW_SECONDS",
    "CallFamily",
    "NoisePreset",
    "Species",
    "generate_demo_dataset",
    "write_window_labels",
]
