"""A shard reader's per-process state, and the LRU of the shards whose files are open in this process.

A dataset pickles as configuration: maps, decompressors and verified-block marks are this process's
and are rebuilt lazily in the receiving one (and after fork). Each open shard holds two maps and
their descriptors, so ``OpenShards`` bounds how many are open at once.
"""

from __future__ import annotations

import pickle
import threading
from collections import OrderedDict
from typing import Any, TypeVar

from ._util import _FORK_GENERATION, fork_safe_lock
from .block_cache import BlockCache

M = TypeVar("M")




class ProcessLocalState:
    """What a shard reader holds in one process (maps, decompressors), how it hands its maps to the
    dataset's open-shard LRU, and its pickling: the process's part stays behind.

    Subclasses name those attributes in ``_PROCESS_LOCAL`` and rebuild them lazily in ``_reset``; a
    dictionary that was read from a file is read again (and verified) in the receiving process. Their
    maps are one object, ``_m`` (``_CLOSED`` when released). Blocks live in the dataset's cache
    (block_cache.py); a shard whose blocks are views of its maps (``views_of_maps``) drops them there
    when it releases the maps, so that no view keeps a released file open.
    """

    _PROCESS_LOCAL: tuple[str, ...] = ()
    _CLOSED: Any
    _m: Any
    label: str
    views_of_maps = False
    _tls: Any
    _tls_gen: int
    _dict_source: Any
    cache: BlockCache
    opened: Any
    loads: Any

    def _reset(self) -> None:
        raise NotImplementedError

    def _new_dctx(self) -> Any:
        raise NotImplementedError

    @property
    def is_open(self) -> bool:
        """Whether this shard holds its maps (the open-shard LRU bounds how many do)."""
        return self._m is not self._CLOSED

    def release(self) -> None:
        """Drop the maps and the last block (the open-shard LRU calls it); the next read reopens. A thread
        reading meanwhile keeps its own snapshot of the maps, so they go when that read ends."""
        self._m = self._CLOSED
        if self.views_of_maps:
            self.cache.drop(self.label)

    def _finish_open(self, maps: M, zstd: bool) -> M:
        """Finish an opening: the thread-local zstd decompressors once per process (a shard reopens many
        times; making one fails, naming the file, if zstd cannot load the dictionary), then the maps
        become this shard's and the shard the dataset's most recently opened."""
        if self._tls_gen != _FORK_GENERATION[0]:
            self._tls = threading.local()
            if zstd:
                self._tls.dctx = self._new_dctx()
            self._tls_gen = _FORK_GENERATION[0]
        self._m = maps
        self.opened.admit(self)
        return maps

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in (*self._PROCESS_LOCAL, "cache", "opened", "loads"):
            state.pop(key, None)
        if self._dict_source is not None:
            state["_dict_bytes"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.cache = BlockCache(1)
        self.opened = OpenShards(1)
        self.use_loads(pickle.loads)
        self._reset()

    def use_loads(self, loads: Any) -> None:
        """Load examples with ``loads`` (``pickle.loads`` or the safe loader, from the dataset's settings)."""
        self.loads = loads


class OpenShards:
    """The shards of one dataset whose files are open in this process, least recently used first.

    An open shard holds its memory maps (index and data.bin), and each map keeps a file
    descriptor of its own, so a dataset of many shards would run out of descriptors ("Too many
    open files") and maps. A shard admits itself when it opens; beyond ``capacity`` the least
    recently used releases its maps and reopens on its next read.
    """

    __slots__ = ("capacity", "_shards", "_lock", "__weakref__")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"max_open_shards must be >= 1, got {capacity}")
        self.capacity = capacity
        self._shards: OrderedDict[Any, None] = OrderedDict()
        self._lock = fork_safe_lock(self)

    def admit(self, shard: Any) -> None:
        """``shard`` just opened its files: it is the most recent; release the least recent beyond capacity."""
        with self._lock:
            shards = self._shards
            shards[shard] = None
            shards.move_to_end(shard)
            while len(shards) > self.capacity:
                old, _ = shards.popitem(last=False)
                old.release()

    def touch(self, shard: Any) -> None:
        """``shard`` is being read: make it the most recently used (if it is open)."""
        try:
            self._shards.move_to_end(shard)
        except KeyError:
            pass

    def discard(self, shard: Any) -> None:
        with self._lock:
            self._shards.pop(shard, None)

    def __len__(self) -> int:
        return len(self._shards)
