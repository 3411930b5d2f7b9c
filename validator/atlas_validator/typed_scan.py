"""The validator's own decoder of typed examples (spec TYPED-2..5), independent of the reference's.

It walks one example's MessagePack bytes with the format's headers and ``atlas_format.typed``'s
declarations, checks every rule (formats, UTF-8, map keys, extension codes, array headers and sizes,
bool bytes, alignment, depth and item limits) and builds the value: what a reader returns, except that
a tensor is a ``TensorValue`` (the validator runs without torch). Lengths are compared with the bytes
left before anything is read or allocated, and recursion stops at the depth limit, so hostile bytes
cost time linear in their size. Issues carry the offset in the example's bytes where the defect is, and
ids of the catalog's ATL7xx range.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from atlas_format import grouped, typed

_BE = {1: struct.Struct(">B"), 2: struct.Struct(">H"), 4: struct.Struct(">I"), 8: struct.Struct(">Q")}
_INT = {0xD0: struct.Struct(">b"), 0xD1: struct.Struct(">h"), 0xD2: struct.Struct(">i"), 0xD3: struct.Struct(">q")}
_UINT = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
_FLOAT = {0xCA: struct.Struct(">f"), 0xCB: struct.Struct(">d")}
_BIN = {0xC4: 1, 0xC5: 2, 0xC6: 4}
_STR = {0xD9: 1, 0xDA: 2, 0xDB: 4}
_ARRAY = {0xDC: 2, 0xDD: 4}
_MAP = {0xDE: 2, 0xDF: 4}
_EXT = {0xC7: 1, 0xC8: 2, 0xC9: 4}
_FIXEXT = {0xD4: 1, 0xD5: 2, 0xD6: 4, 0xD7: 8, 0xD8: 16}
_NUMPY = {d.code: np.dtype(d.numpy) for d in typed.DTYPES if d.numpy}


@dataclass(frozen=True)
class TensorValue:
    """A tensor as the validator decodes it: dtype name, shape, little-endian C-order bytes."""

    dtype: str
    shape: tuple[int, ...]
    data: bytes


@dataclass(frozen=True)
class TypedIssue:
    """One broken rule: finding id, message, offset in the example's bytes."""

    id: str
    message: str
    offset: int


class _Stop(Exception):
    """The bytes cannot be parsed past this point."""


@dataclass
class _Scan:
    data: bytes
    issues: list[TypedIssue] = field(default_factory=list)
    #: where the example being scanned starts (array data is aligned from there)
    base: int = 0

    def fail(self, finding: str, message: str, at: int) -> _Stop:
        self.issues.append(TypedIssue(finding, message, at))
        return _Stop()

    def note(self, finding: str, message: str, at: int) -> None:
        self.issues.append(TypedIssue(finding, message, at))

    def take(self, at: int, size: int, what: str) -> int:
        """The end of ``size`` bytes from ``at``, which must be there."""
        end = at + size
        if end > len(self.data):
            raise self.fail("ATL700", f"{what} of {size} bytes at offset {at} runs past the example's "
                                      f"{len(self.data)} bytes (truncated)", at)
        return end

    def length(self, at: int, width: int, what: str) -> tuple[int, int]:
        end = self.take(at, width, what)
        return _BE[width].unpack_from(self.data, at)[0], end

    def value(self, at: int, depth: int) -> tuple[Any, int]:
        """(value, end) of the object at ``at``, a container of it being at ``depth``."""
        data = self.data
        self.take(at, 1, "a value")
        b = data[at]
        if b <= 0x7F:
            return b, at + 1
        if b >= 0xE0:
            return b - 0x100, at + 1
        if b == 0xC0:
            return None, at + 1
        if b in (0xC2, 0xC3):
            return b == 0xC3, at + 1
        if b in _UINT:
            end = self.take(at + 1, _UINT[b], "an unsigned int")
            return _BE[_UINT[b]].unpack_from(data, at + 1)[0], end
        if b in _INT:
            end = self.take(at + 1, _INT[b].size, "an int")
            return _INT[b].unpack_from(data, at + 1)[0], end
        if b in _FLOAT:
            end = self.take(at + 1, _FLOAT[b].size, "a float")
            return _FLOAT[b].unpack_from(data, at + 1)[0], end
        if 0xA0 <= b <= 0xBF or b in _STR:
            n, start = (b & 0x1F, at + 1) if b <= 0xBF else self.length(at + 1, _STR[b], "a str length")
            end = self.take(start, n, "a str")
            try:
                return data[start:end].decode("utf-8"), end
            except UnicodeDecodeError as exc:
                self.note("ATL702", f"a str is not UTF-8 ({exc.reason} at byte {start + exc.start})", start + exc.start)
                return data[start:end].decode("utf-8", "replace"), end
        if b in _BIN:
            n, start = self.length(at + 1, _BIN[b], "a bin length")
            end = self.take(start, n, "a bin")
            return data[start:end], end
        if 0x90 <= b <= 0x9F or b in _ARRAY:
            n, start = (b & 0x0F, at + 1) if b <= 0x9F else self.length(at + 1, _ARRAY[b], "an array length")
            return self.array(at, start, n, depth)
        if 0x80 <= b <= 0x8F or b in _MAP:
            n, start = (b & 0x0F, at + 1) if b <= 0x8F else self.length(at + 1, _MAP[b], "a map length")
            return self.map(at, start, n, depth)
        if b in _EXT or b in _FIXEXT:
            if b in _FIXEXT:
                size, start = _FIXEXT[b], at + 1
            else:
                size, start = self.length(at + 1, _EXT[b], "an extension length")
            self.take(start, 1, "an extension type")
            code = struct.unpack_from(">b", data, start)[0]
            payload = start + 1
            end = self.take(payload, size, "an extension payload")
            return self.extension(at, code, payload, end, depth), end
        raise self.fail("ATL700", f"byte {b:#04x} at offset {at} is not a MessagePack format of the typed set "
                                  "(0xc1 is never used)", at)

    def enter(self, at: int, n: int, depth: int, kind: str, per_item: int = 1) -> None:
        if depth > typed.MAX_DEPTH:
            raise self.fail("ATL706", f"{kind} at offset {at} nests {depth} containers deep, above the limit of "
                                      f"{typed.MAX_DEPTH}", at)
        if n > typed.MAX_ITEMS:
            raise self.fail("ATL706", f"{kind} at offset {at} holds {n} items, above the limit of {typed.MAX_ITEMS}",
                            at)
        if n * per_item > len(self.data) - at:  # every item takes at least one byte
            raise self.fail("ATL700", f"{kind} at offset {at} declares {n} items in {len(self.data) - at} bytes "
                                      "(truncated)", at)

    def array(self, at: int, start: int, n: int, depth: int) -> tuple[list[Any], int]:
        self.enter(at, n, depth, "an array")
        items = []
        for _ in range(n):
            item, start = self.value(start, depth + 1)
            items.append(item)
        return items, start

    def map(self, at: int, start: int, n: int, depth: int) -> tuple[dict[Any, Any], int]:
        self.enter(at, n, depth, "a map", per_item=2)
        out: dict[Any, Any] = {}
        seen: set[tuple[str, Any]] = set()
        for _ in range(n):
            key_at = start
            key, start = self.value(start, depth + 1)
            if type(key) is not str and type(key) is not int:
                self.note("ATL701", f"a map key at offset {key_at} is {type(key).__name__}, not str or int", key_at)
                key = ("<invalid key>", key_at)
            elif (type(key).__name__, key) in seen:
                self.note("ATL701", f"map key {key!r} at offset {key_at} appears twice", key_at)
            seen.add((type(key).__name__, key))
            out[key], start = self.value(start, depth + 1)
        return out, start

    def extension(self, at: int, code: int, payload: int, end: int, depth: int) -> Any:
        if code == typed.EXT_TUPLE:
            self.take(payload, 1, "a tuple's array")
            b = self.data[payload]
            if not (0x90 <= b <= 0x9F or b in _ARRAY):
                raise self.fail("ATL703", f"the tuple at offset {at} holds a value of format {b:#04x}, not an array",
                                payload)
            items, stop = self.value(payload, depth)
            if stop != end:
                raise self.fail("ATL703", f"the tuple at offset {at} has {end - stop} bytes after its array", stop)
            return tuple(items)
        if code not in (typed.EXT_NDARRAY, typed.EXT_TENSOR):
            raise self.fail("ATL703", f"extension type {code} at offset {at} is not one of the typed set "
                                      f"({', '.join(map(str, typed.EXT_CODES))})", at)
        return self.array_payload(at, code, payload, end)

    def array_payload(self, at: int, code: int, payload: int, end: int) -> Any:
        data = self.data
        what = "ndarray" if code == typed.EXT_NDARRAY else "tensor"
        if end - payload < typed.ARRAY_HEAD.size:
            raise self.fail("ATL704", f"the {what} at offset {at} has a payload of {end - payload} bytes, shorter "
                                      f"than its {typed.ARRAY_HEAD.size}-byte header", payload)
        dtype, ndim, pad, reserved = typed.ARRAY_HEAD.unpack_from(data, payload)
        entry = typed.DTYPE_BY_CODE.get(dtype)
        problems = []
        if entry is None:
            problems.append(f"dtype code {dtype} is not in the table")
        elif code == typed.EXT_NDARRAY and entry.numpy is None:
            problems.append(f"dtype {entry.name} is for tensors only")
        if ndim > typed.MAX_NDIM:
            problems.append(f"ndim {ndim} is above {typed.MAX_NDIM}")
        if pad >= typed.ALIGNMENT:
            problems.append(f"pad {pad} is not below {typed.ALIGNMENT}")
        if reserved:
            problems.append(f"reserved is {reserved}, not 0")
        if problems or entry is None:
            raise self.fail("ATL704", f"the {what} at offset {at}: {'; '.join(problems)}", payload)
        head = payload + typed.header_size(ndim)
        if head + pad > end:
            raise self.fail("ATL704", f"the {what} at offset {at}: its payload of {end - payload} bytes is shorter "
                                      f"than its header of {ndim} dimensions and pad {pad}", payload)
        shape = typed.shape_struct(ndim).unpack_from(data, payload + typed.ARRAY_HEAD.size)
        expected = math.prod(shape) * entry.itemsize
        start = head + pad
        if end - start != expected:
            raise self.fail("ATL704", f"the {what} at offset {at}: shape {list(shape)} of {entry.name} takes "
                                      f"{expected} bytes, the payload holds {end - start}", payload)
        if any(data[head:start]):
            self.note("ATL704", f"the {what} at offset {at}: its pad bytes are not zero", head)
        if (start - self.base) % typed.ALIGNMENT:
            self.note("ATL705", f"the {what} at offset {at}: its data starts {start - self.base} bytes into the "
                                f"example, not a multiple of {typed.ALIGNMENT}", start)
        raw = data[start:end]
        if entry.name == "bool" and expected and max(raw) > 1:
            self.note("ATL704", f"the bool {what} at offset {at} holds a byte other than 0 and 1", start)
        if code == typed.EXT_TENSOR:
            return TensorValue(entry.name, shape, raw)
        return np.frombuffer(raw, dtype=_NUMPY[dtype]).reshape(shape)


def scan_typed(data: bytes) -> tuple[Any, list[TypedIssue]]:
    """(the example's value, or None when it cannot be parsed; every broken rule) of one typed example."""
    scan = _Scan(bytes(data))
    try:
        value, end = scan.value(0, 1)
    except _Stop:
        return None, scan.issues
    if end != len(scan.data):
        scan.note("ATL700", f"{len(scan.data) - end} bytes follow the example's object (offset {end})", end)
    return value, scan.issues


def check_typed_list(raw: bytes, sink: Any, *, path: str, block: int, offset: int, compressed: bool,
                     expected: int | None, first: int | None, clause: str = "V2-FRAME-5, TYPED-1",
                     locate: Callable[[int], tuple[int, str]] | None = None, ends: list[int] | None = None) -> None:
    """A decoded block of framing list (or grouped, TYPED-7) with typed examples: one MessagePack array of
    ``expected`` examples and nothing after it (TYPED-1), every item checked as an example (its alignment from
    its own start). Issues name the example; inside a compressed block they are located at the block, the
    decoded offset in the message (``locate``: where a decoded offset is, as (data.bin offset, text)).
    ``ends`` receives where each example that parsed ends."""
    scan = _Scan(bytes(raw))
    where = {"path": path, "block": block}

    def report(issues: list[TypedIssue], position: int | None) -> None:
        example = {} if position is None else {"position": position,
                                               "example": None if first is None else first + position}
        for issue in issues:
            if locate is not None:
                at, text = locate(issue.offset)
                sink.add(issue.id, f"{issue.message} ({text})", **where, **example, offset=at)
            elif compressed:
                sink.add(issue.id, f"{issue.message} (decoded offset {issue.offset})", **where, **example,
                         offset=offset)
            else:
                sink.add(issue.id, issue.message, **where, **example, offset=offset + issue.offset)

    data = scan.data
    b = data[0] if data else None
    if b is None or not (0x90 <= b <= 0x9F or b in _ARRAY):
        report([TypedIssue("ATL700", "the block is not one MessagePack array of its typed examples", 0)], None)
        return
    try:
        count, at = (b & 0x0F, 1) if b <= 0x9F else scan.length(1, _ARRAY[b], "an array length")
    except _Stop:
        report(scan.issues, None)
        return
    if expected is not None and count != expected:
        sink.add("ATL411", f"block holds {count} examples, expected {expected}", **where, offset=offset, clause=clause)
    for position in range(count):
        scan.issues, scan.base = [], at
        try:
            _, at = scan.value(at, 1)
        except _Stop:
            report(scan.issues, position)
            return
        report(scan.issues, position)
        if ends is not None:
            ends.append(at)
    if at != len(data):
        report([TypedIssue("ATL700", f"{len(data) - at} bytes follow the block's array (offset {at})", at)], None)


def check_typed_grouped(raw: bytes, frame_ends: list[int], group_offsets: list[tuple[int, ...]], n: int, group: int,
                        sink: Any, *, path: str, block: int, offset: int, first: int | None,
                        locate: Callable[[int], tuple[int, str]]) -> None:
    """A decoded block of framing grouped with typed examples (TYPED-7): framing list's array (every example
    checked), its header in the shortest form, each frame ending after its 32 examples and every group
    offset at the first example of its group (ATL420: else a random read returns other examples)."""
    where = {"path": path, "block": block, "offset": offset}
    ends: list[int] = []
    check_typed_list(raw, sink, path=path, block=block, offset=offset, compressed=True, expected=n, first=first,
                     clause="TYPED-7", locate=locate, ends=ends)
    header = typed.array_header(n)
    if raw[:len(header)] != header:
        sink.add("ATL418", f"the block's array header is {raw[:len(header)].hex(' ')}, expected {header.hex(' ')}: "
                           f"the shortest MessagePack header of {n} examples", **where, clause="TYPED-7, TYPED-1")
        return
    if len(ends) != n:
        return  # reported by the examples' check
    bounds = [len(header), *ends]  # bounds[k]: where example k starts; bounds[n]: the end
    frame, group = grouped.FRAME_EXAMPLES, grouped.block_group(n, group)
    for j, end in enumerate(frame_ends[:-1]):
        k = min(frame * (j + 1), n)
        if end != bounds[k]:
            sink.add("ATL420", f"frame {j} ends at decoded offset {end}, expected {bounds[k]}, where example {k} "
                               "starts", **where, clause="TYPED-7")
    for j, offsets in enumerate(group_offsets):
        base = bounds[frame * j]
        for q, value in enumerate(offsets, 1):
            k = frame * j + q * group
            if k >= min(frame * (j + 1), n) or base + value != bounds[k]:
                want = f"{bounds[k] - base}, where example {k} starts" if k < n else "none (the frame has fewer groups)"
                sink.add("ATL420", f"frame {j}'s group offset {q} is {value} (decoded offset {base + value}), "
                                   f"expected {want}", **where, clause="TYPED-7")
