"""Adapters that plug this project's implementations into the conformance kit (and examples
for third parties: ``atlas-conformance --writer adapters:reference_write``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def reference_open(path: Path) -> Any:
    from torch_atlas_ds import AtlasDataset

    return AtlasDataset(path)


def reference_write(path: Path, examples: list[Any], params: dict[str, Any]) -> None:
    from torch_atlas_ds import AtlasDatasetWriter, Codec, CompressionStrategy

    kwargs: dict[str, Any] = {
        "shard_size": params["shard_size"], "block_size": params["block_size"],
        "compression_strategy": CompressionStrategy(params["compression_strategy"]),
        "compression_level": params["compression_level"],
        "compression_dict_size": params["compression_dict_size"],
        "format_version": params["format_version"],
    }
    if params.get("codec") == "lz4":
        kwargs["codec"] = Codec.LZ4
    if params.get("framing", "block") != "block":
        kwargs["framing"] = params["framing"]
    with AtlasDatasetWriter(path, **kwargs) as writer:
        for example in examples:
            writer.add_example(example)


def reference_open_safe(path: Path) -> Any:
    """The reference reader with safe loading (allow-listed pickle globals only)."""
    from torch_atlas_ds import AtlasDataset

    return AtlasDataset(path, safe=True)
