"""The original package's metadata NamedTuples (same names, same fields, same order)."""

from __future__ import annotations

from typing import NamedTuple


class AtlasDatasetMetadata(NamedTuple):
    """Root metadata as the original exposes it (version 1 root meta.json members).

    For a version 2 dataset ``compression_strategy`` is the equivalent version 1
    strategy, or None when version 1 cannot express the codec (LZ4).
    """

    version: int
    shard_sizes: list[int]
    compression_strategy: int | None


class AtlasDatasetShardMetadata(NamedTuple):
    """Shard metadata as the original exposes it (version 1 shard meta.json members)."""

    version: int
    block_size: int
    stored_examples: int
    compression_strategy: int | None
    compression_level: int | None
    compression_dict_size: float | None
