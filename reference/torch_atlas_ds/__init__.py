"""torch_atlas_ds: the reference reader and writer of the Atlas Dataset format (versions 1 and 2).

A drop-in replacement for the original package, built on ``atlas_format``; it never
imports ``atlas_validator``. Version 2 (checksums, LZ4, per-example decoding, atomic
writes, append, safe loading) is written by default; version 1 is read and, on
request (``format_version=1``), written byte for byte as the original did.

    with AtlasDatasetWriter("root", shard_size=10_000, block_size=64) as w:   # zstd, shared dictionary
        for example in examples:
            w.add_example(example)            # an exception inside ``with`` publishes nothing
    AtlasDatasetWriter("fast", 10_000, 64, codec=Codec.LZ4)                   # LZ4, no dictionary
    AtlasDatasetWriter("rand", 10_000, 64, framing=Framing.EXAMPLE)          # a frame per example: random reads
    with AtlasDatasetWriter.append("root") as w:                              # new shards, atomic
        w.add_example(more)

    ds = AtlasDataset("root")                 # checksums verified (verify_checksums=False to skip)
    ds = AtlasDataset("root", safe=True)      # pickles restricted to atlas_format's allow-list
    ds[42], ds[-1], len(ds), ds.__getitems__([3, 1, 2]), list(ds)
    loader = DataLoader(ds, batch_size=32, sampler=BlockShuffleSampler(ds, seed=0), num_workers=2)

Errors are the ``atlas_format.errors`` hierarchy (re-exported here); each names the
file, shard, block, example and byte offset it concerns.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from atlas_format import Codec, CompressionStrategy, DictionaryMode, Framing, Limits

from .errors import (
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
from .metadata import AtlasDatasetMetadata, AtlasDatasetShardMetadata

__version__ = "0.3.0"

# Names whose modules import torch load on first use (PEP 562), so that ``atlas-ds info`` and
# ``atlas-ds validate`` start without torch; ``from torch_atlas_ds import AtlasDataset`` is unchanged.
_LAZY = {
    "AtlasDataset": "dataset", "AtlasDatasetShard": "dataset", "DEFAULT_BLOCK_CACHE_SIZE": "dataset",
    "DEFAULT_BLOCK_CACHE_BYTES": "dataset", "DEFAULT_MAX_OPEN_SHARDS": "dataset",
    "BlockShuffleSampler": "sampler",
    "AtlasDatasetWriter": "writer", "AtlasDatasetShardWriter": "writer",
    "write_dataset": "parallel",
}

if TYPE_CHECKING:
    from .dataset import (
        DEFAULT_BLOCK_CACHE_BYTES,
        DEFAULT_BLOCK_CACHE_SIZE,
        DEFAULT_MAX_OPEN_SHARDS,
        AtlasDataset,
        AtlasDatasetShard,
    )
    from .parallel import write_dataset
    from .sampler import BlockShuffleSampler
    from .writer import AtlasDatasetShardWriter, AtlasDatasetWriter


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "AtlasDataset", "AtlasDatasetShard", "AtlasDatasetWriter", "AtlasDatasetShardWriter",
    "AtlasDatasetMetadata", "AtlasDatasetShardMetadata", "CompressionStrategy", "Codec", "DictionaryMode",
    "Framing", "Limits", "BlockShuffleSampler", "DEFAULT_BLOCK_CACHE_SIZE", "DEFAULT_BLOCK_CACHE_BYTES",
    "DEFAULT_MAX_OPEN_SHARDS", "write_dataset",
    "AtlasError", "ChecksumError", "CodecError", "FormatError", "IncompleteDatasetError", "LimitError",
    "MetadataError", "MissingShardError", "UnsafePickleError", "VersionError",
]
