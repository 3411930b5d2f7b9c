"""Zstandard structures (RFC 8878): the frame header and the dictionary header.

Readers use these to check a block before decompressing it: the declared content
size against the limits (python-zstandard allocates it up front), and the dictionary
id against the dictionary the metadata names.
"""

from __future__ import annotations

from typing import Any

import construct as cs

from .constants import ZSTD_DICT_MAGIC, ZSTD_FRAME_MAGIC

_DICT_ID_SIZE = {0: 0, 1: 1, 2: 2, 3: 4}


def _fcs_size(ctx: Any) -> int:
    flag = ctx.descriptor.fcs_flag
    if flag == 0:
        return 1 if ctx.descriptor.single_segment else 0
    return {1: 2, 2: 4, 3: 8}[flag]


ZstdFrameDescriptor = cs.BitStruct(
    "fcs_flag" / cs.BitsInteger(2),
    "single_segment" / cs.Flag,
    "unused" / cs.Flag,
    "reserved" / cs.Const(False, cs.Flag),
    "content_checksum" / cs.Flag,
    "dict_id_flag" / cs.BitsInteger(2),
)

_HEADER_FIELDS = (
    "descriptor" / ZstdFrameDescriptor,
    "window_descriptor" / cs.If(lambda ctx: not ctx.descriptor.single_segment, cs.BitStruct(
        "exponent" / cs.BitsInteger(5),
        "mantissa" / cs.BitsInteger(3),
    )),
    "dict_id" / cs.Switch(lambda ctx: _DICT_ID_SIZE[ctx.descriptor.dict_id_flag],
                          {0: cs.Pass, 1: cs.Int8ul, 2: cs.Int16ul, 4: cs.Int32ul}),
    "fcs_field" / cs.Switch(_fcs_size, {0: cs.Pass, 1: cs.Int8ul, 2: cs.Int16ul, 4: cs.Int32ul, 8: cs.Int64ul}),
    # Frame_Content_Size: absent (None), or the field value (+256 for the 2-byte form).
    "content_size" / cs.Computed(lambda ctx: None if ctx.fcs_field is None
                                 else ctx.fcs_field + (256 if _fcs_size(ctx) == 2 else 0)),
)
ZstdFrameHeader = cs.Struct("magic" / cs.Const(ZSTD_FRAME_MAGIC, cs.Int32ul), *_HEADER_FIELDS)
ZstdFrameHeader.name = "zstd frame header"
#: The header of a *magicless* frame (libzstd's ZSTD_f_zstd1_magicless): the same fields without the
#: magic number. Framing "grouped" writes these (V2-CODEC-4): the format knows the codec already.
ZstdMagiclessFrameHeader = cs.Struct(*_HEADER_FIELDS)
ZstdMagiclessFrameHeader.name = "zstd magicless frame header"

# A trained ("formatted") zstd dictionary: magic, id, then entropy tables and content.
ZstdDictionary = cs.Struct(
    "magic" / cs.Const(ZSTD_DICT_MAGIC, cs.Int32ul),
    "dict_id" / cs.Int32ul,
    "body" / cs.GreedyBytes,
)
ZstdDictionary.name = "zstd dictionary"

ZstdDictionaryHeader = cs.Struct(
    "magic" / cs.Const(ZSTD_DICT_MAGIC, cs.Int32ul),
    "dict_id" / cs.Int32ul,
)
ZstdDictionaryHeader.name = "zstd dictionary header"
#: Where a dictionary's id lies (after its magic number), from the declaration.
DICTIONARY_ID_OFFSET: int = ZstdDictionaryHeader.subcons[0].sizeof()


def frame_header_fields(content_size: int | None, dict_id: int | None, *, checksum: bool = False,
                        single_segment: bool = True) -> dict[str, Any]:
    """A value for ``ZstdFrameHeader.build`` with the smallest fields, as libzstd writes them."""
    if dict_id is None or dict_id == 0:
        dflag = 0
    elif dict_id < 1 << 8:
        dflag = 1
    elif dict_id < 1 << 16:
        dflag = 2
    else:
        dflag = 3
    if content_size is None:
        fflag, field, single_segment = 0, None, False
    elif content_size < 256 and single_segment:
        fflag, field = 0, content_size
    elif 256 <= content_size < 65536 + 256:
        fflag, field = 1, content_size - 256
    elif content_size < 1 << 32:
        fflag, field = 2, content_size
    else:
        fflag, field = 3, content_size
    return {
        "descriptor": {"fcs_flag": fflag, "single_segment": single_segment, "unused": False,
                       "content_checksum": checksum, "dict_id_flag": dflag},
        "window_descriptor": None if single_segment else {"exponent": 10, "mantissa": 0},
        "dict_id": None if dflag == 0 else dict_id,
        "fcs_field": field,
    }
