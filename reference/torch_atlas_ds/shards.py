"""The shards of a dataset root, opened as every reader opens them (AtlasDataset and atlas-ds info).

Torch-free, so that ``atlas-ds info`` checks a dataset exactly as the reader does without importing
torch. Opening reads and checks the root and shard metadata (and the shared dictionary); each shard
reads and checks its index and data on first use.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

from atlas_format.constants import DEFAULT_LIMITS, DICT_FILE, META_FILE, Limits
from atlas_format.enums import Codec, DictionaryMode, v2_to_strategy
from atlas_format.files import Location, require_folder
from atlas_format.layout import v1_shard_folders
from atlas_format.remote import RemoteLocation, RemoteRoot, is_url

from .block_cache import BlockCache
from .errors import MetadataError
from .local_cache import LocalBlockCache
from .metadata import AtlasDatasetMetadata
from .safe_pickle import Loads
from .shard_files import read_dictionary, read_v2_meta
from .shard_state import OpenShards
from .shard_v1 import V1Shard
from .shard_v2 import V2Shard

Shard = V1Shard | V2Shard


def open_v1_shards(root: Path, doc: dict[str, Any], *, mmap_index: bool = True, limits: Limits = DEFAULT_LIMITS,
                   loads: Loads = pickle.loads, cache: BlockCache | None = None,
                   opened: OpenShards | None = None) -> tuple[AtlasDatasetMetadata, list[Shard]]:
    """The original's metadata tuple and the shard folders present (a node may hold a subset, as the
    original allows), for the parsed version 1 root ``doc``."""
    sizes = doc.get("shard_sizes")
    if not isinstance(sizes, list):
        raise MetadataError("root meta.json lacks the shard_sizes list", path=root / META_FILE)
    shards: list[Shard] = [V1Shard(Location(root, name), mmap_index=mmap_index, limits=limits, loads=loads, cache=cache,
                      opened=opened, label=name) for name in v1_shard_folders(root)]
    return AtlasDatasetMetadata(1, sizes, doc.get("compression_strategy")), shards


def root_location(root: str | os.PathLike[str], storage_options: dict[str, Any] | None = None
                  ) -> Location | RemoteLocation:
    """The location of a dataset root: a local folder, or a URL read through fsspec with ``storage_options``."""
    if is_url(root):
        return RemoteLocation(RemoteRoot(str(root), storage_options))
    if storage_options:
        raise ValueError("storage_options are for a dataset behind a URL (s3://, gs://, https://, ...)")
    return Location(Path(root))


def open_v2_shards(root: Path | Location | RemoteLocation, *, mmap_index: bool = True, verify_checksums: bool = True,
                   limits: Limits = DEFAULT_LIMITS, loads: Loads = pickle.loads, cache: BlockCache | None = None,
                   opened: OpenShards | None = None, root_meta: tuple[bytes, Any] | None = None,
                   local_cache: LocalBlockCache | None = None
                   ) -> tuple[dict[str, Any], AtlasDatasetMetadata, list[Shard]]:
    """(verified root meta.json, the original's metadata tuple, the listed shards) of a version 2 root (a
    folder, or its location: a URL's too); ``root_meta``: the root meta.json's (bytes, JSON) if read already;
    ``local_cache``: where a URL's shards keep verified blocks."""
    base = root if isinstance(root, (Location, RemoteLocation)) else Location(root)
    meta_path = base.path / META_FILE
    doc, _ = read_v2_meta(base / META_FILE, "v2-root", limits, read=root_meta)
    shared: bytes | None = None
    if doc["dictionary"] == "shared" and doc["shared_dictionary"] is not None:
        shared = read_dictionary(base / DICT_FILE, doc["shared_dictionary"], limits)
    shards: list[Shard] = []
    seen: set[str] = set()
    for entry in doc["shards"]:
        name = entry["name"]
        if name in seen:
            raise MetadataError(f"shard {name} listed twice", path=meta_path)
        seen.add(name)
        folder = base / name
        require_folder(folder, what="shard folder listed in root meta.json", shard=name)
        if entry["dictionary"] == "shared" and shared is None:
            raise MetadataError("a shard uses the shared dictionary but the root has none", path=meta_path, shard=name)
        shards.append(V2Shard(folder, mmap_index=mmap_index, shared_dict_record=doc["shared_dictionary"],
                              verify_checksums=verify_checksums, limits=limits, loads=loads, cache=cache,
                              opened=opened, expected={**entry, "framing": doc.get("framing", "block"),
                                                       "encoding": doc.get("encoding", "pickle")}, label=name,
                              local_cache=local_cache))
    if sum(len(s) for s in shards) != doc["num_examples"]:
        raise MetadataError("root num_examples differs from the sum of its shards", path=meta_path)
    strategy = v2_to_strategy(Codec.from_label(doc["codec"]), DictionaryMode(doc["dictionary"]))
    return doc, AtlasDatasetMetadata(2, [len(s) for s in shards], strategy), shards
