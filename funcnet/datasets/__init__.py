"""Data sets of the seed: `funcnet.datasets.spiral`."""

from funcnet.datasets import spiral

__all__ = ["spiral"]
