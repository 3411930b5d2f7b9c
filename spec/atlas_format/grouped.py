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
    slices                  the n slices back to back (groups of min(G, ceil(n / 8)) examples)
    65 2e                   APPENDS STOP

Decoded block, n > 32: frame 0 = P + slices 0..31, frame j = slices 32j..32j+31, and the
last frame ends with APPENDS STOP; no group table inside. Instead the stored block's *head* holds,
after the frame starts, each frame's interior group offsets (groups of G examples, u16 when the
block's raw_size is below 64 KiB, else u32), so a random read decodes one frame and unpickles P and
one group of G.

G, the shard's *group size*, is 8 (``FRAME_GROUP``), 4, 2 or 1: the writer's choice by example size
(``choose_group``), recorded in the shard's meta.json (``group_size``, absent for 8) and in its index
flags (bits 3-4), so a reader that predates the choice refuses the shard rather than misreading it.

Typed examples (TYPED-7) keep this stored layout without a preamble: the decoded block is framing list's
MessagePack array of the n examples (``typed_frames``: the array header, then examples 0..31 in frame 0),
and every block's head holds its frames' group offsets, a one-frame block's too (``typed=True``).

A block whose examples protocol 3 cannot express is a *list fallback*: version 1's protocol 4
list pickle (V2-FRAME-5's bytes). For n <= 32 it is the one frame (it starts ``80 04``); for
n > 32 every frame start is the end of the head (its group offsets 0), so frames 0..m-2 are
empty and the last frame holds the pickle.
"""

from __future__ import annotations

import base64
import binascii
import functools
import struct
from typing import Any

import construct as cs

from .enums import INDEX_FLAG_GROUP_SHIFT
from .typed import array_header as typed_array_header

#: Pickle protocol of slices and preambles: explicit BINPUT indices (protocol 4's MEMOIZE numbers
#: memo entries by arrival, which would tie a slice to the slices before it) and no FRAME opcodes.
GROUPED_PICKLE_PROTOCOL = 3
#: Examples per frame of a block of more than this many examples.
FRAME_EXAMPLES = 32
#: At most this many groups in a one-frame block.
MAX_GROUPS = 8
#: Examples per group inside a frame of a block of more than FRAME_EXAMPLES examples, unless the shard
#: says otherwise (``GROUP_SIZE_MEMBER``): the group size of every grouped shard written before it was a choice.
FRAME_GROUP = 8
#: The group sizes a shard may have, in the order of their index flag code (``8 >> code``).
GROUP_SIZES = (8, 4, 2, 1)
#: The shard meta.json member that holds a group size other than FRAME_GROUP.
GROUP_SIZE_MEMBER = "group_size"
#: Writers choose the smallest group whose examples take at least this many pickled bytes: a random read
#: unpickles one group, and each group costs one head offset (2 bytes, 0.1% of a 2 KiB group compressed 1:1).
GROUP_BYTES = 2048
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

#: The head of a stored block of more than 32 examples: the frame starts, then every frame's interior
#: group offsets in frame order (params: frames, interior = their count, width = 2 or 4 from raw_size).
GroupedHead = cs.Struct(
    "starts" / cs.Array(cs.this._params.frames - 1, cs.Int32ul),
    "group_offsets" / cs.Array(cs.this._params.interior, cs.Switch(cs.this._params.width, {
        2: cs.Int16ul, 4: cs.Int32ul}, default=cs.Error)),
)
GroupedHead.name = "grouped block head"

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

_START = struct.Struct(GroupedHead.subcons[0].subcon.subcon.fmtstr)  # one u32 (frame start, table start)
_LENGTH_AT = 3  # the SHORT_BINBYTES length byte, after PROTO and the opcode (GroupTable's fields)
_START_AT = _LENGTH_AT + 1
#: Where a decoded one-frame block holds its group table's length (SHORT_BINBYTES' length byte).
TABLE_LENGTH_AT = _LENGTH_AT
_WIDTH_CHAR = {2: "H", 4: "I"}
_GROUP_FLAGS_AT = (INDEX_FLAG_GROUP_SHIFT & -INDEX_FLAG_GROUP_SHIFT).bit_length() - 1  # its lowest bit: 3


def choose_group(mean_slice: float) -> int:
    """The group size for examples whose slices take ``mean_slice`` bytes on average (``GROUP_BYTES``)."""
    return next((g for g in reversed(GROUP_SIZES) if g * mean_slice >= GROUP_BYTES), FRAME_GROUP)


def group_flags(group: int) -> int:
    """The index flag bits (3-4) of a grouped shard's group size."""
    return GROUP_SIZES.index(group) << _GROUP_FLAGS_AT


def group_of_flags(flags: int) -> int:
    """The group size an index header's flags state (0 in bits 3-4: FRAME_GROUP)."""
    return GROUP_SIZES[(flags & INDEX_FLAG_GROUP_SHIFT) >> _GROUP_FLAGS_AT]


def group_of_meta(doc: Any) -> int:
    """The group size a grouped shard's meta.json states (absent: FRAME_GROUP); ValueError if not one."""
    group = doc.get(GROUP_SIZE_MEMBER, FRAME_GROUP)
    if type(group) is not int or group not in GROUP_SIZES:
        raise ValueError(f"{GROUP_SIZE_MEMBER} must be one of {', '.join(map(str, GROUP_SIZES))}, got {group!r}")
    return group


def group_member(group: int) -> dict[str, int]:
    """The meta.json member writers put for a group size: none for FRAME_GROUP (earlier shards' bytes)."""
    return {} if group == FRAME_GROUP else {GROUP_SIZE_MEMBER: group}


def frames(n: int) -> int:
    """Codec frames of a block of ``n`` examples."""
    return max(1, -(-n // FRAME_EXAMPLES))


def group_size(n: int, group: int = FRAME_GROUP) -> int:
    """Examples per group of a one-frame block of ``n`` examples in a shard of groups of ``group`` (at most
    ``MAX_GROUPS`` groups of up to ``group``; the last group may be shorter)."""
    return max(1, min(group, -(-n // MAX_GROUPS)))


def block_group(n: int, group: int = FRAME_GROUP) -> int:
    """Examples per group of a block of ``n`` examples: ``group`` inside frames of 32 (n > 32), else the
    one-frame rule of ``group_size`` (at most MAX_GROUPS groups)."""
    return group if n > FRAME_EXAMPLES else group_size(n, group)


def groups(n: int, group: int = FRAME_GROUP) -> int:
    """Groups of a one-frame block of ``n`` examples."""
    return -(-n // group_size(n, group))


def frame_table_size(n: int) -> int:
    """Bytes of the frame starts at the start of a stored block of ``n`` examples."""
    return _START.size * (frames(n) - 1)


def frame_counts(n: int) -> list[int]:
    """Examples in each frame of a block of ``n`` examples."""
    return [min(FRAME_EXAMPLES, n - a) for a in range(0, n, FRAME_EXAMPLES)] or [n]


def interior_groups(n: int, group: int = FRAME_GROUP, typed: bool = False) -> list[int]:
    """Interior group offsets (groups - 1) in the head for each frame of a block of ``n`` examples: pickles
    have them for n > 32 ([0] otherwise: a one-frame block's table is inside it), typed examples always
    (TYPED-7)."""
    if n <= FRAME_EXAMPLES:
        return [groups(n, group) - 1 if typed else 0]
    return [-(-count // group) - 1 for count in frame_counts(n)]


def offset_width(raw_size: int) -> int:
    """Bytes of one head group offset: 2 when the decoded block (so every frame) is below 64 KiB, else 4."""
    return 2 if raw_size < 1 << 16 else 4


def head_size(n: int, raw_size: int, group: int = FRAME_GROUP, typed: bool = False) -> int:
    """Bytes of the head (frame starts, group offsets) of a stored block: where frame 0 starts."""
    return frame_table_size(n) + offset_width(raw_size) * sum(interior_groups(n, group, typed))


@functools.lru_cache(maxsize=128)
def head_struct(n: int, width: int, group: int = FRAME_GROUP, typed: bool = False) -> struct.Struct:
    """``GroupedHead`` of a block of ``n`` examples as one compiled struct (readers' per-block path)."""
    return struct.Struct("<" + "I" * (frames(n) - 1) + _WIDTH_CHAR[width] * sum(interior_groups(n, group, typed)))


def read_head(stored: Any, n: int, raw_size: int, group: int = FRAME_GROUP, typed: bool = False
              ) -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]:
    """(frame starts with frame 0's, each frame's interior group offsets) of a stored block; no check."""
    m = frames(n)
    values = head_struct(n, offset_width(raw_size), group, typed).unpack_from(stored, 0)
    starts = (head_size(n, raw_size, group, typed), *values[:m - 1])
    offsets, at = [], m - 1
    for count in interior_groups(n, group, typed):
        offsets.append(values[at:at + count])
        at += count
    return starts, tuple(offsets)


def frame_span(stored: Any, n: int, j: int, stored_size: int, raw_size: int) -> tuple[int, int]:
    """(start, end) of frame ``j`` in the stored block; no check (readers check what they slice)."""
    m = frames(n)
    lo = head_size(n, raw_size) if j == 0 else _START.unpack_from(stored, _START.size * (j - 1))[0]
    hi = stored_size if j == m - 1 else _START.unpack_from(stored, _START.size * j)[0]
    return lo, hi


def frame_group_span(offsets: tuple[int, ...], q: int, base: int, end: int) -> tuple[int, int]:
    """(start, end) in a decoded frame of its group ``q``: ``base`` is where its first slice starts (len(P)
    in frame 0, else 0), ``end`` where its last slice ends (before APPENDS STOP in the last frame)."""
    return (base if q == 0 else base + offsets[q - 1]), (end if q == len(offsets) else base + offsets[q])


def is_fallback(stored: Any, n: int, first_decoded: Any, raw_size: int, group: int = FRAME_GROUP) -> bool:
    """Whether a block is a list fallback: its one frame starts with protocol 4's PROTO (n <= 32) or
    its frame 0 is empty (n > 32)."""
    if frames(n) == 1:
        return bytes(first_decoded[:2]) == FALLBACK_PREFIX
    return bool(_START.unpack_from(stored, 0)[0] == head_size(n, raw_size, group))


def group_table(raw: Any, n: int, group: int = FRAME_GROUP) -> tuple[int, tuple[int, ...]]:
    """(start, group offsets) of a decoded one-frame block; ValueError when the table's length does not
    match n's group count (the reader's fast path: the validator parses ``GroupTable``)."""
    layout, at = group_table_struct(n, raw[_LENGTH_AT], group)
    start, *offsets = layout.unpack_from(raw, at)
    return start, tuple(offsets)


def group_table_struct(n: int, length: int, group: int = FRAME_GROUP) -> tuple[struct.Struct, int]:
    """(struct of ``start`` then the group offsets, where it starts in the decoded block) of a one-frame
    block of ``n`` examples whose table is ``length`` bytes (the byte at ``TABLE_LENGTH_AT``): readers keep
    it per (n, length) so a random read parses no format; ValueError as ``group_table``."""
    count = groups(n, group) + 1
    width, rest = divmod(length - _START.size, count)
    if rest or width not in _WIDTH_CHAR:
        raise ValueError(f"group table of {length} bytes does not hold {count} offsets of 2 or 4 bytes")
    return struct.Struct(f"<I{count}{_WIDTH_CHAR[width]}"), _START_AT


def group_of(n: int, k: int, group: int = FRAME_GROUP) -> tuple[int, int]:
    """(group, position in the group) of example ``k`` of a one-frame block of ``n`` examples."""
    return divmod(k, group_size(n, group))


def encode_frames(preamble: bytes, slices: list[bytes], group: int = FRAME_GROUP) -> list[bytes]:
    """The decoded frames of a block whose examples pickle to ``slices`` after ``preamble``."""
    n = len(slices)
    if n <= FRAME_EXAMPLES:
        size = group_size(n, group)
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


def frame_group_offsets(slices: list[bytes], group: int = FRAME_GROUP) -> list[list[int]]:
    """Each frame's interior group offsets (relative to its first slice or typed example) of a block of more
    than 32 slices, or of any typed block (TYPED-7)."""
    out = []
    for a in range(0, len(slices), FRAME_EXAMPLES):
        frame = slices[a:a + FRAME_EXAMPLES]
        offsets, at = [], 0
        for b in range(0, len(frame) - group, group):
            at += sum(map(len, frame[b:b + group]))
            offsets.append(at)
        out.append(offsets)
    return out


def stored_block(encoded_frames: list[bytes], group_offsets: list[list[int]] | None = None,
                 raw_size: int = 0) -> bytes:
    """The stored block: the head (u32 starts of frames 1..m-1, then ``group_offsets`` of each frame, of
    ``offset_width(raw_size)``: none for a one-frame pickle block, whose table is inside), then the (encoded)
    frames."""
    m = len(encoded_frames)
    interior = [o for frame in (group_offsets or []) for o in frame]
    width = offset_width(raw_size)
    at = _START.size * (m - 1) + width * len(interior)
    starts = []
    for frame in encoded_frames[:-1]:
        at += len(frame)
        starts.append(at)
    head = struct.pack(f"<{len(starts)}I{len(interior)}{_WIDTH_CHAR[width]}", *starts, *interior)
    return head + b"".join(encoded_frames)


def fallback_block(n: int, encoded_pickle: bytes, raw_size: int, group: int = FRAME_GROUP) -> bytes:
    """The stored list fallback block: every frame start at the head's end (group offsets 0), then the one
    frame."""
    m = frames(n)
    head = head_size(n, raw_size, group)
    return struct.pack(f"<{m - 1}I", *[head] * (m - 1)) + bytes(head - frame_table_size(n)) + encoded_pickle


def typed_frames(items: list[bytes]) -> list[bytes]:
    """The decoded frames of a block of typed examples (TYPED-7): framing list's array split after every 32
    examples, the array header at the start of frame 0."""
    parts = [b"".join(items[a:a + FRAME_EXAMPLES]) for a in range(0, len(items), FRAME_EXAMPLES)] or [b""]
    parts[0] = typed_array_header(len(items)) + parts[0]
    return parts


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
