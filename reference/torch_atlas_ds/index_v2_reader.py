"""Reading a version 2 shard's index.bin: its header checked against meta.json, its checksum, its entries.

Every field is read through the declarations of ``atlas_format.index_v2`` (the header parsed by its
construct, the entries viewed through the numpy dtype derived from it, error offsets from
``header_field_offset``), never at retyped offsets. The entries stay a view of the index bytes
(a memory map): lookups are O(1) and nothing is copied.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from atlas_format.binary import parse
from atlas_format.checksum import XXH3_64
from atlas_format.constants import V2_INDEX_ENTRY_SIZE, V2_INDEX_HEADER_SIZE, Limits
from atlas_format.enums import KNOWN_INDEX_FLAGS
from atlas_format.index_v2 import (
    INDEX_CHECKSUM_OFFSET,
    INDEX_ENTRY_DTYPE,
    IndexHeader,
    compute_index_checksum,
    header_field_offset,
)

from .errors import ChecksumError, FormatError, LimitError, VersionError


def entry_dtype(entry_size: int) -> np.dtype[Any]:
    """The entry layout, widened to ``entry_size`` bytes (readers skip entry extensions)."""
    if entry_size == V2_INDEX_ENTRY_SIZE:
        return INDEX_ENTRY_DTYPE
    fields: dict[str, Any] = dict(INDEX_ENTRY_DTYPE.fields or {})
    return np.dtype({"names": list(fields), "formats": [fields[n][0] for n in fields],
                     "offsets": [fields[n][1] for n in fields], "itemsize": entry_size})


def entries_view(index: Any, header_size: int, entry_size: int, count: int) -> np.ndarray[Any, Any]:
    """The ``count`` entries of index bytes whose header was checked (``check_index``)."""
    return np.frombuffer(index, dtype=entry_dtype(entry_size), count=count, offset=header_size)


def check_index(index: Any, size: int, *, flags: int, expected: dict[str, int], meta_checksum: str,
                max_block_raw_size: int, identity_codec: bool, limits: Limits, where: dict[str, Any]
                ) -> tuple[np.ndarray[Any, Any], int, int]:
    """(entries, header_size, entry_size) of ``index`` (``size`` bytes) after its header, checksum and entries
    were checked against meta.json: ``expected`` header fields, ``flags`` that meta.json implies, its checksum text
    ``meta_checksum``, its block sizes (``identity_codec``: stored and raw sizes must agree)."""
    header = parse(IndexHeader, index[:V2_INDEX_HEADER_SIZE], path=where["path"])
    if header.format_version != 2:
        raise VersionError(f"index.bin format_version {header.format_version}",
                           offset=header_field_offset("format_version"), **where)
    if header.header_size < V2_INDEX_HEADER_SIZE or header.entry_size < V2_INDEX_ENTRY_SIZE:
        raise FormatError(f"index.bin header_size < {V2_INDEX_HEADER_SIZE} or entry_size < {V2_INDEX_ENTRY_SIZE}",
                          offset=header_field_offset("header_size"), **where)
    if header.flags & ~KNOWN_INDEX_FLAGS:
        raise FormatError(f"index.bin flags 0x{header.flags:02x} set bits this reader does not know",
                          offset=header_field_offset("flags"), **where)
    if header.flags != flags:
        raise FormatError(f"index.bin flags 0x{header.flags:02x} disagree with meta.json, whose framing (and "
                          f"group_size) mean flags 0x{flags:02x}", offset=header_field_offset("flags"), **where)
    if header.checksum_algorithm != XXH3_64.id:
        raise FormatError(f"unknown checksum algorithm id {header.checksum_algorithm}",
                          offset=header_field_offset("checksum_algorithm"), **where)
    described = header.header_size + header.block_count * header.entry_size
    if size != described:
        raise FormatError(f"index.bin is {size} bytes, its header describes {described}", **where)
    actual = compute_index_checksum(index)
    if actual != header.checksum:
        raise ChecksumError(f"index.bin checksum mismatch: header says {XXH3_64.text(header.checksum)}, "
                            f"content hashes to {XXH3_64.text(actual)}", offset=INDEX_CHECKSUM_OFFSET, **where)
    if XXH3_64.text(header.checksum) != meta_checksum:
        raise ChecksumError(f"index.bin checksum {XXH3_64.text(header.checksum)} differs from meta.json's "
                            f"{meta_checksum}", offset=INDEX_CHECKSUM_OFFSET, **where)
    for field, want in expected.items():
        if header[field] != want:
            raise FormatError(f"index.bin header {field} is {header[field]}, meta.json says {want}",
                              offset=header_field_offset(field), **where)
    entries = entries_view(index, header.header_size, header.entry_size, header.block_count)
    offsets, stored, raw = entries["offset"], entries["stored_size"], entries["raw_size"]
    if header.block_count:
        ends = np.cumsum(stored, dtype=np.uint64)
        if int(offsets[0]) != 0 or not np.array_equal(offsets[1:], ends[:-1]) or int(ends[-1]) != header.data_size:
            raise FormatError("index entries must describe data.bin's blocks back to back from offset 0", **where)
        if int(raw.max()) > max_block_raw_size or int(stored.max()) > limits.max_block_stored_size:
            raise LimitError("a block's size exceeds max_block_raw_size or the limits", **where)
        if int(stored.min()) == 0:
            raise FormatError("an index entry has stored_size 0", **where)
        if identity_codec and not np.array_equal(stored, raw):
            raise FormatError("codec none requires stored_size == raw_size", **where)
    return entries, header.header_size, header.entry_size
