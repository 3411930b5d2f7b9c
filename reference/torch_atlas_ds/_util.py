"""Small shared helpers: durable file writes, fork detection, the bounded LRUs of decoded blocks and of
open shards."""

from __future__ import annotations

import os
import pickle
import threading
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Any, TypeVar

from atlas_format.constants import DICT_FILE
from atlas_format.files import Location

# Bumped in every child after fork, so lazily opened handles know to reopen.
_FORK_GENERATION = [0]
# Objects whose ``_lock`` a forked child replaces: a lock another thread held at fork time stays held forever.
_LOCK_OWNERS: weakref.WeakSet[Any] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    _FORK_GENERATION[0] += 1
    for owner in list(_LOCK_OWNERS):
        owner._lock = threading.Lock()


def fork_safe_lock(owner: Any) -> threading.Lock:
    """A new lock for ``owner._lock``, replaced by a fresh one in a forked child."""
    _LOCK_OWNERS.add(owner)
    return threading.Lock()


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
    """Write a whole file and fsync it (the caller fsyncs the folder). On failure (a full disk) the file is
    closed without writing its buffer again; the caller removes it."""
    f = open(path, "wb")  # noqa: SIM115 - closed below, without a second flush on failure
    try:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    except BaseException:
        try:
            f.raw.close()  # a closed raw file: close() below does not flush again
            f.close()
        except OSError:
            pass  # the first failure is the one to report
        raise
    f.close()


M = TypeVar("M")


class ProcessLocalState:
    """What a shard reader holds in one process (maps, decompressors, its last block), how it hands its
    maps to the dataset's open-shard LRU, and its pickling: the process's part stays behind.

    Subclasses name those attributes in ``_PROCESS_LOCAL`` and rebuild them lazily in ``_reset``; a
    dictionary that was read from a file is read again (and verified) in the receiving process. Their
    maps are one object, ``_m`` (``_CLOSED`` when released), and their last block ``_memo``.
    """

    _PROCESS_LOCAL: tuple[str, ...] = ()
    _CLOSED: Any
    _NO_MEMO: Any
    _m: Any
    _memo: Any
    _tls: Any
    _tls_gen: int
    _dict_source: Any
    cache: Any
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
        self._memo = self._NO_MEMO

    def forget_block(self) -> None:
        """Drop the last block read (the dataset moves on to another shard: one such block stays in memory)."""
        self._memo = self._NO_MEMO

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


def file_identity(status: os.stat_result) -> tuple[int, int, int, int]:
    """(device, inode, size, mtime) of a file: a file checked in this process and unchanged since keeps
    its checks (a reopened index is not parsed again, verified blocks stay verified)."""
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns


def shared_dictionary(folder: Location) -> Location:
    """Where a shard folder's dataset keeps the shared zstd_dict.bin: the dataset root for a shard of a
    dataset, the parent folder for a shard folder opened on its own (then it is the user's path)."""
    return Location(folder.root, DICT_FILE) if folder.rel else Location(folder.root.parent, DICT_FILE)


class BlockCache:
    """A bounded LRU of decoded blocks keyed by (shard key, block number), bounded in count and in bytes.

    One cache is shared by all shards of a dataset so the memory bound holds for the whole
    dataset, whatever its number of shards. The byte bound makes memory a matter of settings,
    not of the files: a few KB of highly compressible blocks can decode to gigabytes. A block
    larger than the whole budget is not cached.

    ``get`` and ``put`` take no lock (a put follows every block decode of a random read): each
    OrderedDict call is atomic under the GIL. Bytes are counted exactly, under a lock, only when
    ``count * largest block`` could exceed the budget, which typical blocks (16 of 24 KB against
    64 MiB) never reach. Capacity 0 disables caching.
    """

    __slots__ = ("capacity", "max_bytes", "_limit", "_largest", "_items", "_sizes", "_lock", "__weakref__")

    def __init__(self, capacity: int, max_bytes: int | None = None) -> None:
        if capacity < 0:
            raise ValueError(f"block_cache_size must be >= 0, got {capacity}")
        if max_bytes is not None and max_bytes < 0:
            raise ValueError(f"block_cache_bytes must be >= 0, got {max_bytes}")
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._limit = -1 if capacity == 0 else max_bytes if max_bytes is not None else 1 << 62
        self._largest = 0  # at least the largest size held (it only shrinks when bytes are counted)
        self._items: OrderedDict[tuple[Any, int], Any] = OrderedDict()
        self._sizes: dict[tuple[Any, int], int] = {}
        self._lock = fork_safe_lock(self)

    def get(self, key: tuple[Any, int]) -> Any:
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

    def put(self, key: tuple[Any, int], value: Any, size: int) -> None:
        """Keep ``value`` (``size`` bytes decoded), evicting the least recently used beyond either bound."""
        if size > self._limit:
            return
        items, sizes = self._items, self._sizes
        sizes[key] = size
        items[key] = value
        try:
            items.move_to_end(key)
            while len(items) > self.capacity:
                sizes.pop(items.popitem(last=False)[0], None)
        except KeyError:  # another thread emptied it concurrently: the bound still holds
            pass
        if size > self._largest:
            self._largest = size
        if len(items) * self._largest > self._limit:
            self._fit()

    def _fit(self) -> None:
        """Count the bytes held exactly and evict the least recently used beyond the budget."""
        items, sizes = self._items, self._sizes
        with self._lock:
            held = list(items)
            for key in [k for k in list(sizes) if k not in items]:  # left by a race between two puts
                sizes.pop(key, None)
            total = sum(sizes.get(k, 0) for k in held)
            while total > self._limit and items:
                try:
                    total -= sizes.pop(items.popitem(last=False)[0], 0)
                except KeyError:
                    break
            self._largest = max((sizes.get(k, 0) for k in list(items)), default=0)

    @property
    def nbytes(self) -> int:
        """The decoded bytes of the blocks held (as given to put)."""
        return sum(self._sizes.get(k, 0) for k in list(self._items))

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._sizes.clear()
            self._largest = 0

    def __len__(self) -> int:
        return len(self._items)


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
