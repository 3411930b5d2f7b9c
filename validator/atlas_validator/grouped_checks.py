"""Framing grouped (V2-FRAME-6..9): the shard's preamble, each block's frames, layout and slices.

A grouped block is one list pickle that a random read also unpickles in parts (a group: of the table
of a one-frame block, or of 8 examples inside a frame of 32, located by the stored head). The checks
make sure both reads give the same examples: the head's frame starts and group offsets are in order,
the frames decode within the index's raw_size (LIM-2), the group table and the copy of the preamble
are what the shard says, and the opcode scan (``slice_scan``) passes every part as a random read
scans it. Offsets come from ``atlas_format.grouped``; a list fallback block (V2-FRAME-8) is checked
as framing list and counted.
"""

from __future__ import annotations

import io
import pickletools
import struct
from dataclasses import dataclass
from typing import Any

from atlas_format import grouped
from atlas_format.binary import parse
from atlas_format.codecs import CodecInfo
from atlas_format.constants import V2_LIST_PICKLE_PROTOCOL, Limits
from atlas_format.enums import Codec
from atlas_format.errors import AtlasError
from atlas_format.list_items import list_item_at

from .blocks import check_list_pickle, decode_frame, frame_declared_size
from .common import Sink
from .findings import Stats
from .pickle_scan import ScanLimits, scan_pickle
from .slice_scan import Part, scan_grouped
from .typed_scan import check_typed_grouped

#: Clauses of the shape findings of a list fallback block (checked as framing list, V2-FRAME-8).
FALLBACK_CLAUSES = {"ATL411": "V2-FRAME-8, V2-FRAME-5", "ATL412": "V2-FRAME-8, V2-FRAME-5",
                    "ATL414": "V2-FRAME-8, V2-FRAME-5", "ATL415": "V2-FRAME-8, V2-FRAME-5"}
#: Opcodes a preamble must not hold: it numbers its memo with explicit PUTs and has one PROTO, no STOP.
_PREAMBLE_REFUSED = {"MEMOIZE", "FRAME", "PROTO", "STOP"}
_TABLE_AT = len(grouped.BLOCK_PREFIX) + 1  # the table's u32 start, after PROTO, SHORT_BINBYTES and its length
_START_SIZE = next(c for c in grouped.GroupTable.subcons if c.name == "start").sizeof()


def check_preamble(text: Any, sink: Sink, *, shown: str, limits: Limits, scan_limits: ScanLimits,
                   allowed: frozenset[tuple[str, str]]) -> bytes | None:
    """The shard's preamble P from its ``pickle_preamble`` member, or None after reporting why it is not one
    (presence is the schema's rule, ATL203): canonical base64, at most max_preamble_size, PROTO 3 ... POP
    EMPTY_LIST MARK, P + APPENDS STOP a pickle of [] under the pickle policy, PUTs 0..p-1 once each."""
    where = {"path": shown}
    member = grouped.PREAMBLE_MEMBER
    if isinstance(text, str) and len(text) // 4 * 3 > limits.max_preamble_size + 2:
        sink.add("ATL900", f"{member} holds about {len(text) // 4 * 3} bytes, above max_preamble_size "
                           f"{limits.max_preamble_size} (refused before decoding)", **where, clause="LIM-1, V2-FRAME-7")
        return None
    try:
        data = grouped.preamble_from_json(text)
    except ValueError as exc:
        sink.add("ATL216", str(exc), **where)
        return None
    if len(data) > limits.max_preamble_size:
        sink.add("ATL900", f"{member} decodes to {len(data)} bytes, above max_preamble_size "
                           f"{limits.max_preamble_size}", **where, clause="LIM-1, V2-FRAME-7")
        return None
    problems = []
    if not data.startswith(grouped.PREAMBLE_PREFIX):
        problems.append(f"does not start with PROTO 3 ({grouped.PREAMBLE_PREFIX.hex(' ')})")
    if not data.endswith(grouped.PREAMBLE_SUFFIX) or len(data) < len(grouped.PREAMBLE_PREFIX + grouped.PREAMBLE_SUFFIX):
        problems.append(f"does not end with POP EMPTY_LIST MARK ({grouped.PREAMBLE_SUFFIX.hex(' ')})")
    for problem in problems:
        sink.add("ATL216", f"{member} ({len(data)} bytes decoded) {problem}", **where)
    if problems:
        return None
    whole = data + grouped.LIST_END
    # its globals are not counted here (ATL605): every block holds the same preamble and counts them
    result = scan_pickle(whole, limits=scan_limits, shape=True, allowed=allowed)
    for issue in result.issues:  # the policy's own ids; a pickle that is not well formed is not a preamble
        sink.add("ATL216" if issue.id == "ATL413" else issue.id,
                 f"{member} + APPENDS STOP: {issue.message} (decoded offset {issue.offset})", **where)
    if result.issues:
        return None
    if result.end != len(whole) or not result.top_is_list or result.top_count:
        sink.add("ATL216", f"{member} + APPENDS STOP does not unpickle to the empty list (STOP at decoded offset "
                           f"{result.end}, {result.top_count} items)", **where)
        return None
    puts: list[int] = []
    for op, arg, pos in pickletools.genops(io.BytesIO(whole)):
        if op.name in _PREAMBLE_REFUSED and not (op.name == "PROTO" and pos == 0) \
                and not (op.name == "STOP" and pos == len(data) + 1):
            sink.add("ATL216", f"{member} holds opcode {op.name} at decoded offset {pos}", **where)
            return None
        if op.name in ("BINPUT", "LONG_BINPUT", "PUT") and isinstance(arg, int):
            puts.append(arg)
    if puts != list(range(len(puts))):
        sink.add("ATL216", f"{member}'s memo PUT indices are {_short(puts)}, expected 0..{len(puts) - 1} in order, "
                           "each once", **where)
        return None
    return data


def _short(values: list[int]) -> str:
    return ", ".join(map(str, values[:12])) + (", ..." if len(values) > 12 else "")


@dataclass
class GroupedShard:
    """What every block check of a grouped shard shares: the shard's preamble (None: unusable, the slices are then
    scanned as one list pickle), the block shape, and the count of list fallback blocks."""

    preamble: bytes | None
    block_size: int | None
    num_examples: int | None
    #: examples per group (meta.json's group_size, which the index flags must agree with: checks_v2)
    group: int = grouped.FRAME_GROUP
    #: typed examples (index flag bit 5, TYPED-7): framing list's array in frames, groups located by every head
    typed: bool = False
    fallbacks: int = 0

    def count(self, b: int) -> int | None:
        """Examples of block ``b`` (V2-BLOCK-1), None when the metadata does not say."""
        if not self.block_size or self.num_examples is None:
            return None
        n = min(self.block_size, self.num_examples - b * self.block_size)
        return n if n > 0 else None

    def finish(self, sink: Sink, shown: str) -> None:
        """ATL423, once per shard: how many blocks fell back to a protocol 4 list (V2-FRAME-8)."""
        if self.fallbacks:
            sink.add("ATL423", f"{self.fallbacks} block(s) of the shard are list fallbacks (protocol 4 list pickles, "
                               "checked as framing list; a random read unpickles the whole block)", path=shown,
                     data={"fallback_blocks": self.fallbacks})


def check_block(shard: GroupedShard, task: Any, sink: Sink, stats: Stats, data: Any, b: int, offset: int,
                raw_size: int, info: CodecInfo, dctx: Any, shown: str) -> None:
    """One stored grouped block whose checksum matched: frame starts, frames (headers before decoding), then
    the decoded block's layout and slices, or the list fallback."""
    n = shard.count(b)
    if n is None:
        return  # the block count and shape are reported by the metadata and index checks
    where = {"path": shown, "block": b, "offset": offset}
    group = shard.group
    head = _head(data, n, raw_size, group, sink, where, shard.typed)
    if head is None:
        return
    spans, group_offsets = head
    m = len(spans)
    fallback = m > 1 and spans[0][0] == spans[0][1]
    if fallback and shard.typed:
        sink.add("ATL416", f"frame 0 is empty (frame 1 starts at {spans[0][0]}, the end of the head): typed blocks "
                           "have no list fallback", **where, clause="TYPED-7")
        return
    if fallback:
        spans = spans[-1:]
    pieces = _decode_frames(data, spans, raw_size, info, dctx, task.limits, sink, where, b)
    if pieces is None:
        return
    raw = pieces[0] if len(pieces) == 1 else b"".join(pieces)
    stats.decoded_bytes += len(raw)
    locate = _Locator(offset, spans, pieces, info.codec == Codec.NONE)
    first = b * (shard.block_size or 0)
    if shard.typed:
        check_typed_grouped(raw, locate.ends, group_offsets, n, group, sink, path=shown, block=b, offset=offset,
                            first=first if shard.block_size else None, locate=locate)
        return
    if fallback or (m == 1 and raw[:len(grouped.FALLBACK_PREFIX)] == grouped.FALLBACK_PREFIX):
        shard.fallbacks += 1
        compressed = info.codec != Codec.NONE
        check_list_pickle(raw, scan_limits=task.scan_limits, sink=sink, path=shown, block=b,
                          offset=offset if compressed else offset + spans[0][0], compressed=compressed, expected=n,
                          clauses=FALLBACK_CLAUSES,
                          protocol=V2_LIST_PICKLE_PROTOCOL, allowed=task.allowed,
                          first=b * shard.block_size if shard.block_size else None)
        return
    layout = _layout(raw, pieces, n, group, shard.preamble, group_offsets, sink, where)
    if layout is None:  # no usable preamble, table or copy of the preamble: the policy still applies to the pickle
        check_list_pickle(raw, scan_limits=task.scan_limits, sink=sink, path=shown, block=b, offset=offset,
                          compressed=True, expected=n, clauses={k: "V2-FRAME-6" for k in FALLBACK_CLAUSES},
                          allowed=task.allowed)
        return
    prefix_end, parts = layout
    result = scan_grouped(raw, prefix_end, parts, limits=task.scan_limits, allowed=task.allowed)
    sink.note_allowed(result.allowed, **where)
    for issue, part in result.issues:
        at = issue.offset if issue.offset is not None else 0
        example: dict[str, Any] = {}
        if part is not None and issue.id != "ATL420":
            k = list_item_at(grouped.PREAMBLE_PREFIX + b"](" + raw[part.start:part.end] + grouped.LIST_END,
                             at - part.start + len(grouped.PREAMBLE_PREFIX) + 2)
            if k is not None:
                position = part.first + k
                example = {"position": position, "example": first + position if shard.block_size else None}
        in_part = "" if part is None or issue.message.startswith(part.name) else f"{part.name}, "
        data_offset, text = locate(at)
        sink.add(issue.id, f"{issue.message} ({in_part}{text})", **{**where, **example, "offset": data_offset})
    if result.count is not None and result.count != n:
        sink.add("ATL411", f"block holds {result.count} examples, expected {n}", **where, clause="V2-FRAME-6")


def _head(data: Any, n: int, raw_size: int, group: int, sink: Sink, where: dict[str, Any], typed: bool = False
          ) -> tuple[list[tuple[int, int]], list[tuple[int, ...]]] | None:
    """(start, end) of each frame in the stored block and each frame's interior group offsets, from the block's
    head (V2-FRAME-7; typed examples: a one-frame block's head too, TYPED-7); None after ATL416. A list fallback
    (frames 0..m-2 empty, every start at the head's end, every group offset 0: V2-FRAME-8) is returned as such."""
    head = grouped.head_size(n, raw_size, group, typed)
    size = len(data)
    m = grouped.frames(n)
    if size <= head:
        sink.add("ATL416", f"stored block of {size} bytes holds no frame after its head of {head} bytes ({m - 1} "
                           f"frame starts, {sum(grouped.interior_groups(n, group, typed)) if m > 1 or typed else 0} "
                           f"group offsets of {grouped.offset_width(raw_size)} bytes for raw_size {raw_size})", **where)
        return None
    if m == 1 and not typed:
        return [(0, size)], [()]
    starts_0, offsets = grouped.read_head(data, n, raw_size, group, typed)  # (GroupedHead, without construct's cost)
    starts = list(starts_0[1:])
    bounds = [head, *starts, size]
    if starts and starts[0] == head:  # a list fallback: every start at the end of the head, every group offset 0
        bad = [s for s in starts if s != head]
        nonzero = [o for frame in offsets for o in frame if o]
        if bad or nonzero:
            found = f"starts {_short(bad)}" if bad else f"group offsets {_short(nonzero)}"
            sink.add("ATL416", f"frame 1 starts at {head} (the end of the head: a list fallback), so every frame "
                               f"start must be {head} and every group offset 0; found {found}", **where)
            return None
        return [(head, head)] * len(starts) + [(head, size)], list(offsets)
    for j in range(len(starts)):
        if not bounds[j] < bounds[j + 1] < size:
            sink.add("ATL416", f"frame {j + 1} starts at {bounds[j + 1]}: starts must increase strictly from "
                               f"{head} (the end of the head) and stay below the stored size {size}",
                     **{**where, "offset": where["offset"] + 4 * j})
            return None
    at = grouped.frame_table_size(n)
    width = grouped.offset_width(raw_size)
    for j, frame in enumerate(offsets):
        for q, value in enumerate(frame):
            if value <= (frame[q - 1] if q else 0):
                _bad_head(data, n, raw_size, group, typed, sink, {**where, "offset": where["offset"] + at + width * q},
                          f"frame {j}'s group offset {q + 1} is {value}: a frame's group offsets must be greater than "
                          f"0 and increase strictly ({_short(list(frame))})")
                return None
        at += width * len(frame)
    return [(bounds[j], bounds[j + 1]) for j in range(len(bounds) - 1)], list(offsets)


def _bad_head(data: Any, n: int, raw_size: int, group: int, typed: bool, sink: Sink, where: dict[str, Any],
              problem: str) -> None:
    """ATL416 on a head whose values are out of order, named by construct's ``GroupedHead`` (the declaration)."""
    m, width = grouped.frames(n), grouped.offset_width(raw_size)
    try:
        parsed = parse(grouped.GroupedHead, data[:grouped.head_size(n, raw_size, group, typed)], frames=m,
                       interior=sum(grouped.interior_groups(n, group, typed)), width=width)
        detail = (f"{grouped.GroupedHead.name}: {m - 1} u32 starts {_short(list(parsed.starts))}, "
                  f"{len(parsed.group_offsets)} u{8 * width} group offsets")
    except AtlasError as exc:
        detail = exc.message
    sink.add("ATL416", f"{problem} ({detail})", **where)


def _decode_frames(data: Any, spans: list[tuple[int, int]], raw_size: int, info: CodecInfo, dctx: Any,
                   limits: Limits, sink: Sink, where: dict[str, Any], b: int) -> list[bytes] | None:
    """Every frame's decoded bytes; the headers are read first and their declared sizes checked against the
    raw_size left (LIM-2) before anything is decoded. None after reporting a frame that cannot be used."""
    frames = [data[lo:hi] for lo, hi in spans]

    def name(j: int) -> str:
        return f"frame {j} of the block"

    def at(j: int) -> dict[str, Any]:
        return {**where, "offset": where["offset"] + spans[j][0]}

    if info.codec == Codec.NONE:
        declared: list[int | None] = [len(f) for f in frames]
    else:
        declared = []
        left = raw_size
        for j, frame in enumerate(frames):
            size = frame_declared_size(info, frame, dict_id=0, limits=limits, sink=sink, where=at(j), frame=name(j),
                                       clause="V2-FRAME-7")
            if size is not None and size > left:
                sink.add("ATL901" if size > limits.max_block_raw_size else "ATL403",
                         f"{name(j)} declares {size} bytes, more than the {left} bytes of raw_size {raw_size} left "
                         "for it (refused before decoding)", **at(j), clause="LIM-2, V2-FRAME-7")
                return None
            left -= size or 0
            declared.append(size)
    if any(d is None for d in declared):
        return None
    total = sum(d for d in declared if d is not None)
    if total != raw_size:
        sink.add("ATL403", f"the {len(frames)} frames declare {total} bytes, the index raw_size is {raw_size}", **where,
                 clause="V2-FRAME-7")
        return None
    if info.codec == Codec.NONE:
        return [bytes(f) for f in frames]
    pieces = []
    for j, frame in enumerate(frames):
        size = declared[j]
        assert size is not None  # noqa: S101 - checked above
        piece = decode_frame(info, frame, size, dctx, sink=sink, where=at(j), frame=name(j), clause="V2-FRAME-7",
                             span="its span of the stored block")
        if piece is None or len(piece) != size:
            return None
        pieces.append(piece)
    return pieces


def _layout(raw: bytes, pieces: list[bytes], n: int, group: int, preamble: bytes | None,
            group_offsets: list[tuple[int, ...]], sink: Sink, where: dict[str, Any]) -> tuple[int, list[Part]] | None:
    """(prefix end, parts) of a decoded grouped block after its layout checks (V2-FRAME-6); None after reporting
    a layout that has no parts to scan, or when the shard's preamble is unusable."""
    end = len(raw) - len(grouped.LIST_END)
    if not raw.endswith(grouped.LIST_END) or end < 0:
        sink.add("ATL418", f"the decoded block ({len(raw)} bytes) does not end with APPENDS STOP "
                           f"({grouped.LIST_END.hex(' ')})", **where)
        return None
    if len(pieces) == 1:
        return _one_frame(raw, n, group, preamble, sink, where)
    if preamble is None:
        return None
    if not pieces[0].startswith(preamble):
        sink.add("ATL419", "frame 0 does not start with the shard's pickle_preamble (first difference at decoded "
                           f"offset {_first_difference(pieces[0], preamble)})", **where)
        return None
    parts = []
    at = 0
    counts = grouped.frame_counts(n)
    for j, piece in enumerate(pieces):
        lo, at = at, at + len(piece)
        lo = max(lo, len(preamble))
        hi = min(at, end)
        if hi < lo:
            sink.add("ATL418", f"frame {j} holds no slices (decoded offsets {lo}..{hi})", **where)
            return None
        offsets = group_offsets[j]
        if offsets and offsets[-1] >= hi - lo:
            sink.add("ATL416", f"frame {j}'s last group offset {offsets[-1]} is not before the end of its "
                               f"{hi - lo} bytes of slices (decoded offsets {lo}..{hi}): every group must hold a "
                               "slice", **where)
            return None
        bounds = [lo, *(lo + o for o in offsets), hi]
        first = j * grouped.FRAME_EXAMPLES
        for q in range(len(bounds) - 1):
            a = first + q * group
            count = min(group, counts[j] - q * group)
            parts.append(Part(bounds[q], bounds[q + 1], count, a,
                              f"frame {j} group {q} (positions {a}..{a + count - 1})"))
    return len(preamble), parts


def _one_frame(raw: bytes, n: int, group: int, preamble: bytes | None, sink: Sink,
               where: dict[str, Any]) -> tuple[int, list[Part]] | None:
    """The group table of a one-frame block and the groups it names."""
    g = grouped.groups(n, group)
    table = _group_table(raw, n, group)
    if table is None:  # construct's GroupTable says why (slow: only for a table that is not right)
        try:
            parsed = parse(grouped.GroupTable, raw[:_TABLE_AT + 255 + len(grouped.TABLE_POP)], groups=g)
        except AtlasError as exc:
            sink.add("ATL418", f"{exc.message} (a block of {n} examples has {g} groups: {g + 1} offsets)", **where)
            return None
        table = parsed.length, parsed.start, list(parsed.offsets)
    length, start, offsets = table
    width = (length - _START_SIZE) // (g + 1)
    slices = len(raw) - len(grouped.LIST_END) - start
    want_width = 2 if slices < 1 << 16 else 4
    problems = []
    if length != _START_SIZE + width * (g + 1):
        problems.append(f"its length {length} is not {_START_SIZE} + {g + 1} offsets of 2 or 4 bytes")
    elif width != want_width:
        problems.append(f"its offsets are {width}-byte, expected {want_width}-byte for {slices} bytes of slices")
    table_end = _TABLE_AT + length + len(grouped.TABLE_POP)
    expected_start = None if preamble is None else table_end + len(preamble) - len(grouped.PREAMBLE_PREFIX)
    if expected_start is not None and start != expected_start:
        problems.append(f"start is {start}, expected 3 + L + len(P) = {expected_start}")
    if not problems and offsets[0] != 0:
        problems.append(f"offsets[0] is {offsets[0]}, must be 0")
    for q in range(g):
        if not problems and offsets[q + 1] <= offsets[q]:
            problems.append(f"offsets[{q + 1}] ({offsets[q + 1]}) is not greater than offsets[{q}] ({offsets[q]})")
    if not problems and offsets[-1] != slices:
        problems.append(f"the last offset is {offsets[-1]}, expected raw_size - start - 2 = {slices}")
    for problem in problems:
        sink.add("ATL418", f"group table: {problem}", **where)
    if problems:
        return None
    if preamble is None:
        return None
    if raw[table_end:start] != preamble[len(grouped.PREAMBLE_PREFIX):]:
        sink.add("ATL419", f"the bytes between the group table's POP and start (decoded {table_end}..{start}) are not "
                           f"the shard's pickle_preamble without PROTO (first difference at decoded offset "
                           f"{table_end + _first_difference(raw[table_end:start], preamble[2:])})", **where)
        return None
    size = grouped.group_size(n, group)
    parts = [Part(start + offsets[q], start + offsets[q + 1], min(size, n - q * size), q * size,
                  f"group {q} (positions {q * size}..{min(n, (q + 1) * size) - 1})") for q in range(g)]
    return start, parts


def _group_table(raw: bytes, n: int, group: int) -> tuple[int, int, list[int]] | None:
    """(length, start, offsets) of a one-frame block's group table, the fields of ``GroupTable`` read by the
    reader's fast path (``grouped.group_table``) and its constants compared; None when they are not there."""
    if raw[:len(grouped.BLOCK_PREFIX)] != grouped.BLOCK_PREFIX or len(raw) <= _TABLE_AT:
        return None
    length = raw[_TABLE_AT - 1]
    if raw[_TABLE_AT + length:_TABLE_AT + length + len(grouped.TABLE_POP)] != grouped.TABLE_POP:
        return None
    try:
        start, offsets = grouped.group_table(raw, n, group)
    except (ValueError, IndexError, struct.error):
        return None
    return length, start, list(offsets)


def _first_difference(a: bytes, b: bytes) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


class _Locator:
    """Where a decoded offset of the block is: (data.bin offset, text for the message). With codec none a frame
    is its decoded bytes, so the byte itself; else the block, with the decoded offset in the message."""

    def __init__(self, offset: int, spans: list[tuple[int, int]], pieces: list[bytes], plain: bool) -> None:
        self.offset, self.spans, self.plain = offset, spans, plain
        self.ends = []
        total = 0
        for piece in pieces:
            total += len(piece)
            self.ends.append(total)

    def __call__(self, at: int) -> tuple[int, str]:
        if not self.plain:
            return self.offset, f"decoded offset {at}"
        j = next((j for j, e in enumerate(self.ends) if at < e), len(self.ends) - 1)
        lo = self.ends[j - 1] if j else 0
        return self.offset + self.spans[j][0] + at - lo, f"decoded offset {at}"
