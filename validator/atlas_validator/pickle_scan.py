"""Static pickle scanning: the pickle policy (spec/FORMAT.md section 5) enforced without running anything.

The scanner follows the opcodes with a stack machine of its own. Plain data it keeps as plain
data (the strings, numbers and containers a pickle spells out); every object an allowed
constructor would make is an inert ``Made`` record of the facts the policy's checks need
(``atlas_format.pickle_checks``): no global is imported, no constructor called, no key hashed
except plain values. It stops at the first rule a pickle breaks and says which, where; a pickle
it passes is one the safe loader (``torch_atlas_ds.safe_pickle``, the other engine of the same
policy) loads, and one that the standard unpickler loads without running anything else.

Never raises for any input: every problem becomes a ``ScanIssue``.
"""

from __future__ import annotations

import pickletools
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from atlas_format.pickle_checks import (
    LEGACY_PICKLES,
    check_legacy_header,
    check_legacy_keys,
    check_legacy_storage,
    legacy_storage,
)
from atlas_format.pickle_policy import (
    ALIASES,
    HIGHEST_PROTOCOL,
    KINDS,
    OPCODES,
    PLAIN_KINDS,
    POLICY,
    REFUSED_OPCODES,
    PolicyEntry,
    is_known_dangerous,
    key_of,
    refuse_global,
    resolve_name,
)
from atlas_format.pickle_values import (
    DEFAULT_PICKLE_LIMITS,
    VIEW_DEPTH,
    Made,
    Mapping,
    PickleLimits,
    PolicyViolation,
    Ref,
    Rule,
    Seq,
)

#: The scan's bounds are the policy's limits (one set for both engines).
ScanLimits = PickleLimits
DEFAULT_SCAN_LIMITS = DEFAULT_PICKLE_LIMITS

#: Finding id of each rule (refused opcodes and globals are refined in _finding_id).
RULE_IDS = {
    Rule.STRUCTURE: "ATL413", Rule.OPCODE: "ATL606", Rule.GLOBAL: "ATL600", Rule.CALL: "ATL607",
    Rule.BUILD: "ATL608", Rule.TARGET: "ATL609", Rule.KEY: "ATL610", Rule.MEMO: "ATL611", Rule.DEPTH: "ATL902",
    Rule.ITEMS: "ATL902", Rule.SIZE: "ATL902", Rule.NESTED: "ATL604",
}


#: Finer finding ids of refused opcodes (the rest are ATL606).
_OPCODE_FINDINGS = {"PERSID": "ATL602", "EXT1": "ATL603", "EXT2": "ATL603", "EXT4": "ATL603"}
#: Every finding id that is a pickle breaking the policy (one pickle safe loading refuses).
POLICY_FINDINGS = frozenset(RULE_IDS.values()) | {"ATL601", "ATL602", "ATL603"}


class _Violation(PolicyViolation):
    """A violation the scanner raises, with the catalog's finding id where it is finer than the rule's."""

    def __init__(self, rule: Rule, message: str, finding: str | None = None) -> None:
        super().__init__(rule, message)
        self.finding = finding


@dataclass
class ScanIssue:
    """A problem in a pickle: a catalog id, a message, and the byte offset inside the pickle."""

    id: str
    message: str
    offset: int | None = None
    rule: str | None = None


@dataclass
class ScanResult:
    """What a scan learned. ``end`` is the offset just after STOP (None when the scan stopped before it)."""

    issues: list[ScanIssue] = field(default_factory=list)
    end: int | None = None
    protocol: int | None = None
    top_is_list: bool = False
    top_count: int | None = None
    allowed: set[tuple[str, str]] | None = None  # policy globals referenced (None: none)


# -- the scanner's values: plain data as itself, everything else a record -------------------------

_ATOMS = (type(None), bool, int, float, str, bytes)


class SList:
    """A list (or a deque's items): its items."""

    __slots__ = ("items",)

    def __init__(self, items: list[Any] | None = None) -> None:
        self.items = items if items is not None else []


class SDict:
    """A dict: its entries, by the plain value each key equals (what a real dict would collide on)."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: dict[Any, tuple[Any, Any]] = {}


class SSet:
    """A set or frozenset: its members, by the plain value each equals."""

    __slots__ = ("kind", "members")

    def __init__(self, kind: str, members: dict[Any, Any] | None = None) -> None:
        self.kind = kind
        self.members = members if members is not None else {}


class SContainer:
    """A container an allowed constructor made (OrderedDict, defaultdict, Counter, deque): its record, its
    content, and the instance attributes BUILD gave it."""

    __slots__ = ("made", "content", "attrs", "maxlen")

    def __init__(self, made: Made, content: SDict | SList, maxlen: int | None = None) -> None:
        self.made, self.content, self.maxlen = made, content, maxlen
        self.attrs: dict[str, Any] = {}


class Marker:
    """A call-only global (POLICY-3): only the callable of REDUCE."""

    __slots__ = ("entry",)

    def __init__(self, entry: PolicyEntry) -> None:
        self.entry = entry


class Trusted:
    """A global the caller trusts completely (``allowed``, the reader's ``allowed_globals``), or an object it made:
    calls and BUILD on it are admitted as the safe loader admits them, and no check of the policy accepts it."""

    __slots__ = ("name", "made")

    def __init__(self, name: str, made: bool) -> None:
        self.name, self.made = name, made


class Pending:
    """What the storage pickle of a torch stream loads: its persistent id, before the bytes are read."""

    __slots__ = ("key", "dtype", "numel")

    def __init__(self, key: str, dtype: str | None, numel: int) -> None:
        self.key, self.dtype, self.numel = key, dtype, numel


class Blob:
    """The contents of a long bytes or bytearray value, not copied out of the pickle unless a check reads them
    (most never do: a 12 KB image in a dict is only skipped)."""

    __slots__ = ("data", "start", "end", "mutable")

    def __init__(self, data: bytes, start: int, end: int, mutable: bool) -> None:
        self.data, self.start, self.end, self.mutable = data, start, end, mutable

    def value(self) -> bytes | bytearray:
        chunk = self.data[self.start:self.end]
        return bytearray(chunk) if self.mutable else chunk


#: What ``_Scanner.scan`` returns, instead of a value, when it pauses at ``stop`` (``pause``).
PAUSED = object()
#: The messages of a pickle that runs past its end (framing grouped: past a part's end, ATL420).
TRUNCATED = "the pickle is truncated"
ENDS_BEFORE_STOP = "the pickle ends before STOP"

#: Bytes values longer than this are scanned as a Blob.
BLOB_MIN = 256
#: The length-prefixed opcodes of scan()'s plain-data lane: (width of the length, is text).
_COUNTED_LANE = {0x8C: (1, True), 0x58: (4, True), 0x43: (1, False), 0x42: (4, False)}


class _Opaque:
    """The view of a value no check accepts."""

    def __repr__(self) -> str:
        return "<pending storage>"


_OPAQUE = _Opaque()
_U2 = struct.Struct("<H").unpack_from
_I4 = struct.Struct("<i").unpack_from
_U4 = struct.Struct("<I").unpack_from
_U8 = struct.Struct("<Q").unpack_from
_F8 = struct.Struct(">d").unpack_from
_NAMES = {op.code.encode("latin-1")[0]: op.name for op in pickletools.opcodes}


class _Scanner:
    """One pickle's scan. ``persistent``: the storage pickle of a torch stream (BINPERSID allowed)."""

    def __init__(self, data: bytes, limits: PickleLimits, persistent: bool, globals_seen: set[tuple[str, str]],
                 stop: int | None = None, trusted: frozenset[tuple[str, str]] = frozenset()) -> None:
        self.data = data
        self.stop = len(data) if stop is None else stop  # the pickle ends here (it may sit inside a block)
        self.limits = limits
        self.persistent = persistent
        self.globals_seen = globals_seen
        self.trusted = trusted
        self.stack: list[Any] = []
        self.frames: list[list[Any]] = []  # the stacks below the open marks
        self.memo: dict[int, Any] = {}
        self.protocol: int | None = None
        self.pos = 0
        self.shared = False   # a container was reused through the memo or DUP
        self.markers = False  # a call-only global was pushed
        self.payload = 0      # bytes of string and bytes contents
        self.containers = 0   # containers made: no result can be deeper
        # framing grouped (slice_scan): scan a block part by part, as a random read would
        self.pause = False    # reaching ``stop`` between opcodes returns PAUSED instead of failing
        self.in_slices = False  # PROTO, FRAME, MEMOIZE and STOP are refused (ATL421)
        self.memo_floor = 0   # PUT below this index is refused (ATL422): the preamble's entries
        self.mark_floor = 0   # the MARKs below this depth are not the pickle's to take (the block list's: ATL420)
        self.elsewhere: list[dict[int, Any]] = []  # the memos of the block's other parts (a GET of theirs: ATL422)
        self.frozen: set[int] = set()  # ids of the preamble's objects: a slice must not change them (ATL422)

    def check_frozen(self, target: Any, what: str) -> None:
        """A slice that changes an object of the preamble: an in-order read shares it, a random read does not."""
        if id(target) in self.frozen:
            raise self.fail(Rule.MEMO, f"{what} changes {_describe_value(target)} of the shard's preamble: an in-order "
                                       "read shares it across the block, a random read does not (two readings)",
                            "ATL422")

    def slice_opcode(self, name: str) -> PolicyViolation:
        """A slice of framing grouped must not hold ``name`` (V2-FRAME-6): a part read alone would differ."""
        return self.fail(Rule.STRUCTURE, f"opcode {name} inside the slices (a slice has no PROTO, FRAME, MEMOIZE "
                                         "or STOP)", "ATL421")

    def list_mark(self, what: str) -> PolicyViolation:
        """An opcode that takes a MARK when none of its own is open."""
        if self.frames:
            return self.fail(Rule.STRUCTURE, f"{what} takes the block list's MARK inside the slices (a slice uses "
                                             "only the stack above its own start)", "ATL420")
        return self.fail(Rule.STRUCTURE, f"{what} without a MARK")

    def missing(self, index: int) -> PolicyViolation:
        """A GET of a memo index never stored; in framing grouped, of one another part of the block stored."""
        if index >= self.memo_floor and any(index in memo for memo in self.elsewhere):
            return self.fail(Rule.MEMO, f"memo key {index} is read here but was stored by an earlier group or frame "
                                        "of the block: a random read of this part does not have it (two readings)",
                             "ATL422")
        return self.fail(Rule.MEMO, f"memo key {index} was never stored")

    def fail(self, rule: Rule, message: str, finding: str | None = None) -> PolicyViolation:
        """The violation to raise; ``finding`` overrides the rule's finding id (RULE_IDS) where the catalog is finer."""
        return _Violation(rule, message, finding=finding)

    def pop(self, n: int, what: str) -> list[Any]:
        if len(self.stack) < n:
            raise self.fail(Rule.STRUCTURE, f"{what}: stack underflow")
        items = self.stack[len(self.stack) - n:]
        del self.stack[len(self.stack) - n:]
        return items

    def pop_mark(self, what: str) -> list[Any]:
        if len(self.frames) <= self.mark_floor:
            raise self.list_mark(what)
        items = self.stack
        self.stack = self.frames.pop()
        return items

    def top(self, what: str) -> Any:
        if not self.stack:
            raise self.fail(Rule.STRUCTURE, f"{what} on an empty stack")
        return self.stack[-1]

    def scan(self, pos: int) -> tuple[Any, int]:  # noqa: C901 - one loop over the opcodes, a lane for plain data
        """Follow the opcodes from ``pos`` to STOP: (the scanned value, the offset after STOP).

        The opcodes that spell plain data (strings, numbers, dicts, lists, the memo) take a lane of their
        own in this loop; every other opcode goes to its handler in _BY_CODE, which keeps ``self.stack``
        (the current frame) and ``self.frames`` up to date. Both follow the same rules."""
        data = self.data
        end_of_data = self.stop
        memo = self.memo
        by_code = _BY_CODE
        stack = self.stack
        try:
            while True:
                if pos >= end_of_data:
                    if self.pause and pos == end_of_data:
                        return PAUSED, pos
                    raise self.fail(Rule.STRUCTURE, ENDS_BEFORE_STOP)
                op = data[pos]
                if op == 0x94:  # MEMOIZE
                    if self.in_slices:
                        raise self.slice_opcode("MEMOIZE")
                    if not stack:
                        raise self.fail(Rule.STRUCTURE, "MEMOIZE on an empty stack")
                    memo[len(memo)] = stack[-1]
                    pos += 1
                elif op in _COUNTED_LANE:  # SHORT_BINUNICODE, BINUNICODE, SHORT_BINBYTES, BINBYTES
                    width, text = _COUNTED_LANE[op]
                    start = pos + 1 + width
                    end = start + (data[pos + 1] if width == 1 else _U4(data, pos + 1)[0])
                    if end > end_of_data:
                        raise self.fail(Rule.STRUCTURE, TRUNCATED)
                    if text:
                        stack.append(data[start:end].decode("utf-8", "surrogatepass"))
                    else:
                        stack.append(data[start:end] if end - start <= BLOB_MIN else Blob(data, start, end, False))
                    self.payload += end - start
                    pos = end
                elif op == 0x4B:  # BININT1
                    stack.append(data[pos + 1])
                    pos += 2
                elif op == 0x4D:  # BININT2
                    stack.append(_U2(data, pos + 1)[0])
                    pos += 3
                elif op == 0x68:  # BINGET
                    value = memo.get(data[pos + 1], memo)
                    if value is memo:
                        raise self.missing(data[pos + 1])
                    if not self.shared and isinstance(value, _CONTAINERS):
                        self.shared = True
                    stack.append(value)
                    pos += 2
                elif op == 0x28:  # MARK
                    self.frames.append(stack)
                    stack = self.stack = []
                    pos += 1
                elif op == 0x75:  # SETITEMS: plain keys into a dict of the pickle here, anything else in _set_items
                    frames = self.frames
                    if len(frames) <= self.mark_floor:
                        raise self.list_mark("SETITEMS")
                    items = stack
                    stack = self.stack = frames.pop()
                    if len(items) % 2:
                        raise self.fail(Rule.STRUCTURE, "SETITEMS with an odd number of items")
                    if not stack:
                        raise self.fail(Rule.STRUCTURE, "SETITEMS on an empty stack")
                    target = stack[-1]
                    if self.frozen:
                        self.check_frozen(target, "SETITEMS")
                    if type(target) is SDict:
                        entries = target.entries
                        for i in range(0, len(items), 2):
                            key = items[i]
                            if type(key) in _ATOMS:
                                old = entries.get(key)
                                entries[key] = (key if old is None else old[0], items[i + 1])
                            else:
                                self.set_item(target, key, items[i + 1])
                    else:
                        _set_items(self, target, items, "SETITEMS")
                    pos += 1
                elif op == 0x65:  # APPENDS
                    pos = _appends(self, pos)
                    stack = self.stack
                elif op == 0x80:  # PROTO
                    if self.in_slices:
                        raise self.slice_opcode("PROTO")
                    self.protocol = data[pos + 1]
                    if self.protocol > HIGHEST_PROTOCOL:
                        raise self.fail(Rule.STRUCTURE, f"pickle protocol {self.protocol} is above {HIGHEST_PROTOCOL}")
                    pos += 2
                elif op == 0x95:  # FRAME
                    if self.in_slices:
                        raise self.slice_opcode("FRAME")
                    if pos + 9 + _U8(data, pos + 1)[0] > end_of_data:
                        raise self.fail(Rule.STRUCTURE, "the pickle is truncated (FRAME)")
                    pos += 9
                elif op == 0x7D or op == 0x5D:  # EMPTY_DICT, EMPTY_LIST
                    stack.append(SDict() if op == 0x7D else SList())
                    self.containers += 1
                    pos += 1
                elif op == 0x4A:  # BININT
                    stack.append(_I4(data, pos + 1)[0])
                    pos += 5
                elif op == 0x47:  # BINFLOAT
                    stack.append(_F8(data, pos + 1)[0])
                    pos += 9
                elif op == 0x4E:  # NONE
                    stack.append(None)
                    pos += 1
                elif op == 0x2E:  # STOP
                    if self.in_slices:
                        raise self.slice_opcode("STOP")
                    if len(stack) != 1 or self.frames:
                        raise self.fail(Rule.STRUCTURE, f"{len(stack)} values and {len(self.frames)} marks on the "
                                                        "stack at STOP (expected exactly the result)")
                    return stack[0], pos + 1
                else:
                    handler = by_code.get(op)
                    if handler is None:
                        name = _NAMES.get(op)
                        if name is None:
                            raise self.fail(Rule.STRUCTURE, f"unknown opcode {op:#04x}")
                        raise self.fail(Rule.OPCODE, f"opcode {name} is refused: {REFUSED_OPCODES[name]}",
                                        _OPCODE_FINDINGS.get(name))
                    pos = handler(self, pos)
                    stack = self.stack
        except IndexError:
            raise self.fail(Rule.STRUCTURE, ENDS_BEFORE_STOP) from None
        except struct.error:
            raise self.fail(Rule.STRUCTURE, TRUNCATED) from None
        finally:
            self.pos = pos

    # -- reading arguments -----------------------------------------------------------------------

    def need(self, start: int, size: int) -> bytes:
        end = start + size
        if size < 0 or end > self.stop:
            raise self.fail(Rule.STRUCTURE, TRUNCATED)
        return self.data[start:end]

    def content(self, start: int, size: int) -> bytes:
        """The bytes of a string or bytes value (counted as payload, not opcodes)."""
        self.payload += size
        return self.need(start, size)

    def fixed(self, unpack: Callable[[bytes, int], tuple[Any, ...]], pos: int, size: int) -> Any:
        self.need(pos + 1, size)
        return unpack(self.data, pos + 1)[0]

    # -- globals, calls, BUILD -----------------------------------------------------------------

    def push_global(self, module: str, name: str) -> None:
        module, name = resolve_name(module, name, self.protocol)
        entry = POLICY.get((module, name))
        if entry is None:
            if (module, name) in self.trusted:  # as the safe loader: the caller trusts it completely
                self.globals_seen.add((module, name))
                self.stack.append(Trusted(f"{module}.{name}", made=False))
                return
            raise refuse_global(module, name)
        self.globals_seen.add(entry.key)
        self.markers = self.markers or not entry.value
        self.stack.append(ALIASES.get(entry.ref, entry.ref) if entry.value else Marker(entry))

    def call(self, func: Any, args: Any, how: str) -> Any:
        """REDUCE ('call') or NEWOBJ ('new'): what the policy's check and the constructor's kind make of it."""
        made = self._make(func, args, how)
        self.containers += isinstance(made, _CONTAINERS)
        return made

    def _make(self, func: Any, args: Any, how: str) -> Any:
        if isinstance(func, Trusted):
            if type(args) is not tuple:
                raise self.fail(Rule.STRUCTURE, "a call's arguments must be a tuple")
            return Trusted(func.name, made=True)
        entry = POLICY.get((func.module, func.name)) if isinstance(func, Ref) else \
            func.entry if isinstance(func, Marker) else None
        check = None if entry is None else entry.call if how == "call" else entry.new
        if entry is None or check is None:
            verb = "call" if how == "call" else "instantiate"
            raise self.fail(Rule.CALL, f"{'REDUCE' if how == 'call' else 'NEWOBJ'} on {_describe_value(func)}, which "
                                       f"the policy does not let a pickle {verb}")
        if type(args) is not tuple:
            raise self.fail(Rule.STRUCTURE, f"{entry.module}.{entry.name}: arguments must be a tuple")
        result = check(self.view(args), self.limits)
        if entry.nested:
            return scan_legacy_stream(result, self.limits, self.globals_seen, self.trusted)
        if not isinstance(result, Made):
            return result  # plain data the check computed (bytes, bytearray)
        if result.kind in PLAIN_KINDS:
            members = SSet(result.kind)
            for member in (args[0].items if args and isinstance(args[0], SList) else args[0] if args else ()):
                self.add_member(members, member)
            return members
        if not KINDS[result.kind].container:
            return result
        if result.kind == "deque":
            first = args[0] if args else ()
            items = list(first.items if isinstance(first, SList) else first)
            maxlen = result["maxlen"]
            return SContainer(result, SList(items[len(items) - maxlen:] if maxlen is not None else items), maxlen)
        content = SDict()
        if result.kind == "Counter" and args:
            content.entries.update(args[0].entries)
        return SContainer(result, content)

    def build(self, target: Any, state: Any) -> None:
        if isinstance(target, Trusted):
            return  # the safe loader applies the standard BUILD to what a trusted global made
        made = target.made if isinstance(target, SContainer) else target if isinstance(target, Made) else None
        kind = KINDS.get(made.kind) if made is not None else None
        if made is None or kind is None or kind.build is None:
            raise self.fail(Rule.BUILD, f"BUILD on {_describe_value(target)}: BUILD may only set the state of an "
                                        "object an allowed constructor made, of a kind whose state the policy "
                                        "declares")
        kind.build(made, self.view(state), self.limits)
        if kind.apply == "dict" and isinstance(target, SContainer) and isinstance(state, SDict):
            target.attrs.update(state.entries.values())

    # -- keys, views -----------------------------------------------------------------------------

    def key(self, value: Any) -> Any:
        """The plain value a dict key or set member equals (PICKLE-9), once its size and depth are bounded."""
        if type(value) in _ATOMS:
            return value
        limits = self.limits
        budget = limits.max_hashed_items
        todo = [(value, 0)]
        while todo:
            node, depth = todo.pop()
            if type(node) in _ATOMS or type(node) is Blob and not node.mutable:  # (long bytes: a plain value)
                continue
            budget -= 1
            if budget < 0 or depth > limits.max_depth:
                raise self.fail(Rule.KEY, f"a dict key or set member larger than {limits.max_hashed_items} nodes or "
                                          f"deeper than {limits.max_depth}")
            if type(node) is tuple:
                todo.extend((item, depth + 1) for item in node)
            elif isinstance(node, SSet) and node.kind == "frozenset":
                todo.extend((item, depth + 1) for item in node.members.values())
            elif isinstance(node, Made):
                key_of(node)
            elif not isinstance(node, (Ref, Trusted)):
                raise self.fail(Rule.KEY, f"{_describe_value(node)} cannot be a dict key or set member (unhashable)")
        return _canonical(value)

    def add_member(self, target: SSet, member: Any) -> None:
        target.members.setdefault(self.key(member), member)

    def set_item(self, target: SDict, key: Any, value: Any) -> None:
        canonical = self.key(key)
        old = target.entries.get(canonical)
        target.entries[canonical] = (key if old is None else old[0], value)

    def view(self, value: Any, depth: int = 0) -> Any:
        """The policy's view of a scanned value (atlas_format.pickle_values)."""
        if type(value) in _ATOMS or type(value) is bytearray or isinstance(value, (Made, Ref)):
            return value
        if type(value) is Blob:
            return value.value()
        if depth > VIEW_DEPTH:
            return _OPAQUE
        if type(value) is tuple:
            if all(type(item) in _ATOMS for item in value):
                return value  # plain values only: the tuple is its own view
            return tuple(self.view(item, depth + 1) for item in value)
        if isinstance(value, SList):
            return Seq("list", len(value.items))
        if isinstance(value, SSet):
            return Seq(value.kind, len(value.members))
        if isinstance(value, SDict):
            return Mapping(tuple((self.view(k, depth + 1), self.view(v, depth + 1))
                                 for k, v in value.entries.values()))
        if isinstance(value, SContainer):
            content = value.content
            value.made.facts["length"] = len(content.items if isinstance(content, SList) else content.entries)
            return value.made
        if isinstance(value, Marker):
            return value.entry.ref
        return _OPAQUE

    # -- the whole result (POLICY-9) -----------------------------------------------------------

    def measure(self, value: Any, size: int) -> None:
        """Depth and items of the result, every reference counted; recursion and call-only globals refused.

        Nothing to walk when nothing can exceed: with no container reused (memo GET, DUP) every value is
        placed once, so the depth is at most the containers made and the items at most the opcodes, at most
        the ``size`` bytes of the pickle that are not string contents; with no call-only global pushed, none
        is in the result."""
        limits = self.limits
        if not (self.shared or self.markers or self.containers > limits.max_depth
                or size - self.payload > limits.max_items):
            return
        items = 0
        on_path: set[int] = set()
        todo: list[tuple[Any, int, bool]] = [(value, 0, False)]
        while todo:
            node, depth, leaving = todo.pop()
            if leaving:
                on_path.discard(id(node))
                continue
            if isinstance(node, Marker):
                raise self.fail(Rule.GLOBAL, f"{node.entry.module}.{node.entry.name} may only be called, not used as "
                                             "a value")
            children = _children(node)
            if children is None:
                continue
            if id(node) in on_path:
                raise self.fail(Rule.DEPTH, "a recursive structure (a container inside itself)")
            if depth + 1 > limits.max_depth:
                raise self.fail(Rule.DEPTH, f"nesting deeper than {limits.max_depth}")
            on_path.add(id(node))
            todo.append((node, depth, True))
            for child in children:
                items += 1
                if items > limits.max_items:
                    raise self.fail(Rule.ITEMS, f"more than {limits.max_items} container items (every reference "
                                                "counted)")
                todo.append((child, depth + 1, False))


def _canonical(value: Any) -> Any:
    """The plain value a checked key equals, as a real dict would compare it: atoms and globals as themselves, a
    numpy scalar as its value, a frozenset by its members' (already canonical) keys, a tuple item by item."""
    if type(value) in _ATOMS or isinstance(value, (Ref, Trusted)):
        return value
    if type(value) is Blob:
        return value.value()
    if isinstance(value, Made):
        return key_of(value)
    if isinstance(value, SSet):
        return frozenset(value.members)
    done: dict[int, Any] = {}
    todo: list[tuple[Any, bool]] = [(value, False)]
    while todo:  # post-order over nested tuples, without recursion (keys may be max_depth deep)
        node, ready = todo.pop()
        if type(node) is not tuple or id(node) in done:
            continue
        if not ready:
            todo.append((node, True))
            todo.extend((item, False) for item in node)
        else:
            done[id(node)] = tuple(done[id(item)] if type(item) is tuple else _canonical(item) for item in node)
    return done[id(value)]


def _children(node: Any) -> Iterable[Any] | None:
    if type(node) is tuple:
        return node
    if isinstance(node, SList):
        return node.items
    if isinstance(node, SDict):
        return [x for pair in node.entries.values() for x in pair]
    if isinstance(node, SSet):
        return list(node.members.values())
    if isinstance(node, SContainer):
        children = _children(node.content)
        return [*(children or ()), *node.attrs.values()]
    return None


def _describe_value(value: Any) -> str:
    if isinstance(value, Ref):
        return str(value)
    if isinstance(value, Marker):
        return f"{value.entry.module}.{value.entry.name}"
    if isinstance(value, Trusted):
        return f"an object made by {value.name}" if value.made else value.name
    if isinstance(value, Made):
        return f"a {value.kind}"
    if isinstance(value, SContainer):
        return f"a {value.made.kind}"
    if isinstance(value, SSet):
        return f"a {value.kind}"
    return f"a {_KIND_NAMES.get(type(value), type(value).__name__)}"


_KIND_NAMES = {SList: "list", SDict: "dict", Pending: "pending storage", type(None): "None", Blob: "bytearray"}


# -- opcode handlers: each takes the scanner and the opcode's offset, returns the next offset ----------


def _push(value: Callable[[], Any]) -> Callable[[_Scanner, int], int]:
    def handler(s: _Scanner, pos: int) -> int:
        made = value()
        s.containers += isinstance(made, _CONTAINERS)
        s.stack.append(made)
        return pos + 1
    return handler


def _counted(width: int, unpack: Callable[[bytes, int], tuple[int]] | None,
             convert: Callable[[bytes], Any]) -> Callable[[_Scanner, int], int]:
    """Opcodes with a length field (1, 4 or 8 bytes) followed by that many bytes (long bytes as a Blob)."""
    def handler(s: _Scanner, pos: int) -> int:
        length = s.need(pos + 1, 1)[0] if unpack is None else s.fixed(unpack, pos, width)
        start = pos + 1 + width
        if length > BLOB_MIN and convert in (bytes, bytearray):
            s.need(start, length)
            s.payload += length
            s.stack.append(Blob(s.data, start, start + length, convert is bytearray))
        else:
            s.stack.append(convert(s.content(start, length)))
        return start + length
    return handler


def _utf8(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogatepass")


def _int_op(unpack: Callable[[bytes, int], tuple[int]], width: int) -> Callable[[_Scanner, int], int]:
    def handler(s: _Scanner, pos: int) -> int:
        s.stack.append(s.fixed(unpack, pos, width))
        return pos + 1 + width
    return handler


def _long(width: int) -> Callable[[_Scanner, int], int]:
    def handler(s: _Scanner, pos: int) -> int:
        size = s.need(pos + 1, 1)[0] if width == 1 else s.fixed(_I4, pos, 4)
        if size < 0 or size > s.limits.max_int_bytes:
            raise s.fail(Rule.SIZE, f"an integer of {size} bytes (limit {s.limits.max_int_bytes})")
        s.stack.append(int.from_bytes(s.need(pos + 1 + width, size), "little", signed=True))
        return pos + 1 + width + size
    return handler


def _binint1(s: _Scanner, pos: int) -> int:
    s.stack.append(s.need(pos + 1, 1)[0])
    return pos + 2


def _proto(s: _Scanner, pos: int) -> int:
    s.protocol = s.need(pos + 1, 1)[0]
    if s.protocol > HIGHEST_PROTOCOL:
        raise s.fail(Rule.STRUCTURE, f"pickle protocol {s.protocol} is above {HIGHEST_PROTOCOL}")
    return pos + 2


def _frame(s: _Scanner, pos: int) -> int:
    s.need(pos + 9, s.fixed(_U8, pos, 8))
    return pos + 9


def _tuple_n(n: int) -> Callable[[_Scanner, int], int]:
    def handler(s: _Scanner, pos: int) -> int:
        s.containers += 1
        s.stack.append(tuple(s.pop(n, f"TUPLE{n}")))
        return pos + 1
    return handler


def _tuple(s: _Scanner, pos: int) -> int:
    items = s.pop_mark("TUPLE")  # first: it changes s.stack to the frame below the mark
    s.containers += 1
    s.stack.append(tuple(items))
    return pos + 1


def _mark(s: _Scanner, pos: int) -> int:
    s.frames.append(s.stack)
    s.stack = []
    return pos + 1


def _pop(s: _Scanner, pos: int) -> int:
    if s.stack:
        s.stack.pop()
    else:
        s.pop_mark("POP")  # as CPython: POP on an empty frame discards the MARK
    return pos + 1


def _pop_mark(s: _Scanner, pos: int) -> int:
    s.pop_mark("POP_MARK")
    return pos + 1


_CONTAINERS = (tuple, SList, SDict, SSet, SContainer)


def _dup(s: _Scanner, pos: int) -> int:
    value = s.top("DUP")
    s.shared = s.shared or isinstance(value, _CONTAINERS)
    s.stack.append(value)
    return pos + 1


def _memoize(s: _Scanner, pos: int) -> int:
    s.memo[len(s.memo)] = s.top("MEMOIZE")
    return pos + 1


def _put(unpack: Callable[[bytes, int], tuple[int]] | None, width: int) -> Callable[[_Scanner, int], int]:
    def handler(s: _Scanner, pos: int) -> int:
        index = s.need(pos + 1, 1)[0] if unpack is None else s.fixed(unpack, pos, width)
        value = s.top("a memo PUT")
        if index < s.memo_floor:
            raise s.fail(Rule.MEMO, f"memo PUT to index {index}, which the preamble holds (a slice writes indices "
                                    f">= {s.memo_floor})", "ATL422")
        if index > len(s.memo):
            raise s.fail(Rule.MEMO, f"memo PUT to index {index}; the next index is {len(s.memo)} (indices are "
                                    "assigned in order)")
        s.memo[index] = value
        return pos + 1 + width
    return handler


def _get(unpack: Callable[[bytes, int], tuple[int]] | None, width: int) -> Callable[[_Scanner, int], int]:
    def handler(s: _Scanner, pos: int) -> int:
        index = s.need(pos + 1, 1)[0] if unpack is None else s.fixed(unpack, pos, width)
        if index not in s.memo:
            raise s.missing(index)
        value = s.memo[index]
        s.shared = s.shared or isinstance(value, _CONTAINERS)
        s.stack.append(value)
        return pos + 1 + width
    return handler


def _append(s: _Scanner, pos: int) -> int:
    (item,) = s.pop(1, "APPEND")
    _extend(s, s.top("APPEND"), [item], "APPEND")
    return pos + 1


def _appends(s: _Scanner, pos: int) -> int:
    items = s.pop_mark("APPENDS")
    _extend(s, s.top("APPENDS"), items, "APPENDS")
    return pos + 1


def _extend(s: _Scanner, target: Any, items: list[Any], what: str) -> None:
    if s.frozen:
        s.check_frozen(target, what)
    if isinstance(target, SList):
        target.items.extend(items)
    elif isinstance(target, SContainer) and KINDS[target.made.kind].appends and isinstance(target.content, SList):
        target.content.items.extend(items)
        if target.maxlen is not None:
            del target.content.items[:max(0, len(target.content.items) - target.maxlen)]
    else:
        raise s.fail(Rule.TARGET, f"{what} on {_describe_value(target)}, not a list of the pickle")


def _setitem(s: _Scanner, pos: int) -> int:
    key, value = s.pop(2, "SETITEM")
    _set_items(s, s.top("SETITEM"), [key, value], "SETITEM")
    return pos + 1


def _setitems(s: _Scanner, pos: int) -> int:
    items = s.pop_mark("SETITEMS")
    if len(items) % 2:
        raise s.fail(Rule.STRUCTURE, "SETITEMS with an odd number of items")
    _set_items(s, s.top("SETITEMS"), items, "SETITEMS")
    return pos + 1


def _set_items(s: _Scanner, target: Any, items: list[Any], what: str) -> None:
    if s.frozen:
        s.check_frozen(target, what)
    if isinstance(target, SContainer) and KINDS[target.made.kind].sets_items and isinstance(target.content, SDict):
        target = target.content
    if not isinstance(target, SDict):
        raise s.fail(Rule.TARGET, f"{what} on {_describe_value(target)}, not a dict of the pickle")
    for i in range(0, len(items), 2):
        s.set_item(target, items[i], items[i + 1])


def _additems(s: _Scanner, pos: int) -> int:
    items = s.pop_mark("ADDITEMS")
    target = s.top("ADDITEMS")
    if s.frozen:
        s.check_frozen(target, "ADDITEMS")
    if not isinstance(target, SSet) or target.kind != "set":
        raise s.fail(Rule.TARGET, f"ADDITEMS on {_describe_value(target)}, not a set")
    for item in items:
        s.add_member(target, item)
    return pos + 1


def _frozenset(s: _Scanner, pos: int) -> int:
    s.containers += 1
    members = SSet("frozenset")
    for item in s.pop_mark("FROZENSET"):
        s.add_member(members, item)
    s.stack.append(members)
    return pos + 1


def _global(s: _Scanner, pos: int) -> int:
    data = s.data
    end_module = data.find(b"\n", pos + 1)
    end_name = data.find(b"\n", end_module + 1) if end_module >= 0 else -1
    if end_name < 0:
        raise s.fail(Rule.STRUCTURE, "GLOBAL without its two lines")
    try:
        module, name = data[pos + 1:end_module].decode("utf-8"), data[end_module + 1:end_name].decode("utf-8")
    except UnicodeDecodeError:
        raise s.fail(Rule.STRUCTURE, "GLOBAL names are not UTF-8") from None
    s.push_global(module, name)
    return end_name + 1


def _stack_global(s: _Scanner, pos: int) -> int:
    module, name = s.pop(2, "STACK_GLOBAL")
    if type(module) is not str or type(name) is not str:
        raise s.fail(Rule.STRUCTURE, "STACK_GLOBAL requires a str module and name", "ATL603")
    s.push_global(module, name)
    return pos + 1


def _reduce(s: _Scanner, pos: int) -> int:
    func, args = s.pop(2, "REDUCE")
    s.stack.append(s.call(func, args, "call"))
    return pos + 1


def _newobj(s: _Scanner, pos: int) -> int:
    cls, args = s.pop(2, "NEWOBJ")
    s.stack.append(s.call(cls, args, "new"))
    return pos + 1


def _newobj_ex(s: _Scanner, pos: int) -> int:
    cls, args, kwargs = s.pop(3, "NEWOBJ_EX")
    if not isinstance(kwargs, SDict) or kwargs.entries:
        raise s.fail(Rule.CALL, "NEWOBJ_EX with keyword arguments")
    s.stack.append(s.call(cls, args, "new"))
    return pos + 1


def _build(s: _Scanner, pos: int) -> int:
    (state,) = s.pop(1, "BUILD")
    if s.frozen:
        s.check_frozen(s.top("BUILD"), "BUILD")
    s.build(s.top("BUILD"), state)
    return pos + 1


def _binpersid(s: _Scanner, pos: int) -> int:
    if not s.persistent:
        raise s.fail(Rule.OPCODE, "opcode BINPERSID is refused: example pickles have no persistent ids (only the "
                                  "storage pickle of a torch stream)", "ATL602")
    (pid,) = s.pop(1, "BINPERSID")
    s.stack.append(Pending(*check_legacy_storage(s.view(pid))))
    return pos + 1


_OPS: dict[str, Callable[[_Scanner, int], int]] = {
    "PROTO": _proto, "FRAME": _frame, "NONE": _push(lambda: None), "NEWTRUE": _push(lambda: True),
    "NEWFALSE": _push(lambda: False), "BININT": _int_op(_I4, 4), "BININT1": _binint1, "BININT2": _int_op(_U2, 2),
    "LONG1": _long(1), "LONG4": _long(4), "BINFLOAT": _int_op(_F8, 8),
    "SHORT_BINBYTES": _counted(1, None, bytes), "BINBYTES": _counted(4, _U4, bytes),
    "BINBYTES8": _counted(8, _U8, bytes), "BYTEARRAY8": _counted(8, _U8, bytearray),
    "SHORT_BINUNICODE": _counted(1, None, _utf8), "BINUNICODE": _counted(4, _U4, _utf8),
    "BINUNICODE8": _counted(8, _U8, _utf8), "EMPTY_TUPLE": _push(tuple), "TUPLE1": _tuple_n(1),
    "TUPLE2": _tuple_n(2), "TUPLE3": _tuple_n(3), "TUPLE": _tuple, "MARK": _mark, "POP": _pop,
    "POP_MARK": _pop_mark, "DUP": _dup, "EMPTY_LIST": _push(SList), "APPEND": _append, "APPENDS": _appends,
    "EMPTY_DICT": _push(SDict), "SETITEM": _setitem, "SETITEMS": _setitems, "EMPTY_SET": _push(lambda: SSet("set")),
    "ADDITEMS": _additems, "FROZENSET": _frozenset, "MEMOIZE": _memoize, "BINPUT": _put(None, 1),
    "LONG_BINPUT": _put(_U4, 4), "BINGET": _get(None, 1), "LONG_BINGET": _get(_U4, 4), "GLOBAL": _global,
    "STACK_GLOBAL": _stack_global, "REDUCE": _reduce, "BUILD": _build, "NEWOBJ": _newobj, "NEWOBJ_EX": _newobj_ex,
    "BINPERSID": _binpersid,
}
assert set(_OPS) | {"STOP"} == OPCODES  # noqa: S101 - import-time invariant: every allowed opcode has a handler
#: The handlers by opcode byte (what scan() does not handle in its plain-data lane).
_BY_CODE = {op.code.encode("latin-1")[0]: _OPS[op.name] for op in pickletools.opcodes if op.name in _OPS}


# -- entry points ------------------------------------------------------------------------------


def _finding_id(exc: PolicyViolation) -> str:
    if isinstance(exc, _Violation) and exc.finding is not None:
        return exc.finding
    if exc.rule is Rule.GLOBAL and exc.global_name is not None and is_known_dangerous(*exc.global_name):
        return "ATL601"
    return RULE_IDS[exc.rule]


def _scan_value(data: bytes, start: int, limits: PickleLimits, persistent: bool,
                globals_seen: set[tuple[str, str]], stop: int | None = None,
                trusted: frozenset[tuple[str, str]] = frozenset()) -> tuple[Any, int, int | None]:
    """(value, end, protocol) of the pickle from ``start`` (to ``stop`` at most); raises PolicyViolation with its
    offset set."""
    scanner = _Scanner(data, limits, persistent, globals_seen, stop, trusted)
    try:
        value, end = scanner.scan(start)
        scanner.measure(value, end - start)
        return value, end, scanner.protocol
    except PolicyViolation as exc:
        if exc.offset is None:
            exc.offset = scanner.pos
        raise
    except (UnicodeDecodeError, struct.error, OverflowError) as exc:
        raise PolicyViolation(Rule.STRUCTURE, f"malformed pickle: {type(exc).__name__}: {exc}",
                              scanner.pos) from None
    except RecursionError:
        raise PolicyViolation(Rule.DEPTH, "nesting too deep to check", scanner.pos) from None


def scan_legacy_stream(data: bytes, limits: PickleLimits, globals_seen: set[tuple[str, str]],
                       trusted: frozenset[tuple[str, str]] = frozenset()) -> Made:
    """The storage that torch.storage._load_from_bytes would read from ``data`` (POLICY-10): five pickles scanned
    with this policy (a persistent id only in the fourth), then an element count and the bytes."""
    pos = 0
    values: list[Any] = []
    for i, what in enumerate(LEGACY_PICKLES):
        try:
            value, pos, _protocol = _scan_value(data, pos, limits, i == 3, globals_seen, trusted=trusted)
        except PolicyViolation as exc:
            raise PolicyViolation(Rule.NESTED, f"torch stream in _load_from_bytes, {what} pickle: {exc.message} "
                                               f"(inner offset {exc.offset})") from None
        values.append(value)
    magic, protocol, info, pending, keys = values
    scanner = _Scanner(b"", limits, False, globals_seen)
    check_legacy_header(scanner.view(magic), scanner.view(protocol), scanner.view(info))
    if not isinstance(pending, Pending):
        raise PolicyViolation(Rule.NESTED, "torch stream in _load_from_bytes: the storage pickle must be exactly "
                                           "one persistent id")
    check_legacy_keys(tuple(keys.items) if isinstance(keys, SList) else keys, pending.key)
    count = _U8(data, pos)[0] if pos + 8 <= len(data) else None
    return legacy_storage(pending.dtype, pending.numel, count, len(data) - pos - 8)


def scan_pickle(data: bytes | bytearray | memoryview, *, limits: PickleLimits = DEFAULT_SCAN_LIMITS,
                start: int = 0, stop: int | None = None, shape: bool = False,
                allowed: frozenset[tuple[str, str]] = frozenset()) -> ScanResult:
    """Scan the pickle in ``data[start:stop]`` up to its STOP, in place; offsets in the result are offsets in
    ``data``. Nothing at or after ``stop`` (default: the end of ``data``) is read as the pickle's.

    ``shape=True`` also reports whether the value is a list and its length (version 1 blocks and
    version 2 blocks of framing "list"). ``allowed``: (module, name) globals outside the policy the caller
    trusts completely, as the safe loader's ``allowed_globals`` (they are in ``allowed`` of the result too).
    Never raises.
    """
    result = ScanResult()
    raw = bytes(data) if type(data) is not bytes else data
    stop = len(raw) if stop is None else min(stop, len(raw))
    if stop - start > limits.max_pickle_size:
        result.issues.append(ScanIssue("ATL902", f"pickle of {stop - start} bytes is above the limit of "
                                                 f"{limits.max_pickle_size}", start, Rule.SIZE.value))
        return result
    seen: set[tuple[str, str]] = set()
    try:
        value, end, protocol = _scan_value(raw, start, limits, False, seen, stop, allowed)
    except PolicyViolation as exc:
        result.issues.append(ScanIssue(_finding_id(exc), exc.message, exc.offset, exc.rule.value))
        result.allowed = seen or None
        return result
    except Exception as exc:  # noqa: BLE001 - the validator must never crash on a pickle
        result.issues.append(ScanIssue("ATL990", f"internal error while scanning: {type(exc).__name__}: {exc}",
                                       start))
        return result
    result.end, result.protocol, result.allowed = end, protocol, seen or None
    if shape and isinstance(value, SList):
        result.top_is_list, result.top_count = True, len(value.items)
    return result
