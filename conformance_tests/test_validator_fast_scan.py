"""The validator's byte-level fast path agrees with the genops-based walk it replaced.

``_plain_pickle`` and ``_plain_list_pickle`` (atlas_validator.pickle_scan) walk the opcode bytes
themselves. The functions below are the previous implementations over ``pickletools.genops``,
kept here as the reference. On every input the two give the same answer, with one deliberate
difference: the byte walker gives up (None) on opcodes with a newline-terminated argument
(protocols 0 and 1: INT, LONG, FLOAT, STRING, UNICODE, GET, PUT, ...), which sends those pickles to
the full scan; so where the results differ, the walker's is None and the pickle holds such an opcode.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import io
import pickle
import pickletools
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

import atlas_validator.pickle_scan as ps
from atlas_format.testing.strategies import examples

DEFAULT = ps.DEFAULT_SCAN_LIMITS


# ---------------------------------------------------------------------------------------------
# the genops-based fast path, as it was (the reference)


def _plain_pickle_genops(data: bytes | bytearray | io.BytesIO, limits: ps.ScanLimits) -> tuple[int, int | None] | None:
    """(end, protocol) when ``data`` (bytes, or a stream at the pickle's start) is a well-formed
    pickle of plain data only, else None. ``end`` is a position in ``data``.

    The fast path of the scan: it tracks only stack heights, marks and memo keys, and gives up
    (None) at the first opcode that names or calls code (``_NOT_PLAIN``), at any structural
    problem or bound, and on any parse error. A None sends the pickle to the full scan, which
    alone reports issues, so this path can only say "clean", never hide an issue.
    """
    depth = 0
    marks: list[int] = []
    memo: set[int] = set()
    protocol = None
    count = 0
    max_opcodes, max_stack, max_memo = limits.max_opcodes, limits.max_stack, limits.max_memo
    table = ps._PLAIN
    try:
        for op, arg, pos in ps._genops(data):
            not_plain, below, pops, pushes, memo_kind, is_mark, is_proto = table[op]
            count += 1
            if not_plain or count > max_opcodes:
                return None
            if memo_kind:
                if memo_kind == ps._MEMO_PUT:
                    if depth <= (marks[-1] if marks else 0):
                        return None
                    memo.add(len(memo) if arg is None else arg)
                    if len(memo) > max_memo:
                        return None
                    continue
                if arg not in memo:
                    return None
            elif is_mark:
                marks.append(depth)
                if depth + len(marks) > max_stack:
                    return None
                continue
            elif is_proto:
                protocol = int(arg)
                continue
            if below >= 0:
                if not marks:
                    return None
                depth = marks.pop()
                pops = below
            if pops:
                if depth - pops < (marks[-1] if marks else 0):
                    return None
                depth -= pops
            depth += pushes
            if depth + len(marks) > max_stack:
                return None
            if op.code == ".":
                return (pos + 1, protocol) if depth == 0 and not marks else None
    except Exception:  # noqa: BLE001 - any parse error: let the full scan report it
        return None
    return None


def _plain_list_pickle_genops(data: bytes | bytearray, limits: ps.ScanLimits) -> tuple[int, int | None, int] | None:
    """(end, protocol, items) when ``data`` is a well-formed plain-data pickle whose value is a list
    (a version 1 block) and the items appended to it can be counted from stack heights alone; else None.

    Same rules as _plain_pickle_genops, plus: the list is the object at stack position 0, created by
    EMPTY_LIST (or MARK ... LIST) on an empty stack; APPEND on a two-deep base frame and APPENDS on
    a mark right above it add to it; any other opcode that consumes or replaces position 0 makes
    the count unknown (None: the full scan counts).
    """
    depth = 0
    marks: list[int] = []
    memo: set[int] = set()
    protocol = None
    count = 0
    items = 0
    is_list = False
    max_opcodes, max_stack, max_memo = limits.max_opcodes, limits.max_stack, limits.max_memo
    table = ps._PLAIN
    list_ops = ps._LIST_OPS
    try:
        for op, arg, pos in ps._genops(data):
            not_plain, below, pops, pushes, memo_kind, is_mark, is_proto = table[op]
            count += 1
            if not_plain or count > max_opcodes:
                return None
            if memo_kind:
                if memo_kind == ps._MEMO_PUT:
                    if depth <= (marks[-1] if marks else 0):
                        return None
                    memo.add(len(memo) if arg is None else arg)
                    if len(memo) > max_memo:
                        return None
                    continue
                if arg not in memo:
                    return None
            elif is_mark:
                marks.append(depth)
                if depth + len(marks) > max_stack:
                    return None
                continue
            elif is_proto:
                protocol = int(arg)
                continue
            list_op = list_ops[op]
            if list_op == 3 and not marks and depth == 2:
                items += 1
            elif list_op == 4 and len(marks) == 1 and marks[0] == 1:
                items += depth - 1
            if below >= 0:
                if not marks:
                    return None
                height = marks.pop()
                depth_before = depth
                depth = height
                pops = below
            else:
                depth_before = depth
            if pops:
                if depth - pops < (marks[-1] if marks else 0):
                    return None
                depth -= pops
            if op.code == ".":
                return (pos + 1, protocol, items) if depth == 0 and not marks and is_list else None
            if depth == 0 and list_op < 3:  # position 0 is consumed or (re)created
                if list_op == 1 and not marks:
                    is_list, items = True, 0
                elif list_op == 2 and not marks:
                    is_list, items = True, depth_before - height
                else:
                    is_list = False
            depth += pushes
            if depth + len(marks) > max_stack:
                return None
    except Exception:  # noqa: BLE001 - any parse error: let the full scan report it
        return None
    return None


# ---------------------------------------------------------------------------------------------
# the comparison


def _newline_opcode(data: bytes, start: int) -> bool:
    """Whether the pickle at ``start`` (which genops reads up to STOP) has a newline-terminated argument."""
    stream = io.BytesIO(data)
    stream.seek(start)
    return any(op.arg is not None and op.arg.n == pickletools.UP_TO_NEWLINE for op, _a, _p in ps._genops(stream))


def check_plain(data: bytes, limits: ps.ScanLimits = DEFAULT, start: int = 0) -> Any:
    new = ps._plain_pickle(data, limits, start)
    if start:
        stream = io.BytesIO(data)
        stream.seek(start)
        old = _plain_pickle_genops(stream, limits)
    else:
        old = _plain_pickle_genops(data, limits)
    if new != old:
        assert new is None and old is not None and _newline_opcode(data, start), (data[start:], limits, new, old)
    return new


def check_list(data: bytes, limits: ps.ScanLimits = DEFAULT) -> Any:
    new = ps._plain_list_pickle(data, limits)
    old = _plain_list_pickle_genops(data, limits)
    if new != old:
        assert new is None and old is not None and _newline_opcode(data, 0), (data, limits, new, old)
    return new


def check_both(data: bytes, limits: ps.ScanLimits = DEFAULT) -> None:
    check_plain(data, limits)
    check_list(data, limits)


def check_prefixes(data: bytes, limits: ps.ScanLimits = DEFAULT, most: int = 400) -> None:
    """Every truncation of ``data`` (or ``most`` of them spread over it, for long pickles)."""
    step = max(1, len(data) // most)
    for cut in range(0, len(data), step):
        check_both(data[:cut], limits)


# ---------------------------------------------------------------------------------------------
# inputs


class _Reducer:
    """An object whose pickle calls a global (REDUCE): never plain."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (collections.OrderedDict, ([("a", 1)],))


_OTHER = st.sampled_from([
    collections.OrderedDict(a=1), datetime.date(2024, 1, 2), decimal.Decimal("1.5"), complex(1, 2), _Reducer(),
    {1, 2}, frozenset({3}), bytearray(b"xy"), b"bytes", range(3), slice(1, 2), ..., NotImplemented,
])

_limits = st.one_of(
    st.just(DEFAULT),
    st.builds(ps.ScanLimits, max_opcodes=st.just(DEFAULT.max_opcodes) | st.integers(0, 200),
              max_memo=st.just(DEFAULT.max_memo) | st.integers(0, 12),
              max_stack=st.just(DEFAULT.max_stack) | st.integers(0, 24)),
)

_mutation = st.tuples(st.integers(0, 1 << 20), st.integers(0, 255),
                      st.sampled_from(["flip", "cut", "insert", "delete", "opcode"]))

_OPS = sorted(pickletools.opcodes, key=lambda op: op.code)


def _encoded_opcode(choice: int, byte: int) -> bytes:
    """One opcode (any of pickletools.opcodes) with an argument of the right shape, picked by two numbers."""
    op = _OPS[choice % len(_OPS)]
    arg = op.arg
    out = op.code.encode("latin-1")
    if arg is None:
        return out
    n = arg.n
    small = byte % 4  # lengths and memo keys mostly small, so the result is often well-formed
    if n >= 0:
        return out + bytes([small]) + bytes(n - 1) if n else out
    if n == pickletools.UP_TO_NEWLINE:
        return out + (b"1\n" if byte % 2 else b"__main__\nX\n")
    width = {pickletools.TAKEN_FROM_ARGUMENT1: 1, pickletools.TAKEN_FROM_ARGUMENT4: 4,
             pickletools.TAKEN_FROM_ARGUMENT4U: 4, pickletools.TAKEN_FROM_ARGUMENT8U: 8}[n]
    if byte >= 250:  # a length running past the end, or negative when signed
        return out + b"\xff" * width + b"ab"
    payload = (b"\xc3\xa9", b"\xff", b"\xed\xa0\x80", b"a", b"")[byte % 5]  # valid, invalid, surrogate UTF-8
    return out + len(payload).to_bytes(width, "little") + payload


def mutate(data: bytes, mutations: list[tuple[int, int, str]]) -> bytes:
    out = bytearray(data)
    for at, byte, kind in mutations:
        at %= len(out) + 1
        if kind == "flip" and at < len(out):
            out[at] = byte
        elif kind == "cut":
            del out[at:]
        elif kind == "insert":
            out[at:at] = bytes([byte])
        elif kind == "delete":
            del out[at:at + 1]
        else:
            out[at:at] = _encoded_opcode(at, byte)
    return bytes(out)


_SCALARS = (b"N", b"\x88", b"\x89", b"K\x07", b"M\x01\x02", b"J\xff\xff\xff\xff", b"G" + bytes(8), b"\x8a\x01\x05",
            b"\x8b\x01\x00\x00\x00\x05", b"\x8c\x02\xc3\xa9", b"X\x01\x00\x00\x00a", b"\x8d\x01" + bytes(7) + b"b",
            b"C\x01c", b"B\x01\x00\x00\x00d", b"\x8e\x01" + bytes(7) + b"e", b"\x96\x01" + bytes(7) + b"f", b"U\x01g",
            b"T\x01\x00\x00\x00h", b"]", b"}", b")", b"\x8f", b"\x8c\x01\xff", b"\x8c\x03\xed\xa0\x80",
            b"X\x01\x00\x00\x00\xff", b"\x8d\x01" + bytes(7) + b"\xff")
_CLOSERS = (b"t", b"l", b"d", b"\x91", b"1", b"e", b"u", b"\x90")  # pop to the mark (the last three: and into a value)


def opcode_stream(choices: list[tuple[int, int]], finish: bool) -> bytes:
    """A stream of plain opcodes, well-formed far more often than random bytes: each choice is
    mostly turned into an opcode the stack heights allow (pushes, marks, collections, memo puts
    and gets, frames), so the walks reach their stack, mark, memo and list-count rules."""
    out = [b"\x80\x04"] if choices and choices[0][0] % 3 == 0 else []
    depth = 0
    marks: list[int] = []
    memo = 0
    for c, b in choices:
        action = c % 10
        floor = marks[-1] if marks else 0
        room = depth - floor
        if action == 1:
            out.append(b"(")
            marks.append(depth)
        elif action == 2 and marks:
            closer = _CLOSERS[b % len(_CLOSERS)]
            out.append(closer)
            depth = marks.pop() - (closer in (b"e", b"u", b"\x90")) + (closer != b"1")
        elif action == 3 and room >= 2 + (b % 2):
            out.append(b"as"[b % 2:b % 2 + 1])
            depth -= 1 + b % 2
        elif action == 4 and room >= 1:
            key = memo if b % 8 else c % 7  # mostly the next key, sometimes a gap or a key stored before
            out.append((b"\x94", b"q" + bytes([key % 256]), b"r" + key.to_bytes(4, "little"))[b % 3])
            memo += 1
        elif action == 5 and memo:
            key = (b * 7) % memo if b % 16 else memo + 3  # sometimes a key never stored
            out.append(b"h" + bytes([key % 256]) if key < 256 and b % 2 else b"j" + key.to_bytes(4, "little"))
            depth += 1
        elif action == 6 and (room >= 1 or c % 16 == 6):
            op = (b"0", b"2", b"\x85", b"\x86", b"\x87")[b % 5]
            need = {b"0": 1, b"2": 1, b"\x85": 1, b"\x86": 2, b"\x87": 3}[op]
            if room >= need or c % 16 == 6:  # rarely: popping below the innermost mark
                out.append(op)
                depth += {b"0": -1, b"2": 1}.get(op, 1 - need)
        elif action == 7:
            out.append(b"\x95" + (b % 40).to_bytes(8, "little"))
        elif action == 8 and c % 50 == 8:  # rarely: any opcode at all
            out.append(_encoded_opcode(c, b))
        else:
            out.append(_SCALARS[b % len(_SCALARS)])
            depth += 1
    if finish:
        while marks:
            out.append(b"l")
            depth = marks.pop() + 1
        if depth == 0:
            out.append(b"N")
            depth = 1
        out.append(b"0" * (depth - 1) + b".")
    return b"".join(out)


# ---------------------------------------------------------------------------------------------
# the tests


@given(value=examples(numpy=True) | _OTHER, protocol=st.integers(2, 5), limits=_limits)
def test_walker_agrees_on_pickles_and_their_truncations(value, protocol, limits):
    data = pickle.dumps(value, protocol=protocol)
    check_both(data, limits)
    check_prefixes(data, limits, most=200)


@given(items=st.lists(examples(numpy=False, large=False), max_size=12)
       | st.lists(examples(numpy=True, large=False) | _OTHER, max_size=12), protocol=st.integers(2, 5), limits=_limits)
def test_walker_agrees_on_version_1_blocks(items, protocol, limits):
    """A version 1 block is one list of examples: the list walker counts its items."""
    shared = {"shared": 1}
    value = [*items, shared, shared]  # the same object twice: memo GET
    data = pickle.dumps(value, protocol=protocol)
    result = check_list(data, limits)
    if result is not None:
        assert result[2] == len(value)
    check_both(data, limits)


@given(value=examples(numpy=True) | st.lists(_OTHER, max_size=3), protocol=st.integers(0, 5),
       mutations=st.lists(_mutation, min_size=1, max_size=4), limits=_limits)
def test_walker_agrees_on_mutated_pickles(value, protocol, mutations, limits):
    data = mutate(pickle.dumps(value, protocol=protocol), mutations)
    check_both(data, limits)
    check_prefixes(data, limits, most=50)


@given(choices=st.lists(st.tuples(st.integers(0, 255), st.integers(0, 255)), max_size=40), stop=st.booleans(),
       limits=_limits)
def test_walker_agrees_on_random_opcode_streams(choices, stop, limits):
    """Sequences of any opcodes with arguments of the right shape."""
    data = b"".join(_encoded_opcode(c, b) for c, b in choices) + (b"." if stop else b"")
    check_both(data, limits)


@given(choices=st.lists(st.tuples(st.integers(0, 255), st.integers(0, 255)), max_size=60), finish=st.booleans(),
       as_list=st.booleans(), limits=_limits)
def test_walker_agrees_on_structured_opcode_streams(choices, finish, as_list, limits):
    """Mostly well-formed streams of plain opcodes (see opcode_stream), also below a top-level list."""
    data = opcode_stream(choices, finish)
    if as_list:  # a list at stack position 0, with the stream's values appended to it
        data = b"]" + data[:-1] + b"a." if data.endswith(b".") else b"](" + data
    check_both(data, limits)
    check_prefixes(data, limits, most=30)


@given(values=st.lists(examples(numpy=True, large=False), min_size=1, max_size=6), protocol=st.integers(0, 5),
       mutations=st.lists(_mutation, max_size=3), pad=st.integers(0, 9))
def test_walker_agrees_inside_a_block(values, protocol, mutations, pad):
    """Examples of a version 2 block are walked in place from their offset; the result names the absolute end."""
    pickles = [pickle.dumps(v, protocol=protocol) for v in values]
    block = mutate(b"\x00" * pad + b"".join(pickles), mutations)
    pos = pad
    bounds = []
    for p in pickles:
        bounds.append((pos, pos + len(p)))
        pos += len(p)
    for (start, end), found in zip(bounds, ps.plain_examples(block, bounds), strict=True):
        result = check_plain(block, DEFAULT, start)
        assert found == (result[1] if result is not None and result[0] == end else ps.NEEDS_FULL_SCAN)
        if not mutations and protocol >= 2:
            assert found in (ps.NEEDS_FULL_SCAN, protocol)


def test_walker_corner_cases():
    cases = [
        b"", b".", b"N.", b"\x80\x05N.", b"\x80", b"\x80\x05", b"NN.", b"(N.", b"(Nt.", b"(t.", b"0.", b"N0N.",
        b"N\x94.", b"\x94N.", b"N\x94h\x00.", b"Nh\x00.", b"Nr\x01\x00\x00\x00j\x01\x00\x00\x000.",
        b"Nq\x05h\x05t.", b"]q\x00(K\x01K\x02e.", b"](K\x01e.", b"(K\x01K\x02l.", b"]K\x01a.", b"N]K\x01a0.",
        b"\x8c\x02\xc3\xa9.", b"\x8c\x01\xff.", b"\x8c\x03\xed\xa0\x80.", b"\x8c\x05ab.",
        b"X\x02\x00\x00\x00\xc3\xa9.", b"X\xff\xff\xff\xffab.", b"\x8d\x01\x00\x00\x00\x00\x00\x00\x00a.",
        b"\x8d" + b"\xff" * 8 + b".", b"\x8e" + b"\xff" * 8 + b".", b"\x96" + b"\xff" * 8 + b".",
        b"T\xff\xff\xff\xffab.", b"T\x01\x00\x00\x00a.", b"\x8b\xfe\xff\xff\xff.", b"\x8b\x01\x00\x00\x00\x01.",
        b"\x8a\x01\x01.", b"G" + bytes(8) + b".", b"G" + bytes(7), b"J\x01\x00\x00\x00.", b"M\x01\x00.",
        b"\x95" + bytes(8) + b"N.", b"\x95\x01", b"I1\n.", b"L1\n.", b"F1.0\n.", b"S'a'\n.", b"Va\n.",
        b"Np0\ng0\n0.", b"N2.", b"N\x94\x94\x94\x94.", b"(((((N", b"}(K\x01K\x02u.", b"}K\x01K\x02s.",
        b"\x8f(K\x01\x90.", b"(K\x01\x91.", b"(1N.", b"c__main__\nX\n.", b"\x8c\x01a\x8c\x01b\x93.",
        b"N\x85R.", b"\x97.", b"\xff.", b"\x00.", b"N\x88\x89.", b"NN\x86\x87.",
        b"(((111N.", b"((((1111N.", b"(N(N(N000111N.",  # marks alone reach the stack bound
        b"N(N(Nt0001.", b"N(N(Nt001.",  # a pop below the outer mark after the inner one closed
        # memo keys: gaps, keys stored twice, MEMOIZE after a gap (its key is the memo's size), long keys
        b"Nq\x05h\x050.", b"Nq\x05h\x020.", b"Nq\x05h\x000.", b"Nq\x01\x94h\x010.", b"Nq\x01\x94h\x000.",
        b"N\x94q\x00\x94h\x010.", b"N\x94q\x00\x94h\x000.", b"N\x94q\x02\x94h\x010.", b"N\x94q\x02h\x010.",
        b"Nr\xff\xff\x00\x00j\xff\xff\x00\x000.", b"Nr\xff\xff\x00\x00j\x00\x00\x00\x000.", b"N\x94j\x00\x00\x00\x000.",
        b"Nr\x00\x01\x00\x00j\x00\x00\x00\x000.", b"N\x94j\x00\x01\x00\x000.", b"N\x94\x94j\x01\x00\x00\x010.",
        b"N\x94\x94\x94q\x01h\x02h\x0300.", b"N\x94\x94q\x05\x94h\x020.", b"N\x94\x94q\x05\x94h\x030.",
        # strings: valid, invalid and surrogate UTF-8 (genops decodes with surrogatepass) in every width
        *(code + n.to_bytes(width, "little") + payload + b"."
          for code, width in ((b"\x8c", 1), (b"X", 4), (b"\x8d", 8))
          for payload in (b"a", b"\xc3\xa9", b"\xff", b"\xc3", b"\xed\xa0\x80", b"a\x80b", b"\xf0\x9f\x98\x80")
          for n in (len(payload),)),
        # bytes, byte strings and longs in every width (the payload is skipped, never decoded)
        *(code + len(payload).to_bytes(width, "little") + payload + b"."
          for code, width in ((b"C", 1), (b"B", 4), (b"\x8e", 8), (b"\x96", 8), (b"U", 1), (b"T", 4), (b"\x8a", 1),
                              (b"\x8b", 4))
          for payload in (b"", b"x", b"\xff", b"N.", b"\x00\x01\x02")),
    ]
    cases += [b"]" + case[:-1] + b"a." for case in cases if case.endswith(b".")]  # the same below a list
    tiny = [ps.ScanLimits(max_opcodes=k, max_stack=k, max_memo=k) for k in range(5)]
    tiny += [ps.ScanLimits(max_stack=k) for k in range(5)] + [ps.ScanLimits(max_memo=k) for k in range(4)]
    for case in cases:
        for limits in (DEFAULT, *tiny):
            check_both(case, limits)
        check_prefixes(case)
    # a negative signed length would move backwards: here onto a POP and a STOP before the pickle's start
    for case in (b"0.NT\xf8\xff\xff\xff", b"0.N\x8b\xf8\xff\xff\xff", b"0.NT\xf9\xff\xff\xff0."):
        assert check_plain(case, DEFAULT, 2) is None
    # the bounds hold exactly where they did
    data = pickle.dumps([[1, 2], {"a": (3, 4)}, "x", "x"], protocol=4)
    count = sum(1 for _ in pickletools.genops(data))
    for k in range(count + 2):
        for limits in (ps.ScanLimits(max_opcodes=k), ps.ScanLimits(max_stack=k), ps.ScanLimits(max_memo=k)):
            check_both(data, limits)
    assert ps._plain_pickle(data, ps.ScanLimits(max_opcodes=count)) == (len(data), 4)
    assert ps._plain_pickle(data, ps.ScanLimits(max_opcodes=count - 1)) is None
    for protocol in range(3, 6):  # (protocol 2 pickles bytes through a global)
        block = pickle.dumps([{"a": 1, "b": "é" * 300}, "x", [2], 2.5, b"y" * 300] * 300, protocol=protocol)
        assert ps._plain_list_pickle(block, DEFAULT) == (len(block), protocol, 1500) == check_list(block)


def test_walker_gives_up_on_every_newline_argument_and_unknown_byte():
    known = {ord(op.code) for op in pickletools.opcodes}
    for byte in range(256):
        entry = ps._WALK[byte]
        if byte not in known:
            assert entry[0] == ps._W_REJECT
    for op in pickletools.opcodes:
        if op.arg is not None and op.arg.n == pickletools.UP_TO_NEWLINE:
            assert ps._WALK[ord(op.code)][0] == ps._W_REJECT, op.name
        elif op.arg is not None and op.arg.n >= 0 and ps._WALK[ord(op.code)][0] != ps._W_REJECT:
            assert ps._WALK[ord(op.code)][1] == 1 + op.arg.n, op.name
    assert ps._plain_pickle(pickle.dumps([1, 2.5, "a", "a"], protocol=0), DEFAULT) is None
    assert _plain_pickle_genops(pickle.dumps([1, 2.5, "a", "a"], protocol=0), DEFAULT) is not None
