"""birdsweep: train, sweep and ship bioacoustic classifiers."""

__version__ = "0.1.0"
