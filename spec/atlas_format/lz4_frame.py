"""The LZ4 frame header (lz4 frame format 1.6.x), with its header checksum.

Version 2 blocks of codec ``lz4`` are one LZ4 frame each, written with the content
size so that a reader checks the size against the limits before decompressing.
"""

from __future__ import annotations

import struct
from typing import Any

import construct as cs
import xxhash

from .constants import LZ4_FRAME_MAGIC

# Block maximum sizes by BD code.
LZ4_BLOCK_MAX_SIZES = {4: 64 << 10, 5: 256 << 10, 6: 1 << 20, 7: 4 << 20}

Lz4FrameDescriptor = cs.Struct(
    "flg" / cs.BitStruct(
        "version" / cs.Const(1, cs.BitsInteger(2)),
        "block_independence" / cs.Flag,
        "block_checksum" / cs.Flag,
        "content_size_flag" / cs.Flag,
        "content_checksum" / cs.Flag,
        "reserved" / cs.Const(False, cs.Flag),
        "dict_id_flag" / cs.Flag,
    ),
    "bd" / cs.BitStruct(
        "reserved_high" / cs.Const(False, cs.Flag),
        "block_max_size" / cs.OneOf(cs.BitsInteger(3), [4, 5, 6, 7]),
        "reserved_low" / cs.Const(0, cs.BitsInteger(4)),
    ),
    "content_size" / cs.If(cs.this.flg.content_size_flag, cs.Int64ul),
    "dict_id" / cs.If(cs.this.flg.dict_id_flag, cs.Int32ul),
)


def _header_checksum(data: bytes) -> int:
    return (xxhash.xxh32_intdigest(data) >> 8) & 0xFF


Lz4FrameHeader = cs.Struct(
    "magic" / cs.Const(LZ4_FRAME_MAGIC, cs.Int32ul),
    "descriptor" / cs.RawCopy(Lz4FrameDescriptor),
    "header_checksum" / cs.Checksum(cs.Int8ul, _header_checksum, cs.this.descriptor.data),
)
Lz4FrameHeader.name = "lz4 frame header"


# Fast-path layout derived from the declaration: the 4-byte magic, FLG (content_size_flag is
# bit 3), BD, then the u64 content size when FLG says it is present.
_HEAD = struct.Struct("<IBBQ")
_CONTENT_SIZE_BIT = 0x08


def declared_content_size(frame: bytes | bytearray | memoryview) -> int | None:
    """The content size an LZ4 frame declares (None if absent), without parsing the rest.

    A reader's hot path; ``Lz4FrameHeader`` is the full check (the decoder verifies the
    header checksum itself). ValueError when ``frame`` does not start like an LZ4 frame.
    """
    if len(frame) < _HEAD.size:
        if len(frame) >= 5 and int.from_bytes(frame[:4], "little") == LZ4_FRAME_MAGIC and \
                not frame[4] & _CONTENT_SIZE_BIT:
            return None
        raise ValueError("not an lz4 frame (too short)")
    magic, flg, _, size = _HEAD.unpack_from(frame)
    if magic != LZ4_FRAME_MAGIC:
        raise ValueError("not an lz4 frame (magic number)")
    return int(size) if flg & _CONTENT_SIZE_BIT else None


def frame_header_fields(content_size: int | None, *, block_max_size: int = 4, block_independence: bool = True,
                        content_checksum: bool = False) -> dict[str, Any]:
    """A value for ``Lz4FrameHeader.build``."""
    return {
        "descriptor": {"value": {
            "flg": {"block_independence": block_independence, "block_checksum": False,
                    "content_size_flag": content_size is not None, "content_checksum": content_checksum,
                    "dict_id_flag": False},
            "bd": {"block_max_size": block_max_size},
            "content_size": content_size,
            "dict_id": None,
        }},
    }
