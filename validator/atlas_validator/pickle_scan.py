"""Static pickle scanning: opcodes only, never unpickling.

A small stack machine follows the opcodes (``pickletools.genops``) far enough to (1) name
every global a pickle references, including STACK_GLOBAL's module and name taken from earlier
string pushes or the memo, (2) count the items of a top-level list (version 1 blocks, version 2
blocks of framing "list"), (3) find the bytes handed to ``torch.storage._load_from_bytes`` and
scan the torch archive inside (size-limited ``zipfile``), and (4) stop at resource bounds
(opcodes, memo, stack depth), as fickling's interpreter limits do, so a hostile pickle cannot
make the validator run long or allocate much (spec PICKLE-4, LIM-3).

Before that full scan, a pickle is walked by a fast path that reads the opcode bytes itself
(_plain_pickle, _plain_list_pickle): it can only answer "clean plain data", and sends anything
else, or anything unusual, to the full scan.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickletools
import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn, cast

from atlas_format.allowlist import is_allowed, is_known_dangerous


@dataclass(frozen=True)
class ScanLimits:
    """Bounds on the work of one scan (LIM-3); exceeding one yields ATL902 and stops that scan."""

    max_opcodes: int = 50_000_000
    max_memo: int = 1_000_000
    max_stack: int = 100_000
    max_archive_size: int = 1 << 30
    max_archive_members: int = 10_000
    max_archive_depth: int = 2


DEFAULT_SCAN_LIMITS = ScanLimits()


@dataclass
class ScanIssue:
    """A problem in a pickle: a catalog id, a message, and the byte offset inside the pickle."""

    id: str
    message: str
    offset: int | None = None


@dataclass
class ScanResult:
    """What a scan learned. ``end`` is the offset just after STOP (None when the pickle is malformed)."""

    issues: list[ScanIssue] = field(default_factory=list)
    end: int | None = None
    protocol: int | None = None
    top_is_list: bool = False
    top_count: int | None = None
    opcodes: int = 0
    allowed: set[tuple[str, str]] | None = None  # allow-listed globals referenced (None: none)
    persistent_ids: list[object] | None = None  # with allow_persistent: the ids, as scanned tokens


class _Mark:
    __slots__ = ()


class _Any:
    __slots__ = ()


class _List:
    __slots__ = ("count",)

    def __init__(self, count: int) -> None:
        self.count = count


class _Global:
    __slots__ = ("module", "name")

    def __init__(self, module: str, name: str) -> None:
        self.module = module
        self.name = name


class _Bytes:
    __slots__ = ("value", "offset")

    def __init__(self, value: bytes | bytearray, offset: int) -> None:
        self.value = value
        self.offset = offset


MARK = _Mark()
ANY = _Any()

# Opcode kinds handled specially; everything else uses its declared stack effect.
(K_GENERIC, K_PROTO, K_STOP, K_MARK, K_STR, K_BYTES, K_EMPTY_LIST, K_LIST, K_APPEND, K_APPENDS, K_TUPLE_N,
 K_TUPLE_MARK, K_PUT, K_MEMOIZE, K_GET, K_GLOBAL, K_INST, K_STACK_GLOBAL, K_PERSID, K_BINPERSID, K_REDUCE,
 K_EXT, K_INT, K_OOB) = range(24)
_KINDS = tuple(range(24))  # unpacked into locals by scan_pickle (same order as above)

_SPECIAL = {
    "PROTO": K_PROTO, "STOP": K_STOP, "MARK": K_MARK,
    "INT": K_INT, "BININT": K_INT, "BININT1": K_INT, "BININT2": K_INT, "LONG": K_INT, "LONG1": K_INT, "LONG4": K_INT,
    "STRING": K_STR, "BINSTRING": K_STR, "SHORT_BINSTRING": K_STR, "UNICODE": K_STR, "BINUNICODE": K_STR,
    "SHORT_BINUNICODE": K_STR, "BINUNICODE8": K_STR,
    "BINBYTES": K_BYTES, "SHORT_BINBYTES": K_BYTES, "BINBYTES8": K_BYTES, "BYTEARRAY8": K_BYTES,
    "EMPTY_LIST": K_EMPTY_LIST, "LIST": K_LIST, "APPEND": K_APPEND, "APPENDS": K_APPENDS,
    "TUPLE1": K_TUPLE_N, "TUPLE2": K_TUPLE_N, "TUPLE3": K_TUPLE_N, "EMPTY_TUPLE": K_TUPLE_N, "TUPLE": K_TUPLE_MARK,
    "PUT": K_PUT, "BINPUT": K_PUT, "LONG_BINPUT": K_PUT, "MEMOIZE": K_MEMOIZE,
    "GET": K_GET, "BINGET": K_GET, "LONG_BINGET": K_GET,
    "GLOBAL": K_GLOBAL, "INST": K_INST, "STACK_GLOBAL": K_STACK_GLOBAL,
    "PERSID": K_PERSID, "BINPERSID": K_BINPERSID, "REDUCE": K_REDUCE,
    "EXT1": K_EXT, "EXT2": K_EXT, "EXT4": K_EXT, "NEXT_BUFFER": K_OOB,
}
_TUPLE_SIZE = {"EMPTY_TUPLE": 0, "TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}

# Per opcode (keyed by the opcode object's code): kind, items popped below a mark (or -1
# when the op takes no mark), plain items popped, items pushed.
_TABLE: dict[str, tuple[int, int, int, int]] = {}
for _op in pickletools.opcodes:
    _before, _after = _op.stack_before, _op.stack_after
    if pickletools.markobject in _before:
        _below = _before.index(pickletools.markobject)
        _pops = 0
    else:
        _below = -1
        _pops = len(_before)
    _kind = _SPECIAL.get(_op.name, K_GENERIC)
    if _kind == K_TUPLE_N:
        _pops = _TUPLE_SIZE[_op.name]
    _TABLE[_op.code] = (_kind, _below, _pops, len(_after))
# The same table keyed by the opcode objects genops yields (a dict lookup by identity).
_BY_OP = {_op: _TABLE[_op.code] for _op in pickletools.opcodes}

# The clean-pickle fast path (see _plain_pickle): opcodes that send a pickle to the full scan,
# because they name or call code, or carry data the full scan inspects.
_NOT_PLAIN = frozenset({"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "BUILD", "NEWOBJ", "NEWOBJ_EX",
                        "PERSID", "BINPERSID", "EXT1", "EXT2", "EXT4", "NEXT_BUFFER"})
# Per opcode: (not plain, items popped below a mark or -1, plain pops, pushes, memo kind, is MARK, is PROTO).
_MEMO_PUT, _MEMO_GET = 1, 2
_PLAIN: dict[Any, tuple[bool, int, int, int, int, bool, bool]] = {}
for _op in pickletools.opcodes:
    _kind, _below, _pops, _pushes = _TABLE[_op.code]
    _memo = {"MEMOIZE": _MEMO_PUT, "PUT": _MEMO_PUT, "BINPUT": _MEMO_PUT, "LONG_BINPUT": _MEMO_PUT,
             "GET": _MEMO_GET, "BINGET": _MEMO_GET, "LONG_BINGET": _MEMO_GET}.get(_op.name, 0)
    if _kind == K_TUPLE_N:
        _pops = _TUPLE_SIZE[_op.name]
    _PLAIN[_op] = (_op.name in _NOT_PLAIN, _below, _pops, _pushes, _memo, _op.name == "MARK", _op.name == "PROTO")

_Ops = Iterator[tuple[pickletools.OpcodeInfo, Any, int]]


def _genops(data: bytes | bytearray | io.BytesIO) -> _Ops:
    """``pickletools.genops`` over an in-memory pickle, typed as the scans use it.

    typeshed types each position as ``int | None`` because genops reports None for a stream
    without ``tell()``; bytes (which genops wraps in a BytesIO) and BytesIO always report an int.
    The argument is whatever the opcode's reader decoded (None exactly for opcodes that take
    no argument, ``op.arg is None``); the scans read it only for opcodes that take one.
    """
    return cast(_Ops, pickletools.genops(data))


# Opcodes that change the object below them in place and push it back (the top-level list stays).
_IN_PLACE = frozenset({"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS"})
_LIST_OPS: dict[Any, int] = {}  # 1 EMPTY_LIST, 2 LIST, 3 APPEND, 4 APPENDS, 5 other in-place op
for _op in pickletools.opcodes:
    _LIST_OPS[_op] = {"EMPTY_LIST": 1, "LIST": 2, "APPEND": 3, "APPENDS": 4}.get(
        _op.name, 5 if _op.name in _IN_PLACE else 0)

# The clean-pickle fast path (_plain_pickle, _plain_list_pickle) walks the opcode bytes itself:
# ``data[pos]`` indexes a 256-entry table that says how the opcode's argument is laid out, derived
# from its ArgumentDescriptor (``n``: a fixed size, or a length field of 1, 4 (signed or unsigned)
# or 8 bytes), and holds the stack effect of _PLAIN. Arguments are skipped, not decoded, except for
# the checks pickletools' readers make (UTF-8 of unicode strings, no negative signed length), so
# the walk accepts a pickle only where a walk over ``pickletools.genops`` with the same stack rules
# would, at a fraction of genops' cost per opcode.
(_W_PUSH, _W_UTF8_1, _W_MEMOIZE, _W_OTHER, _W_MARK, _W_BINGET, _W_UTF8_4, _W_STOP, _W_PROTO, _W_BYTES1, _W_BYTES4,
 _W_BINPUT, _W_LONG_BINPUT, _W_LONG_BINGET, _W_UTF8_8, _W_BYTES8, _W_BYTES4S, _W_REJECT) = range(18)
# _W_PUSH: a fixed-size argument, pushes one value; _W_OTHER: a fixed-size argument, any other stack
# effect; the length-prefixed kinds (_W_UTF8_*, _W_BYTES*) and the memo gets push one value.
_U4 = struct.Struct("<I").unpack_from
_I4 = struct.Struct("<i").unpack_from
_U8 = struct.Struct("<Q").unpack_from
# The argument readers whose only checks are the length (and, for unicode strings, UTF-8). An opcode
# with any other reader makes the walk give up: the newline-terminated arguments of protocols 0
# and 1 (INT, LONG, FLOAT, STRING, UNICODE, GET, PUT, GLOBAL, INST, PERSID) or a reader a later
# Python adds; those pickles take the full scan.
_READERS = {getattr(pickletools, name, None): name for name in (
    "read_uint1", "read_uint2", "read_int4", "read_uint4", "read_uint8", "read_float8", "read_long1", "read_long4",
    "read_string1", "read_string4", "read_bytes1", "read_bytes4", "read_bytes8", "read_bytearray8",
    "read_unicodestring1", "read_unicodestring4", "read_unicodestring8")}
_LENGTH_KINDS = {  # (the length field, UTF-8 checked) -> kind
    (pickletools.TAKEN_FROM_ARGUMENT1, False): _W_BYTES1, (pickletools.TAKEN_FROM_ARGUMENT1, True): _W_UTF8_1,
    (pickletools.TAKEN_FROM_ARGUMENT4, False): _W_BYTES4S,
    (pickletools.TAKEN_FROM_ARGUMENT4U, False): _W_BYTES4, (pickletools.TAKEN_FROM_ARGUMENT4U, True): _W_UTF8_4,
    (pickletools.TAKEN_FROM_ARGUMENT8U, False): _W_BYTES8, (pickletools.TAKEN_FROM_ARGUMENT8U, True): _W_UTF8_8,
}
_MEMO_KEYS = {  # (put or get, the key's reader) -> kind
    (_MEMO_PUT, None): _W_MEMOIZE, (_MEMO_PUT, "read_uint1"): _W_BINPUT, (_MEMO_PUT, "read_uint4"): _W_LONG_BINPUT,
    (_MEMO_GET, "read_uint1"): _W_BINGET, (_MEMO_GET, "read_uint4"): _W_LONG_BINGET,
}
_REJECTED = (_W_REJECT, 1, -1, 0, 0)


def _walk_entry(op: pickletools.OpcodeInfo) -> tuple[int, int, int, int, int]:
    """(kind, size, items popped below a mark or -1, plain pops, pushes) of one opcode for the walkers.

    ``size`` is the opcode byte plus its fixed-size argument; for the length-prefixed kinds the
    walker reads the length field itself."""
    not_plain, below, pops, pushes, memo_kind, is_mark, is_proto = _PLAIN[op]
    arg = op.arg
    reader = None if arg is None else _READERS.get(arg.reader)
    if not_plain or (arg is not None and reader is None):
        return _REJECTED
    n = 0 if arg is None else arg.n
    push_one = below < 0 and pops == 0 and pushes == 1
    kind: int | None
    if n < 0:  # a length field, then that many bytes: the walker handles these as pushes of one value
        kind = _LENGTH_KINDS.get((n, str(reader).startswith("read_unicodestring")))
        return _REJECTED if kind is None or memo_kind or is_mark or is_proto or not push_one else (kind, 1, -1, 0, 1)
    if memo_kind:
        kind = _MEMO_KEYS.get((memo_kind, reader))
        if kind is None or (memo_kind == _MEMO_GET and not push_one):
            return _REJECTED
    elif is_proto:
        kind = _W_PROTO if reader == "read_uint1" else _W_REJECT
    elif is_mark:
        kind = _W_MARK
    elif op.code == ".":
        kind = _W_STOP
    else:
        kind = _W_PUSH if push_one else _W_OTHER
    return (kind, 1 + n, below, pops, pushes)


_WALK: list[tuple[int, int, int, int, int]] = [_REJECTED] * 256
_WALK_LIST: list[tuple[int, int, int, int, int, int]] = [(*_REJECTED, 0)] * 256
for _op in pickletools.opcodes:
    _WALK[ord(_op.code)] = _walk_entry(_op)
    _WALK_LIST[ord(_op.code)] = (*_walk_entry(_op), _LIST_OPS[_op])


def _plain_pickle(data: bytes | bytearray, limits: ScanLimits, start: int = 0) -> tuple[int, int | None] | None:
    """(end, protocol) when ``data`` from offset ``start`` is a well-formed pickle of plain data
    only, else None. ``end`` is the offset in ``data`` just after STOP.

    The fast path of the scan: a walk over the opcode bytes (see _WALK) that tracks only stack
    heights, marks and memo keys, and gives up (None) at the first opcode that names or calls code
    (``_NOT_PLAIN``), has a newline-terminated argument or is unknown, at any structural problem,
    bound or truncation. A None sends the pickle to the full scan, which alone reports issues, so
    this path can only say "clean", never hide an issue.
    """
    max_memo = limits.max_memo
    limit = limits.max_stack  # max_stack less the open marks: the bound is depth <= limit
    table = _WALK
    depth = floor = 0  # the stack height; the height at the innermost mark
    marks: list[int] = []
    memo: set[int] | None = None  # the memo keys; None while they are exactly range(n_memo)
    n_memo = 0
    protocol = None
    pos = start
    total = len(data)
    try:
        for _ in range(limits.max_opcodes):
            kind, size, below, pops, pushes = table[data[pos]]
            if kind == _W_MEMOIZE:  # the key is the memo's size
                if depth <= floor:
                    return None
                if memo is None:
                    n_memo += 1
                else:
                    memo.add(n_memo)
                    n_memo = len(memo)
                if n_memo > max_memo:
                    return None
                pos += 1
                continue
            if kind == _W_UTF8_1:
                end = pos + 2 + data[pos + 1]
                if end > total:
                    return None
                text = data[pos + 2:end]
                if not text.isascii():
                    text.decode("utf-8", "surrogatepass")  # raises where genops' reader does
                pos = end
            elif kind == _W_PUSH:
                pos += size
            elif kind == _W_OTHER:
                pos += size
                if below >= 0:
                    if not marks:
                        return None
                    depth = marks.pop()
                    floor = marks[-1] if marks else 0
                    limit += 1
                    if below:
                        depth -= below
                        if depth < floor:
                            return None
                elif pops:
                    depth -= pops
                    if depth < floor:
                        return None
                depth += pushes
                if depth > limit:
                    return None
                continue
            elif kind == _W_MARK:
                marks.append(depth)
                floor = depth
                limit -= 1
                if depth > limit:
                    return None
                pos += 1
                continue
            elif kind == _W_BINGET or kind == _W_LONG_BINGET:
                key = data[pos + 1] if kind == _W_BINGET else _U4(data, pos + 1)[0]
                if key >= n_memo if memo is None else key not in memo:
                    return None
                pos += size
            elif kind == _W_UTF8_4:
                end = pos + 5 + _U4(data, pos + 1)[0]
                if end > total:
                    return None
                text = data[pos + 5:end]
                if not text.isascii():
                    text.decode("utf-8", "surrogatepass")
                pos = end
            elif kind == _W_STOP:  # pops the value: the stack must hold exactly it
                return (pos + 1, protocol) if depth == 1 and not marks else None
            elif kind == _W_PROTO:
                protocol = data[pos + 1]
                pos += 2
                continue
            elif kind == _W_BYTES1:
                pos += 2 + data[pos + 1]
            elif kind == _W_BYTES4:
                pos += 5 + _U4(data, pos + 1)[0]
            elif kind == _W_BINPUT or kind == _W_LONG_BINPUT:
                if depth <= floor:
                    return None
                key = data[pos + 1] if kind == _W_BINPUT else _U4(data, pos + 1)[0]
                if memo is None and key > n_memo:  # a gap in the keys: a set from now on
                    memo = set(range(n_memo))
                if memo is not None:
                    memo.add(key)
                    n_memo = len(memo)
                elif key == n_memo:
                    n_memo += 1
                if n_memo > max_memo:
                    return None
                pos += size
                continue
            elif kind == _W_UTF8_8:
                end = pos + 9 + _U8(data, pos + 1)[0]
                if end > total:
                    return None
                text = data[pos + 9:end]
                if not text.isascii():
                    text.decode("utf-8", "surrogatepass")
                pos = end
            elif kind == _W_BYTES8:
                pos += 9 + _U8(data, pos + 1)[0]
            elif kind == _W_BYTES4S:
                length = _I4(data, pos + 1)[0]
                if length < 0:
                    return None
                pos += 5 + length
            else:
                return None
            # the kinds that get here push one value (a truncated argument leaves pos past the end:
            # the next data[pos] raises IndexError)
            depth += 1
            if depth > limit:
                return None
    except (IndexError, ValueError, struct.error):  # truncated, or an argument genops' readers reject
        return None
    return None


def _plain_list_pickle(data: bytes | bytearray, limits: ScanLimits) -> tuple[int, int | None, int] | None:
    """(end, protocol, items) when ``data`` is a well-formed plain-data pickle whose value is a list
    (a version 1 block, or a version 2 block of framing "list") and the items appended to it can be
    counted from stack heights alone; else None.

    Same walk and rules as _plain_pickle, plus: the list is the object at stack position 0, created
    by EMPTY_LIST (or MARK ... LIST) on an empty stack; APPEND on a two-deep base frame and APPENDS
    on a mark right above it add to it; any other opcode that consumes or replaces position 0 makes
    the count unknown (None: the full scan counts).
    """
    max_memo = limits.max_memo
    limit = limits.max_stack
    table = _WALK_LIST
    depth = floor = 0
    marks: list[int] = []
    memo: set[int] | None = None
    n_memo = 0
    protocol = None
    items = 0
    is_list = False
    pos = 0
    total = len(data)
    try:
        for _ in range(limits.max_opcodes):
            kind, size, below, pops, pushes, list_op = table[data[pos]]
            if kind == _W_MEMOIZE:
                if depth <= floor:
                    return None
                if memo is None:
                    n_memo += 1
                else:
                    memo.add(n_memo)
                    n_memo = len(memo)
                if n_memo > max_memo:
                    return None
                pos += 1
                continue
            if kind == _W_BINGET or kind == _W_LONG_BINGET:
                key = data[pos + 1] if kind == _W_BINGET else _U4(data, pos + 1)[0]
                if key >= n_memo if memo is None else key not in memo:
                    return None
                pos += size
            elif kind == _W_PUSH:
                pos += size
            elif kind == _W_UTF8_1:
                end = pos + 2 + data[pos + 1]
                if end > total:
                    return None
                text = data[pos + 2:end]
                if not text.isascii():
                    text.decode("utf-8", "surrogatepass")
                pos = end
            elif kind == _W_OTHER:
                pos += size
                if list_op == 3:  # APPEND: an item for the list when it is the base frame's second value
                    if depth == 2 and not marks:
                        items += 1
                elif list_op == 4:  # APPENDS: the items above a mark right above the list
                    if len(marks) == 1 and marks[0] == 1:
                        items += depth - 1
                depth_before = depth
                height = 0
                if below >= 0:
                    if not marks:
                        return None
                    depth = height = marks.pop()
                    floor = marks[-1] if marks else 0
                    limit += 1
                    if below:
                        depth -= below
                        if depth < floor:
                            return None
                elif pops:
                    depth -= pops
                    if depth < floor:
                        return None
                if depth == 0 and list_op < 3:  # position 0 is consumed or (re)created
                    if list_op == 2 and not marks:
                        is_list, items = True, depth_before - height
                    else:
                        is_list = False
                depth += pushes
                if depth > limit:
                    return None
                continue
            elif kind == _W_MARK:
                marks.append(depth)
                floor = depth
                limit -= 1
                if depth > limit:
                    return None
                pos += 1
                continue
            elif kind == _W_UTF8_4:
                end = pos + 5 + _U4(data, pos + 1)[0]
                if end > total:
                    return None
                text = data[pos + 5:end]
                if not text.isascii():
                    text.decode("utf-8", "surrogatepass")
                pos = end
            elif kind == _W_STOP:
                return (pos + 1, protocol, items) if depth == 1 and not marks and is_list else None
            elif kind == _W_PROTO:
                protocol = data[pos + 1]
                pos += 2
                continue
            elif kind == _W_BYTES1:
                pos += 2 + data[pos + 1]
            elif kind == _W_BYTES4:
                pos += 5 + _U4(data, pos + 1)[0]
            elif kind == _W_BINPUT or kind == _W_LONG_BINPUT:
                if depth <= floor:
                    return None
                key = data[pos + 1] if kind == _W_BINPUT else _U4(data, pos + 1)[0]
                if memo is None and key > n_memo:  # a gap in the keys: a set from now on
                    memo = set(range(n_memo))
                if memo is not None:
                    memo.add(key)
                    n_memo = len(memo)
                elif key == n_memo:
                    n_memo += 1
                if n_memo > max_memo:
                    return None
                pos += size
                continue
            elif kind == _W_UTF8_8:
                end = pos + 9 + _U8(data, pos + 1)[0]
                if end > total:
                    return None
                text = data[pos + 9:end]
                if not text.isascii():
                    text.decode("utf-8", "surrogatepass")
                pos = end
            elif kind == _W_BYTES8:
                pos += 9 + _U8(data, pos + 1)[0]
            elif kind == _W_BYTES4S:
                length = _I4(data, pos + 1)[0]
                if length < 0:
                    return None
                pos += 5 + length
            else:
                return None
            # one value pushed: on an empty stack it is the new position 0 (a list only from EMPTY_LIST)
            if depth == 0:
                if list_op == 1 and not marks:
                    is_list, items = True, 0
                else:
                    is_list = False
            depth += 1
            if depth > limit:
                return None
    except (IndexError, ValueError, struct.error):
        return None
    return None


LOAD_FROM_BYTES = ("torch.storage", "_load_from_bytes")


class _Stop(Exception):
    """Raised inside the scan loop to end it with an issue already recorded."""


def _fail(issues: list[ScanIssue], issue_id: str, message: str, at: int) -> NoReturn:
    issues.append(ScanIssue(issue_id, message, at))
    raise _Stop


def _note_global(result: ScanResult, seen: set[tuple[str, str]], module: str, name: str, at: int) -> None:
    """Record a global once per pickle; ATL600/ATL601 unless it is on the allow-list."""
    if result.protocol is None or result.protocol < 3:
        # as the standard loader resolves names with fix_imports=True: Python 2 names -> Python 3 names
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
    key = (module, name)
    if key in seen:
        return
    seen.add(key)
    if is_allowed(module, name):
        if result.allowed is None:
            result.allowed = set()
        result.allowed.add(key)
        return
    if is_known_dangerous(module, name):
        result.issues.append(ScanIssue("ATL601", f"pickle references the known-dangerous global {module}.{name}", at))
    else:
        result.issues.append(ScanIssue("ATL600", f"pickle references {module}.{name}, which is not on the "
                                                 "allow-list", at))


def _pop_mark(stack: list[object], marks: list[int], issues: list[ScanIssue], at: int) -> list[object]:
    if not marks:
        _fail(issues, "ATL413", "malformed pickle: MARK expected on the stack", at)
    height = marks.pop()
    items = stack[height:]
    del stack[height:]
    return items


def _pop(stack: list[object], marks: list[int], issues: list[ScanIssue], n: int, at: int) -> list[object]:
    if len(stack) - n < (marks[-1] if marks else 0):
        _fail(issues, "ATL413", "malformed pickle: stack underflow", at)
    items = stack[-n:]
    del stack[-n:]
    return items


NEEDS_FULL_SCAN = -1


def plain_examples(block: bytes, bounds: list[tuple[int, int]],
                   limits: ScanLimits = DEFAULT_SCAN_LIMITS) -> list[int | None]:
    """For each example slice [start, end) of a decoded block: its pickle protocol when it is one
    clean plain-data pickle ending exactly at ``end``, else NEEDS_FULL_SCAN (scan it with scan_pickle).

    The fast path walks each example in place in the block: no copy of the slices on the common path.
    """
    out: list[int | None] = []
    for start, end in bounds:
        plain = _plain_pickle(block, limits, start)
        out.append(plain[1] if plain is not None and plain[0] == end else NEEDS_FULL_SCAN)
    return out


def scan_pickle(data: bytes | bytearray, *, limits: ScanLimits = DEFAULT_SCAN_LIMITS, allow_persistent: bool = False,
                archive_depth: int = 0, start: int = 0, shape: bool = False, fast: bool = True) -> ScanResult:
    """Scan one pickle that starts at offset ``start`` of ``data`` and stops at its STOP opcode.

    Offsets in the result (issues, ``end``) are offsets in ``data``. ``shape=True`` asks for
    the top-level list count (version 1 blocks); otherwise a pickle of plain data takes the
    fast path first.

    Never raises for any input: malformed pickles, bounds and unsafe globals become issues.
    The stack mirrors the standard loader's: MARK opens a new frame (a metastack), and an
    opcode may not pop below the innermost mark.
    """
    if fast and not start:
        if shape:
            listed = _plain_list_pickle(data, limits)
            if listed is not None:
                return ScanResult(end=listed[0], protocol=listed[1], top_is_list=True, top_count=listed[2])
        else:
            plain = _plain_pickle(data, limits)
            if plain is not None:
                return ScanResult(end=plain[0], protocol=plain[1])
    result = ScanResult()
    issues = result.issues
    stack: list[object] = []
    marks: list[int] = []  # stack heights at each open MARK
    memo: dict[int, object] = {}
    seen_globals: set[tuple[str, str]] = set()
    max_depth = limits.max_stack
    max_memo = limits.max_memo
    max_opcodes = limits.max_opcodes
    table = _BY_OP
    # the kinds as locals: the loop runs once per opcode and compares against them
    (_GENERIC, _PROTO, _STOP, _MARK, _STR, _BYTES, _EMPTY_LIST, _LIST, _APPEND, _APPENDS, _TUPLE_N, _TUPLE_MARK, _PUT,
     _MEMOIZE, _GET, _GLOBAL, _INST, _STACK_GLOBAL, _PERSID, _BINPERSID, _REDUCE, _EXT, _INT, _OOB) = _KINDS
    append = stack.append
    pos = 0
    count = 0

    try:
        if start:
            stream = io.BytesIO(data)  # shares the bytes; genops reports absolute positions
            stream.seek(start)
            ops = _genops(stream)
        else:
            ops = _genops(data)
        for op, arg, pos in ops:
            count += 1
            kind, below, pops, pushes = table[op]
            if kind == _STR:
                append(arg if isinstance(arg, str) else ANY)
            elif kind == _MEMOIZE or kind == _PUT:
                if not stack or (marks and len(stack) <= marks[-1]):
                    _fail(issues, "ATL413", f"malformed pickle: {op.name} with nothing to store", pos)
                memo[len(memo) if kind == _MEMOIZE else arg] = stack[-1]
                if len(memo) > max_memo:
                    _fail(issues, "ATL902", f"pickle memo exceeds {max_memo} entries", pos)
            elif kind == _GENERIC:
                if below >= 0:
                    if not marks:
                        _fail(issues, "ATL413", "malformed pickle: MARK expected on the stack", pos)
                    del stack[marks.pop():]
                    if below:
                        _pop(stack, marks, issues, below, pos)
                elif pops:
                    if len(stack) - pops < (marks[-1] if marks else 0):
                        _fail(issues, "ATL413", "malformed pickle: stack underflow", pos)
                    del stack[-pops:]
                if pushes == 1:
                    append(ANY)
                elif pushes:
                    stack.extend([ANY] * pushes)
            elif kind == _MARK:
                marks.append(len(stack))
            elif kind == _GET:
                if arg not in memo:
                    _fail(issues, "ATL413", f"malformed pickle: memo key {arg} was never stored", pos)
                append(memo[arg])
            elif kind == _APPEND or kind == _APPENDS:
                if kind == _APPENDS:
                    n = len(_pop_mark(stack, marks, issues, pos))
                else:
                    n = len(_pop(stack, marks, issues, 1, pos))
                if len(stack) <= (marks[-1] if marks else 0):
                    _fail(issues, "ATL413", f"malformed pickle: {op.name} without a list", pos)
                top = stack[-1]
                if isinstance(top, _List):
                    top.count += n
            elif kind == _EMPTY_LIST:
                append(_List(0))
            elif kind == _LIST:
                append(_List(len(_pop_mark(stack, marks, issues, pos))))
            elif kind == _BYTES:
                append(_Bytes(arg, pos) if isinstance(arg, (bytes, bytearray)) else ANY)
            elif kind == _TUPLE_N:
                append(tuple(_pop(stack, marks, issues, pops, pos)) if pops else ())
            elif kind == _TUPLE_MARK:
                append(tuple(_pop_mark(stack, marks, issues, pos)))
            elif kind == _GLOBAL or kind == _INST:
                module, _, name = str(arg).partition(" ")
                _note_global(result, seen_globals, module, name, pos)
                if kind == _INST:
                    _pop_mark(stack, marks, issues, pos)
                    append(ANY)
                else:
                    append(_Global(module, name))
            elif kind == _STACK_GLOBAL:
                module_obj, name_obj = _pop(stack, marks, issues, 2, pos)
                if isinstance(module_obj, str) and isinstance(name_obj, str):
                    _note_global(result, seen_globals, module_obj, name_obj, pos)
                    append(_Global(module_obj, name_obj))
                else:
                    issues.append(ScanIssue("ATL603", "STACK_GLOBAL takes its module or name from a value that "
                                                      "is not a string pushed by the pickle", pos))
                    append(ANY)
            elif kind == _REDUCE:
                callable_obj, args = _pop(stack, marks, issues, 2, pos)
                if (isinstance(callable_obj, _Global) and (callable_obj.module, callable_obj.name) == LOAD_FROM_BYTES
                        and isinstance(args, tuple) and len(args) == 1 and isinstance(args[0], _Bytes)):
                    _scan_archive(args[0], issues, limits, archive_depth)
                append(ANY)
            elif kind == _OOB:
                issues.append(ScanIssue("ATL413", "NEXT_BUFFER: the pickle needs an out-of-band buffer, which a "
                                                  "dataset cannot supply (the example cannot be loaded)", pos))
                append(ANY)
            elif kind == _INT:
                append(arg if type(arg) is int else ANY)
            elif kind == _PERSID or kind == _BINPERSID:
                pid = _pop(stack, marks, issues, 1, pos)[0] if kind == _BINPERSID else arg
                if not allow_persistent:
                    issues.append(ScanIssue("ATL602", "pickle uses a persistent id (PERSID/BINPERSID)", pos))
                else:
                    if result.persistent_ids is None:
                        result.persistent_ids = []
                    result.persistent_ids.append(pid)
                append(ANY)
            elif kind == _EXT:
                issues.append(ScanIssue("ATL603", f"{op.name} loads a global from the copyreg extension registry, "
                                                  "which cannot be resolved statically", pos))
                append(ANY)
            elif kind == _PROTO:
                result.protocol = int(arg)
            elif kind == _STOP:
                (top,) = _pop(stack, marks, issues, 1, pos)
                if stack or marks:
                    issues.append(ScanIssue("ATL413", f"malformed pickle: {len(stack)} values and {len(marks)} marks "
                                                      "left on the stack at STOP", pos))
                if isinstance(top, _List):
                    result.top_is_list = True
                    result.top_count = top.count
                result.end = pos + 1
            if count > max_opcodes or len(stack) + len(marks) > max_depth:
                if count > max_opcodes:
                    _fail(issues, "ATL902", f"pickle scan stopped after {max_opcodes} opcodes", pos)
                _fail(issues, "ATL902", f"pickle stack deeper than {max_depth} values", pos)
    except _Stop:
        result.end = None
    except Exception as exc:  # noqa: BLE001 - genops raises ValueError and others on any malformed input
        issues.append(ScanIssue("ATL413", f"malformed or truncated pickle: {_short(exc)}", pos))
        result.end = None
    else:
        if result.end is None and count == 0:
            issues.append(ScanIssue("ATL413", "empty pickle", 0))
    result.opcodes = count
    return result


def _short(exc: BaseException) -> str:
    text = str(exc).replace("\n", " ")
    return f"{type(exc).__name__}: {text[:200]}"


def _scan_archive(blob: _Bytes, issues: list[ScanIssue], limits: ScanLimits, depth: int) -> None:
    """Scan the bytes given to torch.storage._load_from_bytes: torch's legacy save stream (what
    plain pickle writes, PICKLE-2) or a torch.save zip archive (its *.pkl members)."""
    at = blob.offset
    if depth >= limits.max_archive_depth:
        issues.append(ScanIssue("ATL604", "torch archive nested deeper than the scan allows", at))
        return
    if not blob.value.startswith(b"PK\x03\x04"):
        _scan_legacy_stream(blob, issues, limits, depth)
        return
    try:
        with zipfile.ZipFile(io.BytesIO(blob.value)) as archive:
            members = archive.infolist()
            if len(members) > limits.max_archive_members:
                issues.append(ScanIssue("ATL604", f"torch archive has {len(members)} members, above "
                                                  f"{limits.max_archive_members}", at))
                return
            total = sum(m.file_size for m in members)
            if total > limits.max_archive_size:
                issues.append(ScanIssue("ATL604", f"torch archive declares {total} bytes, above "
                                                  f"{limits.max_archive_size}", at))
                return
            pickles = [m for m in members if m.filename.endswith(".pkl")]
            if not pickles:
                issues.append(ScanIssue("ATL604", "torch archive holds no .pkl member", at))
                return
            for member in pickles:
                with archive.open(member) as handle:
                    inner = handle.read(member.file_size + 1)
                if len(inner) > member.file_size:
                    issues.append(ScanIssue("ATL604", f"torch archive member {member.filename} is larger than "
                                                      "it declares", at))
                    continue
                sub = scan_pickle(inner, limits=limits, allow_persistent=True, archive_depth=depth + 1)
                for issue in sub.issues:
                    issues.append(ScanIssue(issue.id, f"in torch archive member {member.filename} (inner offset "
                                                      f"{issue.offset}): {issue.message}", at))
                if sub.end is not None and sub.end != len(inner):
                    issues.append(ScanIssue("ATL604", f"torch archive member {member.filename} has "
                                                      f"{len(inner) - sub.end} bytes after STOP", at))
    except Exception as exc:  # noqa: BLE001 - zipfile raises many types on hostile archives
        issues.append(ScanIssue("ATL604", f"torch archive cannot be read: {_short(exc)}", at))


# Element sizes of torch's typed storage classes (the legacy stream stores element counts).
_STORAGE_ELEMENT_SIZE = {
    "FloatStorage": 4, "DoubleStorage": 8, "HalfStorage": 2, "BFloat16Storage": 2, "LongStorage": 8,
    "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1, "BoolStorage": 1,
    "ComplexFloatStorage": 8, "ComplexDoubleStorage": 16, "UntypedStorage": 1,
}
_LEGACY_PICKLES = ("magic number", "protocol version", "system information", "storage object", "storage keys")


def _legacy_storage(pid: object) -> tuple[str, int, int | None] | None:
    """(key, element size, numel or None when not an int) of a legacy stream's persistent id
    ('storage', <torch storage type>, key, location, numel[, view]); None when it is not one."""
    if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
        return None
    storage_type, key, numel = pid[1], pid[2], pid[4]
    if not isinstance(storage_type, _Global) or not isinstance(key, str) or storage_type.module != "torch":
        return None
    size = _STORAGE_ELEMENT_SIZE.get(storage_type.name)
    if size is None:
        return None
    return key, size, numel if type(numel) is int else None


def _scan_legacy_stream(blob: _Bytes, issues: list[ScanIssue], limits: ScanLimits, depth: int) -> None:
    """torch's legacy save stream: five pickles, then per storage key an 8-byte element count and the bytes.

    Each pickle is scanned with the same allow-list (persistent ids are expected in the fourth);
    the storages named by the persistent ids give the element sizes, so the byte counts are checked.
    """
    data, at = blob.value, blob.offset
    pos = 0
    results: list[ScanResult] = []
    for i, what in enumerate(_LEGACY_PICKLES):
        sub = scan_pickle(data, limits=limits, allow_persistent=i == 3, archive_depth=depth + 1, start=pos)
        for issue in sub.issues:
            issues.append(ScanIssue(issue.id, f"in the legacy torch stream's {what} pickle (inner offset "
                                              f"{issue.offset}): {issue.message}", at))
        if sub.end is None:
            issues.append(ScanIssue("ATL604", f"legacy torch stream: the {what} pickle is malformed", at))
            return
        results.append(sub)
        pos = sub.end
    sizes: dict[str, tuple[int, int | None]] = {}
    for pid in results[3].persistent_ids or []:
        storage = _legacy_storage(pid)
        if storage is None:
            issues.append(ScanIssue("ATL604", "legacy torch stream: a persistent id is not ('storage', <torch "
                                              "storage type>, key, location, numel)", at))
            return
        key, size, numel = storage
        sizes[key] = (size, numel)
    if not results[4].top_is_list or results[4].top_count != len(sizes):
        issues.append(ScanIssue("ATL604", f"legacy torch stream: the storage key list does not name the "
                                          f"{len(sizes)} storages of the persistent ids", at))
        return
    for key in sorted(sizes):
        size, numel = sizes[key]
        if pos + 8 > len(data):
            issues.append(ScanIssue("ATL604", "legacy torch stream is truncated (storage count missing)", at))
            return
        count = int.from_bytes(data[pos:pos + 8], "little")
        pos += 8 + count * size
        if numel is not None and count != numel:
            issues.append(ScanIssue("ATL604", f"legacy torch stream: storage {key} holds {count} elements, its "
                                              f"persistent id says {numel}", at))
        if pos > len(data):
            issues.append(ScanIssue("ATL604", "legacy torch stream is truncated (storage bytes missing)", at))
            return
    if pos != len(data):
        issues.append(ScanIssue("ATL604", f"legacy torch stream has {len(data) - pos} bytes after its storages", at))
