"""Which example of a pickled list a byte belongs to (version 1 blocks, version 2 blocks of framing "list").

Such a block is one pickle of a list, so an engine that refuses it knows only a byte offset in the
pickle. Both engines (the reference reader and the validator) turn that offset into the example's
position in its block with this one function, so they name the same example (``errors.format_example``).

It follows the opcodes' stack effects (``pickletools``), never their meaning: nothing is built or run.
Each value on the stack carries the offset of the first opcode that contributed to it; the list's
items are the values APPEND, APPENDS or LIST put into it, in order.
"""

from __future__ import annotations

import io
import pickletools
from typing import Any

_MARK = pickletools.markobject
_SLICE = pickletools.stackslice


def list_item_at(data: bytes | bytearray | memoryview, offset: int) -> int | None:
    """The position, in the pickled list ``data``, of the item whose opcodes hold byte ``offset``; None when the
    offset is outside every item (the list's own opcodes, past its items), the value is not a list built by
    APPEND/APPENDS/LIST, or the opcodes cannot be followed until that item is placed in the list."""
    if offset < 0:
        return None
    try:
        return _walk(bytes(data), offset)
    except (ValueError, IndexError, TypeError, EOFError, OverflowError, MemoryError, UnicodeDecodeError):
        return None


def _walk(data: bytes, offset: int) -> int | None:
    """Follow the stack effects of ``data``'s opcodes until the item holding ``offset`` is placed in the list."""
    levels: list[list[int]] = [[]]  # per open MARK, the start offset of each value on that part of the stack
    marks: list[int] = []           # the offset of each open MARK
    placed = 0                      # items placed in the top-level list so far
    for op, _arg, pos in pickletools.genops(io.BytesIO(data)):
        if pos is None:
            return None
        if op.name == "STOP":
            return None
        before, after = op.stack_before, op.stack_after
        if _MARK in after:  # MARK
            levels.append([])
            marks.append(pos)
            continue
        if op.name == "POP" and not levels[-1]:  # POP on an empty part of the stack discards the MARK
            if not marks:
                return None
            levels.pop()
            marks.pop()
            continue
        starts: list[int] = []
        closed: list[int] | None = None
        if _MARK in before:  # TUPLE, LIST, DICT, APPENDS, SETITEMS, FROZENSET, ADDITEMS, POP_MARK, ...
            if not marks:
                return None
            closed = levels.pop()
            starts.append(marks.pop())
            below = len(before) - 2  # the values below the MARK the opcode uses (APPENDS: the list)
        else:
            below = len(before)
        stack = levels[-1]
        if below > len(stack):
            return None
        used = stack[len(stack) - below:] if below else []
        del stack[len(stack) - below:]
        starts.extend(used)
        bottom = len(levels) == 1 and not stack  # the opcode works on the top-level list (bottom of the stack)
        if bottom and closed is not None and op.name in ("APPENDS", "LIST"):
            found = _item(closed, pos, offset)
            if found is not None:
                return placed + found
            placed += len(closed)
        elif bottom and op.name == "APPEND" and len(used) == 2:
            found = _item(used[1:], pos, offset)
            if found is not None:
                return placed
            placed += 1
        start = min(starts) if starts else pos
        stack.extend(start for _ in after)
    return None


def _item(starts: list[Any], end: int, offset: int) -> int | None:
    """The index of the item (items start at ``starts``, the last ends at ``end``) that holds ``offset``."""
    for k, start in enumerate(starts):
        stop = starts[k + 1] if k + 1 < len(starts) else end
        if start <= offset < stop:
            return k
    return None
