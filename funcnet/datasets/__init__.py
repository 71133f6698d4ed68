"""Data sets of the seed: :mod:`funcnet.datasets.spiral`."""

from funcnet.datasets import spiral

__all__ = ["spiral"]
