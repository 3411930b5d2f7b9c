"""Reading one version 2 shard: checksummed metadata, a fixed-size index, checksummed blocks.

The hot path is O(1): entry ``b`` of index.bin is a row of a numpy view over the
(memory-mapped) file; a block is checksummed the first time this process reads it
(a bytearray remembers which blocks were verified); one example is unpickled from
its slice of the decoded block without touching its neighbours, and with codec
"none" straight out of the mmap of data.bin (zero-copy). With framing "example" the
stored block's table is read in place and only the example's own frame is decoded.
With framing "list" a block is one pickled list, unpickled whole and handed out one
example at a time (each example object once).
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
from atlas_format.index_v2 import DICTIONARY_MODE_IDS, INDEX_ENTRY_DTYPE, IndexHeader, compute_index_checksum
from atlas_format.lz4_frame import declared_content_size as lz4_declared_size
from atlas_format.metadata import file_checksum_text, validate_schema, verify_checksummed_json

from ._util import _FORK_GENERATION, BlockCache, ProcessLocalState, fork_generation, map_file, zstd_decompressor
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


def load_dictionary(path: Path, expected: dict[str, Any], limits: Limits, shard: str | None = None) -> bytes:
    """A dictionary file checked against its metadata record (size, checksum, dict_id)."""
    if not path.is_file():
        raise MissingShardError("zstd dictionary named by the metadata is missing", path=path, shard=shard)
    size = path.stat().st_size
    if size > limits.max_dictionary_size:
        raise LimitError(f"dictionary of {size} bytes is above the limit", path=path, shard=shard)
    data = path.read_bytes()
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
    return data


# Dictionaries read in this process, shared by every shard that uses one (and dropped from
# pickled readers: workers read them again, once). Keyed so that a changed file is re-read.
_DICTIONARIES: dict[tuple[Any, ...], bytes] = {}


def read_dictionary(path: Path, expected: dict[str, Any] | None, limits: Limits, shard: str | None = None) -> bytes:
    """A dictionary file, verified against ``expected`` (its metadata record) when given; memoized per process."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise MissingShardError("the zstd dictionary this shard uses is missing", path=path, shard=shard) from None
    key = (str(path), st.st_size, st.st_mtime_ns, None if expected is None else expected["checksum"])
    data = _DICTIONARIES.get(key)
    if data is None:
        if expected is not None:
            data = load_dictionary(path, expected, limits, shard)
        else:
            if st.st_size > limits.max_dictionary_size:
                raise LimitError(f"dictionary of {st.st_size} bytes is above the limit", path=path, shard=shard)
            data = path.read_bytes()
        if len(_DICTIONARIES) >= 8:
            _DICTIONARIES.clear()
        _DICTIONARIES[key] = data
    return data


def read_v2_meta(path: Path, schema: str, limits: Limits) -> tuple[dict[str, Any], str]:
    """A version 2 meta.json: version, codec, checksum and schema checked; returns (doc, checksum text)."""
    data, doc = read_json_file(path, limits)
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


class V2Shard(ProcessLocalState):
    """One version 2 shard folder. Files are opened lazily and reopened after fork or unpickling."""

    _PROCESS_LOCAL = ("_mms", "_data", "_offsets", "_stored", "_raw", "_checksums", "_verified", "_tls", "_memo",
                      "_last_pos", "_info")

    version = 2

    def __init__(self, path: str | Path, *, mmap_index: bool = True, shared_dict_bytes: bytes | None = None,
                 verify_checksums: bool = True, limits: Limits = DEFAULT_LIMITS, loads: Loads = pickle.loads,
                 cache: BlockCache | None = None, expected: dict[str, Any] | None = None,
                 label: str | None = None, shared_dict_record: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.mmap_index = mmap_index
        self.verify_checksums = verify_checksums
        self.limits = limits
        self.loads = loads
        self.cache = cache if cache is not None else BlockCache(1)
        meta_path = self.path / META_FILE
        doc, meta_text = read_v2_meta(meta_path, "v2-shard", limits)
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
        self._dict_source: tuple[Path, dict[str, Any] | None] | None = None
        if self.dictionary == "shard":
            if doc["dictionary_file"] is None:
                raise MetadataError("dictionary mode 'shard' without dictionary_file", **where)
            if doc["dictionary_file"]["dict_id"] != self.dict_id:
                raise MetadataError("dictionary_file.dict_id differs from dict_id", **where)
            self._dict_source = (self.path / DICT_FILE, doc["dictionary_file"])
            self._dict_bytes = self._read_dictionary()
        elif self.dictionary == "shared":
            if shared_dict_bytes is None:
                self._dict_source = (self.path.parent / DICT_FILE, shared_dict_record)
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
        path = self._dict_source[0] if self._dict_source else None
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
        self._gen = -1
        self._mms: list[Any] = []
        self._data: memoryview = memoryview(b"")
        self._offsets: Any = None
        self._stored: Any = None
        self._raw: Any = None
        self._checksums: Any = None
        self._verified = bytearray()
        self._tls = threading.local()  # one zstd decompressor per thread (they are not thread-safe)
        # (block number, decoded block, offset table or None, the block's examples unpickled in one pass
        # or None): rebound as a whole, so threads never mix blocks
        self._memo: tuple[int, Any, tuple[int, ...] | None, list[Any] | None] = (-1, None, None, None)
        self._last_pos = -2  # the position of the last example get() returned (sequential detection)
        self._info = codec_info(self.codec)

    def _open(self) -> None:
        index_path = self.path / V2_INDEX_FILE
        where: dict[str, Any] = {"path": index_path, "shard": self.label}
        if not index_path.is_file():
            raise MissingShardError("index.bin is missing", **where)
        size = index_path.stat().st_size
        if size != self.meta["index"]["size"]:
            raise FormatError(f"index.bin is {size} bytes, meta.json says {self.meta['index']['size']}", **where)
        if size > self.limits.max_index_size:
            raise LimitError("index.bin above the limit", **where)
        mms: list[Any] = []
        if self.mmap_index:
            mm, index = map_file(index_path)
            mms.append(mm)
        else:
            index = memoryview(index_path.read_bytes())
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
        data_path = self.path / DATA_FILE
        if not data_path.is_file():
            raise MissingShardError("data.bin is missing", path=data_path, shard=self.label)
        mm, data = map_file(data_path)
        mms.append(mm)
        if len(data) != self.data_size:
            raise FormatError(f"data.bin is {len(data)} bytes, meta.json says {self.data_size}", path=data_path,
                              shard=self.label)
        self._mms, self._data = mms, data
        if self.num_blocks <= LIST_INDEX_MAX_BLOCKS:
            # Plain Python lists: indexing them is several times faster than numpy scalars.
            self._offsets, self._stored = offsets.tolist(), stored.tolist()
            self._raw, self._checksums = raw.tolist(), entries["checksum"].tolist()
        else:  # large shards: O(1) lookups in numpy views of the (memory-mapped) index, nothing copied
            self._offsets, self._stored, self._raw, self._checksums = offsets, stored, raw, entries["checksum"]
        if len(self._verified) != self.num_blocks:
            self._verified = bytearray(self.num_blocks)
        if self._dict_bytes is None and self._dict_source is not None:
            self._dict_bytes = self._read_dictionary()
        self._tls = threading.local()
        if self.codec == Codec.ZSTD:
            self._tls.dctx = self._new_dctx()  # fails at open, naming the file, if zstd cannot load the dictionary
        self._gen = fork_generation()

    def _new_dctx(self) -> zstandard.ZstdDecompressor:
        dict_path = self.path / DICT_FILE if self.dictionary == "shard" else self.path.parent / DICT_FILE
        return zstd_decompressor(self._dict_bytes, dict_path, self.label)  # type: ignore[no-any-return]

    def close(self) -> None:
        """Release the memory maps (they reopen on the next read)."""
        self.cache.clear()  # entries of codec none are views into the mmap
        mms = self._mms
        self._data.release()
        self._reset()
        for mm in mms:
            if mm is not None:
                mm.close()

    # -- reading ----------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.num_examples)

    def block_count(self, b: int) -> int:
        return int(min(self.block_size, self.num_examples - b * self.block_size))

    def _where(self, b: int) -> dict[str, Any]:
        return {"path": self.path / DATA_FILE, "shard": self.label, "block": b, "offset": int(self._offsets[b])}

    def _stored_block(self, b: int) -> memoryview:
        if self._gen != _FORK_GENERATION[0]:
            self._open()
        off = self._offsets[b]
        stored = self._data[off:off + self._stored[b]]
        if self.verify_checksums and not self._verified[b]:
            actual = _xxh3(stored)
            if actual != self._checksums[b]:
                raise ChecksumError(f"block checksum mismatch: index.bin says "
                                    f"{XXH3_64.text(int(self._checksums[b]))}, "
                                    f"the stored bytes hash to {XXH3_64.text(actual)}", **self._where(b))
            self._verified[b] = 1
        return stored

    def _frame_example(self, b: int, pos: int) -> Any:
        """Example ``pos`` of block ``b`` with framing "example": two offsets read from the stored
        table in place, one frame decoded, one unpickle (the random-read hot path, few calls)."""
        stored = self._stored_block(b)
        count = self.block_size if b != self._last_block else self._last_count
        base = 8 + 4 * count
        if len(stored) >= base and U32.unpack_from(stored, 0)[0] == count:
            start, end = U32_PAIR.unpack_from(stored, 4 + 4 * pos)
            if start < end <= len(stored) - base:
                data = self._decode_frame(stored[base + start:base + end], b, pos)
                try:
                    return self.loads(data)
                except Exception as exc:  # noqa: BLE001 - any unpickling failure is corrupt data
                    raise self._load_error(exc, b, pos) from None
        return self._slice(stored, b, pos)  # raises the error that names what is wrong with the table

    def _decode_frame(self, frame: Any, b: int, pos: int) -> bytes:
        """Example ``pos``'s pickle from its own frame (framing "example"): size checked before decoding."""
        limit = int(self._raw[b]) - table_size(self.block_size if b != self._last_block else self._last_count)
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
            raise CodecError(f"{self.codec.label} cannot decode example {pos}'s frame: {exc}", example=pos,
                             **self._where(b)) from None
        if declared is None or declared < 0:
            raise CodecError(f"example {pos}'s {self.codec.label} frame does not declare its content size",
                             example=pos, **self._where(b))
        if declared > limit:
            raise LimitError(f"example {pos}'s frame declares {declared} bytes, more than the block's raw_size "
                             f"allows ({limit}); refused before allocating", example=pos, **self._where(b))
        if len(data) != declared:
            raise CodecError(f"example {pos}'s frame decodes to {len(data)} bytes, it declares {declared}",
                             example=pos, **self._where(b))
        return data

    def decoded_block(self, b: int) -> Any:
        """The decoded bytes of block ``b`` (for codec none a memoryview into the data.bin mmap)."""
        if self.codec == Codec.NONE:
            return self._stored_block(b)
        if self.framing is Framing.EXAMPLE:
            stored = self._stored_block(b)
            table, base = self._table(stored, b), table_size(self.block_count(b))
            block = encode_block([self._decode_frame(stored[base + x:base + y], b, p)
                                  for p, (x, y) in enumerate(zip(table, table[1:], strict=False))])
            if len(block) != int(self._raw[b]):
                raise CodecError(f"block decodes to {len(block)} bytes, index.bin says {int(self._raw[b])}",
                                 **self._where(b))
            return block
        stored = self._stored_block(b)
        raw_size = int(self._raw[b])
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
        if self._gen != _FORK_GENERATION[0]:
            self._open()
        elif memo[0] == b:
            return memo[1]
        block: Any
        if self.codec == Codec.NONE:
            block = self._stored_block(b)
        else:
            key = (self.label, b)
            block = self.cache.get(key)
            if block is None:
                if not self._example_frames and (self._verified[b] or not self.verify_checksums):
                    # checksum already verified in this process: decode in one step, the full path on refusal
                    off = self._offsets[b]
                    block = self._decode_block_frame(self._data[off:off + self._stored[b]], self._raw[b])
                if block is None:
                    block = self.decoded_block(b)
                self.cache.put(key, block)
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
            raise FormatError(f"example {pos} spans [{start}, {end}) outside the block payload", **self._where(b))
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
            return exc.relocated(example=pos, **self._where(b))
        return FormatError(f"example {pos} does not unpickle: {type(exc).__name__}: {exc}", example=pos,
                           **self._where(b))

    def _unpickle_list(self, block: Any, b: int) -> list[Any]:
        """Framing "list": every example of block ``b``, one unpickle of the decoded block (V2-FRAME-5)."""
        return unpickle_list_block(self.loads, block, self.block_count(b), self._where(b))

    def _take(self, b: int, positions: Any) -> list[Any]:
        """Framing "list": examples at ``positions`` of block ``b``, each object handed out once.

        The unpickled block stays in the memo, so reading a block's examples in any order
        unpickles it once; an example asked for again gets a fresh unpickle of the block.
        """
        memo = self._memo
        block, values = (memo[1], memo[3]) if memo[0] == b and self._gen == _FORK_GENERATION[0] else (None, None)
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
        if memo[0] == b and self._gen == _FORK_GENERATION[0]:
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
        if memo[3] is None or self._gen != _FORK_GENERATION[0]:
            return None
        return memo[0] * self.block_size, memo[3]

    def get_each(self, indices: list[int]) -> list[Any]:
        """Examples at shard ``indices`` (any order), for shards that decode no block (codec none,
        framing "example"): each example's offsets read from the mapped table in place, no per-block
        slice, no memo; anything unusual goes through get(), which raises the located error."""
        if self.decodes_blocks:
            return [self.get(j) for j in indices]
        if self._gen != _FORK_GENERATION[0]:
            self._open()
        bs, last, last_count = self.block_size, self._last_block, self._last_count
        data, offsets, sizes, verified = self._data, self._offsets, self._stored, self._verified
        verify, frames, loads = self.verify_checksums, self._example_frames, self.loads
        out: list[Any] = []
        append = out.append
        for j in indices:
            b, pos = divmod(j, bs)
            if verify and not verified[b]:
                self._stored_block(b)  # checksums the block once (raises ChecksumError)
            off = offsets[b]
            count = bs if b != last else last_count
            base = 8 + 4 * count
            if U32.unpack_from(data, off)[0] == count:
                start, end = U32_PAIR.unpack_from(data, off + 4 + 4 * pos)
                if start < end <= sizes[b] - base:
                    piece: Any = data[off + base + start:off + base + end]
                    if frames:
                        piece = self._decode_frame(piece, b, pos)
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
            stored = self._stored_block(b)
            if len(positions) <= 2:
                return [self._load(self._decode_frame(self._slice(stored, b, p), b, p), b, p) for p in positions]
            table, base = self._table(stored, b), table_size(self.block_count(b))
            return [self._load(self._decode_frame(stored[base + table[p]:base + table[p + 1]], b, p), b, p)
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
