"""Small shared helpers: durable file writes, fork detection, a bounded LRU of decoded blocks."""

from __future__ import annotations

import mmap
import os
import pickle
from collections import OrderedDict
from pathlib import Path
from typing import Any

# Bumped in every child after fork, so lazily opened handles know to reopen.
_FORK_GENERATION = [0]


def _after_fork_in_child() -> None:
    _FORK_GENERATION[0] += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def fork_generation() -> int:
    """A number that changes in a child process after fork (cheaper than os.getpid on every read)."""
    return _FORK_GENERATION[0]


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory so that entries created or renamed in it survive a crash."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def write_file(path: str | os.PathLike[str], data: bytes | bytearray | memoryview) -> None:
    """Write a whole file and fsync it (the caller fsyncs the folder)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


class ProcessLocalState:
    """Pickling of shard readers: what belongs to one process (maps, decompressors, caches) stays behind.

    Subclasses name those attributes in ``_PROCESS_LOCAL`` and rebuild them lazily in ``_reset``; a
    dictionary that was read from a file is read again (and verified) in the receiving process.
    """

    _PROCESS_LOCAL: tuple[str, ...] = ()
    _dict_source: Any
    cache: Any
    loads: Any

    def _reset(self) -> None:
        raise NotImplementedError

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in (*self._PROCESS_LOCAL, "cache", "loads"):
            state.pop(key, None)
        if self._dict_source is not None:
            state["_dict_bytes"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.cache = BlockCache(1)
        self.loads = pickle.loads
        self._reset()


def publish_folder(tmp: Path, target: Path) -> None:
    """Publish a fully written (and fsynced) temporary folder as ``target``: one atomic rename.

    Refuses an existing target, like the original writer's mkdir; the parent is fsynced so
    the rename survives a crash.
    """
    if os.path.lexists(target):
        raise FileExistsError(f"[Errno 17] File exists: '{target}'")
    os.rename(tmp, target)
    fsync_dir(target.parent)


def map_file(path: Path) -> tuple[Any, memoryview]:
    """(mmap or None, read-only memoryview) of a whole file; an empty file maps to b''."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return None, memoryview(b"")
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    return mm, memoryview(mm)


class BlockCache:
    """A bounded LRU of decoded blocks keyed by (shard key, block number).

    One cache is shared by all shards of a dataset so the memory bound holds for the
    whole dataset, whatever its number of shards. Capacity 0 disables caching.
    """

    __slots__ = ("capacity", "_items")

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"block_cache_size must be >= 0, got {capacity}")
        self.capacity = capacity
        self._items: OrderedDict[tuple[Any, int], Any] = OrderedDict()

    def get(self, key: tuple[Any, int]) -> Any:
        # A miss (most random reads) raises nothing. Each OrderedDict call is atomic under the
        # GIL; a key evicted by another thread in between is still a hit for this caller.
        items = self._items
        value = items.get(key)
        if value is not None:
            try:
                items.move_to_end(key)
            except KeyError:
                pass
        return value

    def put(self, key: tuple[Any, int], value: Any) -> None:
        items = self._items
        if key in items:
            items.move_to_end(key)
        items[key] = value  # a new key goes to the end
        try:
            while len(items) > self.capacity:
                items.popitem(last=False)
        except KeyError:  # another thread emptied it concurrently: the bound still holds
            pass

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


def zstd_decompressor(dictionary: bytes | None, path: Any, shard: Any = None) -> Any:
    """A reusable zstd decompressor; a dictionary zstd cannot load is a FormatError naming its file."""
    import zstandard

    from .errors import FormatError

    if dictionary is None:
        return zstandard.ZstdDecompressor()
    try:
        return zstandard.ZstdDecompressor(dict_data=zstandard.ZstdCompressionDict(dictionary))
    except zstandard.ZstdError as exc:
        raise FormatError(f"not a usable zstd dictionary: {exc}", path=path, shard=shard) from None
