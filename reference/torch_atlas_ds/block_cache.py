"""The one cache of a dataset's reads: decoded blocks, bounded in count and bytes, plus the block in hand.

A block is read once and used by every read that follows in it: ``CachedBlock`` holds the decoded
(or, where nothing is decoded, the stored) bytes, their checked offset table, and the examples
already unpickled in one pass (framing "list", or the rest of a block read in order). Those
examples are handed out once each (the slot then holds ``TAKEN``), so a repeated ``ds[i]`` unpickles
again and returns a new object: what a caller mutates never comes back to another caller.

``BlockCache`` keeps the least recently used blocks within ``capacity`` and ``max_bytes`` and, besides
them, the block read last (``last``), whatever its size: a block larger than the budget is decoded
for its reads but never kept beyond the next block. Capacity 0 keeps only the block in hand.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from ._util import fork_safe_lock

#: An unpickled example already handed out (the next read of it unpickles it again).
TAKEN: Any = object()


class CachedBlock:
    """Block ``b`` of shard ``label``: its ``count`` examples from example ``first`` of the shard; ``data`` as
    read (decoded bytes, a view of the stored bytes, or version 1's unpickled list), ``nbytes`` what the
    budget counts, ``raw`` its decoded size per the index (-1: not known), ``table`` (where each example starts
    in ``data``, from its offset table checked once), ``values`` (examples unpickled in one pass, TAKEN
    once handed out), ``last_pos`` the position read last (-2: none; -1: none, the read before ended the block
    just before this one)."""

    __slots__ = ("label", "b", "first", "count", "data", "nbytes", "raw", "base", "table", "values", "last_pos",
                 "part", "parts")

    def __init__(self, label: str, b: int, first: int, count: int, data: Any, nbytes: int, raw: int = -1,
                 base: int = 0) -> None:
        self.label, self.b, self.first, self.count = label, b, first, count
        self.data, self.nbytes, self.raw = data, nbytes, raw
        #: where the payload starts in a block with an offset table (set by the shard that read it)
        self.base = base
        self.table: tuple[int, ...] | None = None
        self.values: list[Any] | None = None
        self.last_pos = -2
        #: framing "grouped": (frame number, its decoded bytes, (where its slices start, its interior group
        #: offsets from there, where its last slice ends), examples per group; None and 0 for a one-frame
        #: block of pickles, whose table is inside the frame) a read decoded, kept for the next read
        self.part: tuple[int, Any, Any, int] | None = None
        #: framing "grouped": parts unpickled by the reads in a row of this block
        self.parts = 0


_NONE = CachedBlock("", -1, 0, 0, None, 0)


class BlockCache:
    """A bounded LRU of blocks keyed by (shard label, block number), bounded in count and in bytes, and the
    block read last. One per dataset and process, shared by its shards, so the bound holds whatever the
    number of shards; a few KB of compressible blocks can decode to gigabytes, hence the byte bound.

    ``get`` and ``keep`` take no lock (a keep follows every decode of a random read): each OrderedDict call
    is atomic under the GIL. Bytes are counted exactly, under a lock, only when ``count * largest block``
    could exceed the budget, which typical blocks (16 of 24 KB against 64 MiB) never reach.
    """

    __slots__ = ("capacity", "max_bytes", "last", "_limit", "_largest", "_items", "_lock", "__weakref__")

    def __init__(self, capacity: int, max_bytes: int | None = None) -> None:
        if capacity < 0:
            raise ValueError(f"block_cache_size must be >= 0, got {capacity}")
        if max_bytes is not None and max_bytes < 0:
            raise ValueError(f"block_cache_bytes must be >= 0, got {max_bytes}")
        self.capacity = capacity
        self.max_bytes = max_bytes
        #: the block read last (kept even when the LRU keeps nothing)
        self.last: CachedBlock = _NONE
        self._limit = -1 if capacity == 0 else max_bytes if max_bytes is not None else 1 << 62
        self._largest = 0  # at least the largest size held (it only shrinks when bytes are counted)
        #: (shard label, block number) -> its CachedBlock, least recently used first (sizes: their nbytes)
        self._items: OrderedDict[tuple[str, int], CachedBlock] = OrderedDict()
        self._lock = fork_safe_lock(self)

    def block(self, label: str, b: int) -> CachedBlock | None:
        """Block ``b`` of shard ``label`` if held (it becomes the block in hand)."""
        last = self.last
        if last.b == b and last.label == label:
            return last
        found: CachedBlock | None = self.get((label, b))
        if found is not None:
            self.last = found
        return found

    def keep(self, block: CachedBlock) -> CachedBlock:
        """``block`` was just read: it is the block in hand, and cached (evicting the least recently used
        beyond either bound) unless it alone is above the byte budget."""
        self.last = block
        size = block.nbytes
        if size > self._limit:
            return block
        items = self._items
        key = (block.label, block.b)
        items[key] = block
        try:
            items.move_to_end(key)  # a block another thread cached meanwhile: this one is the newest
            while len(items) > self.capacity:
                items.popitem(last=False)
        except KeyError:  # another thread emptied it concurrently: the bound still holds
            pass
        if size > self._largest:
            self._largest = size
        if len(items) * self._largest > self._limit:
            self._fit()
        return block

    def get(self, key: tuple[str, int]) -> CachedBlock | None:
        # A miss (most random reads) raises nothing. A key evicted by another thread in between
        # is still a hit for this caller.
        items = self._items
        value = items.get(key)
        if value is not None:
            try:
                items.move_to_end(key)
            except KeyError:
                pass
        return value

    def _fit(self) -> None:
        """Count the bytes held exactly and evict the least recently used beyond the budget."""
        items = self._items
        with self._lock:
            total = sum(block.nbytes for block in list(items.values()))
            while total > self._limit and items:
                try:
                    total -= items.popitem(last=False)[1].nbytes
                except KeyError:
                    break
            self._largest = max((block.nbytes for block in list(items.values())), default=0)

    def drop(self, label: str) -> None:
        """Forget shard ``label``'s blocks (it released its files: views of them must not keep them open)."""
        if self.last.label == label:
            self.last = _NONE
        with self._lock:
            for key in [k for k in list(self._items) if k[0] == label]:
                self._items.pop(key, None)

    @property
    def nbytes(self) -> int:
        """The bytes of the blocks the LRU holds (their nbytes)."""
        return sum(block.nbytes for block in list(self._items.values()))

    def clear(self) -> None:
        self.last = _NONE
        with self._lock:
            self._items.clear()
            self._largest = 0

    def __len__(self) -> int:
        return len(self._items)
