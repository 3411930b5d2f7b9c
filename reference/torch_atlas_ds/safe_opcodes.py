"""The safe loader's handlers of the less frequent opcodes, one function each, dispatched by opcode byte.

The hot opcodes of example pickles (strings, small ints, dicts, lists, the memo) are handled
inline by ``safe_pickle._Run.run``; every other opcode of ``atlas_format.pickle_policy.OPCODES``
has a handler here, and every refused opcode one that raises. Each handler takes the run, the
opcode's offset, the current stack frame, the frames below the open marks and the memo, and
returns the (possibly new) current frame and the next offset. Stack rules follow CPython's
``_pickle.c``: an opcode never reads below the innermost MARK.
"""

from __future__ import annotations

import collections
import pickletools
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from atlas_format.pickle_checks import check_legacy_storage
from atlas_format.pickle_policy import REFUSED_OPCODES
from atlas_format.pickle_values import PolicyViolation, Rule

if TYPE_CHECKING:
    from .safe_pickle import _Run

Frames = list[list[Any]]
Handler = Callable[["_Run", int, list[Any], Frames, dict[int, Any]], tuple[list[Any], int]]

U2 = struct.Struct("<H").unpack_from
I4 = struct.Struct("<i").unpack_from
U4 = struct.Struct("<I").unpack_from
U8 = struct.Struct("<Q").unpack_from

#: Values whose reuse through the memo (BINGET, DUP) can share structure, so the result must be walked.
SHARED_TYPES = frozenset({list, tuple, dict, set, frozenset, collections.OrderedDict, collections.defaultdict,
                          collections.Counter, collections.deque})


def structure(message: str) -> PolicyViolation:
    """Not a well-formed pickle (POLICY-1)."""
    return PolicyViolation(Rule.STRUCTURE, message)


class PendingStorage:
    """What the storage pickle of a legacy torch stream loads: the persistent id, before the bytes are read."""

    __slots__ = ("key", "dtype", "numel")

    def __init__(self, key: str, dtype: str | None, numel: int) -> None:
        self.key, self.dtype, self.numel = key, dtype, numel


def _pop_mark(stack: list[Any], metastack: Frames, name: str) -> tuple[list[Any], list[Any]]:
    """(the items above the innermost MARK, the frame below it)."""
    if not metastack:
        raise structure(f"{name} without a MARK")
    return stack, metastack.pop()


def _chunk(run: _Run, start: int, length: int) -> bytes:
    if start + length > len(run.data):
        raise structure("the pickle is truncated")
    run.payload += length
    return run.data[start:start + length]


def _binbytes(run: _Run, pos: int, stack: list[Any], metastack: Frames,
              memo: dict[int, Any]) -> tuple[list[Any], int]:
    length = U4(run.data, pos + 1)[0]
    stack.append(_chunk(run, pos + 5, length))
    return stack, pos + 5 + length


def _wide(convert: Callable[[bytes], Any]) -> Handler:
    """BINBYTES8, BYTEARRAY8, BINUNICODE8: an 8-byte length, then the bytes."""
    def handler(run: _Run, pos: int, stack: list[Any], metastack: Frames,
                memo: dict[int, Any]) -> tuple[list[Any], int]:
        length = U8(run.data, pos + 1)[0]
        stack.append(convert(_chunk(run, pos + 9, length)))
        return stack, pos + 9 + length
    return handler


def _binint2(run: _Run, pos: int, stack: list[Any], metastack: Frames,
             memo: dict[int, Any]) -> tuple[list[Any], int]:
    stack.append(U2(run.data, pos + 1)[0])
    return stack, pos + 3


def _long(width: int) -> Handler:
    """LONG1 (a 1-byte length) and LONG4 (4 bytes, signed): a little-endian two's-complement integer."""
    def handler(run: _Run, pos: int, stack: list[Any], metastack: Frames,
                memo: dict[int, Any]) -> tuple[list[Any], int]:
        size = run.data[pos + 1] if width == 1 else I4(run.data, pos + 1)[0]
        limit = run.limits.max_int_bytes
        if size < 0 or size > limit:
            raise PolicyViolation(Rule.SIZE, f"an integer of {size} bytes (limit {limit})")
        start = pos + 1 + width
        stack.append(int.from_bytes(_chunk(run, start, size), "little", signed=True))
        return stack, start + size
    return handler


def _push(value: Callable[[], Any]) -> Handler:
    """EMPTY_TUPLE, EMPTY_SET: a new, empty container."""
    def handler(run: _Run, pos: int, stack: list[Any], metastack: Frames,
                memo: dict[int, Any]) -> tuple[list[Any], int]:
        stack.append(value())
        run.containers += 1
        return stack, pos + 1
    return handler


def _tuple(run: _Run, pos: int, stack: list[Any], metastack: Frames, memo: dict[int, Any]) -> tuple[list[Any], int]:
    items, stack = _pop_mark(stack, metastack, "TUPLE")
    stack.append(tuple(items))
    run.containers += 1
    return stack, pos + 1


def _frozenset(run: _Run, pos: int, stack: list[Any], metastack: Frames,
               memo: dict[int, Any]) -> tuple[list[Any], int]:
    items, stack = _pop_mark(stack, metastack, "FROZENSET")
    for item in items:
        run.check_key(item)
    stack.append(frozenset(items))
    run.containers += 1
    return stack, pos + 1


def _pop_mark_op(run: _Run, pos: int, stack: list[Any], metastack: Frames,
                 memo: dict[int, Any]) -> tuple[list[Any], int]:
    return _pop_mark(stack, metastack, "POP_MARK")[1], pos + 1


def _additems(run: _Run, pos: int, stack: list[Any], metastack: Frames,
              memo: dict[int, Any]) -> tuple[list[Any], int]:
    items, stack = _pop_mark(stack, metastack, "ADDITEMS")
    if not stack:
        raise structure("ADDITEMS without a set")
    if type(stack[-1]) is not set:
        raise PolicyViolation(Rule.TARGET, f"ADDITEMS on {type(stack[-1]).__name__}, not a set")
    for item in items:
        run.check_key(item)
    stack[-1].update(items)
    return stack, pos + 1


def _pop(run: _Run, pos: int, stack: list[Any], metastack: Frames, memo: dict[int, Any]) -> tuple[list[Any], int]:
    if stack:
        stack.pop()
    elif metastack:  # as CPython: POP on an empty frame discards the MARK
        stack = metastack.pop()
    else:
        raise structure("POP on an empty stack")
    return stack, pos + 1


def _dup(run: _Run, pos: int, stack: list[Any], metastack: Frames, memo: dict[int, Any]) -> tuple[list[Any], int]:
    if not stack:
        raise structure("DUP on an empty stack")
    if type(stack[-1]) in SHARED_TYPES:
        run.shared = True
    stack.append(stack[-1])
    return stack, pos + 1


def _put(width: int) -> Handler:
    """BINPUT and LONG_BINPUT: only an index already used or the next one (POLICY-8), so the memo stays dense."""
    def handler(run: _Run, pos: int, stack: list[Any], metastack: Frames,
                memo: dict[int, Any]) -> tuple[list[Any], int]:
        index = run.data[pos + 1] if width == 1 else U4(run.data, pos + 1)[0]
        if not stack:
            raise structure("a memo PUT with nothing to store")
        if index > len(memo):
            raise PolicyViolation(Rule.MEMO, f"memo PUT to index {index}; the next index is {len(memo)} "
                                             "(indices are assigned in order)")
        memo[index] = stack[-1]
        return stack, pos + 1 + width
    return handler


def _global(run: _Run, pos: int, stack: list[Any], metastack: Frames, memo: dict[int, Any]) -> tuple[list[Any], int]:
    data = run.data
    end_module = data.find(b"\n", pos + 1)
    end_name = data.find(b"\n", end_module + 1) if end_module >= 0 else -1
    if end_name < 0:
        raise structure("GLOBAL without its two lines")
    module = data[pos + 1:end_module].decode("utf-8")
    name = data[end_module + 1:end_name].decode("utf-8")
    stack.append(run.push_global(module, name))
    return stack, end_name + 1


def _stack_global(run: _Run, pos: int, stack: list[Any], metastack: Frames,
                  memo: dict[int, Any]) -> tuple[list[Any], int]:
    if len(stack) < 2:
        raise structure("STACK_GLOBAL needs a module and a name")
    name, module = stack.pop(), stack.pop()
    if type(module) is not str or type(name) is not str:
        raise structure("STACK_GLOBAL requires a str module and name")
    stack.append(run.push_global(module, name))
    return stack, pos + 1


def _reduce(run: _Run, pos: int, stack: list[Any], metastack: Frames, memo: dict[int, Any]) -> tuple[list[Any], int]:
    if len(stack) < 2:
        raise structure("REDUCE needs a callable and its arguments")
    args = stack.pop()
    stack[-1] = run.call(stack[-1], args, "call")
    return stack, pos + 1


def _newobj(keywords: bool) -> Handler:
    def handler(run: _Run, pos: int, stack: list[Any], metastack: Frames,
                memo: dict[int, Any]) -> tuple[list[Any], int]:
        if len(stack) < (3 if keywords else 2):
            raise structure("NEWOBJ needs a class and its arguments")
        if keywords:
            kwargs = stack.pop()
            if type(kwargs) is not dict or kwargs:
                raise PolicyViolation(Rule.CALL, "NEWOBJ_EX with keyword arguments")
        args = stack.pop()
        stack[-1] = run.call(stack[-1], args, "new")
        return stack, pos + 1
    return handler


def _build(run: _Run, pos: int, stack: list[Any], metastack: Frames, memo: dict[int, Any]) -> tuple[list[Any], int]:
    if len(stack) < 2:
        raise structure("BUILD needs an object and its state")
    state = stack.pop()
    run.build(stack[-1], state)
    return stack, pos + 1


def _binpersid(run: _Run, pos: int, stack: list[Any], metastack: Frames,
               memo: dict[int, Any]) -> tuple[list[Any], int]:
    if not run.persistent:
        raise PolicyViolation(Rule.OPCODE, "opcode BINPERSID is refused: example pickles have no persistent ids "
                                           "(only the storage pickle of a torch stream)")
    if not stack:
        raise structure("BINPERSID needs an id")
    stack[-1] = PendingStorage(*check_legacy_storage(run.view(stack[-1])))
    return stack, pos + 1


def _refused(name: str) -> Handler:
    def handler(run: _Run, pos: int, stack: list[Any], metastack: Frames,
                memo: dict[int, Any]) -> tuple[list[Any], int]:
        raise PolicyViolation(Rule.OPCODE, f"opcode {name} is refused: {REFUSED_OPCODES[name]}")
    return handler


_BY_NAME: dict[str, Handler] = {
    "BINBYTES": _binbytes, "BINBYTES8": _wide(bytes),
    "BYTEARRAY8": _wide(bytearray), "BINUNICODE8": _wide(lambda b: b.decode("utf-8", "surrogatepass")),
    "BININT2": _binint2, "LONG1": _long(1), "LONG4": _long(4), "EMPTY_TUPLE": _push(tuple),
    "EMPTY_SET": _push(set), "TUPLE": _tuple, "FROZENSET": _frozenset, "POP_MARK": _pop_mark_op,
    "ADDITEMS": _additems, "POP": _pop, "DUP": _dup, "BINPUT": _put(1), "LONG_BINPUT": _put(4), "GLOBAL": _global,
    "STACK_GLOBAL": _stack_global, "REDUCE": _reduce, "NEWOBJ": _newobj(False), "NEWOBJ_EX": _newobj(True),
    "BUILD": _build, "BINPERSID": _binpersid, **{name: _refused(name) for name in REFUSED_OPCODES},
}
#: Handler of every opcode byte that run() does not handle inline; a byte absent here is not an opcode.
HANDLERS: dict[int, Handler] = {op.code.encode("latin-1")[0]: _BY_NAME[op.name] for op in pickletools.opcodes
                                if op.name in _BY_NAME}
OPNAMES = {op.code.encode("latin-1")[0]: op.name for op in pickletools.opcodes}
