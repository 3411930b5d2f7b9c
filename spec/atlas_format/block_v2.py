"""The decoded version 2 block: an example-offset table, then one pickle per example.

    count     u32                 n, the examples in the block
    offsets   (n + 1) x u32       offsets[j] = start of example j in the payload;
                                  offsets[0] = 0, offsets[n] = payload size, strictly increasing
    payload   offsets[n] bytes    example pickles, back to back

Example ``j`` is ``payload[offsets[j]:offsets[j+1]]``: it is unpickled without its
neighbours, and in an uncompressed block it is read without reading the rest.

With framing "example" (spec V2-FRAME) the *stored* block has this same layout, but
uncompressed and over codec frames: ``payload[offsets[j]:offsets[j+1]]`` is one frame
that decodes to example ``j``'s pickle. The block's ``raw_size`` stays the size of the
decoded block above, ``table_size(n) + sum(decoded example sizes)``.
"""

from __future__ import annotations

import struct
from typing import Any

import construct as cs

BlockTable = cs.Struct(
    "count" / cs.Int32ul,
    "offsets" / cs.Array(cs.this.count + 1, cs.Int32ul),
)
BlockTable.name = "block example table"

Block = cs.Struct(
    "count" / cs.Rebuild(cs.Int32ul, cs.len_(cs.this.examples)),
    "offsets" / cs.Rebuild(cs.Array(cs.this.count + 1, cs.Int32ul), lambda ctx: _offsets(ctx.examples)),
    "examples" / cs.Array(cs.this.count, cs.Bytes(lambda ctx: ctx.offsets[ctx._index + 1] - ctx.offsets[ctx._index])),
    cs.Terminated,
)
Block.name = "block"

# Fast-path layouts derived from the declaration: the count field, then one u32 per offset.
_COUNT_FIELD = BlockTable.subcons[0].subcon
_OFFSET_FIELD = BlockTable.subcons[1].subcon.subcon
U32 = struct.Struct(_COUNT_FIELD.fmtstr)
U32_PAIR = struct.Struct(_OFFSET_FIELD.fmtstr + _OFFSET_FIELD.fmtstr[1:])
COUNT_SIZE: int = _COUNT_FIELD.sizeof()
OFFSET_SIZE: int = _OFFSET_FIELD.sizeof()
_OFFSET_CHAR = _OFFSET_FIELD.fmtstr[1:]
_OFFSET_ORDER = _OFFSET_FIELD.fmtstr[0]

#: The same reads as ``block_count`` and ``example_span``, as bound methods for readers' hot loops (no
#: Python frame per read): ``read_count(buf, at)[0]`` is the count of the block at ``at``, and
#: ``read_span(buf, at + SPAN_AT + OFFSET_SIZE * pos)`` is (offsets[pos], offsets[pos + 1]).
read_count = U32.unpack_from
read_span = U32_PAIR.unpack_from
SPAN_AT: int = COUNT_SIZE

#: The offsets arrays of the block sizes in use (a shard has at most two: full blocks and its last one),
#: compiled once; bounded, since a crafted dataset may have as many sizes as shards.
_OFFSETS_ARRAYS: dict[int, struct.Struct] = {}
_OFFSETS_ARRAYS_MAX = 256


def block_count(buf: Any, at: int = 0) -> int:
    """The ``count`` field of the block (or stored table) starting at ``at`` of ``buf``."""
    count: int = read_count(buf, at)[0]
    return count


def example_span(buf: Any, pos: int, at: int = 0) -> tuple[int, int]:
    """(offsets[pos], offsets[pos + 1]) of the block at ``at``: where example ``pos`` lies in the payload."""
    span: tuple[int, int] = read_span(buf, at + SPAN_AT + OFFSET_SIZE * pos)
    return span


def offsets_array(count: int) -> struct.Struct:
    """The layout of the offsets array of a block of ``count`` examples (``count + 1`` offsets)."""
    layout = _OFFSETS_ARRAYS.get(count)
    if layout is None:
        layout = struct.Struct(f"{_OFFSET_ORDER}{count + 1}{_OFFSET_CHAR}")
        if len(_OFFSETS_ARRAYS) < _OFFSETS_ARRAYS_MAX:
            _OFFSETS_ARRAYS[count] = layout
    return layout


def example_offsets(buf: Any, count: int, at: int = 0) -> tuple[int, ...]:
    """The whole offsets array (``count + 1`` values) of the block at ``at`` (no check: see the callers)."""
    return offsets_array(count).unpack_from(buf, at + COUNT_SIZE)


def _offsets(examples: list[bytes]) -> list[int]:
    out = [0]
    for ex in examples:
        out.append(out[-1] + len(ex))
    return out


def table_size(count: int) -> int:
    """Bytes of the count and offset table for ``count`` examples."""
    return COUNT_SIZE + OFFSET_SIZE * (count + 1)


def encode_block(pickles: list[bytes]) -> bytes:
    """The decoded block bytes for these example pickles (joined without copying twice)."""
    offsets = _offsets(pickles)
    head = struct.pack(f"<I{len(offsets)}I", len(pickles), *offsets)
    return head + b"".join(pickles)


def decoded_size(count: int, example_sizes: list[int]) -> int:
    """``raw_size`` of a block of ``count`` examples whose pickles have these sizes (either framing)."""
    return table_size(count) + sum(example_sizes)


def parse_block(data: bytes) -> Any:
    """Parse a whole decoded block (the validator's and the tests' slow, thorough path)."""
    return Block.parse(data)
