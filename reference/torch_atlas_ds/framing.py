"""How examples are cut out of a block: one small strategy class per framing.

A shard reader hands a strategy the ``CachedBlock`` it read (decoded through the codec registry,
or the stored bytes where nothing is decoded as a whole) and asks for ``example(pos)``,
``examples(positions)`` or ``all()`` of it. The strategies know the block layouts of
``atlas_format.block_v2`` (through its accessors, never retyped offsets) and nothing of files,
codecs or caches:

    BlockFraming    version 2 "block": offset table + pickles; one example is one slice, one unpickle
    ExampleFraming  version 2 "example": the stored table over one codec frame per example
    ListFraming     version 2 "list": one pickled list per block, examples handed out once each
    V1ListFraming   version 1: the block's unpickled list, read in place as the original does

What the strategies need from their shard is ``BlockSite``: its unpickler, the place of a block
or example for error messages, and (framing "example") how one frame is decoded.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from atlas_format.block_v2 import (
    OFFSET_SIZE,
    SPAN_AT,
    block_count,
    encode_block,
    example_offsets,
    read_count,
    read_span,
    table_size,
)
from atlas_format.list_items import list_item_at

from .block_cache import TAKEN, CachedBlock
from .errors import AtlasError, CodecError, FormatError
from .safe_pickle import Loads


class BlockSite(Protocol):
    """What a framing asks of the shard it reads for."""

    loads: Loads

    def where(self, b: int) -> dict[str, Any]:
        """The file, shard, block and offset of block ``b`` (error locations)."""
        ...

    def decode_frame(self, frame: Any, b: int, pos: int, limit: int) -> bytes:
        """Example ``pos``'s own frame decoded (framing "example"), at most ``limit`` bytes."""
        ...


def unpickle_list_block(loads: Loads, raw: Any, count: int, where: dict[str, Any],
                        first: int | None = None) -> list[Any]:
    """A decoded block that is one pickle of a list of ``count`` examples (version 1; version 2
    framing "list", V2-FRAME-5), unpickled and checked; failures are located at ``where``.

    A refusal inside one example's opcodes also names that example (its position in the block, and
    ``first`` + position in the shard), found from the refusal's offset as the validator finds it.
    """
    try:
        examples = loads(raw)
    except AtlasError as exc:  # a refusal of safe loading: same type and rule, located here
        position = None if exc.pickle_offset is None else list_item_at(raw, exc.pickle_offset)
        if position is not None:
            where = {**where, "position": position, "example": None if first is None else first + position}
        raise exc.relocated(**where) from None
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is corrupt data
        raise FormatError(f"block does not unpickle: {type(exc).__name__}: {exc}", **where) from None
    if not isinstance(examples, list) or len(examples) != count:
        got = f"a list of {len(examples)}" if isinstance(examples, list) else type(examples).__name__
        raise FormatError(f"block holds {got}, expected a list of {count} examples", **where)
    return examples


#: What ``stored_example`` returns when it cannot serve a read: the block path then reads it and raises the
#: error that names what is wrong.
MISS: Any = object()


def span_in_place(data: Any, count: int, base: int, pos: int) -> tuple[int, int] | None:
    """(start, end) in ``data`` of example ``pos`` of a block of ``count`` examples whose payload starts at
    ``base``: its two offsets read where they are, bounds checked (O(1), never the whole table); None when
    the table does not hold them."""
    if len(data) >= base and read_count(data, 0)[0] == count:
        start, end = read_span(data, SPAN_AT + OFFSET_SIZE * pos)
        if start < end <= len(data) - base:
            return base + start, base + end
    return None


class Framing:
    """A framing strategy bound to one shard (``site``)."""

    def __init__(self, site: BlockSite) -> None:
        self.site = site

    def example(self, blk: CachedBlock, pos: int) -> Any:
        raise NotImplementedError

    def examples(self, blk: CachedBlock, positions: Sequence[int]) -> list[Any]:
        return [self.example(blk, pos) for pos in positions]

    def all(self, blk: CachedBlock) -> list[Any]:
        return self.examples(blk, range(blk.count))

    def stored_example(self, data: Any, b: int, count: int, base: int, raw: int, pos: int) -> Any:
        """Example ``pos`` of stored block ``b`` (``data``) read without a block object, or MISS: framings
        that read blocks where they are stored serve a random read so; the others read it through the block."""
        return MISS

    def at(self, blk: CachedBlock, pos: int) -> dict[str, Any]:
        """Where example ``pos`` of ``blk`` is: its block, its position there, its number in the shard."""
        return {**self.site.where(blk.b), "position": pos, "example": blk.first + pos}

    def load(self, data: Any, blk: CachedBlock, pos: int) -> Any:
        try:
            return self.site.loads(data)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is corrupt data
            raise self.load_error(exc, blk, pos) from None

    def load_error(self, exc: Exception, blk: CachedBlock, pos: int) -> AtlasError:
        """The error for example ``pos`` failing to unpickle, located."""
        if isinstance(exc, AtlasError):  # a refusal of safe loading: same type and rule, located here
            return exc.relocated(**self.at(blk, pos))
        return FormatError(f"the example does not unpickle: {type(exc).__name__}: {exc}", **self.at(blk, pos))


class _TableFraming(Framing):
    """Framings over an offset table (block_v2.Block): the stored or decoded block in ``blk.data``."""

    def span(self, blk: CachedBlock, pos: int) -> tuple[int, int]:
        """(start, end) of example ``pos`` in ``blk.data``: from the checked table when the block has one,
        else two offsets read in place, bounds checked (O(1): a random read never reads the whole table)."""
        table = blk.table
        if table is not None:
            return table[pos], table[pos + 1]
        found = span_in_place(blk.data, blk.count, blk.base, pos)
        if found is not None:
            return found
        self.table(blk)  # raises the error that names what is wrong with the table
        raise FormatError("the example spans outside the block payload", **self.at(blk, pos))

    def table(self, blk: CachedBlock) -> tuple[int, ...]:
        """Where each example of ``blk`` starts in ``blk.data`` (and where the last ends), from its offset
        table checked once (count, bounds, monotonic) and kept with the block."""
        if blk.table is not None:
            return blk.table
        data, b, count = blk.data, blk.b, blk.count
        base = table_size(count)
        if len(data) < base:
            raise FormatError(f"block of {len(data)} bytes is too short for the table of {count} examples",
                              **self.site.where(b))
        stored_count = block_count(data)
        if stored_count != count:
            raise FormatError(f"block holds {stored_count} examples, expected {count}", **self.site.where(b))
        offsets = example_offsets(data, count)
        payload = len(data) - base
        if offsets[0] != 0 or offsets[-1] != payload or not all(map(operator.lt, offsets, offsets[1:])):
            raise FormatError("block example offsets must start at 0, increase strictly and end at the payload size "
                              f"({payload})", **self.site.where(b))
        blk.table = table = tuple([base + offset for offset in offsets])
        return table

    def spans(self, blk: CachedBlock, positions: Iterable[int]) -> list[tuple[int, int]]:
        """(start, end) in ``blk.data`` of each example at ``positions`` (the table checked once)."""
        table = self.table(blk)
        return [(table[p], table[p + 1]) for p in positions]


class BlockFraming(_TableFraming):
    """Version 2 framing "block": the decoded block is a table and one pickle per example."""

    def example(self, blk: CachedBlock, pos: int) -> Any:
        values = blk.values
        if values is not None:
            value = values[pos]
            if value is not TAKEN:
                values[pos] = TAKEN
                blk.last_pos = pos
                return value
        elif pos == blk.last_pos + 1 and pos + 1 < blk.count:
            # An in-order step (as `for i in range(len(ds))` reads) unpickles the rest of the block in one
            # pass, as version 1 does; each example so unpickled is handed out once (a repeated ds[i] still
            # gets a fresh object). Reads in any other order never trigger it.
            try:
                rest = self.loads(blk, range(pos, blk.count))
            except AtlasError:  # one bad example: read one by one, so only its own read raises
                rest = None
            if rest is not None:
                blk.values = [TAKEN] * (pos + 1) + rest[1:]
                blk.last_pos = pos
                return rest[0]
        blk.last_pos = pos
        start, end = self.span(blk, pos)
        try:
            return self.site.loads(blk.data[start:end])
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is corrupt data
            raise self.load_error(exc, blk, pos) from None

    def stored_example(self, data: Any, b: int, count: int, base: int, raw: int, pos: int) -> Any:
        """Example ``pos`` of block ``b`` read where it is stored (codec none), without a block object: a random
        read's shortcut (``V2Shard.get``); MISS on any doubt."""
        found = span_in_place(data, count, base, pos)
        if found is None:
            return MISS
        try:
            return self.site.loads(data[found[0]:found[1]])
        except Exception:  # noqa: BLE001 - read again through the block, which names the failure
            return MISS

    def loads(self, blk: CachedBlock, positions: Sequence[int]) -> list[Any]:
        """Examples at ``positions`` unpickled in one loop (no calls per example but the unpickler's)."""
        data, loads = blk.data, self.site.loads
        spans = self.spans(blk, positions)
        out: list[Any] = []
        append = out.append
        try:
            for start, end in spans:
                append(loads(data[start:end]))
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is corrupt data
            raise self.load_error(exc, blk, positions[len(out)]) from None
        return out

    def examples(self, blk: CachedBlock, positions: Sequence[int]) -> list[Any]:
        if len(positions) <= 2:  # a span read in place beats checking the whole table
            return [self.load(blk.data[slice(*self.span(blk, p))], blk, p) for p in positions]
        return self.loads(blk, positions)

    def all(self, blk: CachedBlock) -> list[Any]:
        return self.loads(blk, range(blk.count))


class ExampleFraming(_TableFraming):
    """Version 2 framing "example": ``blk.data`` is the stored block (verified, not decoded); a read decodes
    only its examples' own frames, each bounded by the block's raw_size (``blk.raw``)."""

    def example(self, blk: CachedBlock, pos: int) -> Any:
        if blk.table is None and pos == blk.last_pos + 1:  # in order: check the table once, then index it
            self.table(blk)
        blk.last_pos = pos
        start, end = self.span(blk, pos)
        site = self.site
        data = site.decode_frame(blk.data[start:end], blk.b, pos, blk.raw - blk.base)
        try:
            return site.loads(data)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is corrupt data
            raise self.load_error(exc, blk, pos) from None

    def stored_example(self, data: Any, b: int, count: int, base: int, raw: int, pos: int) -> Any:
        """Example ``pos`` of stored block ``b``, its frame decoded, without a block object: a random read's
        shortcut (``V2Shard.get``); MISS on any doubt."""
        found = span_in_place(data, count, base, pos)
        if found is None:
            return MISS
        site = self.site
        frame = site.decode_frame(data[found[0]:found[1]], b, pos, raw - base)
        try:
            return site.loads(frame)
        except Exception:  # noqa: BLE001 - read again through the block, which names the failure
            return MISS

    def examples(self, blk: CachedBlock, positions: Sequence[int]) -> list[Any]:
        if len(positions) > 2:  # check the table once, then index it (two spans read in place cost less)
            self.table(blk)
        return [self.example(blk, pos) for pos in positions]

    def decoded(self, blk: CachedBlock) -> bytes:
        """The decoded block (table + pickles) the frames of ``blk`` stand for: what raw_size counts."""
        count = blk.count
        limit = blk.raw - table_size(count)
        block = encode_block([self.site.decode_frame(blk.data[start:end], blk.b, p, limit)
                              for p, (start, end) in enumerate(self.spans(blk, range(count)))])
        if len(block) != blk.raw:
            raise CodecError(f"block decodes to {len(block)} bytes, index.bin says {blk.raw}",
                             **self.site.where(blk.b))
        return block


class ListFraming(Framing):
    """Version 2 framing "list": the decoded block is one pickled list. It is unpickled once per pass and
    its examples handed out once each; an example asked for again gets a fresh unpickle of the block."""

    def unpickle(self, blk: CachedBlock) -> list[Any]:
        return unpickle_list_block(self.site.loads, blk.data, blk.count, self.site.where(blk.b),
                                   blk.first)

    def examples(self, blk: CachedBlock, positions: Iterable[int]) -> list[Any]:
        values = blk.values
        out: list[Any] = []
        for pos in positions:
            value = TAKEN if values is None else values[pos]
            if values is None or value is TAKEN:
                values = blk.values = self.unpickle(blk)
                value = values[pos]
            values[pos] = TAKEN
            out.append(value)
        return out

    def example(self, blk: CachedBlock, pos: int) -> Any:
        return self.examples(blk, (pos,))[0]

    def all(self, blk: CachedBlock) -> list[Any]:
        return self.unpickle(blk)


class V1ListFraming(Framing):
    """Version 1: ``blk.data`` is the block's unpickled list, read in place (the same objects on a repeat,
    as the original returns them)."""

    def example(self, blk: CachedBlock, pos: int) -> Any:
        return blk.data[pos]

    def examples(self, blk: CachedBlock, positions: Sequence[int]) -> list[Any]:
        data = blk.data
        return [data[p] for p in positions]

    def all(self, blk: CachedBlock) -> list[Any]:
        return blk.data  # type: ignore[no-any-return]
