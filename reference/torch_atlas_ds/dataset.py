"""AtlasDataset and AtlasDatasetShard: the map-style readers of versions 1 and 2.

The version is read from root meta.json. The dataset is a torch Dataset that pickles
cheaply (configuration and parsed metadata only; files and mmaps reopen lazily in
each process, fork is detected), reads a batch block by block (``__getitems__``) and
iterates decoding every block once (``__iter__``).

Dataset files are untrusted (FORMAT.md FILE-1..4): no symlink inside the root is followed,
only regular files and real folders are read, and what stays in memory is bounded by
settings: at most ``max_open_shards`` shards keep their files mapped, and decoded blocks
take at most ``block_cache_bytes`` (plus the block being read).
"""

from __future__ import annotations

import bisect
import operator
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch.utils.data

from atlas_format.constants import DEFAULT_LIMITS, META_FILE, Limits
from atlas_format.errors import AtlasError
from atlas_format.files import Location
from atlas_format.pickle_values import DEFAULT_PICKLE_LIMITS, PickleLimits
from atlas_format.remote import RemoteLocation, UrlPath

from .block_cache import TAKEN, BlockCache
from .errors import IncompleteDatasetError, VersionError
from .leftovers import unfinished_write
from .local_cache import LocalBlockCache
from .metadata import AtlasDatasetShardMetadata
from .safe_pickle import make_loads
from .shard_files import check_version, read_json_file
from .shard_state import OpenShards
from .shard_v1 import V1Shard
from .shard_v2 import V2Shard
from .shards import Shard, open_v1_shards, open_v2_shards, root_location

#: Decoded blocks kept per dataset (per process). Small on purpose: a random-access
#: workload gains nothing from a big cache; sequential and block-shuffled reads need
#: only the current block(s).
DEFAULT_BLOCK_CACHE_SIZE = 16
#: Decoded bytes those blocks may take per dataset (per process): 64 MiB, 16 blocks of 4 MiB. A few KB of
#: highly compressible blocks can decode to gigabytes, so memory is bounded by this setting, not by
#: the files; a block larger than the budget is decoded for its read but not kept.
DEFAULT_BLOCK_CACHE_BYTES = 64 << 20
#: Bytes a local cache of verified blocks of a dataset behind a URL may hold (``local_cache``).
DEFAULT_LOCAL_CACHE_BYTES = 4 << 30
#: Shards whose files stay open (mapped) per dataset (per process). Each holds two maps, and each
#: map a file descriptor, so 64 shards use at most 128 descriptors; the least recently used
#: shard beyond it is closed and reopens (checked again) on its next read.
DEFAULT_MAX_OPEN_SHARDS = 64



def _refuse_unfinished(root: Path) -> None:
    """No folder at ``root``: IncompleteDatasetError if a write to it never finished (V2-STATE-1), naming its
    leftovers and how to remove them."""
    if not os.path.lexists(root):
        reason = unfinished_write(root)
        if reason is not None:
            raise IncompleteDatasetError(reason, path=root)


def _normalize(i: Any, n: int) -> int:
    try:
        index: int = operator.index(i)
    except TypeError:
        raise TypeError(f"dataset indices must be integers, not {type(i).__name__}") from None
    if index < 0:
        index += n
    if not 0 <= index < n:
        raise IndexError(f"index out of range for a dataset of {n} examples")
    return index


class _Reader:
    """Shared indexing logic over a list of shards with cumulative starts."""

    _shards: list[Shard]
    _starts: list[int]
    _len: int
    _opened: OpenShards
    _cache: BlockCache
    #: The shard read last: when reads move to another, it becomes the most recently used open shard.
    _current: Shard | None = None
    #: whether the shards are behind a URL (a batch then prefetches its blocks)
    _remote = False
    #: (first, stop, examples): the dataset's indices of the block in hand (the cache's ``last``) when its
    #: examples were unpickled in one pass (framing list, or a block read in order): an in-order ds[i]
    #: inside it is one range test and one list slot, not a bisect and two calls. Each slot is handed
    #: out once (then TAKEN), as the framing hands them out.
    _run: tuple[int, int, list[Any]] = (0, 0, [])

    def _locate(self, i: int) -> tuple[int, int]:
        k = bisect.bisect_right(self._starts, i) - 1
        return k, i - self._starts[k]

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, i: Any) -> Any:
        first, stop, values = self._run
        if type(i) is int and first <= i < stop:
            value = values[i - first]
            if value is not TAKEN:
                values[i - first] = TAKEN
                return value
        n = self._len
        if type(i) is not int:
            try:
                i = operator.index(i)
            except TypeError:
                raise TypeError(f"dataset indices must be integers, not {type(i).__name__}") from None
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index out of range for a dataset of {n} examples")
        starts = self._starts
        k = bisect.bisect_right(starts, i) - 1
        shard = self._shards[k]
        if shard is not self._current:
            self._switch(shard)
        try:
            value = shard.get(i - starts[k])
        except AtlasError as exc:
            raise self._located(exc, k) from None
        last = self._cache.last  # the block that read went through (unless another thread read since)
        unpickled = last.values
        if unpickled is not None and last.label == shard.label:
            first = starts[k] + last.first
            self._run = (first, first + len(unpickled), unpickled)
        return value

    def _located(self, exc: AtlasError, k: int) -> AtlasError:
        """``exc`` of shard ``k`` with the example's index in the dataset added: a shard numbers its own
        examples, the dataset names them as ``ds[i]`` does (``atlas_format.errors.format_example``)."""
        if exc.index is not None or exc.example is None:
            return exc
        return exc.relocated(index=self._starts[k] + exc.example)

    def _switch(self, shard: Shard) -> None:
        self._current = shard
        if len(self._shards) > self._opened.capacity:  # else no shard is ever closed: no order to keep
            self._opened.touch(shard)

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        """Examples at ``indices`` (torch's batched fetch), each block read once: in shards that decode
        blocks, indices are grouped per block and the block's framing cuts out its examples from one
        decode; in the others (codec none, framing "example") each index is read as ``ds[i]`` reads it,
        where it is stored (grouping costs more than it saves there: 0.7x measured, RESULTS-read-paths.md)."""
        n = self._len
        starts, shards = self._starts, self._shards
        out: list[Any] = [None] * len(indices)
        groups: dict[tuple[int, int], tuple[list[int], list[int]]] = {}
        k = 0
        try:
            for slot, i in enumerate(indices):
                if type(i) is not int or not 0 <= i < n:
                    i = _normalize(i, n)
                k = bisect.bisect_right(starts, i) - 1
                shard = shards[k]
                if not shard.decodes_blocks:
                    if shard is not self._current:
                        self._switch(shard)
                    out[slot] = shard.get(i - starts[k])
                    continue
                b, pos = divmod(i - starts[k], shard.block_size)
                group = groups.get((k, b))
                if group is None:
                    groups[k, b] = ([slot], [pos])
                else:
                    group[0].append(slot)
                    group[1].append(pos)
            if self._remote:  # a shard behind a URL fetches the batch's blocks at once
                ahead: dict[int, list[int]] = {}
                for k, b in groups:
                    ahead.setdefault(k, []).append(b)
                for k, blocks in ahead.items():
                    shards[k].prefetch(blocks)  # type: ignore[union-attr]
            for (k, b), (slots, positions) in groups.items():
                if shards[k] is not self._current:
                    self._switch(shards[k])
                for slot, value in zip(slots, shards[k].get_many(b, positions), strict=True):
                    out[slot] = value
        except AtlasError as exc:
            raise self._located(exc, k) from None
        return out

    def __iter__(self) -> Iterator[Any]:
        for k, shard in enumerate(self._shards):
            if shard is not self._current:
                self._switch(shard)
            for b in range(shard.num_blocks):
                try:
                    block = shard.iter_block(b)
                except AtlasError as exc:
                    raise self._located(exc, k) from None
                yield from block

    def close(self) -> None:
        """Release memory maps and unpickled blocks now (maps reopen on the next read)."""
        self._run = _Reader._run
        self._current = None
        for shard in self._shards:
            shard.close()

    # -- pickling: configuration and parsed metadata only ----------------------------

    safe: bool
    allowed_globals: tuple[tuple[str, str], ...]
    pickle_limits: PickleLimits
    block_cache_size: int
    block_cache_bytes: int | None
    max_open_shards: int

    def _process_state(self) -> None:
        """This process's block cache and open-shard LRU, made new (at construction and after unpickling)."""
        self._cache = BlockCache(self.block_cache_size, self.block_cache_bytes)
        self._opened = OpenShards(self.max_open_shards)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in ("_cache", "_opened", "_run", "_current"):  # this process's: rebuilt by the receiver
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._process_state()
        loads = make_loads(self.safe, self.allowed_globals, self.pickle_limits)
        for shard in self._shards:
            shard.cache, shard.opened = self._cache, self._opened
            shard.use_loads(loads)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AtlasDataset(_Reader, torch.utils.data.Dataset):  # type: ignore[type-arg]
    """A map-style dataset over an Atlas dataset folder, version 1 or 2.

    The folder's files are untrusted: no symlink inside it is followed, only regular files
    and real folders are read, and memory is bounded by the settings below, not by the files.

    Keywords beyond the original's ``mmap_index``:
      verify_checksums   verify each v2 block's checksum the first time it is read (default True)
      safe               load examples under the pickle policy (spec/FORMAT.md section 5): nothing outside it
                         is called, nothing a pickle names can run, refusals are UnsafePickleError/LimitError
      allowed_globals    extra (module, name) pairs trusted completely in safe mode
      pickle_limits      atlas_format.PickleLimits of safe loading (depth, items, sizes; default PICKLE-11)
      block_cache_size   decoded blocks kept in memory per process (default 16)
      block_cache_bytes  decoded bytes those blocks may take per process (default 64 MiB; None: no byte bound);
                         a block larger than it is decoded for its read but not kept
      max_open_shards    shards whose files stay mapped per process (default 64, two descriptors each);
                         the least recently used beyond it is closed and reopens on its next read
      limits             atlas_format.Limits checked before allocating
      storage_options    for a root URL (s3://, gs://, https://, any fsspec protocol; the ``remote`` extra):
                         fsspec's options (endpoint, credentials); opening reads the metadata and indexes,
                         a read fetches its stored block (verified by its checksum each time)
      local_cache        for a root URL: a folder where verified stored blocks are kept for later reads (any
                         process, any run), at most ``local_cache_bytes`` (default 4 GiB; least recently used
                         removed first)
    """

    def __init__(self, root: str | os.PathLike[str], mmap_index: bool = True, *, verify_checksums: bool = True,
                 safe: bool = False, allowed_globals: Iterable[tuple[str, str]] = (),
                 block_cache_size: int = DEFAULT_BLOCK_CACHE_SIZE,
                 block_cache_bytes: int | None = DEFAULT_BLOCK_CACHE_BYTES,
                 max_open_shards: int = DEFAULT_MAX_OPEN_SHARDS, limits: Limits = DEFAULT_LIMITS,
                 pickle_limits: PickleLimits = DEFAULT_PICKLE_LIMITS,
                 storage_options: dict[str, Any] | None = None, local_cache: str | os.PathLike[str] | None = None,
                 local_cache_bytes: int = DEFAULT_LOCAL_CACHE_BYTES) -> None:
        location = root_location(root, storage_options)
        if local_cache is not None and not isinstance(location, RemoteLocation):
            raise ValueError("local_cache is for a dataset behind a URL (a local dataset is read where it is)")
        blocks_kept = None if local_cache is None else LocalBlockCache(local_cache, str(location.path),
                                                                        local_cache_bytes)
        self.root: Path | UrlPath = location.path
        #: behind a URL: a batch fetches its blocks of a shard in one request (``__getitems__``)
        self._remote = isinstance(location, RemoteLocation)
        self.mmap_index = mmap_index
        self.verify_checksums = verify_checksums
        self.safe = safe
        self.allowed_globals = tuple((str(m), str(n)) for m, n in allowed_globals)
        self.pickle_limits = pickle_limits
        self.block_cache_size = block_cache_size
        self.block_cache_bytes = block_cache_bytes
        self.max_open_shards = max_open_shards
        self.limits = limits
        self._process_state()
        loads = make_loads(safe, self.allowed_globals, pickle_limits)
        meta_path = self.root / META_FILE
        if isinstance(self.root, Path) and not self.root.is_dir():  # the root may be a symlink: the user named it
            _refuse_unfinished(self.root)
            raise FileNotFoundError(f"no dataset folder at {self.root}")
        root_meta = read_json_file(location / META_FILE, limits, missing=IncompleteDatasetError)
        doc = root_meta[1]
        self.version = check_version(doc, meta_path)
        if self.version == 1 and isinstance(location, RemoteLocation):
            raise VersionError("a version 1 dataset is read from a local folder (its shards are found by listing "
                               "it); convert it to version 2 to read it from a URL", path=meta_path)
        opening: dict[str, Any] = {"mmap_index": mmap_index, "limits": limits, "loads": loads, "cache": self._cache,
                                   "opened": self._opened}
        self.v2_metadata: dict[str, Any] | None = None
        if self.version == 1:
            self.metadata, self._shards = open_v1_shards(Path(root), doc, **opening)
        else:
            self.v2_metadata, self.metadata, self._shards = open_v2_shards(
                location, verify_checksums=verify_checksums, root_meta=root_meta, local_cache=blocks_kept, **opening)
        self._starts = []
        total = 0
        for shard in self._shards:
            self._starts.append(total)
            total += len(shard)
        self._len = total

    # -- structure (used by BlockShuffleSampler) --------------------------------------

    @property
    def shards(self) -> list[Shard]:
        return list(self._shards)

    def block_spans(self) -> list[list[tuple[int, int]]]:
        """Per shard, the global [start, stop) of each block."""
        spans = []
        for start, shard in zip(self._starts, self._shards, strict=True):
            bs, n = shard.block_size, len(shard)
            spans.append([(start + b, start + min(b + bs, n)) for b in range(0, n, bs)])
        return spans

    def __repr__(self) -> str:
        return f"AtlasDataset({str(self.root)!r}, version={self.version}, examples={self._len})"


class AtlasDatasetShard(_Reader):
    """One shard folder read on its own (the original's class, both versions).

    ``compression_dict_bytes`` is the dataset's shared dictionary; when omitted and the
    shard needs it, ``<parent>/zstd_dict.bin`` is used. The folder may be a symlink (the
    user named it); nothing inside it may be. Cache keywords as for AtlasDataset.
    """

    def __init__(self, root: str | os.PathLike[str], mmap_index: bool = True,
                 compression_dict_bytes: bytes | None = None, *, verify_checksums: bool = True, safe: bool = False,
                 allowed_globals: Iterable[tuple[str, str]] = (), block_cache_size: int = 1,
                 block_cache_bytes: int | None = DEFAULT_BLOCK_CACHE_BYTES, limits: Limits = DEFAULT_LIMITS,
                 pickle_limits: PickleLimits = DEFAULT_PICKLE_LIMITS) -> None:
        self.root = Path(root)
        self.safe = safe
        self.allowed_globals = tuple((str(m), str(n)) for m, n in allowed_globals)
        self.pickle_limits = pickle_limits
        self.block_cache_size = block_cache_size
        self.block_cache_bytes = block_cache_bytes
        self.max_open_shards = 1
        self._process_state()
        loads = make_loads(safe, self.allowed_globals, pickle_limits)
        folder = Location(self.root)
        meta_path = self.root / META_FILE
        if not self.root.is_dir():
            _refuse_unfinished(self.root)
        _, doc = read_json_file(folder / META_FILE, limits)
        shard: Shard
        if check_version(doc, meta_path) == 1:
            shard = V1Shard(folder, mmap_index=mmap_index, compression_dict_bytes=compression_dict_bytes,
                            limits=limits, loads=loads, cache=self._cache, opened=self._opened)
        else:
            shard = V2Shard(folder, mmap_index=mmap_index, shared_dict_bytes=compression_dict_bytes,
                            verify_checksums=verify_checksums, limits=limits, loads=loads, cache=self._cache,
                            opened=self._opened)
        self._shard = shard
        self._shards = [shard]
        self._starts = [0]
        self._len = len(shard)

    @property
    def metadata(self) -> AtlasDatasetShardMetadata:
        return self._shard.metadata

    @property
    def block_size(self) -> int:
        return self._shard.block_size

    def __repr__(self) -> str:
        return f"AtlasDatasetShard({str(self.root)!r}, version={self._shard.version}, examples={self._len})"


__all__ = ["AtlasDataset", "AtlasDatasetShard", "DEFAULT_BLOCK_CACHE_BYTES", "DEFAULT_BLOCK_CACHE_SIZE",
           "DEFAULT_MAX_OPEN_SHARDS"]
