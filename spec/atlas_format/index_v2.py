"""The version 2 shard index (``index.bin``): a 64-byte header and 24-byte entries.

Fixed-size little-endian entries make a lookup O(1) through mmap: entry ``b`` is at
``header_size + b * entry_size``. The header checksum covers the header's first 56
bytes and every entry, so one hash proves the whole file.
"""

from __future__ import annotations

from typing import Any

import construct as cs
import numpy as np

from .binary import numpy_dtype
from .constants import FORMAT_VERSION_2, V2_INDEX_ENTRY_SIZE, V2_INDEX_HEADER_SIZE, V2_INDEX_MAGIC
from .enums import Framing
from .grouped import FRAME_GROUP, group_flags
from .typed import PICKLE, encoding_flags

# Dictionary modes as stored in the header byte.
DICTIONARY_MODE_IDS = {"none": 0, "shared": 1, "shard": 2}
DICTIONARY_MODE_NAMES = {v: k for k, v in DICTIONARY_MODE_IDS.items()}

IndexHeader = cs.Struct(
    "magic" / cs.Const(V2_INDEX_MAGIC),             # 0   8  b"ATLASIDX"
    "format_version" / cs.Int16ul,                  # 8   2  2
    "header_size" / cs.Int16ul,                     # 10  2  64 (readers skip any larger extension)
    "entry_size" / cs.Int16ul,                      # 12  2  24 (readers use the first 24 bytes)
    "codec" / cs.Int8ul,                            # 14  1  Codec value
    "dictionary" / cs.Int8ul,                       # 15  1  0 none, 1 shared, 2 shard
    "checksum_algorithm" / cs.Int8ul,               # 16  1  1 = xxh3_64
    "flags" / cs.Int8ul,                            # 17  1  bit 0: example framing, bit 1: list
    "reserved" / cs.Int16ul,                        # 18  2  0
    "block_size" / cs.Int32ul,                      # 20  4  examples per full block
    "block_count" / cs.Int64ul,                     # 24  8
    "example_count" / cs.Int64ul,                   # 32  8
    "data_size" / cs.Int64ul,                       # 40  8  bytes of data.bin
    "dict_id" / cs.Int32ul,                         # 48  4  zstd dictionary id, 0 without one
    "reserved2" / cs.Int32ul,                       # 52  4  0
    "checksum" / cs.Int64ul,                        # 56  8  over bytes [0, 56) and all entries
)
IndexHeader.name = "index.bin header"

IndexEntry = cs.Struct(
    "offset" / cs.Int64ul,                          # 0   8  byte offset of the block in data.bin
    "stored_size" / cs.Int32ul,                     # 8   4  bytes of the block in data.bin
    "raw_size" / cs.Int32ul,                        # 12  4  bytes after decoding (= stored for none)
    "checksum" / cs.Int64ul,                        # 16  8  of the stored bytes
)
IndexEntry.name = "index.bin entry"

IndexFile = cs.Struct(
    "header" / IndexHeader,
    "extension" / cs.Bytes(cs.this.header.header_size - V2_INDEX_HEADER_SIZE),
    "entries" / cs.Array(cs.this.header.block_count, cs.Struct(
        "entry" / IndexEntry,
        "extension" / cs.Bytes(cs.this._.header.entry_size - V2_INDEX_ENTRY_SIZE),
    )),
    cs.Terminated,
)
IndexFile.name = "index.bin"


def _field_offset(struct: Any, name: str) -> int:
    offset = 0
    for sub in struct.subcons:
        if sub.name == name:
            return offset
        offset += sub.sizeof()
    raise KeyError(f"the {struct.name} has no field {name!r}")


def header_field_offset(name: str) -> int:
    """Where field ``name`` of the index.bin header starts (from the declaration: error messages name it)."""
    return _field_offset(IndexHeader, name)


def entry_field_offset(name: str) -> int:
    """Where field ``name`` of an index.bin entry starts, from the entry's start (from the declaration)."""
    return _field_offset(IndexEntry, name)


# Bytes of the header covered by its checksum (everything before the checksum field).
INDEX_HEADER_CHECKED_SIZE = header_field_offset("checksum")
#: Where the header's checksum lies (bytes [INDEX_CHECKSUM_OFFSET, +8)).
INDEX_CHECKSUM_OFFSET = INDEX_HEADER_CHECKED_SIZE

# The same layouts as numpy dtypes, derived from the declarations (used on hot paths).
INDEX_HEADER_DTYPE = numpy_dtype(IndexHeader)
INDEX_ENTRY_DTYPE = numpy_dtype(IndexEntry)

if IndexHeader.sizeof() != V2_INDEX_HEADER_SIZE or IndexEntry.sizeof() != V2_INDEX_ENTRY_SIZE:
    raise ImportError("index_v2 declarations disagree with the declared sizes")


def header_value(*, codec: int, dictionary: str, checksum_algorithm: int, block_size: int, block_count: int,
                 example_count: int, data_size: int, dict_id: int, checksum: int = 0,
                 flags: int = 0) -> dict[str, Any]:
    """A value for ``IndexHeader.build`` with the fixed fields filled in."""
    return {
        "format_version": FORMAT_VERSION_2, "header_size": V2_INDEX_HEADER_SIZE,
        "entry_size": V2_INDEX_ENTRY_SIZE, "codec": codec, "dictionary": DICTIONARY_MODE_IDS[dictionary],
        "checksum_algorithm": checksum_algorithm, "flags": flags, "reserved": 0, "block_size": block_size,
        "block_count": block_count, "example_count": example_count, "data_size": data_size,
        "dict_id": dict_id, "reserved2": 0, "checksum": checksum,
    }


def entries_array(entries: list[tuple[int, int, int, int]]) -> np.ndarray[Any, Any]:
    """Entries (offset, stored_size, raw_size, checksum) as a numpy array of INDEX_ENTRY_DTYPE."""
    return np.array(entries, dtype=INDEX_ENTRY_DTYPE)


def compute_index_checksum(file_bytes: bytes | bytearray | memoryview, algorithm_id: int = 1) -> int:
    """The index checksum: every byte of index.bin except the checksum field (bytes 56..63)."""
    from .checksum import checksum_algorithm

    view = memoryview(file_bytes)
    algorithm = checksum_algorithm(algorithm_id)
    return algorithm.of(bytes(view[:INDEX_HEADER_CHECKED_SIZE]) + bytes(view[V2_INDEX_HEADER_SIZE:]))


def build_index(header: dict[str, Any], entries: np.ndarray[Any, Any] | list[tuple[int, int, int, int]]) -> bytes:
    """index.bin bytes: the header (checksum computed here) followed by the entries."""
    array = entries if isinstance(entries, np.ndarray) else entries_array(list(entries))
    if array.dtype != INDEX_ENTRY_DTYPE:
        array = array.astype(INDEX_ENTRY_DTYPE)
    body = array.tobytes()
    draft = IndexHeader.build({**header, "checksum": 0}) + body
    checksum = compute_index_checksum(draft, header["checksum_algorithm"])
    return bytes(IndexHeader.build({**header, "checksum": checksum})) + body


def shard_flags(framing: Framing, group: int = FRAME_GROUP, encoding: str = PICKLE) -> int:
    """A shard's index header ``flags`` (V2-INDEX-1/2): its framing's bit, framing grouped's group size (bits
    3-4) and the typed bit (5), all of which its meta.json states: writers write this value, readers expect it."""
    return framing.index_flags | group_flags(group) | encoding_flags(encoding)
