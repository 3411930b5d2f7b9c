"""Reading one version 2 shard: checksummed metadata, a fixed-size index, checksummed blocks.

The read path is one: ``_block(b)`` finds block ``b`` in the dataset's cache (block_cache.py) or
reads it from the shard's ``ByteSource`` (byte_source.py: the stored bytes, checksummed the first
time this process reads them), decodes it with one call through the codec registry
(``atlas_format.codecs.decode``) unless it is read where it is stored (codec none, zero-copy; framing
"example", whose frames are decoded one by one), and the shard's framing strategy (framing.py) cuts
out ``example(pos)``, ``examples(positions)`` or ``all()``. Lookups are O(1): entry ``b`` of
index.bin is a row of a view over the index bytes (index_v2_reader.py). Files are checked at
construction, and mapped while the dataset's open-shard LRU keeps the shard open.
"""

from __future__ import annotations

import pickle
import threading
from typing import Any

import numpy as np
import xxhash
import zstandard

from atlas_format import typed
from atlas_format.block_v2 import table_size
from atlas_format.checksum import XXH3_64
from atlas_format.codecs import FRAMES_MAX, codec_info, decode, decode_frames
from atlas_format.constants import (
    DATA_FILE,
    DEFAULT_LIMITS,
    DICT_FILE,
    META_FILE,
    V2_INDEX_FILE,
    Limits,
)
from atlas_format.enums import Codec, DictionaryMode, Framing, v2_to_strategy
from atlas_format.files import Location
from atlas_format.grouped import FRAME_GROUP
from atlas_format.index_v2 import DICTIONARY_MODE_IDS, shard_flags
from atlas_format.remote import RemoteLocation

from ._util import _FORK_GENERATION, fork_generation, shared_dictionary, zstd_decompressor
from .block_cache import BlockCache, CachedBlock
from .byte_source import ByteSource, open_source
from .errors import (
    AtlasError,
    ChecksumError,
    CodecError,
    FormatError,
    LimitError,
    MetadataError,
    MissingShardError,
)
from .framing import MISS, BlockFraming, ExampleFraming, ListFraming
from .framing import Framing as FramingStrategy
from .framing_grouped import GroupedFraming, read_group, read_preamble
from .framing_grouped_typed import TypedGroupedFraming
from .index_v2_reader import check_index, entries_view
from .local_cache import LocalBlockCache
from .metadata import AtlasDatasetShardMetadata
from .safe_pickle import Loads
from .shard_files import check_v2_shard_meta, read_dictionary, read_v2_meta
from .shard_state import OpenShards, ProcessLocalState
from .typed_codec import TypedDecoder

_xxh3 = xxhash.xxh3_64_intdigest

#: Shards with at most this many blocks copy their index columns into Python lists (fast
#: lookups, ~150 bytes per block); larger shards index numpy views of the mmap directly.
LIST_INDEX_MAX_BLOCKS = 1 << 16


class _Maps:
    """What an open version 2 shard reads from, rebound as a whole: a read takes one snapshot, so a thread
    never mixes two openings, and one that reads while the shard is released keeps its own references."""

    __slots__ = ("gen", "sources", "data", "offsets", "stored", "raw", "checksums")

    def __init__(self, gen: int = -1, sources: tuple[ByteSource, ...] = (), data: ByteSource | None = None,
                 offsets: Any = None, stored: Any = None, raw: Any = None, checksums: Any = None) -> None:
        self.gen, self.sources, self.data = gen, sources, data
        self.offsets, self.stored, self.raw, self.checksums = offsets, stored, raw, checksums


_CLOSED = _Maps()


class V2Shard(ProcessLocalState):
    """One version 2 shard folder. Files are checked at construction, mapped lazily, released when the
    dataset's open-shard LRU (``opened``) needs room, and reopened after that, after fork or unpickling."""

    _PROCESS_LOCAL = ("_m", "_verified", "_data_id", "_index_layout", "_tls", "_info", "_framing")
    _CLOSED = _CLOSED

    version = 2
    #: the shard example read last (``get``: a read right after it is read in order)
    _previous = -2

    def __init__(self, location: Location | RemoteLocation, *, mmap_index: bool = True,
                 shared_dict_bytes: bytes | None = None,
                 verify_checksums: bool = True, limits: Limits = DEFAULT_LIMITS, loads: Loads = pickle.loads,
                 cache: BlockCache | None = None, opened: OpenShards | None = None,
                 expected: dict[str, Any] | None = None, label: str | None = None,
                 shared_dict_record: dict[str, Any] | None = None, local_cache: LocalBlockCache | None = None) -> None:
        self.location = location
        self.path = location.path
        self.mmap_index = mmap_index
        self.verify_checksums = verify_checksums
        #: a shard behind a URL: where its verified stored blocks are kept on local disk (None: not kept)
        self.local_cache = local_cache if isinstance(location, RemoteLocation) else None
        self.limits = limits
        self.cache = cache if cache is not None else BlockCache(1)
        self.opened = opened if opened is not None else OpenShards(1)
        meta_path = self.path / META_FILE
        doc, meta_text = read_v2_meta(location / META_FILE, "v2-shard", limits, shard=label)
        self.meta = doc
        self.meta_checksum = meta_text
        self.label = label if label is not None else doc["shard"]
        self.codec = Codec.from_label(doc["codec"])
        self.dictionary = doc["dictionary"]
        try:
            self.framing = Framing.from_meta(doc)
        except ValueError:
            raise MetadataError(f"unknown framing {doc.get('framing')!r} (this reader knows block, example, list, "
                                "grouped)",
                                path=meta_path, shard=self.label) from None
        self.block_size = doc["block_size"]
        self.num_examples = doc["num_examples"]
        self.num_blocks = doc["num_blocks"]
        self.data_size = doc["data_size"]
        self.dict_id = doc["dict_id"]
        self.max_block_raw_size = doc["max_block_raw_size"]
        where: dict[str, Any] = {"path": meta_path, "shard": self.label}
        #: "pickle" or "typed" (spec 3.12): typed examples are decoded by msgspec, never unpickled (``_reset``)
        self.encoding = typed.encoding_of_meta(doc)  # the schema checked it
        self.use_loads(loads)
        check_v2_shard_meta(doc, meta_text, self.codec, self.framing.value, self.encoding, limits, expected, where)
        self._grouped = self.framing is Framing.GROUPED
        #: framing grouped: the shard's pickle preamble (V2-FRAME-7), checked here
        self.preamble = read_preamble(doc, limits, where) if self._grouped and self.encoding == typed.PICKLE else b""
        #: framing grouped: examples per group (meta.json's group_size, V2-FRAME-6)
        self.group = read_group(doc, where) if self._grouped else FRAME_GROUP
        #: the index flags meta.json implies (V2-INDEX-1): the framing's bit, grouped's group size, typed's bit
        self._flags = shard_flags(self.framing, self.group, self.encoding)
        self._dict_bytes: bytes | None = None
        # Where the dictionary is read again in another process: (file, metadata record or None);
        # None when the caller handed the bytes over (they then travel with the pickled shard).
        self._dict_source: tuple[Location | RemoteLocation, dict[str, Any] | None] | None = None
        if self.dictionary == "shard":
            if doc["dictionary_file"] is None:
                raise MetadataError("dictionary mode 'shard' without dictionary_file", **where)
            if doc["dictionary_file"]["dict_id"] != self.dict_id:
                raise MetadataError("dictionary_file.dict_id differs from dict_id", **where)
            self._dict_source = (location / DICT_FILE, doc["dictionary_file"])
            self._dict_bytes = self._read_dictionary()
        elif self.dictionary == "shared":
            if shared_dict_bytes is None:
                self._dict_source = (shared_dictionary(location), shared_dict_record)
                self._dict_bytes = self._read_dictionary()
            else:
                self._dict_bytes = bytes(shared_dict_bytes)
                self._check_dict_id(self._dict_bytes)
        elif self.dict_id != 0:
            raise MetadataError("dict_id must be 0 without a dictionary", **where)
        self._last_block = self.num_blocks - 1
        self._base = table_size(self.block_size)  # where a full block's payload starts (block_v2.Block)
        self._last_count = self.num_examples - self._last_block * self.block_size if self.num_blocks else 0
        # A block is decoded as a whole by its codec (framings block and list), or read where it is stored:
        # codec none (its decoded bytes are the stored ones) and framing example (each frame on its own).
        # Framing grouped reads its stored blocks (views kept in the cache) and decodes the frames it needs.
        self._decodes = self.codec != Codec.NONE and self.framing not in (Framing.EXAMPLE, Framing.GROUPED)
        #: whether a read's blocks are views of this shard's maps (dropped from the cache on release)
        self.views_of_maps = not self._decodes
        #: whether a read decodes or unpickles its whole block (worth grouping a batch's indices per block)
        self.decodes_blocks = self._decodes or self.framing in (Framing.LIST, Framing.GROUPED)
        #: whether a random read takes one example where its block is stored (``get``)
        self._in_place = not self.decodes_blocks
        self.metadata = AtlasDatasetShardMetadata(2, self.block_size, self.num_examples,
                                                  v2_to_strategy(self.codec, DictionaryMode(self.dictionary)),
                                                  doc["compression_level"], None)
        self._reset()
        self._open()

    def _check_dict_id(self, data: bytes) -> None:
        path = self._dict_source[0].path if self._dict_source else None
        try:
            dict_id = zstandard.ZstdCompressionDict(data).dict_id()
        except zstandard.ZstdError as exc:
            raise FormatError(f"not a zstd dictionary: {exc}", path=path, shard=self.label) from None
        if dict_id != self.dict_id:
            raise FormatError(f"the dictionary's id {dict_id} differs from the shard's dict_id {self.dict_id}",
                              path=path, shard=self.label)

    def _read_dictionary(self) -> bytes:
        if self._dict_source is None:
            raise MissingShardError("no dictionary source", path=self.path, shard=self.label)
        path, record = self._dict_source
        data = read_dictionary(path, record, self.limits, self.label)
        self._check_dict_id(data)
        return data

    # -- lazy per-process state -----------------------------------------------------

    def use_loads(self, loads: Loads) -> None:
        """Pickled examples load with ``loads``; typed ones are decoded, never unpickled (spec 3.12)."""
        self.loads = TypedDecoder().decode if self.encoding == typed.TYPED else loads

    def _reset(self) -> None:
        self._m = _CLOSED
        self._verified = bytearray()
        self._keep_verified = 1
        self._fetched: dict[int, Any] = {}  # stored blocks a batch fetched ahead (prefetch), read once each
        self._data_id: tuple[Any, ...] = ()  # data.bin's identity when _verified was filled
        # (identity, header_size, entry_size) of the index.bin checked in this process: reopening the
        # same file only rebuilds the view of its entries
        self._index_layout: tuple[tuple[Any, ...], int, int] = ((), 0, 0)
        self._tls = threading.local()  # one zstd decompressor per thread (they are not thread-safe)
        self._tls_gen = -1  # the fork generation _tls belongs to
        self._info = codec_info(self.codec, magicless=self._grouped)
        self._zstd = self.codec == Codec.ZSTD  # a decompressor context per thread (with the dictionary)
        self._stored_frames = self.codec == Codec.NONE  # frames are used as stored (framing grouped)
        self._framing: FramingStrategy = (
            ExampleFraming(self) if self.framing is Framing.EXAMPLE
            else ListFraming(self) if self.framing is Framing.LIST
            else BlockFraming(self) if not self._grouped
            else TypedGroupedFraming(self, self.group) if self.encoding == typed.TYPED
            else GroupedFraming(self, self.preamble, self.group))

    def decoded_bytes(self) -> int:
        """The decoded size of the shard's blocks, from its checked index (atlas-ds info: no block is decoded)."""
        return int(np.asarray(self._maps().raw, dtype=np.uint64).sum())

    def _maps(self) -> _Maps:
        """This process's maps, opened again if the shard was released or the process forked."""
        maps = self._m
        return maps if maps.gen == _FORK_GENERATION[0] else self._open()

    def _open(self) -> _Maps:
        """Open, check and map index.bin and data.bin (V2-INDEX-*), and join the dataset's open shards."""
        index_path = self.path / V2_INDEX_FILE
        where: dict[str, Any] = {"path": index_path, "shard": self.label}
        index_source = open_source(self.location / V2_INDEX_FILE, limit=self.limits.max_index_size,
                                  shard=self.label, mapped=self.mmap_index)
        size = index_source.size
        if size != self.meta["index"]["size"]:
            raise FormatError(f"index.bin is {size} bytes, meta.json says {self.meta['index']['size']}", **where)
        index = index_source.read(0, size)
        layout = self._index_layout
        if layout[0] == index_source.identity:
            entries = entries_view(index, layout[1], layout[2], self.num_blocks)
        else:
            expected = {"codec": int(self.codec), "dictionary": DICTIONARY_MODE_IDS[self.dictionary],
                        "block_size": self.block_size, "block_count": self.num_blocks,
                        "example_count": self.num_examples, "data_size": self.data_size, "dict_id": self.dict_id}
            entries, header_size, entry_size = check_index(
                index, size, flags=self._flags, expected=expected,
                meta_checksum=self.meta["index"]["checksum"], max_block_raw_size=self.max_block_raw_size,
                # grouped blocks of > 32 examples store frame starts besides the frames (checked per block)
                identity_codec=self.codec == Codec.NONE and not self._grouped, limits=self.limits, where=where)
            self._index_layout = (index_source.identity, header_size, entry_size)
        data = open_source(self.location / DATA_FILE, limit=self.limits.max_data_size, shard=self.label)
        if data.size != self.data_size:
            raise FormatError(f"data.bin is {data.size} bytes, meta.json says {self.data_size}",
                              path=self.path / DATA_FILE, shard=self.label)
        columns = entries["offset"], entries["stored_size"], entries["raw_size"], entries["checksum"]
        if self.num_blocks <= LIST_INDEX_MAX_BLOCKS:
            # Plain Python lists: indexing them is several times faster than numpy scalars.
            columns = tuple(column.tolist() for column in columns)
        # large shards: O(1) lookups in numpy views of the (memory-mapped) index, nothing copied
        maps = _Maps(fork_generation(), (index_source, data), data, *columns)
        if len(self._verified) != self.num_blocks or data.identity != self._data_id:
            self._verified = bytearray(self.num_blocks)  # blocks verified in this process (the same file)
            self._data_id = data.identity
        # a block read from a store is verified each time it is fetched (the store may serve other bytes later)
        self._keep_verified = 1 if data.verified_once else 0
        if self._dict_bytes is None and self._dict_source is not None:
            self._dict_bytes = self._read_dictionary()
        return self._finish_open(maps, zstd=self.codec == Codec.ZSTD)

    def _new_dctx(self, max_window: int = 0) -> zstandard.ZstdDecompressor:
        dict_path = self._dict_source[0].path if self._dict_source is not None else self.path.parent / DICT_FILE
        return zstd_decompressor(self._dict_bytes, dict_path, self.label,  # type: ignore[no-any-return]
                                 magicless=self._grouped, max_window=max_window)

    def _dctx(self) -> zstandard.ZstdDecompressor | None:
        """This thread's zstd decompressor (with the shard's dictionary); None for the other codecs (asked
        first: a getattr that misses on the thread-local costs 0.3 us, as much as decoding a small frame)."""
        if not self._zstd:
            return None
        dctx = getattr(self._tls, "dctx", None)
        if dctx is None:
            dctx = self._tls.dctx = self._new_dctx()
        return dctx

    def close(self) -> None:
        """Release the memory maps and cached blocks now (maps reopen on the next read)."""
        self.cache.clear()
        self.opened.discard(self)
        self.release()

    # -- reading ----------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.num_examples)

    def count(self, b: int) -> int:
        """Examples in block ``b``."""
        return self.block_size if b != self._last_block else self._last_count

    block_count = count

    def where(self, b: int) -> dict[str, Any]:
        return {"path": self.path / DATA_FILE, "shard": self.label, "block": b,
                "offset": int(self._maps().offsets[b])}

    def _stored(self, b: int, maps: _Maps) -> Any:
        """Stored block ``b`` (a view of data.bin's source), its checksum verified the first time in this
        process (from a store: each time it is fetched; a verified one is kept in the local cache, if any)."""
        fetched = self._fetched.pop(b, None) if self._fetched else None
        local = self.local_cache
        if fetched is None and local is not None:
            fetched = local.get(self.label, b, int(maps.checksums[b]))
            if fetched is not None:
                return fetched  # verified against the index's checksum by the cache
        stored = fetched if fetched is not None else \
            maps.data.read(maps.offsets[b], maps.stored[b])  # type: ignore[union-attr]
        if self.verify_checksums and not self._verified[b]:
            actual = _xxh3(stored)
            if actual != maps.checksums[b]:
                raise ChecksumError(f"block checksum mismatch: index.bin says "
                                    f"{XXH3_64.text(int(maps.checksums[b]))}, "
                                    f"the stored bytes hash to {XXH3_64.text(actual)}", **self.where(b))
            self._verified[b] = self._keep_verified
            if local is not None:
                local.put(self.label, b, int(maps.checksums[b]), stored)
        return stored

    def decode_frame(self, frame: Any, b: int, pos: int | None, limit: int, size: int | None = None) -> Any:
        """One frame of block ``b`` decoded, at most ``limit`` bytes (exactly ``size`` when given): example
        ``pos``'s pickle (framing "example"), or a frame of examples (framing "grouped"; codec none: the
        frame as stored)."""
        try:
            if self._stored_frames:
                if size is not None and len(frame) != size:
                    raise CodecError(f"the block's frame is {len(frame)} bytes, index.bin says {size}")
                if len(frame) > limit:
                    raise LimitError(f"the block's frame is {len(frame)} bytes, above its raw_size ({limit})")
                return frame
            return decode(self._info, frame, self._dctx(), size=size, limit=limit, limits=self.limits)
        except AtlasError as exc:
            if pos is None:
                raise exc.relocated(**self.where(b)) from None
            raise exc.relocated(**self.where(b), position=pos, example=b * self.block_size + pos) from None

    def decode_frames(self, frames: Any, size: int) -> Any | None:
        """A grouped block's consecutive frames decoded into one buffer of ``size`` bytes in one call, or None
        (another codec, or what ``decode_frames`` refuses: a block above its bound, frames that fail; the caller
        then decodes them one by one, which names the fault). Its decompressor is this thread's second one,
        whose window is bounded."""
        if not self._zstd:
            return None
        dctx = getattr(self._tls, "frames_dctx", None)
        if dctx is None:
            dctx = self._tls.frames_dctx = self._new_dctx(FRAMES_MAX)
        try:
            return decode_frames(self._info, frames, dctx, size)
        except CodecError:
            return None

    def decoded_block(self, b: int) -> Any:
        """The decoded bytes of block ``b``: one codec call (codec none: the verified stored view)."""
        maps = self._m
        if maps.gen != _FORK_GENERATION[0]:
            maps = self._open()
        stored = self._stored(b, maps)
        if self._decodes:
            try:
                return decode(self._info, stored, self._dctx(), size=maps.raw[b], limits=self.limits)
            except AtlasError as exc:
                raise exc.relocated(**self.where(b)) from None
        if isinstance(self._framing, (ExampleFraming, GroupedFraming)):
            count = self.count(b)
            return self._framing.decoded(CachedBlock(self.label, b, b * self.block_size, count, stored, 0,
                                                     int(maps.raw[b]), table_size(count)))
        return stored

    def _block(self, b: int) -> CachedBlock:
        """Block ``b``: the block in hand, the dataset's cache, or a read (and decode) kept in the cache.

        Framing grouped keeps the stored view, and what reads of it decoded and unpickled (counted as its
        decoded size); ``last_pos`` tells the framing how it is read: -1 when the block read last was the one
        before (in order), -2 when it was another (a random read)."""
        cache = self.cache
        last = cache.last
        label = self.label
        if last.b == b and last.label == label:
            return last
        count = self.block_size if b != self._last_block else self._last_count
        if self._grouped:
            blk: CachedBlock | None = cache.get((label, b))
            if blk is None:
                maps = self._m
                if maps.gen != _FORK_GENERATION[0]:
                    maps = self._open()
                raw = int(maps.raw[b])
                blk = CachedBlock(label, b, b * self.block_size, count, self._stored(b, maps), raw, raw)
                if last.b == b - 1 and last.label == label:
                    blk.last_pos = -1
                return cache.keep(blk)
            blk.last_pos = -1 if last.b == b - 1 and last.label == label else -2
            cache.last = blk
            return blk
        if self._decodes:
            blk = cache.get((label, b))
            if blk is None:
                data = self.decoded_block(b)
                return cache.keep(CachedBlock(label, b, b * self.block_size, count, data, len(data), -1,
                                              self._base if b != self._last_block else table_size(count)))
            cache.last = blk
            return blk
        # read where it is stored: nothing to keep beyond the block in hand (and the maps stay closable)
        maps = self._m
        if maps.gen != _FORK_GENERATION[0]:
            maps = self._open()
        data = self._stored(b, maps)
        cache.last = blk = CachedBlock(label, b, b * self.block_size, count, data, len(data), int(maps.raw[b]),
                                       self._base if b != self._last_block else table_size(count))
        return blk

    def get(self, i: int) -> Any:
        """Example ``i`` of this shard (0 <= i < len, checked by the caller)."""
        b, pos = divmod(i, self.block_size)
        if self._in_place and pos and i != self._previous + 1:
            # A random read of a block read where it is stored (codec none, framing example): no block
            # object, whose work a random read never reuses (RESULTS-read-paths.md). A block's first
            # example and a read that follows the one before go through the block, as reads in order do:
            # it then checks its table once (and framing block unpickles the rest of it at once).
            self._previous = i
            maps = self._m
            if maps.gen != _FORK_GENERATION[0]:
                maps = self._open()
            last = b == self._last_block
            count = self._last_count if last else self.block_size
            value = self._framing.stored_example(self._stored(b, maps), b, count,
                                                 table_size(count) if last else self._base, int(maps.raw[b]), pos)
            if value is not MISS:
                return value
        self._previous = i
        return self._framing.example(self._block(b), pos)

    def prefetch(self, blocks: list[int]) -> None:
        """Fetch the stored blocks a batch reads with one merged, concurrent request when the shard is behind a
        URL (a mapped shard reads in place); each is verified when it is read (``_stored``)."""
        maps = self._maps()
        if maps.data.verified_once or len(blocks) < 2:  # type: ignore[union-attr]
            return
        wanted = sorted({b for b in blocks if self.cache.get((self.label, b)) is None})
        if self.local_cache is not None:  # blocks on local disk are read from there (_stored)
            wanted = [b for b in wanted if not self.local_cache.has(self.label, b, int(maps.checksums[b]))]
        ranges = [(int(maps.offsets[b]), int(maps.stored[b])) for b in wanted]
        self._fetched = dict(zip(wanted, maps.data.read_many(ranges), strict=True))  # type: ignore[union-attr]

    def get_many(self, b: int, positions: list[int]) -> list[Any]:
        """Examples at ``positions`` of block ``b``, reading and decoding the block (or their frames) once."""
        return self._framing.examples(self._block(b), positions)

    def iter_block(self, b: int) -> list[Any]:
        """Every example of block ``b`` in order (the block decoded once, its table checked once)."""
        return self._framing.all(self._block(b))
