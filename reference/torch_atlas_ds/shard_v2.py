"""Reading one version 2 shard: checksummed metadata, a fixed-size index, checksummed blocks.

The hot path is O(1): entry ``b`` of index.bin is a row of a numpy view over the
(memory-mapped) file; a block is checksummed the first time this process reads it
(a bytearray remembers which blocks were verified); one example is unpickled from
its slice of the decoded block without touching its neighbours, and with codec
"none" straight out of the mmap of data.bin (zero-copy). With framing "example" the
stored block's table is read in place and only the example's own frame is decoded.
With framing "list" a block is one pickled list, unpickled whole and handed out one
example at a time (each example object once). Files are opened through
``atlas_format.files`` (regular files only, no symlink followed, never blocking), checked
at construction, and mapped while the dataset's open-shard LRU keeps the shard open.
"""

from __future__ import annotations

import math
import operator
import pickle
import struct
import threading
from pathlib import Path
from typing import Any

import lz4.frame
import numpy as np
import xxhash
import zstandard

from atlas_format.binary import parse
from atlas_format.block_v2 import U32, U32_PAIR, encode_block, table_size
from atlas_format.checksum import XXH3_64
from atlas_format.codecs import check_declared_size, codec_info
from atlas_format.constants import (
    DATA_FILE,
    DEFAULT_LIMITS,
    DICT_FILE,
    META_FILE,
    V2_INDEX_ENTRY_SIZE,
    V2_INDEX_FILE,
    V2_INDEX_HEADER_SIZE,
    Limits,
)
from atlas_format.enums import KNOWN_INDEX_FLAGS, Codec, Framing, v2_to_strategy
from atlas_format.files import Location, open_regular, read_regular
from atlas_format.index_v2 import DICTIONARY_MODE_IDS, INDEX_ENTRY_DTYPE, IndexHeader, compute_index_checksum
from atlas_format.lz4_frame import declared_content_size as lz4_declared_size
from atlas_format.metadata import file_checksum_text, validate_schema, verify_checksummed_json

from ._util import (
    _FORK_GENERATION,
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
    ChecksumError,
    CodecError,
    FormatError,
    LimitError,
    MetadataError,
    MissingShardError,
    VersionError,
)
from .metadata import AtlasDatasetShardMetadata
from .safe_pickle import Loads
from .shard_v1 import check_version, read_json_file, unpickle_list_block

_xxh3 = xxhash.xxh3_64_intdigest
_TAKEN = object()  # an example of the memoized block already handed out

#: Shards with at most this many blocks copy their index columns into Python lists (fast
#: lookups, ~150 bytes per block); larger shards index numpy views of the mmap directly.
LIST_INDEX_MAX_BLOCKS = 1 << 16


def _entry_dtype(entry_size: int) -> np.dtype[Any]:
    """The entry layout, widened to ``entry_size`` bytes (readers skip entry extensions)."""
    if entry_size == V2_INDEX_ENTRY_SIZE:
        return INDEX_ENTRY_DTYPE
    fields: dict[str, Any] = dict(INDEX_ENTRY_DTYPE.fields or {})
    return np.dtype({"names": list(fields), "formats": [fields[n][0] for n in fields],
                     "offsets": [fields[n][1] for n in fields], "itemsize": entry_size})


def load_dictionary(location: Location, expected: dict[str, Any], limits: Limits, shard: str | None = None) -> bytes:
    """A dictionary file checked against its metadata record (size, checksum, dict_id)."""
    data = read_regular(location, limit=limits.max_dictionary_size, what="zstd dictionary named by the metadata",
                        shard=shard)
    _check_dictionary(data, location.path, expected, shard)
    return data


def _check_dictionary(data: bytes, path: Path, expected: dict[str, Any], shard: str | None) -> None:
    if len(data) != expected["size"]:
        raise FormatError(f"dictionary is {len(data)} bytes, metadata says {expected['size']}", path=path,
                          shard=shard)
    text = file_checksum_text(data)
    if text != expected["checksum"]:
        raise ChecksumError(f"dictionary checksum mismatch: metadata says {expected['checksum']}, file hashes "
                            f"to {text}", path=path, shard=shard)
    try:
        dict_id = zstandard.ZstdCompressionDict(data).dict_id()
    except zstandard.ZstdError as exc:
        raise FormatError(f"not a zstd dictionary: {exc}", path=path, shard=shard) from None
    if dict_id != expected["dict_id"]:
        raise FormatError(f"dictionary id {dict_id}, metadata says {expected['dict_id']}", path=path, shard=shard)


# Dictionaries read in this process, shared by every shard that uses one (and dropped from
# pickled readers: workers read them again, once). Keyed so that a changed file is re-read.
_DICTIONARIES: dict[tuple[Any, ...], bytes] = {}


def read_dictionary(location: Location, expected: dict[str, Any] | None, limits: Limits,
                    shard: str | None = None) -> bytes:
    """A dictionary file, verified against ``expected`` (its metadata record) when given; memoized per process."""
    with open_regular(location, limit=limits.max_dictionary_size, what="the zstd dictionary this shard uses",
                      shard=shard) as f:
        st = f.status
        key = (str(location), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
               None if expected is None else expected["checksum"])
        data = _DICTIONARIES.get(key)
        if data is None:
            data = f.read()
            if expected is not None:
                _check_dictionary(data, location.path, expected, shard)
            if len(_DICTIONARIES) >= 8:
                _DICTIONARIES.clear()
            _DICTIONARIES[key] = data
    return data


def read_v2_meta(location: Location, schema: str, limits: Limits, shard: str | None = None
                 ) -> tuple[dict[str, Any], str]:
    """A version 2 meta.json: version, codec, checksum and schema checked; returns (doc, checksum text)."""
    data, doc = read_json_file(location, limits, shard=shard)
    path = location.path
    if check_version(doc, path) != 2:
        raise VersionError("expected version 2 metadata here", path=path)
    codec_label = doc.get("codec")
    if not isinstance(codec_label, str):
        raise MetadataError(f"codec must be a string, got {codec_label!r}", path=path)
    try:
        codec_info(codec_label)
    except CodecError as exc:
        raise CodecError(exc.message, path=path) from None
    text = verify_checksummed_json(data, path=path)
    validate_schema(doc, schema, path=path)
    return doc, text


class _Maps:
    """What an open version 2 shard maps and indexes, rebound as a whole: a read takes one snapshot, so
    a thread never mixes two openings, and one that reads while the shard is released keeps its own
    references (the maps go when its read ends)."""

    __slots__ = ("gen", "mms", "data", "offsets", "stored", "raw", "checksums")

    def __init__(self, gen: int = -1, mms: tuple[Any, ...] = (), data: Any = None, offsets: Any = None,
                 stored: Any = None, raw: Any = None, checksums: Any = None) -> None:
        self.gen, self.mms, self.data = gen, mms, data
        self.offsets, self.stored, self.raw, self.checksums = offsets, stored, raw, checksums


_CLOSED = _Maps()
_NO_MEMO: tuple[int, Any, tuple[int, ...] | None, list[Any] | None] = (-1, None, None, None)


class V2Shard(ProcessLocalState):
    """One version 2 shard folder. Files are checked at construction, mapped lazily, released when the
    dataset's open-shard LRU (``opened``) needs room, and reopened after that, after fork or unpickling."""

    _PROCESS_LOCAL = ("_m", "_verified", "_data_id", "_index_layout", "_tls", "_memo", "_last_pos", "_info")
    _CLOSED = _CLOSED
    _NO_MEMO = _NO_MEMO

    version = 2

    def __init__(self, location: Location, *, mmap_index: bool = True, shared_dict_bytes: bytes | None = None,
                 verify_checksums: bool = True, limits: Limits = DEFAULT_LIMITS, loads: Loads = pickle.loads,
                 cache: BlockCache | None = None, opened: OpenShards | None = None,
                 expected: dict[str, Any] | None = None, label: str | None = None,
                 shared_dict_record: dict[str, Any] | None = None) -> None:
        self.location = location
        self.path = location.path
        self.mmap_index = mmap_index
        self.verify_checksums = verify_checksums
        self.limits = limits
        self.loads = loads
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
            raise MetadataError(f"unknown framing {doc.get('framing')!r} (this reader knows block, example, list)",
                                path=meta_path, shard=self.label) from None
        self.block_size = doc["block_size"]
        self.num_examples = doc["num_examples"]
        self.num_blocks = doc["num_blocks"]
        self.data_size = doc["data_size"]
        self.dict_id = doc["dict_id"]
        self.max_block_raw_size = doc["max_block_raw_size"]
        where: dict[str, Any] = {"path": meta_path, "shard": self.label}
        if self.num_blocks != math.ceil(self.num_examples / self.block_size):
            raise MetadataError(f"num_blocks {self.num_blocks} does not match {self.num_examples} examples in "
                                f"blocks of {self.block_size}", **where)
        if self.num_examples > limits.max_examples_per_shard or self.block_size > limits.max_examples_per_block:
            raise LimitError("num_examples or block_size above the limits", **where)
        if self.max_block_raw_size > limits.max_block_raw_size or self.data_size > limits.max_data_size:
            raise LimitError("max_block_raw_size or data_size above the limits", **where)
        if self.codec == Codec.NONE and self.dictionary != "none":
            raise MetadataError("codec none cannot use a dictionary", **where)
        if self.codec == Codec.LZ4 and self.dictionary != "none":
            raise MetadataError("codec lz4 cannot use a zstd dictionary", **where)
        if self.codec == Codec.NONE and self.framing is Framing.EXAMPLE:
            raise MetadataError("framing 'example' needs a codec: codec none has no frames", **where)
        if expected is not None:
            for key, mine in (("num_examples", self.num_examples), ("num_blocks", self.num_blocks),
                              ("data_size", self.data_size), ("index_size", doc["index"]["size"]),
                              ("meta_checksum", meta_text), ("dictionary", self.dictionary),
                              ("framing", self.framing.value)):
                if expected.get(key) != mine:
                    raise MetadataError(f"root meta.json says {key} {expected.get(key)!r} for this shard, its "
                                        f"meta.json says {mine!r}", **where)
        self._dict_bytes: bytes | None = None
        # Where the dictionary is read again in another process: (file, metadata record or None);
        # None when the caller handed the bytes over (they then travel with the pickled shard).
        self._dict_source: tuple[Location, dict[str, Any] | None] | None = None
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
        self._example_frames = self.framing is Framing.EXAMPLE
        self._zstd = self.codec == Codec.ZSTD
        #: whether reads unpickle whole blocks into lists handed out once (framing "list")
        self.unpickles_lists = self.framing is Framing.LIST
        self._last_block = self.num_blocks - 1
        self._last_count = self.block_count(self._last_block) if self.num_blocks else 0
        #: whether a read decodes a whole block (worth grouping a batch's indices per block)
        self.decodes_blocks = (self.codec != Codec.NONE and not self._example_frames) or self.unpickles_lists
        self.metadata = AtlasDatasetShardMetadata(2, self.block_size, self.num_examples,
                                                  v2_to_strategy(self.codec, _mode(self.dictionary)),
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

    def _reset(self) -> None:
        self._m = _CLOSED
        self._verified = bytearray()
        self._data_id: tuple[int, ...] = ()  # data.bin's identity when _verified was filled
        # (identity, header_size, entry_size) of the index.bin checked in this process: reopening the
        # same file only rebuilds the view of its entries
        self._index_layout: tuple[tuple[int, ...], int, int] = ((), 0, 0)
        self._tls = threading.local()  # one zstd decompressor per thread (they are not thread-safe)
        self._tls_gen = -1  # the fork generation _tls belongs to
        # (block number, decoded block, offset table or None, the block's examples unpickled in one pass
        # or None): rebound as a whole, so threads never mix blocks
        self._memo = _NO_MEMO
        self._last_pos = -2  # the position of the last example get() returned (sequential detection)
        self._info = codec_info(self.codec)

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
        with open_regular(self.location / V2_INDEX_FILE, limit=self.limits.max_index_size, shard=self.label) as f:
            size = f.size
            if size != self.meta["index"]["size"]:
                raise FormatError(f"index.bin is {size} bytes, meta.json says {self.meta['index']['size']}",
                                  **where)
            index_mm, index = f.map() if self.mmap_index else (None, memoryview(f.read()))
            index_id = file_identity(f.status)
        layout = self._index_layout
        if layout[0] == index_id:
            entries = np.frombuffer(index, dtype=_entry_dtype(layout[2]), count=self.num_blocks, offset=layout[1])
        else:
            entries, header_size, entry_size = self._index_entries(index, size, where)
            self._index_layout = (index_id, header_size, entry_size)
        offsets, stored, raw = entries["offset"], entries["stored_size"], entries["raw_size"]
        data_path = self.path / DATA_FILE
        with open_regular(self.location / DATA_FILE, limit=self.limits.max_data_size, shard=self.label) as f:
            if f.size != self.data_size:
                raise FormatError(f"data.bin is {f.size} bytes, meta.json says {self.data_size}", path=data_path,
                                  shard=self.label)
            data_mm, data = f.map()
            data_id = file_identity(f.status)
        if self.num_blocks <= LIST_INDEX_MAX_BLOCKS:
            # Plain Python lists: indexing them is several times faster than numpy scalars.
            maps = _Maps(fork_generation(), (index_mm, data_mm), data, offsets.tolist(), stored.tolist(),
                         raw.tolist(), entries["checksum"].tolist())
        else:  # large shards: O(1) lookups in numpy views of the (memory-mapped) index, nothing copied
            maps = _Maps(fork_generation(), (index_mm, data_mm), data, offsets, stored, raw, entries["checksum"])
        if len(self._verified) != self.num_blocks or data_id != self._data_id:
            self._verified = bytearray(self.num_blocks)  # blocks verified in this process (the same file)
            self._data_id = data_id
        if self._dict_bytes is None and self._dict_source is not None:
            self._dict_bytes = self._read_dictionary()
        return self._finish_open(maps, zstd=self.codec == Codec.ZSTD)

    def _index_entries(self, index: Any, size: int, where: dict[str, Any]) -> tuple[np.ndarray[Any, Any], int, int]:
        """(entries, header_size, entry_size) of index.bin after its header, checksum and entries were checked
        against meta.json."""
        index_path = where["path"]
        header = parse(IndexHeader, index[:V2_INDEX_HEADER_SIZE], path=index_path)
        if header.format_version != 2:
            raise VersionError(f"index.bin format_version {header.format_version}", offset=8, **where)
        if header.header_size < V2_INDEX_HEADER_SIZE or header.entry_size < V2_INDEX_ENTRY_SIZE:
            raise FormatError("index.bin header_size < 64 or entry_size < 24", offset=10, **where)
        if header.flags & ~KNOWN_INDEX_FLAGS:
            raise FormatError(f"index.bin flags 0x{header.flags:02x} set bits this reader does not know", offset=17,
                              **where)
        if header.flags != self.framing.index_flags:
            raise FormatError(f"index.bin flags 0x{header.flags:02x} disagree with meta.json's framing "
                              f"{self.framing.value!r}", offset=17, **where)
        if header.checksum_algorithm != XXH3_64.id:
            raise FormatError(f"unknown checksum algorithm id {header.checksum_algorithm}", offset=16, **where)
        if size != header.header_size + header.block_count * header.entry_size:
            raise FormatError(f"index.bin is {size} bytes, its header describes "
                              f"{header.header_size + header.block_count * header.entry_size}", **where)
        actual = compute_index_checksum(index)
        if actual != header.checksum:
            raise ChecksumError(f"index.bin checksum mismatch: header says {XXH3_64.text(header.checksum)}, "
                                f"content hashes to {XXH3_64.text(actual)}", offset=56, **where)
        if XXH3_64.text(header.checksum) != self.meta["index"]["checksum"]:
            raise ChecksumError(f"index.bin checksum {XXH3_64.text(header.checksum)} differs from meta.json's "
                                f"{self.meta['index']['checksum']}", offset=56, **where)
        for field, want in (("codec", int(self.codec)), ("dictionary", DICTIONARY_MODE_IDS[self.dictionary]),
                            ("block_size", self.block_size), ("block_count", self.num_blocks),
                            ("example_count", self.num_examples), ("data_size", self.data_size),
                            ("dict_id", self.dict_id)):
            if header[field] != want:
                raise FormatError(f"index.bin header {field} is {header[field]}, meta.json says {want}", **where)
        entries = np.frombuffer(index, dtype=_entry_dtype(header.entry_size), count=header.block_count,
                                offset=header.header_size)
        offsets, stored, raw = entries["offset"], entries["stored_size"], entries["raw_size"]
        if self.num_blocks:
            ends = np.cumsum(stored, dtype=np.uint64)
            if int(offsets[0]) != 0 or not np.array_equal(offsets[1:], ends[:-1]) or int(ends[-1]) != self.data_size:
                raise FormatError("index entries must describe data.bin's blocks back to back from offset 0",
                                  **where)
            if int(raw.max()) > self.max_block_raw_size or int(stored.max()) > self.limits.max_block_stored_size:
                raise LimitError("a block's size exceeds max_block_raw_size or the limits", **where)
            if int(stored.min()) == 0:
                raise FormatError("an index entry has stored_size 0", **where)
            if self.codec == Codec.NONE and not np.array_equal(stored, raw):
                raise FormatError("codec none requires stored_size == raw_size", **where)
        return entries, header.header_size, header.entry_size

    def _new_dctx(self) -> zstandard.ZstdDecompressor:
        dict_path = self._dict_source[0].path if self._dict_source is not None else self.path.parent / DICT_FILE
        return zstd_decompressor(self._dict_bytes, dict_path, self.label)  # type: ignore[no-any-return]

    def close(self) -> None:
        """Release the memory maps and cached blocks now (maps reopen on the next read)."""
        self.cache.clear()
        self.opened.discard(self)
        self.release()

    # -- reading ----------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.num_examples)

    def block_count(self, b: int) -> int:
        return int(min(self.block_size, self.num_examples - b * self.block_size))

    def _where(self, b: int) -> dict[str, Any]:
        return {"path": self.path / DATA_FILE, "shard": self.label, "block": b,
                "offset": int(self._maps().offsets[b])}

    def _example(self, b: int, pos: int) -> dict[str, Any]:
        """Where example ``pos`` of block ``b`` is: the block, its position there, its number in the shard (the
        dataset adds its index in the dataset)."""
        return {**self._where(b), "position": pos, "example": b * self.block_size + pos}

    def _stored_block(self, b: int, maps: _Maps) -> memoryview:
        """Stored block ``b`` of ``maps`` (a view of data.bin), its checksum verified the first time in this
        process."""
        off = maps.offsets[b]
        stored: memoryview = maps.data[off:off + maps.stored[b]]
        if self.verify_checksums and not self._verified[b]:
            actual = _xxh3(stored)
            if actual != maps.checksums[b]:
                raise ChecksumError(f"block checksum mismatch: index.bin says "
                                    f"{XXH3_64.text(int(maps.checksums[b]))}, "
                                    f"the stored bytes hash to {XXH3_64.text(actual)}", **self._where(b))
            self._verified[b] = 1
        return stored

    def _frame_example(self, b: int, pos: int) -> Any:
        """Example ``pos`` of block ``b`` with framing "example": two offsets read from the stored
        table in place, one frame decoded, one unpickle (the random-read hot path, few calls)."""
        maps = self._m
        if maps.gen != _FORK_GENERATION[0]:
            maps = self._open()
        stored = self._stored_block(b, maps)
        count = self.block_size if b != self._last_block else self._last_count
        base = 8 + 4 * count
        if len(stored) >= base and U32.unpack_from(stored, 0)[0] == count:
            start, end = U32_PAIR.unpack_from(stored, 4 + 4 * pos)
            if start < end <= len(stored) - base:
                data = self._decode_frame(stored[base + start:base + end], b, pos, maps.raw[b])
                try:
                    return self.loads(data)
                except Exception as exc:  # noqa: BLE001 - any unpickling failure is corrupt data
                    raise self._load_error(exc, b, pos) from None
        return self._slice(stored, b, pos)  # raises the error that names what is wrong with the table

    def _decode_frame(self, frame: Any, b: int, pos: int, raw_size: int) -> bytes:
        """Example ``pos``'s pickle from its own frame (framing "example"): size checked before decoding
        (``raw_size``, block ``b``'s index entry, bounds what its frames may declare)."""
        limit = int(raw_size) - table_size(self.block_size if b != self._last_block else self._last_count)
        declared: int | None
        try:
            if self.codec == Codec.ZSTD:
                declared = zstandard.frame_content_size(frame)
                if 0 <= declared <= limit:
                    dctx = getattr(self._tls, "dctx", None)
                    if dctx is None:
                        dctx = self._tls.dctx = self._new_dctx()
                    data: bytes = dctx.decompress(frame)
            else:
                declared = lz4_declared_size(frame)
                if declared is not None and 0 <= declared <= limit:
                    data = lz4.frame.decompress(frame)
        except (zstandard.ZstdError, RuntimeError, ValueError) as exc:
            raise CodecError(f"{self.codec.label} cannot decode the example's frame: {exc}",
                             **self._example(b, pos)) from None
        if declared is None or declared < 0:
            raise CodecError(f"the example's {self.codec.label} frame does not declare its content size",
                             **self._example(b, pos))
        if declared > limit:
            raise LimitError(f"the example's frame declares {declared} bytes, more than the block's raw_size "
                             f"allows ({limit}); refused before allocating", **self._example(b, pos))
        if len(data) != declared:
            raise CodecError(f"the example's frame decodes to {len(data)} bytes, it declares {declared}",
                             **self._example(b, pos))
        return data

    def decoded_block(self, b: int) -> Any:
        """The decoded bytes of block ``b`` (for codec none a memoryview into the data.bin mmap)."""
        maps = self._maps()
        stored = self._stored_block(b, maps)
        if self.codec == Codec.NONE:
            return stored
        raw_size = int(maps.raw[b])
        if self.framing is Framing.EXAMPLE:
            table, base = self._table(stored, b), table_size(self.block_count(b))
            block = encode_block([self._decode_frame(stored[base + x:base + y], b, p, raw_size)
                                  for p, (x, y) in enumerate(zip(table, table[1:], strict=False))])
            if len(block) != raw_size:
                raise CodecError(f"block decodes to {len(block)} bytes, index.bin says {raw_size}", **self._where(b))
            return block
        decoded = self._decode_block_frame(stored, raw_size)
        if decoded is None:
            raise self._frame_error(stored, raw_size, b)
        return decoded

    def _decode_block_frame(self, stored: Any, raw_size: int) -> bytes | None:
        """The block one codec frame decodes to (framing block or list), or None when the frame is not
        what the index says: the declared size (read without a parse: C for zstd, two fields for LZ4)
        is checked against raw_size, itself within the limits, before anything is allocated."""
        try:
            if self._zstd:
                if zstandard.frame_content_size(stored) != raw_size:
                    return None
                dctx = getattr(self._tls, "dctx", None)
                if dctx is None:
                    dctx = self._tls.dctx = self._new_dctx()
                block: bytes = dctx.decompress(stored)
            else:
                if lz4_declared_size(stored) != raw_size:
                    return None
                block = lz4.frame.decompress(stored)
        except (zstandard.ZstdError, RuntimeError, ValueError):
            return None
        return block if len(block) == raw_size else None

    def _frame_error(self, stored: Any, raw_size: int, b: int) -> AtlasError:
        """The located error for a frame _decode_block_frame refused (the slow path: it decodes again)."""
        where = self._where(b)
        try:
            declared = zstandard.frame_content_size(stored) if self._zstd else lz4_declared_size(stored)
            if declared != raw_size:
                check_declared_size(self._info, stored, raw_size, self.limits)
                return CodecError(f"frame declares {declared} bytes, the index says {raw_size}", **where)
            dctx = getattr(self._tls, "dctx", None) or self._new_dctx() if self._zstd else None
            size = len(dctx.decompress(stored) if dctx is not None else lz4.frame.decompress(stored))
        except AtlasError as exc:
            return type(exc)(exc.message, **where)
        except (zstandard.ZstdError, RuntimeError, ValueError) as exc:
            return CodecError(f"{self.codec.label} cannot decode the block: {exc}", **where)
        return CodecError(f"block decodes to {size} bytes, index.bin says {raw_size}", **where)

    def _block(self, b: int) -> Any:
        """Decoded block ``b``: the last block read, the LRU, or a decode (codec none: the verified stored view)."""
        memo = self._memo
        maps = self._m
        if maps.gen != _FORK_GENERATION[0]:
            maps = self._open()
        elif memo[0] == b:
            return memo[1]
        block: Any
        if self.codec == Codec.NONE:
            block = self._stored_block(b, maps)
        else:
            key = (self.label, b)
            block = self.cache.get(key)
            if block is None:
                if not self._example_frames and (self._verified[b] or not self.verify_checksums):
                    # checksum already verified in this process: decode in one step, the full path on refusal
                    off = maps.offsets[b]
                    block = self._decode_block_frame(maps.data[off:off + maps.stored[b]], maps.raw[b])
                if block is None:
                    block = self.decoded_block(b)
                self.cache.put(key, block, len(block))
        self._memo = (b, block, None, None)
        return block

    def _slice(self, block: Any, b: int, pos: int) -> Any:
        """The pickle bytes of example ``pos``: two offsets read from the table, bounds checked (O(1))."""
        count = self.block_count(b)
        base = 8 + 4 * count
        if len(block) < base:
            raise FormatError(f"block of {len(block)} bytes is too short for the table of {count} examples",
                              **self._where(b))
        stored_count = U32.unpack_from(block, 0)[0]
        if stored_count != count:
            raise FormatError(f"block holds {stored_count} examples, expected {count}", **self._where(b))
        start, end = U32_PAIR.unpack_from(block, 4 + 4 * pos)
        if not start < end <= len(block) - base:
            raise FormatError(f"the example spans [{start}, {end}) outside the block payload", **self._example(b, pos))
        return block[base + start:base + end]

    def _table(self, block: Any, b: int) -> tuple[int, ...]:
        """The example offsets of a decoded block, checked once (count, bounds, monotonic)."""
        count = self.block_count(b)
        if len(block) < 8 + 4 * count:
            raise FormatError(f"block of {len(block)} bytes is too short for the table of {count} examples",
                              **self._where(b))
        if U32.unpack_from(block, 0)[0] != count:
            raise FormatError(f"block holds {U32.unpack_from(block, 0)[0]} examples, expected {count}",
                              **self._where(b))
        table = struct.unpack_from(f"<{count + 1}I", block, 4)
        payload = len(block) - 8 - 4 * count
        if table[0] != 0 or table[-1] != payload or not all(map(operator.lt, table, table[1:])):
            raise FormatError("block example offsets must start at 0, increase strictly and end at the payload size "
                              f"({payload})", **self._where(b))
        return table

    def _load(self, data: Any, b: int, pos: int) -> Any:
        try:
            return self.loads(data)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is corrupt data
            raise self._load_error(exc, b, pos) from None

    def _load_error(self, exc: Exception, b: int, pos: int) -> AtlasError:
        """The error for example ``pos`` of block ``b`` failing to unpickle, located."""
        if isinstance(exc, AtlasError):  # a refusal of safe loading: same type and rule, located here
            return exc.relocated(**self._example(b, pos))
        return FormatError(f"the example does not unpickle: {type(exc).__name__}: {exc}", **self._example(b, pos))

    def _unpickle_list(self, block: Any, b: int) -> list[Any]:
        """Framing "list": every example of block ``b``, one unpickle of the decoded block (V2-FRAME-5)."""
        return unpickle_list_block(self.loads, block, self.block_count(b), self._where(b), b * self.block_size)

    def _take(self, b: int, positions: Any) -> list[Any]:
        """Framing "list": examples at ``positions`` of block ``b``, each object handed out once.

        The unpickled block stays in the memo, so reading a block's examples in any order
        unpickles it once; an example asked for again gets a fresh unpickle of the block.
        """
        memo = self._memo
        block, values = (memo[1], memo[3]) if memo[0] == b and self._m.gen == _FORK_GENERATION[0] else (None, None)
        out: list[Any] = []
        for pos in positions:
            value = _TAKEN if values is None else values[pos]
            if value is _TAKEN:
                if block is None:
                    block = self._block(b)
                values = self._unpickle_list(block, b)
                value = values[pos]
            values[pos] = _TAKEN  # type: ignore[index]
            out.append(value)
        self._memo = (b, block, None, values)
        return out

    def _load_spans(self, data: Any, base: int, spans: Any, positions: Any, b: int) -> list[Any]:
        """Unpickle ``data[base + start:base + end]`` for each (start, end) of ``spans`` (one loop, no calls
        per example but the unpickler's); ``positions`` name the examples in errors."""
        loads = self.loads
        out: list[Any] = []
        append = out.append
        try:
            for start, end in spans:
                append(loads(data[base + start:base + end]))
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is corrupt data
            raise self._load_error(exc, b, positions[len(out)]) from None
        return out

    def get(self, i: int) -> Any:
        """Example ``i`` of this shard (0 <= i < len, checked by the caller)."""
        b, pos = divmod(i, self.block_size)
        if self._example_frames:
            return self._frame_example(b, pos)
        if self.unpickles_lists:  # in-order reads are served by the dataset's run of the block (dataset.py)
            return self._take(b, (pos,))[0]
        memo = self._memo
        if memo[0] == b and self._m.gen == _FORK_GENERATION[0]:
            # Reads within one block. A sequential step (example pos right after the last one read,
            # as `for i in range(len(ds))` does) unpickles the rest of the block in one pass, as
            # version 1 does; each example unpickled so is handed out once, so a repeated ds[i]
            # still gets a fresh object. Reads in any other order never trigger it.
            _, block, table, values = memo
            if values is not None:
                value = values[pos]
                if value is not _TAKEN:
                    values[pos] = _TAKEN
                    self._last_pos = pos
                    return value
            if table is None:
                table = self._table(block, b)
                self._memo = (b, block, table, values)
            count = len(table) - 1
            if values is None and pos == self._last_pos + 1 and pos + 1 < count:
                try:
                    rest = self._load_spans(block, table_size(count), zip(table[pos:], table[pos + 1:], strict=False),
                                            range(pos, count), b)
                except AtlasError:  # one bad example: read one by one, so only its own read raises
                    rest = None
                if rest is not None:
                    values = [_TAKEN] * (pos + 1) + rest[1:]
                    self._memo = (b, block, table, values)
                    self._last_pos = pos
                    return rest[0]
            self._last_pos = pos
            base = 8 + 4 * (len(table) - 1)
            try:
                return self.loads(block[base + table[pos]:base + table[pos + 1]])
            except Exception as exc:  # noqa: BLE001 - any unpickling failure is corrupt data
                raise self._load_error(exc, b, pos) from None
        # Random reads: two offsets read from the decoded block's table, bounds checked, one unpickle.
        self._last_pos = pos
        block = self._block(b)
        count = self.block_size if b != self._last_block else self._last_count
        base = 8 + 4 * count
        if len(block) >= base and U32.unpack_from(block, 0)[0] == count:
            start, end = U32_PAIR.unpack_from(block, 4 + 4 * pos)
            if start < end <= len(block) - base:
                try:
                    return self.loads(block[base + start:base + end])
                except Exception as exc:  # noqa: BLE001 - any unpickling failure is corrupt data
                    raise self._load_error(exc, b, pos) from None
        return self._slice(block, b, pos)  # raises the error that names what is wrong with the table

    def unpickled_block(self) -> tuple[int, list[Any]] | None:
        """Framing "list": (first shard example, examples) of the block last unpickled, handed-out
        slots holding ``_TAKEN``, for the dataset's in-order fast path; None otherwise."""
        memo = self._memo
        if memo[3] is None or self._m.gen != _FORK_GENERATION[0]:
            return None
        return memo[0] * self.block_size, memo[3]

    def get_each(self, indices: list[int]) -> list[Any]:
        """Examples at shard ``indices`` (any order), for shards that decode no block (codec none,
        framing "example"): each example's offsets read from the mapped table in place, no per-block
        slice, no memo; anything unusual goes through get(), which raises the located error."""
        if self.decodes_blocks:
            return [self.get(j) for j in indices]
        maps = self._m
        if maps.gen != _FORK_GENERATION[0]:
            maps = self._open()
        bs, last, last_count = self.block_size, self._last_block, self._last_count
        data, offsets, sizes, verified = maps.data, maps.offsets, maps.stored, self._verified
        verify, frames, loads = self.verify_checksums, self._example_frames, self.loads
        out: list[Any] = []
        append = out.append
        for j in indices:
            b, pos = divmod(j, bs)
            if verify and not verified[b]:
                self._stored_block(b, maps)  # checksums the block once (raises ChecksumError)
            off = offsets[b]
            count = bs if b != last else last_count
            base = 8 + 4 * count
            if U32.unpack_from(data, off)[0] == count:
                start, end = U32_PAIR.unpack_from(data, off + 4 + 4 * pos)
                if start < end <= sizes[b] - base:
                    piece: Any = data[off + base + start:off + base + end]
                    if frames:
                        piece = self._decode_frame(piece, b, pos, maps.raw[b])
                    try:
                        append(loads(piece))
                    except Exception as exc:  # noqa: BLE001 - any unpickling failure is corrupt data
                        raise self._load_error(exc, b, pos) from None
                    continue
            append(self.get(j))  # raises the error that names what is wrong with the table
        return out

    def get_many(self, b: int, positions: list[int]) -> list[Any]:
        """Examples at ``positions`` of block ``b``, decoding the block (or only their frames) once."""
        if self.unpickles_lists:
            return self._take(b, positions)
        if self._example_frames:
            maps = self._maps()
            stored, raw_size = self._stored_block(b, maps), maps.raw[b]
            if len(positions) <= 2:
                return [self._load(self._decode_frame(self._slice(stored, b, p), b, p, raw_size), b, p)
                        for p in positions]
            table, base = self._table(stored, b), table_size(self.block_count(b))
            return [self._load(self._decode_frame(stored[base + table[p]:base + table[p + 1]], b, p, raw_size), b, p)
                    for p in positions]
        block = self._block(b)
        if len(positions) <= 2:
            return [self._load(self._slice(block, b, p), b, p) for p in positions]
        table = self._table(block, b)
        return self._load_spans(block, table_size(len(table) - 1), [(table[p], table[p + 1]) for p in positions],
                                positions, b)

    def iter_block(self, b: int) -> list[Any]:
        """Every example of block ``b`` in order (the block decoded once, its table parsed once)."""
        if self._example_frames:
            return self.get_many(b, list(range(self.block_count(b))))
        if self.unpickles_lists:
            return self._unpickle_list(self._block(b), b)
        block = self._block(b)
        table = self._table(block, b)
        spans = zip(table, table[1:], strict=False)
        return self._load_spans(block, table_size(len(table) - 1), spans, range(len(table) - 1), b)


def _mode(label: str) -> Any:
    from atlas_format.enums import DictionaryMode

    return DictionaryMode(label)
