"""Reading framing "grouped" (V2-FRAME-6..9): one list pickle per block that also unpickles in parts.

``blk.data`` is the stored block (verified, not decoded: the head, then frames); ``blk.raw`` its
decoded size. An in-order read or an iteration decodes every frame and unpickles the block once, as
version 1 does; the list stays with the block (``blk.values``) and each example is handed out once,
so a repeated ``ds[i]`` gets a fresh object. Any other read unpickles a part: the preamble and one group
(one-frame blocks, n <= 32) or the preamble and one group (of the shard's group size, 8 unless
meta.json says otherwise) of one decoded frame of 32 (n > 32: the group offsets are in the stored
block's head, after the frame starts). The whole-block path is taken
where later reads of the block are likely: a read of the position after the one read before (position 0
right after the previous block: ``blk.last_pos == -1``, set by the shard), reads in a row of one block
whose parts add up to an eighth of it (the second with groups of 8, the ninth with groups of 1 at block
64: a whole block of large examples is a bet that a chance repeat of a random read should not make), a
batch holding at least half as many groups' worth of the block's positions as the block has examples,
iteration.

Every part is unpickled by the shard's loader (safe loading applies to each) and must be a list of the
expected count; anything else is the project's error naming the file, block and offset.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any, Protocol

from atlas_format import grouped
from atlas_format.constants import Limits
from atlas_format.list_items import list_item_at

from .block_cache import TAKEN, CachedBlock
from .errors import AtlasError, CodecError, FormatError, LimitError, MetadataError
from .framing import Framing, unpickle_list_block
from .safe_pickle import Loads

_FRAME = grouped.FRAME_EXAMPLES
_END = grouped.LIST_END
_FALLBACK = grouped.FALLBACK_PREFIX
_LENGTH_AT = grouped.TABLE_LENGTH_AT
_BARE_LIST = grouped.PREAMBLE_PREFIX + b"]("  # PROTO 3, EMPTY_LIST, MARK: a list whose items are the slices
#: what a read decoded of a block, kept with it (``CachedBlock.part``)
Part = tuple[int, Any, tuple[int, tuple[int, ...], int], int]


def _increasing(offsets: tuple[int, ...]) -> bool:
    """Whether group offsets are positive and increase strictly (a frame has at most 31)."""
    previous = 0
    for value in offsets:
        if value <= previous:
            return False
        previous = value
    return True


def read_preamble(doc: dict[str, Any], limits: Limits, where: dict[str, Any]) -> bytes:
    """The preamble a grouped shard's meta.json holds (V2-FRAME-7): canonical base64 within
    ``max_preamble_size`` (its text's length checked before decoding), starting with PROTO 3 and ending
    with POP, EMPTY_LIST, MARK."""
    text = doc.get(grouped.PREAMBLE_MEMBER)
    if text is None:
        raise MetadataError(f"framing grouped needs the member {grouped.PREAMBLE_MEMBER}", **where)
    if isinstance(text, str) and len(text) > 4 * -(-limits.max_preamble_size // 3):
        raise LimitError(f"{grouped.PREAMBLE_MEMBER} of {len(text)} base64 characters is above the limit of "
                         f"{limits.max_preamble_size} bytes", **where)
    try:
        preamble = grouped.preamble_from_json(text)
    except ValueError as exc:
        raise MetadataError(str(exc), **where) from None
    if len(preamble) > limits.max_preamble_size:
        raise LimitError(f"{grouped.PREAMBLE_MEMBER} of {len(preamble)} bytes is above the limit of "
                         f"{limits.max_preamble_size}", **where)
    if not preamble.startswith(grouped.PREAMBLE_PREFIX) or not preamble.endswith(grouped.PREAMBLE_SUFFIX) or \
            len(preamble) < len(grouped.PREAMBLE_PREFIX) + len(grouped.PREAMBLE_SUFFIX):
        raise MetadataError(f"{grouped.PREAMBLE_MEMBER} must start with PROTO 3 ({grouped.PREAMBLE_PREFIX.hex()}) "
                            f"and end with POP, EMPTY_LIST, MARK ({grouped.PREAMBLE_SUFFIX.hex()})", **where)
    return preamble


def read_group(doc: dict[str, Any], where: dict[str, Any]) -> int:
    """The group size a grouped shard's meta.json states (``group_size``, absent: 8)."""
    try:
        return grouped.group_of_meta(doc)
    except ValueError as exc:
        raise MetadataError(str(exc), **where) from None


class GroupedSite(Protocol):
    """What framing grouped asks of its shard."""

    loads: Loads

    def where(self, b: int) -> dict[str, Any]:
        ...

    def decode_frame(self, frame: Any, b: int, pos: int | None, limit: int, size: int | None = None) -> Any:
        """One frame decoded: exactly ``size`` bytes when given, else at most ``limit``."""
        ...

    def decode_frames(self, frames: Any, size: int) -> Any | None:
        """Consecutive frames decoded into one buffer of ``size`` bytes, or None: decode them one by one."""
        ...


class GroupedFraming(Framing):
    """Version 2 framing "grouped", bound to one shard, its preamble (with its PROTO) and its group size."""

    site: GroupedSite
    #: typed examples (TYPED-7): every block's head holds group offsets
    typed = False
    #: what ends the decoded block (and a part): APPENDS STOP
    end = _END

    def __init__(self, site: GroupedSite, preamble: bytes, group: int) -> None:
        super().__init__(site)
        self.preamble = preamble
        self.group = group
        self._tables: dict[tuple[int, int], tuple[Any, int, int]] = {}  # (n, length) -> (struct, at, G)
        # (n, offset width) -> (head struct, head size, frames, each frame's (first, end) among the offsets)
        self._heads: dict[tuple[int, int], tuple[Any, int, int, tuple[tuple[int, int], ...]]] = {}
        self._plans: dict[int, tuple[int, int]] = {}  # n -> _plan(n)

    # -- reads ------------------------------------------------------------------------------

    def example(self, blk: CachedBlock, pos: int) -> Any:
        values = blk.values
        if values is None:
            last = blk.last_pos
            if last < 0:  # the first read of this block in a row
                blk.parts = 0
            if pos == last + 1 or (last >= 0 and 8 * self.group_of(blk.count) * blk.parts >= blk.count):
                values = self.values(blk)  # in order, or read in a row enough: one loads of the block
        if values is not None:
            value = values[pos]
            if value is not TAKEN:
                values[pos] = TAKEN
                return value
        blk.last_pos = pos
        blk.parts += 1
        return self.part(blk, pos)

    def group_of(self, n: int) -> int:
        """Examples per group (the part a random read unpickles) of a block of ``n`` examples."""
        return (self._plans.get(n) or self._plan(n))[0]

    def values(self, blk: CachedBlock) -> list[Any]:
        """The block's examples from one unpickling, kept with it; if that fails (one bad example), every
        slot is TAKEN, so each read unpickles its own part and only the bad example's group raises."""
        try:
            values = self.whole(blk)
        except AtlasError:
            values = [TAKEN] * blk.count
        blk.values = values
        return values

    def examples(self, blk: CachedBlock, positions: Sequence[int]) -> list[Any]:
        if len(positions) == 1:
            return [self.example(blk, positions[0])]
        values = blk.values
        if values is None:
            n = blk.count
            if 2 * len(positions) * self.group_of(n) < n:
                # a few examples of a batch in this block: their groups cost less than the block
                return [self.part(blk, pos) for pos in positions]
            values = self.values(blk)
        out: list[Any] = []
        for pos in positions:
            value = values[pos]
            if value is TAKEN:  # handed out before (or twice in this batch): a fresh one
                value = self.part(blk, pos)
            else:
                values[pos] = TAKEN
            out.append(value)
        return out

    def all(self, blk: CachedBlock) -> list[Any]:
        return self.whole(blk)

    # -- the whole block ------------------------------------------------------------------

    def whole(self, blk: CachedBlock) -> list[Any]:
        """Every example of ``blk``: its frames decoded and joined, one unpickle (a fallback as framing list)."""
        raw = self.decoded(blk)
        try:  # the common case without building an error location
            values = self.site.loads(raw)
            if type(values) is list and len(values) == blk.count:
                return values
        except Exception:  # noqa: BLE001 - unpickled again below, which names the failure and its place
            pass
        if bytes(raw[:2]) == _FALLBACK:  # version 1's list pickle: its items are located as framing list's
            return unpickle_list_block(self.site.loads, raw, blk.count, self.site.where(blk.b), blk.first)
        start = self._group_table(blk, raw)[0][0] if blk.count <= _FRAME else len(self.preamble)
        return self._part(raw, blk, 0, blk.count, start, 0)

    def decoded(self, blk: CachedBlock) -> Any:
        """The decoded block (what raw_size counts): one frame, or the frames joined."""
        n, b = blk.count, blk.b
        if n <= _FRAME:
            return self.frame0(blk)
        stored = blk.data
        starts = self.starts(blk)[0]
        if starts[1] == starts[0]:  # a list fallback: the last frame holds the pickle
            return self.site.decode_frame(stored[starts[-1]:], b, None, blk.raw, blk.raw)
        return self._joined(blk, starts)

    def _joined(self, blk: CachedBlock, starts: tuple[int, ...]) -> Any:
        """The frames at ``starts`` decoded and joined: in one call into one buffer when no frame was decoded
        yet, else frame by frame (a frame a random read decoded is reused; a failure is named there)."""
        stored, b = blk.data, blk.b
        if blk.part is None and len(starts) > 1:
            joined = self.site.decode_frames(stored[starts[0]:], blk.raw)
            if joined is not None:
                return joined
        parts = []
        left = blk.raw
        part = blk.part
        for j in range(len(starts)):
            if part is not None and part[0] == j:
                data = part[1]
            else:
                hi = starts[j + 1] if j + 1 < len(starts) else len(stored)
                data = self.site.decode_frame(stored[starts[j]:hi], b, None, left)
            left -= len(data)
            parts.append(data)
        if left:
            raise CodecError(f"the block's frames decode to {blk.raw - left} bytes, index.bin says {blk.raw}",
                             **self.site.where(b))
        return b"".join(parts)

    def starts(self, blk: CachedBlock) -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]:
        """(where each frame starts, each frame's interior group offsets) of a multi-frame block, from its
        head, checked: the head fits, the starts increase strictly within the block and each frame's offsets
        are positive and increase strictly (within its slices: checked once the frame is decoded), or every
        start is the head's end and every offset 0 (a list fallback)."""
        stored, n = blk.data, blk.count
        size = len(stored)
        key = (n, 2 if blk.raw < 1 << 16 else 4)
        head = self._heads.get(key)
        if head is None:
            head = self._head(key)
        layout, hsize, m, spans = head
        if size <= hsize:
            raise FormatError(f"block of {size} bytes is too short for its head of {hsize} bytes ({m - 1} frame "
                              "starts and the group offsets)", **self.site.where(blk.b))
        values = layout.unpack_from(stored)
        starts = (hsize, *values[:m - 1])
        if m == 2:  # blocks of 33 to 64 examples, the common case: no tuple per frame, no generator
            first = values[0]
            offsets: tuple[tuple[int, ...], ...] = (values[1:spans[0][1]], values[spans[0][1]:])
            if hsize < first < size and _increasing(offsets[0]) and _increasing(offsets[1]):
                return starts, offsets
        elif m == 1:  # a typed block of up to 32 examples (TYPED-7): its head is the group offsets
            offsets = (values,)
            if _increasing(values):
                return starts, offsets
        else:
            offsets = tuple(values[a:e] for a, e in spans)
            if starts[1] != hsize and all(a < c for a, c in zip(starts, (*starts[1:], size), strict=True)) \
                    and all(_increasing(frame) for frame in offsets):
                return starts, offsets
        if m > 1 and starts[1] == hsize:
            if starts.count(hsize) == m and not any(values[m - 1:]):
                return starts, offsets
            raise FormatError("a list fallback block's frame starts must all be the end of its head and its "
                              "group offsets all 0", **self.site.where(blk.b))
        if not all(a < c for a, c in zip(starts, (*starts[1:], size), strict=True)):
            raise FormatError(f"frame starts {list(starts[1:])} must increase strictly within the block of {size} "
                              "bytes", **self.site.where(blk.b))
        j = next(j for j, frame in enumerate(offsets) if not _increasing(frame))
        raise FormatError(f"frame {j}'s group offsets {list(offsets[j])} must be positive and increase strictly",
                          **self.site.where(blk.b))

    def _head(self, key: tuple[int, int]) -> tuple[Any, int, int, tuple[tuple[int, int], ...]]:
        n, width = key
        spans, at = [], grouped.frames(n) - 1
        for count in grouped.interior_groups(n, self.group, self.typed):
            spans.append((at, at + count))
            at += count
        self._heads[key] = head = (grouped.head_struct(n, width, self.group, self.typed), grouped.frame_table_size(
            n) + width * (at - grouped.frames(n) + 1), grouped.frames(n), tuple(spans))
        return head

    # -- one part -----------------------------------------------------------------------

    def frame0(self, blk: CachedBlock) -> Any:
        """The decoded frame of a one-frame block (kept with the block)."""
        part = blk.part
        if part is None:
            blk.part = part = (0, self.site.decode_frame(blk.data, blk.b, None, blk.raw, blk.raw), None, 0)
        return part[1]

    def part(self, blk: CachedBlock, pos: int) -> Any:
        """Example ``pos`` unpickled from its group (V2-FRAME-9): of the one frame, or of its frame of 32."""
        n = blk.count
        if n > _FRAME:
            return self._frame_example(blk, pos)
        raw = self.frame0(blk)
        if bytes(raw[:2]) == _FALLBACK:  # PROTO 4: a list fallback (V2-FRAME-8)
            return self.whole(blk)[pos]
        offsets, size = self._group_table(blk, raw)
        q, k = divmod(pos, size)
        start = offsets[0]
        data = b"".join((raw[:start], raw[start + offsets[q + 1]:start + offsets[q + 2]], _END))
        expected = min(size, n - q * size)
        return self._part(data, blk, pos, expected, start, q * size)[k]

    def _group_table(self, blk: CachedBlock, raw: Any) -> tuple[tuple[int, ...], int]:
        """(``start`` then the group offsets, group size) of a one-frame block's table; its struct is kept
        per (n, table length)."""
        try:
            key = (blk.count, raw[_LENGTH_AT])
            layout, at, size = self._tables.get(key) or self._table(blk, key)
            return layout.unpack_from(raw, at), size
        except (IndexError, struct.error):
            raise FormatError(f"the block's {len(raw)} bytes are too short for its group table",
                              **self.site.where(blk.b)) from None

    def _table(self, blk: CachedBlock, key: tuple[int, int]) -> tuple[Any, int, int]:
        try:
            layout, at = grouped.group_table_struct(*key, self.group)
        except ValueError as exc:
            raise FormatError(f"{exc} (block of {blk.count} examples)", **self.site.where(blk.b)) from None
        self._tables[key] = table = (layout, at, grouped.group_size(key[0], self.group))
        return table

    def _frame_example(self, blk: CachedBlock, pos: int) -> Any:
        j, within = divmod(pos, _FRAME)
        part = blk.part
        if part is None or part[0] != j:
            part = self._frame(blk, j, pos)
            if part is None:
                return self.whole(blk)[pos]
        _, frame, (base, offsets, end), group = part
        q, k = divmod(within, group)
        first = j * _FRAME + q * group
        count = blk.count - first
        return self.group_part(frame[base + offsets[q - 1] if q else base:
                                     base + offsets[q] if q < len(offsets) else end],
                               blk, pos, count if count < group else group, first, k)

    def group_part(self, group: Any, blk: CachedBlock, pos: int, count: int, first: int, k: int) -> Any:
        """Example ``pos``, the ``k``-th of the ``count`` examples of one group's slices (the first being
        ``first``), from the group unpickled whole."""
        data = b"".join((self.preamble, group, self.end))
        return self._part(data, blk, pos, count, len(self.preamble), first)[k]

    def first_at(self, n: int) -> int:
        """Where frame 0's first example starts in a block of ``n``: after the preamble."""
        return len(self.preamble)

    def _frame(self, blk: CachedBlock, j: int, pos: int) -> Part | None:
        """(j, frame j decoded, (where its slices start, its interior group offsets from there, where its last
        slice ends), examples per group), kept with the block; None for a list fallback. Frame j's group
        offsets must lie within its slices."""
        stored, n = blk.data, blk.count
        starts, offsets = self.starts(blk)
        if len(starts) > 1 and starts[1] == starts[0]:
            return None
        last = j + 1 == len(starts)
        frame = self.site.decode_frame(stored[starts[j]:len(stored) if last else starts[j + 1]], blk.b, pos, blk.raw)
        group, first_at = self._plans.get(n) or self._plan(n)
        base = first_at if j == 0 else 0
        end = len(frame)
        if last and self.end:
            end -= len(self.end)
            if bytes(frame[end:]) != self.end:
                raise FormatError("the block's last frame must end with APPENDS STOP", **self.at(blk, pos))
        frame_offsets = offsets[j]
        if frame_offsets and frame_offsets[-1] >= end - base:
            raise FormatError(f"frame {j}'s group offsets {list(frame_offsets)} must lie within its "
                              f"{end - base} bytes of slices", **self.at(blk, pos))
        blk.part = part = (j, frame, (base, frame_offsets, end), group)
        return part

    def _plan(self, n: int) -> tuple[int, int]:
        """(examples per group, where frame 0's first example starts) of a block of ``n``, kept per n."""
        self._plans[n] = plan = (grouped.block_group(n, self.group), self.first_at(n))
        return plan

    def _part(self, data: Any, blk: CachedBlock, pos: int, expected: int, start: int, base: int) -> list[Any]:
        """A part unpickled and checked: a list of ``expected`` examples whose slices start at ``start`` in
        ``data``, the first being example ``base`` of the block (a refusal names the example it is in)."""
        try:
            items = self.site.loads(data)
        except AtlasError as exc:  # a refusal of safe loading: same type and rule, located at its example
            raise exc.relocated(**self.at(blk, self._position(exc, data, start, base, pos))) from None
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is corrupt data
            raise FormatError(f"the example's group does not unpickle: {type(exc).__name__}: {exc}",
                              **self.at(blk, pos)) from None
        if type(items) is not list or len(items) != expected:
            got = f"a list of {len(items)}" if isinstance(items, list) else type(items).__name__
            raise FormatError(f"the example's group holds {got}, expected a list of {expected} examples",
                              **self.at(blk, pos))
        return items

    @staticmethod
    def _position(exc: AtlasError, data: Any, start: int, base: int, pos: int) -> int:
        """The example a refusal at ``exc.pickle_offset`` is in: the slices after ``start`` are read as the
        items of a bare list pickle (the preamble's own list would count as items otherwise)."""
        offset = exc.pickle_offset
        if offset is None or offset < start:
            return pos
        found = list_item_at(_BARE_LIST + bytes(data[start:]), offset - start + len(_BARE_LIST))
        return pos if found is None else base + found
