"""Reading one version 1 shard (the original's format) with checks the original lacks.

A v1 block is a pickled list of examples, optionally one zstd frame. There are no
checksums in v1, but every declared size is checked against the limits before
decompressing, the index is validated at open, and a short block is a FormatError
(never an IndexError that would silently end a ``for`` loop). Files are opened through
``atlas_format.files`` (regular files only, no symlink followed, never blocking).
"""

from __future__ import annotations

import math
import pickle
import threading
from pathlib import Path
from typing import Any

import numpy as np
import zstandard

from atlas_format import npy
from atlas_format.binary import parse
from atlas_format.codecs import check_declared_size, codec_info
from atlas_format.constants import DATA_FILE, DEFAULT_LIMITS, DICT_FILE, META_FILE, V1_INDEX_FILE, Limits
from atlas_format.enums import Codec, CompressionStrategy
from atlas_format.files import Location, RegularFile, open_regular, read_regular
from atlas_format.list_items import list_item_at
from atlas_format.metadata import parse_json

from ._util import (
    BlockCache,
    OpenShards,
    ProcessLocalState,
    file_identity,
    fork_generation,
    shared_dictionary,
    zstd_decompressor,
)
from .errors import (
    AtlasError,
    CodecError,
    FormatError,
    LimitError,
    MetadataError,
    MissingShardError,
    VersionError,
)
from .metadata import AtlasDatasetShardMetadata
from .safe_pickle import Loads

_ZSTD = codec_info(Codec.ZSTD)


def read_json_file(location: Location, limits: Limits, *, missing: type[AtlasError] = MissingShardError,
                   shard: str | None = None) -> tuple[bytes, Any]:
    """(bytes, parsed JSON) of a metadata file; absent is ``missing``, too large a LimitError (before reading)."""
    data = read_regular(location, limit=limits.max_metadata_size, missing=missing, shard=shard)
    return data, parse_json(data, path=location.path, limits=limits)


def unpickle_list_block(loads: Loads, raw: Any, count: int, where: dict[str, Any],
                        first: int | None = None) -> list[Any]:
    """A decoded block that is one pickle of a list of ``count`` examples (version 1; version 2
    framing "list", V2-FRAME-5), unpickled and checked; failures are located at ``where``.

    A refusal inside one example's opcodes also names that example (its position in the block, and
    ``first`` + position in the shard), found from the refusal's offset as the validator finds it.
    """
    try:
        examples = loads(raw)
    except AtlasError as exc:  # a refusal of safe loading: same type and rule, located here
        position = None if exc.pickle_offset is None else list_item_at(raw, exc.pickle_offset)
        if position is not None:
            where = {**where, "position": position, "example": None if first is None else first + position}
        raise exc.relocated(**where) from None
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is corrupt data
        raise FormatError(f"block does not unpickle: {type(exc).__name__}: {exc}", **where) from None
    if not isinstance(examples, list) or len(examples) != count:
        got = f"a list of {len(examples)}" if isinstance(examples, list) else type(examples).__name__
        raise FormatError(f"block holds {got}, expected a list of {count} examples", **where)
    return examples


def check_version(doc: Any, path: Path) -> int:
    """The format version of a parsed meta.json: exactly the integer 1 or 2, else VersionError."""
    if not isinstance(doc, dict):
        raise MetadataError("meta.json is not a JSON object", path=path)
    version = doc.get("version")
    if type(version) is not int or version not in (1, 2):
        raise VersionError(f"unsupported format version {version!r} (this reader reads versions 1 and 2)",
                           path=path)
    return version


def _int_field(doc: dict[str, Any], key: str, path: Path, minimum: int = 0) -> int:
    value = doc.get(key)
    if type(value) is not int or value < minimum:
        raise MetadataError(f"{key!r} must be an integer >= {minimum}, got {value!r}", path=path)
    return value


def read_dictionary(location: Location, expected: Any, limits: Limits, shard: str | None = None) -> bytes:
    """See shard_v2.read_dictionary (imported lazily: shard_v2 imports this module)."""
    from .shard_v2 import read_dictionary as read

    return read(location, expected, limits, shard)


class _Maps:
    """What an open version 1 shard maps, rebound as a whole (threads read one consistent snapshot, and
    releasing it while another thread reads leaves that thread its own references)."""

    __slots__ = ("gen", "mm", "data", "index")

    def __init__(self, gen: int = -1, mm: Any = None, data: Any = None, index: Any = None) -> None:
        self.gen, self.mm, self.data, self.index = gen, mm, data, index


_CLOSED = _Maps()
_NO_MEMO: tuple[int, Any] = (-1, None)


class V1Shard(ProcessLocalState):
    """One version 1 shard folder. Files are checked at construction, mapped lazily, released when the
    dataset's open-shard LRU (``opened``) needs room, and reopened after that, after fork or unpickling."""

    _PROCESS_LOCAL = ("_m", "_layout", "_tls", "_memo")
    _CLOSED = _CLOSED
    _NO_MEMO = _NO_MEMO

    version = 1
    decodes_blocks = True  # every read decodes (and unpickles) its whole block
    unpickles_lists = False  # its cached block list is read in place, as the original does

    def __init__(self, location: Location, *, mmap_index: bool = True, compression_dict_bytes: Any = None,
                 limits: Limits = DEFAULT_LIMITS, loads: Loads = pickle.loads, cache: BlockCache | None = None,
                 opened: OpenShards | None = None, label: str | None = None) -> None:
        self.location = location
        self.path = location.path
        self.label = label if label is not None else self.path.name
        self.mmap_index = mmap_index
        self.limits = limits
        self.loads = loads
        self.cache = cache if cache is not None else BlockCache(1)
        self.opened = opened if opened is not None else OpenShards(1)
        meta_path = self.path / META_FILE
        _, doc = read_json_file(location / META_FILE, limits, shard=self.label)
        if check_version(doc, meta_path) != 1:
            raise VersionError("a version 2 shard inside a version 1 dataset", path=meta_path)
        self.block_size = _int_field(doc, "block_size", meta_path, 1)
        self.num_examples = _int_field(doc, "stored_examples", meta_path, 0)
        strategy = doc.get("compression_strategy")
        if type(strategy) is not int or strategy not in tuple(CompressionStrategy):
            raise CodecError(f"unknown compression_strategy {strategy!r} (known: 0, 1, 2, 3)", path=meta_path)
        self.strategy = CompressionStrategy(strategy)
        self.metadata = AtlasDatasetShardMetadata(1, self.block_size, self.num_examples, int(self.strategy),
                                                  doc.get("compression_level"), doc.get("compression_dict_size"))
        self.num_blocks = math.ceil(self.num_examples / self.block_size)
        if self.num_examples > limits.max_examples_per_shard or self.block_size > limits.max_examples_per_block:
            raise LimitError("stored_examples or block_size above the limits", path=meta_path)
        self._dict_bytes: bytes | None = None
        # Where the dictionary is read again in another process (None: the caller handed the bytes over).
        self._dict_source: Location | None = None
        if self.strategy == CompressionStrategy.DICTIONARY_COMPRESSION:
            self._dict_source = location / DICT_FILE
        elif self.strategy == CompressionStrategy.SHARED_DICTIONARY_COMPRESSION:
            if compression_dict_bytes is None:
                self._dict_source = shared_dictionary(location)
            else:
                if isinstance(compression_dict_bytes, zstandard.ZstdCompressionDict):
                    compression_dict_bytes = compression_dict_bytes.as_bytes()
                self._dict_bytes = bytes(compression_dict_bytes)
        if self._dict_source is not None:
            self._dict_bytes = read_dictionary(self._dict_source, None, limits, self.label)
        self._reset()
        self._open()

    # -- lazy per-process state -----------------------------------------------------

    def _reset(self) -> None:
        self._m = _CLOSED
        # ((index identity, data.bin identity), dtype, offset) of the files checked in this process
        self._layout: tuple[tuple[Any, ...], Any, int] = ((), None, 0)
        self._tls = threading.local()  # one zstd decompressor per thread (they are not thread-safe)
        self._tls_gen = -1  # the fork generation _tls belongs to
        self._memo: tuple[int, Any] = _NO_MEMO  # (block number, its examples), rebound as a whole

    def _open(self) -> _Maps:
        """Open, check and map index.npy and data.bin (V1-INDEX-*), and join the dataset's open shards. Files
        checked in this process and unchanged since (same identity) are mapped again without the checks."""
        index_path = self.path / V1_INDEX_FILE
        with open_regular(self.location / V1_INDEX_FILE, limit=self.limits.max_index_size, shard=self.label) as f:
            index_id = file_identity(f.status)
            dtype, start = self._layout[1:] if self._layout[0][:1] == (index_id,) else self._index_layout(f, index_path)
            mm, raw = f.map() if self.mmap_index else (None, f.read())
        index: np.ndarray[Any, Any] = np.frombuffer(raw, dtype=dtype, count=self.num_blocks + 1, offset=start)
        if self.num_blocks == 0:
            maps = _Maps(fork_generation(), [mm], memoryview(b""), index)
            if int(index[0]) != 0:
                raise FormatError("the index of an empty shard must be [0]", path=index_path, shard=self.label)
            ids: tuple[Any, ...] = (index_id,)
        else:
            with open_regular(self.location / DATA_FILE, limit=self.limits.max_data_size, shard=self.label) as f:
                data_mm, data = f.map()
                ids = (index_id, file_identity(f.status))
            maps = _Maps(fork_generation(), [mm, data_mm], data, index)
            if ids != self._layout[0]:
                self._check_offsets(index, len(data), index_path)
        self._layout = (ids, dtype, start)
        if self._dict_bytes is None and self._dict_source is not None:
            self._dict_bytes = read_dictionary(self._dict_source, None, self.limits, self.label)
        return self._finish_open(maps, zstd=self.strategy != CompressionStrategy.NO_COMPRESSION)

    def _index_layout(self, f: RegularFile, index_path: Path) -> tuple[np.dtype[Any], int]:
        """(dtype, data offset) of index.npy: its npy header parsed as a literal and checked against the
        shard's block count and the file size before the entries are mapped or read. What the original reads
        through np.load is read (either byte order, a signed type, npy 2.0/3.0, bytes after the array:
        V1-INDEX-2), though writers write only unsigned little-endian 1.0 files."""
        header = parse(npy.NpyHeader, f.read(4096), path=index_path)
        dtype = npy.readable_dtype(header.header["descr"])
        shape = header.header["shape"]
        if dtype is None or not isinstance(header.header["fortran_order"], bool) \
                or not (isinstance(shape, tuple) and len(shape) == 1):
            raise FormatError(f"index.npy must be a 1-D array of integers, header is {header.header}",
                              path=index_path)
        start = (10 if header.major == 1 else 12) + header.header_len
        count = int(shape[0])
        if count != self.num_blocks + 1:
            raise FormatError(f"index has {count} entries, {self.num_examples} examples in blocks of "
                              f"{self.block_size} need {self.num_blocks + 1}", path=index_path, shard=self.label)
        if f.size < start + count * dtype.itemsize:
            raise FormatError("index.npy is shorter than its header declares", path=index_path, shard=self.label)
        return dtype, start

    def _check_offsets(self, index: np.ndarray[Any, Any], data_size: int, index_path: Path) -> None:
        """Offsets that locate blocks inside data.bin. Bytes before the first or after the last block are
        left unread, as the original leaves them (V1-INDEX-3: a validator warns about them)."""
        if int(index[0]) < 0 or int(index[-1]) > data_size or not bool((index[1:] > index[:-1]).all()):
            raise FormatError(f"index offsets must be >= 0, increase strictly and end within data.bin "
                              f"({data_size} bytes)", path=index_path, shard=self.label)
        steps = np.diff(index.astype(np.uint64))
        if int(steps.max()) > self.limits.max_block_stored_size:
            raise LimitError("a block is larger than the limit", path=index_path, shard=self.label)

    def _new_dctx(self) -> zstandard.ZstdDecompressor:
        dict_path = self._dict_source.path if self._dict_source is not None else self.path.parent / DICT_FILE
        return zstd_decompressor(self._dict_bytes, dict_path, self.label)  # type: ignore[no-any-return]

    def close(self) -> None:
        """Release the memory maps and cached blocks now (maps reopen on the next read)."""
        self.cache.clear()
        self.opened.discard(self)
        self.release()

    # -- reading ----------------------------------------------------------------------

    def __len__(self) -> int:
        return self.num_examples

    def block_count(self, b: int) -> int:
        return min(self.block_size, self.num_examples - b * self.block_size)

    def read_block(self, b: int) -> list[Any]:
        """The decoded, unpickled list of examples of block ``b`` (cached)."""
        maps = self._m
        if maps.gen != fork_generation():
            maps = self._open()
        memo = self._memo
        if memo[0] == b:
            return memo[1]  # type: ignore[no-any-return]
        key = (self.label, b)
        cached = self.cache.get(key)
        if cached is not None:
            self._memo = (b, cached)
            return cached  # type: ignore[no-any-return]
        start, end = int(maps.index[b]), int(maps.index[b + 1])
        raw: Any = maps.data[start:end]
        data_path = self.path / DATA_FILE
        where: dict[str, Any] = {"path": data_path, "shard": self.label, "block": b, "offset": start}
        if self.strategy != CompressionStrategy.NO_COMPRESSION:
            try:
                declared = check_declared_size(_ZSTD, raw, None, self.limits)
                dctx = getattr(self._tls, "dctx", None)
                if dctx is None:
                    dctx = self._tls.dctx = self._new_dctx()
                raw = dctx.decompress(raw, max_output_size=declared)
            except AtlasError as exc:
                raise type(exc)(exc.message, **where) from None
            except zstandard.ZstdError as exc:
                raise CodecError(f"zstd cannot decode the block: {exc}", **where) from None
        size = len(raw)  # the decoded pickle: what the cache's byte budget counts for the list
        examples = unpickle_list_block(self.loads, raw, self.block_count(b), where, b * self.block_size)
        self.cache.put(key, examples, size)
        self._memo = (b, examples)
        return examples

    def get(self, i: int) -> Any:
        """Example ``i`` of this shard (0 <= i < len, checked by the caller)."""
        b, pos = divmod(i, self.block_size)
        return self.read_block(b)[pos]

    def decoded_bytes(self) -> int:
        """The decoded size of the shard's blocks from their checked index and frame headers (atlas-ds info:
        no block is decoded)."""
        maps = self._m if self._m.gen == fork_generation() else self._open()
        if self.strategy == CompressionStrategy.NO_COMPRESSION:
            return int(maps.index[-1]) - int(maps.index[0])
        total = 0
        for b in range(self.num_blocks):
            start = int(maps.index[b])
            try:
                total += check_declared_size(_ZSTD, maps.data[start:int(maps.index[b + 1])], None, self.limits)
            except AtlasError as exc:
                raise type(exc)(exc.message, path=self.path / DATA_FILE, shard=self.label, block=b,
                                offset=start) from None
        return total

    def get_each(self, indices: list[int]) -> list[Any]:
        return [self.get(j) for j in indices]

    def unpickled_block(self) -> None:
        """No hand-out list (``unpickles_lists`` is False): the cached block list is read in place."""
        return None

    def get_many(self, b: int, positions: list[int]) -> list[Any]:
        block = self.read_block(b)
        return [block[p] for p in positions]

    def iter_block(self, b: int) -> list[Any]:
        return self.read_block(b)
