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
from atlas_format.codecs import check_declared_size, codec_info, decode
from atlas_format.constants import DATA_FILE, DEFAULT_LIMITS, DICT_FILE, META_FILE, V1_INDEX_FILE, Limits
from atlas_format.enums import Codec, CompressionStrategy
from atlas_format.files import Location
from atlas_format.remote import RemoteLocation

from ._util import fork_generation, shared_dictionary, zstd_decompressor
from .block_cache import BlockCache, CachedBlock
from .byte_source import ByteSource, MappedFile
from .errors import (
    AtlasError,
    CodecError,
    FormatError,
    LimitError,
    MetadataError,
    VersionError,
)
from .framing import V1ListFraming, unpickle_list_block
from .metadata import AtlasDatasetShardMetadata
from .safe_pickle import Loads
from .shard_files import check_version, read_dictionary, read_json_file
from .shard_state import OpenShards, ProcessLocalState

_ZSTD = codec_info(Codec.ZSTD)


def _int_field(doc: dict[str, Any], key: str, path: Path, minimum: int = 0) -> int:
    value = doc.get(key)
    if type(value) is not int or value < minimum:
        raise MetadataError(f"{key!r} must be an integer >= {minimum}, got {value!r}", path=path)
    return value


class _Maps:
    """What an open version 1 shard reads from (its byte sources, data.bin's bytes, the index), rebound as a
    whole (threads read one consistent snapshot, and releasing it while another thread reads leaves that
    thread its own references)."""

    __slots__ = ("gen", "sources", "data", "index")

    def __init__(self, gen: int = -1, sources: Any = None, data: Any = None, index: Any = None) -> None:
        self.gen, self.sources, self.data, self.index = gen, sources, data, index


_CLOSED = _Maps()


class V1Shard(ProcessLocalState):
    """One version 1 shard folder. Files are checked at construction, mapped lazily, released when the
    dataset's open-shard LRU (``opened``) needs room, and reopened after that, after fork or unpickling."""

    _PROCESS_LOCAL = ("_m", "_layout", "_tls", "_framing")
    _CLOSED = _CLOSED

    version = 1
    decodes_blocks = True  # every read decodes (and unpickles) its whole block

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
        self._dict_source: Location | RemoteLocation | None = None
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
        self._framing = V1ListFraming(self)  # its cached block list is read in place, as the original does

    def _open(self) -> _Maps:
        """Open, check and map index.npy and data.bin (V1-INDEX-*), and join the dataset's open shards. Files
        checked in this process and unchanged since (same identity) are mapped again without the checks."""
        index_path = self.path / V1_INDEX_FILE
        index_source = MappedFile(self.location / V1_INDEX_FILE, limit=self.limits.max_index_size, shard=self.label,
                                  mapped=self.mmap_index)
        index_id = index_source.identity
        dtype, start = self._layout[1:] if self._layout[0][:1] == (index_id,) else self._index_layout(index_source,
                                                                                                     index_path)
        raw = index_source.read(0, index_source.size)
        index: np.ndarray[Any, Any] = np.frombuffer(raw, dtype=dtype, count=self.num_blocks + 1, offset=start)
        if self.num_blocks == 0:
            maps = _Maps(fork_generation(), [index_source], None, index)
            if int(index[0]) != 0:
                raise FormatError("the index of an empty shard must be [0]", path=index_path, shard=self.label)
            ids: tuple[Any, ...] = (index_id,)
        else:
            data_source = MappedFile(self.location / DATA_FILE, limit=self.limits.max_data_size, shard=self.label)
            ids = (index_id, data_source.identity)
            maps = _Maps(fork_generation(), [index_source, data_source], data_source, index)
            if ids != self._layout[0]:
                self._check_offsets(index, data_source.size, index_path)
        self._layout = (ids, dtype, start)
        if self._dict_bytes is None and self._dict_source is not None:
            self._dict_bytes = read_dictionary(self._dict_source, None, self.limits, self.label)
        return self._finish_open(maps, zstd=self.strategy != CompressionStrategy.NO_COMPRESSION)

    def _index_layout(self, f: ByteSource, index_path: Path) -> tuple[np.dtype[Any], int]:
        """(dtype, data offset) of index.npy: its npy header parsed as a literal and checked against the
        shard's block count and the file size before the entries are mapped or read. What the original reads
        through np.load is read (either byte order, a signed type, npy 2.0/3.0, bytes after the array:
        V1-INDEX-2), though writers write only unsigned little-endian 1.0 files."""
        header = parse(npy.NpyHeader, bytes(f.read(0, min(4096, f.size))), path=index_path)
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

    def count(self, b: int) -> int:
        """Examples in block ``b``."""
        return self.block_count(b)

    def where(self, b: int) -> dict[str, Any]:
        maps = self._m if self._m.gen == fork_generation() else self._open()
        return {"path": self.path / DATA_FILE, "shard": self.label, "block": b, "offset": int(maps.index[b])}

    def decode_frame(self, frame: Any, b: int, pos: int, limit: int) -> bytes:
        raise NotImplementedError("version 1 blocks are one frame each")

    def read_block(self, b: int) -> list[Any]:
        """The decoded, unpickled list of examples of block ``b``."""
        return self._block(b).data  # type: ignore[no-any-return]

    def _block(self, b: int) -> CachedBlock:
        """Block ``b`` (its unpickled list) from the dataset's cache, or read, decoded, unpickled and kept."""
        blk = self.cache.block(self.label, b)
        if blk is not None:
            return blk
        maps = self._m if self._m.gen == fork_generation() else self._open()
        start, end = int(maps.index[b]), int(maps.index[b + 1])
        raw: Any = maps.data.read(start, end - start)
        where = self.where(b)
        if self.strategy != CompressionStrategy.NO_COMPRESSION:
            try:
                raw = decode(_ZSTD, raw, self._dctx(), limits=self.limits)
            except AtlasError as exc:
                raise exc.relocated(**where) from None
        size = len(raw)  # the decoded pickle: what the cache's byte budget counts for the list
        examples = unpickle_list_block(self.loads, raw, self.block_count(b), where, b * self.block_size)
        return self.cache.keep(CachedBlock(self.label, b, b * self.block_size, len(examples), examples, size))

    def _dctx(self) -> zstandard.ZstdDecompressor:
        dctx = getattr(self._tls, "dctx", None)
        if dctx is None:
            dctx = self._tls.dctx = self._new_dctx()
        return dctx

    def get(self, i: int) -> Any:
        """Example ``i`` of this shard (0 <= i < len, checked by the caller)."""
        b, pos = divmod(i, self.block_size)
        return self._framing.example(self._block(b), pos)

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
                stored = maps.data.read(start, int(maps.index[b + 1]) - start)
                total += check_declared_size(_ZSTD, stored, None, self.limits)
            except AtlasError as exc:
                raise type(exc)(exc.message, path=self.path / DATA_FILE, shard=self.label, block=b,
                                offset=start) from None
        return total

    def get_many(self, b: int, positions: list[int]) -> list[Any]:
        return self._framing.examples(self._block(b), positions)

    def iter_block(self, b: int) -> list[Any]:
        return self._framing.all(self._block(b))
