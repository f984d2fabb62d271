"""Training augmentations: batch transforms on the device and the pipeline that runs them."""

from birdsweep.augment.pipeline import AugmentPipeline
from birdsweep.augment.spec import SpecAugment
from birdsweep.augment.wave import BackgroundNoise, ColoredNoise, Gain, WaveMixup

__all__ = [
    "AugmentPipeline",
    "BackgroundNoise",
    "ColoredNoise",
    "Gain",
    "SpecAugment",
    "WaveMixup",
]
