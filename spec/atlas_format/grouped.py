"""Framing "grouped" (spec V2-FRAME-6..9): one pickle of a block's list that also unpickles in parts.

A block of n examples is ``m = frames(n)`` codec frames (frames of ``FRAME_EXAMPLES``); the
stored block is ``m - 1`` u32 frame starts, then the frames. The frames' decoded bytes,
joined, are one protocol 3 pickle of the block's list, so an in-order read is one
``pickle.loads`` (version 1's work). Every example is a *slice*: its own protocol 3 pickle
without PROTO and STOP, whose memo references stay inside it or go to the shard's
*preamble* (a pickle prefix that memoizes what examples share), so a random read unpickles
the preamble and one group (n <= 32) or one frame (n > 32) instead of the block.

Decoded block, n <= 32 (one frame)::

    80 03                   PROTO 3
    43 L                    SHORT_BINBYTES of L bytes: the group table, pushed and popped
    start   u32             where the first slice starts in the decoded block
    offsets (g+1) x u16|u32 group starts relative to ``start`` (u16 when the slices take < 64 KiB)
    30                      POP
    P[2:]                   the shard's preamble without its PROTO (ends EMPTY_LIST MARK)
    slices                  the n slices back to back (groups of ceil(n / 8) examples)
    65 2e                   APPENDS STOP

Decoded block, n > 32: frame 0 = P + slices 0..31, frame j = slices 32j..32j+31, and the
last frame ends with APPENDS STOP; no group table.

A block whose examples protocol 3 cannot express is a *list fallback*: version 1's protocol 4
list pickle (V2-FRAME-5's bytes). For n <= 32 it is the one frame (it starts ``80 04``); for
n > 32 every frame start is the end of the table, so frames 0..m-2 are empty and the last
frame holds the pickle.
"""

from __future__ import annotations

import base64
import binascii
import functools
import struct
from typing import Any

import construct as cs

#: Pickle protocol of slices and preambles: explicit BINPUT indices (protocol 4's MEMOIZE numbers
#: memo entries by arrival, which would tie a slice to the slices before it) and no FRAME opcodes.
GROUPED_PICKLE_PROTOCOL = 3
#: Examples per frame of a block of more than this many examples.
FRAME_EXAMPLES = 32
#: At most this many groups in a one-frame block.
MAX_GROUPS = 8
#: A decoded one-frame block starts with PROTO 3 then SHORT_BINBYTES (the table).
BLOCK_PREFIX = b"\x80\x03C"
#: Every preamble starts with PROTO 3 ...
PREAMBLE_PREFIX = b"\x80\x03"
#: ... and ends with POP, EMPTY_LIST, MARK: the shared list leaves the stack and the block's list begins.
PREAMBLE_SUFFIX = b"0]("
#: The last bytes of every decoded block: APPENDS, STOP.
LIST_END = b"e."
#: The POP after the group table.
TABLE_POP = b"0"
#: Protocol 4's PROTO, which starts a list fallback block.
FALLBACK_PREFIX = b"\x80\x04"
#: The shard meta.json member that holds the preamble, base64 (RFC 4648, with padding).
PREAMBLE_MEMBER = "pickle_preamble"

FrameStarts = cs.Struct("starts" / cs.Array(cs.this._params.frames - 1, cs.Int32ul))
FrameStarts.name = "grouped frame starts"

GroupTable = cs.Struct(
    "proto" / cs.Const(PREAMBLE_PREFIX),
    "opcode" / cs.Const(b"C"),
    "length" / cs.Int8ul,
    "start" / cs.Int32ul,
    "offsets" / cs.Switch(lambda ctx: (ctx.length - 4) // (ctx._params.groups + 1), {
        2: cs.Array(cs.this._params.groups + 1, cs.Int16ul),
        4: cs.Array(cs.this._params.groups + 1, cs.Int32ul),
    }, default=cs.Error),
    "pop" / cs.Const(TABLE_POP),
)
GroupTable.name = "grouped group table"

_START = struct.Struct(FrameStarts.subcons[0].subcon.subcon.fmtstr)  # one u32 (frame start, table start)
_LENGTH_AT = 3  # the SHORT_BINBYTES length byte, after PROTO and the opcode (GroupTable's fields)
_START_AT = _LENGTH_AT + 1
#: Where a decoded one-frame block holds its group table's length (SHORT_BINBYTES' length byte).
TABLE_LENGTH_AT = _LENGTH_AT
_WIDTH_CHAR = {2: "H", 4: "I"}


def frames(n: int) -> int:
    """Codec frames of a block of ``n`` examples."""
    return max(1, -(-n // FRAME_EXAMPLES))


def group_size(n: int) -> int:
    """Examples per group of a one-frame block of ``n`` examples (the last group may be shorter)."""
    return max(1, -(-n // MAX_GROUPS))


def groups(n: int) -> int:
    """Groups of a one-frame block of ``n`` examples."""
    return -(-n // group_size(n))


def frame_table_size(n: int) -> int:
    """Bytes of the frame starts that precede the frames of a stored block of ``n`` examples."""
    return _START.size * (frames(n) - 1)


@functools.lru_cache(maxsize=64)
def frame_starts_struct(n: int) -> struct.Struct:
    """The ``FrameStarts`` of a block of ``n`` examples as one compiled struct (readers' per-block path)."""
    return struct.Struct(_START.format[:1] + _START.format[1:] * (frames(n) - 1))


def frame_starts(stored: Any, n: int) -> tuple[int, ...]:
    """Where each frame of the stored block starts (frame 0 at the end of the table); no check."""
    return (frame_table_size(n), *frame_starts_struct(n).unpack_from(stored, 0))


def frame_span(stored: Any, n: int, j: int, stored_size: int) -> tuple[int, int]:
    """(start, end) of frame ``j`` in the stored block; no check (readers check what they slice)."""
    m = frames(n)
    lo = frame_table_size(n) if j == 0 else _START.unpack_from(stored, _START.size * (j - 1))[0]
    hi = stored_size if j == m - 1 else _START.unpack_from(stored, _START.size * j)[0]
    return lo, hi


def is_fallback(stored: Any, n: int, first_decoded: Any) -> bool:
    """Whether a block is a list fallback: its one frame starts with protocol 4's PROTO (n <= 32) or
    its frame 0 is empty (n > 32)."""
    if frames(n) == 1:
        return bytes(first_decoded[:2]) == FALLBACK_PREFIX
    return bool(_START.unpack_from(stored, 0)[0] == frame_table_size(n))


def group_table(raw: Any, n: int) -> tuple[int, tuple[int, ...]]:
    """(start, group offsets) of a decoded one-frame block; ValueError when the table's length does not
    match n's group count (the reader's fast path: the validator parses ``GroupTable``)."""
    length = raw[_LENGTH_AT]
    count = groups(n) + 1
    width, rest = divmod(length - _START.size, count)
    if rest or width not in _WIDTH_CHAR:
        raise ValueError(f"group table of {length} bytes does not hold {count} offsets of 2 or 4 bytes")
    start, *offsets = struct.unpack_from(f"<I{count}{_WIDTH_CHAR[width]}", raw, _START_AT)
    return start, tuple(offsets)


def group_table_struct(n: int, length: int) -> tuple[struct.Struct, int]:
    """(struct of ``start`` then the group offsets, where it starts in the decoded block) of a one-frame
    block of ``n`` examples whose table is ``length`` bytes (the byte at ``TABLE_LENGTH_AT``): readers keep
    it per (n, length) so a random read parses no format; ValueError as ``group_table``."""
    count = groups(n) + 1
    width, rest = divmod(length - _START.size, count)
    if rest or width not in _WIDTH_CHAR:
        raise ValueError(f"group table of {length} bytes does not hold {count} offsets of 2 or 4 bytes")
    return struct.Struct(f"<I{count}{_WIDTH_CHAR[width]}"), _START_AT


def group_of(n: int, k: int) -> tuple[int, int]:
    """(group, position in the group) of example ``k`` of a one-frame block of ``n`` examples."""
    return divmod(k, group_size(n))


def encode_frames(preamble: bytes, slices: list[bytes]) -> list[bytes]:
    """The decoded frames of a block whose examples pickle to ``slices`` after ``preamble``."""
    n = len(slices)
    if n <= FRAME_EXAMPLES:
        size = group_size(n)
        offsets = [0]
        for a in range(0, n, size):
            offsets.append(offsets[-1] + sum(map(len, slices[a:a + size])))
        width = 2 if offsets[-1] < 1 << 16 else 4
        length = _START.size + width * len(offsets)
        start = len(BLOCK_PREFIX) + 1 + length + len(TABLE_POP) + len(preamble) - len(PREAMBLE_PREFIX)
        table = struct.pack(f"<BI{len(offsets)}{_WIDTH_CHAR[width]}", length, start, *offsets)
        return [BLOCK_PREFIX + table + TABLE_POP + preamble[len(PREAMBLE_PREFIX):] + b"".join(slices) + LIST_END]
    parts = [b"".join(slices[a:a + FRAME_EXAMPLES]) for a in range(0, n, FRAME_EXAMPLES)]
    parts[0] = preamble + parts[0]
    parts[-1] += LIST_END
    return parts


def stored_block(encoded_frames: list[bytes]) -> bytes:
    """The stored block: the u32 starts of frames 1..m-1, then the (encoded) frames."""
    at = _START.size * (len(encoded_frames) - 1)
    starts = []
    for frame in encoded_frames[:-1]:
        at += len(frame)
        starts.append(at)
    return struct.pack(f"<{len(starts)}I", *starts) + b"".join(encoded_frames)


def fallback_block(n: int, encoded_pickle: bytes) -> bytes:
    """The stored list fallback block: every frame start at the table's end, then the one frame."""
    m = frames(n)
    return struct.pack(f"<{m - 1}I", *[frame_table_size(n)] * (m - 1)) + encoded_pickle


def preamble_to_json(preamble: bytes) -> str:
    """The ``pickle_preamble`` member's text."""
    return base64.b64encode(preamble).decode("ascii")


def preamble_from_json(text: Any) -> bytes:
    """The preamble a ``pickle_preamble`` member holds; ValueError when it is not canonical base64."""
    if not isinstance(text, str):
        raise ValueError(f"{PREAMBLE_MEMBER} must be a base64 string, got {type(text).__name__}")
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError(f"{PREAMBLE_MEMBER} is not base64: {exc}") from None
    if preamble_to_json(data) != text:
        raise ValueError(f"{PREAMBLE_MEMBER} is not canonical base64 (padding or trailing bits)")
    return data
