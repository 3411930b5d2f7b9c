"""torch_atlas_ds: the reference reader and writer of the Atlas Dataset format (versions 1 and 2).

A drop-in replacement for the original package, built on ``atlas_format``; it never
imports ``atlas_validator``.
"""

from atlas_format import CompressionStrategy

__version__ = "0.2.0"

__all__ = ["CompressionStrategy"]
