"""torch_atlas_ds: the reference reader and writer of the Atlas Dataset format (versions 1 and 2).

A drop-in replacement for the original package, built on ``atlas_format``; it never
imports ``atlas_validator``. Version 2 (checksums, LZ4, per-example decoding, atomic
writes, append, safe loading) is written by default; version 1 is read and, on
request (``format_version=1``), written byte for byte as the original did.
"""

from atlas_format import Codec, CompressionStrategy, DictionaryMode, Limits

__version__ = "0.2.0"

from .dataset import DEFAULT_BLOCK_CACHE_SIZE, AtlasDataset, AtlasDatasetShard  # noqa: E402
from .errors import (  # noqa: E402
    AtlasError,
    ChecksumError,
    CodecError,
    FormatError,
    IncompleteDatasetError,
    LimitError,
    MetadataError,
    MissingShardError,
    UnsafePickleError,
    VersionError,
)
from .metadata import AtlasDatasetMetadata, AtlasDatasetShardMetadata  # noqa: E402
from .sampler import BlockShuffleSampler  # noqa: E402
from .writer import AtlasDatasetShardWriter, AtlasDatasetWriter  # noqa: E402

__all__ = [
    "AtlasDataset", "AtlasDatasetShard", "AtlasDatasetWriter", "AtlasDatasetShardWriter",
    "AtlasDatasetMetadata", "AtlasDatasetShardMetadata", "CompressionStrategy", "Codec", "DictionaryMode",
    "Limits", "BlockShuffleSampler", "DEFAULT_BLOCK_CACHE_SIZE",
    "AtlasError", "ChecksumError", "CodecError", "FormatError", "IncompleteDatasetError", "LimitError",
    "MetadataError", "MissingShardError", "UnsafePickleError", "VersionError",
]
