"""Safe loading: a restricted unpickler that enforces the pickle policy (spec/FORMAT.md section 5).

Like torch's ``weights_only`` unpickler, it interprets the opcodes itself instead of handing the
pickle to ``pickle.Unpickler``, so it decides, opcode by opcode, what may happen:

* only the opcodes of ``atlas_format.pickle_policy.OPCODES`` run;
* a global resolves only through ``POLICY`` (or the caller's ``allowed_globals``, which the caller
  trusts); call-only globals are pushed as inert markers, never as the real function;
* REDUCE and NEWOBJ call nothing the pickle named: the policy's check reads the arguments, then
  ``safe_constructors`` builds the object; ``_load_from_bytes`` is read here, never ``torch.load``;
* BUILD changes only an object a constructor made here, of a kind whose state the policy
  declares, with a state the policy checked (never a global, a function, a class, a list);
* the memo is a dict indexed only as assigned, dict keys and set members are checked before they
  are hashed, and the result's depth and item count are bounded (``PickleLimits``).

A refusal raises ``UnsafePickleError`` (policy), ``LimitError`` (limits) or ``FormatError``
(not a pickle), each naming the rule and the byte offset in the pickle; the reader adds the file,
shard, block and example.
"""

from __future__ import annotations

import pickle
import struct
from collections.abc import Callable, Iterable
from typing import Any

from atlas_format.errors import AtlasError, FormatError, LimitError, UnsafePickleError
from atlas_format.pickle_checks import LEGACY_PICKLES, check_legacy_header, check_legacy_keys, legacy_storage
from atlas_format.pickle_policy import (
    HIGHEST_PROTOCOL,
    KINDS,
    PLAIN_KINDS,
    POLICY,
    PolicyEntry,
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

from . import safe_constructors
from .safe_opcodes import HANDLERS, OPNAMES, SHARED_TYPES, U4, PendingStorage, structure

Loads = Callable[[Any], Any]

_I4 = struct.Struct("<i").unpack_from
_U8 = struct.Struct("<Q").unpack_from
_F8 = struct.Struct(">d").unpack_from

# Keys that hash in constant time and need no check.
_ATOMS = frozenset({type(None), bool, int, float, str, bytes})
_PLAIN_VIEW = frozenset({type(None), bool, int, float, str, bytes, bytearray})
#: The opcodes run() handles inline, hottest first; safe_opcodes.HANDLERS has every other one.
INLINE_OPCODES = ("MEMOIZE", "SHORT_BINUNICODE", "BININT1", "BINUNICODE", "MARK", "SETITEMS", "SETITEM", "APPENDS",
                  "APPEND", "EMPTY_DICT", "EMPTY_LIST", "NONE", "BINGET", "LONG_BINGET", "BININT", "BINFLOAT",
                  "TUPLE1", "TUPLE2", "TUPLE3", "NEWTRUE", "NEWFALSE", "SHORT_BINBYTES", "STOP", "PROTO", "FRAME")
(_MEMOIZE, _SHORT_BINUNICODE, _BININT1, _BINUNICODE, _MARK, _SETITEMS, _SETITEM, _APPENDS, _APPEND, _EMPTY_DICT,
 _EMPTY_LIST, _NONE, _BINGET, _LONG_BINGET, _BININT, _BINFLOAT, _TUPLE1, _TUPLE2, _TUPLE3, _NEWTRUE, _NEWFALSE,
 _SHORT_BINBYTES, _STOP, _PROTO, _FRAME) = (getattr(pickle, name)[0] for name in INLINE_OPCODES)


class _CallOnly:
    """The value a call-only global pushes: it can be the callable of REDUCE, nothing else."""

    __slots__ = ("entry",)

    def __init__(self, entry: PolicyEntry) -> None:
        self.entry = entry


class _Opaque:
    """The view of an object no check accepts (a pending storage, an object of a trusted global)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


class SafeUnpickler:
    """Loads pickles under the policy; one instance serves many pickles (its state is per call).

    ``allowed_globals``: (module, name) pairs the caller trusts completely: they resolve by import,
    REDUCE and NEWOBJ call them, BUILD applies the standard protocol to what they make.
    """

    def __init__(self, allowed_globals: Iterable[tuple[str, str]] = (),
                 limits: PickleLimits = DEFAULT_PICKLE_LIMITS) -> None:
        self.trusted = frozenset((str(m), str(n)) for m, n in allowed_globals)
        self.limits = limits
        self._values: dict[tuple[str, str], Any] = {}  # resolved value globals, by (module, name)

    # -- one pickle ----------------------------------------------------------------------

    def loads(self, data: Any) -> Any:
        """The object of one whole pickle (nothing may follow its STOP)."""
        raw = data if type(data) is bytes else bytes(data)
        if len(raw) > self.limits.max_pickle_size:
            raise LimitError(f"pickle of {len(raw)} bytes is above the limit of {self.limits.max_pickle_size}",
                             rule=Rule.SIZE.value)
        value, end = self._run_located(raw, 0, persistent=False)
        if end != len(raw):
            raise FormatError(f"{len(raw) - end} bytes follow the pickle's STOP opcode", rule=Rule.STRUCTURE.value,
                              pickle_offset=end)
        return value

    def _run_located(self, data: bytes, start: int, persistent: bool) -> tuple[Any, int]:
        run = _Run(self, data, persistent)
        try:
            value, end = run.run(start)
            run.finish(value, end - start)
            return value, end
        except PolicyViolation as exc:
            raise _error(exc, run.pos if exc.offset is None else exc.offset) from None
        except AtlasError:
            raise
        except (IndexError, struct.error, EOFError):
            raise _error(structure("the pickle is truncated"), run.pos) from None
        except RecursionError:
            raise _error(PolicyViolation(Rule.DEPTH, "nesting too deep to check"), run.pos) from None
        except MemoryError:
            raise _error(PolicyViolation(Rule.SIZE, "out of memory"), run.pos) from None
        except Exception as exc:  # noqa: BLE001 - a decode or a constructor refusing its (checked) input
            raise FormatError(f"pickle does not load: {type(exc).__name__}: {exc}", pickle_offset=run.pos,
                              rule=Rule.STRUCTURE.value) from None

    def value_of(self, entry: PolicyEntry) -> Any:
        value = self._values.get(entry.key)
        if value is None:
            value = self._values[entry.key] = safe_constructors.resolve(entry)
        return value

    def legacy_storage(self, data: bytes) -> tuple[Any, Made]:
        """torch.storage._load_from_bytes without torch.load: the five pickles of the legacy stream, each loaded
        by this interpreter (persistent ids only in the storage pickle), then the storage's bytes."""
        values: list[Any] = []
        pos = 0
        for i, what in enumerate(LEGACY_PICKLES):
            try:
                value, pos = self._run_located(data, pos, persistent=i == 3)
            except AtlasError as exc:
                raise PolicyViolation(Rule.NESTED, f"torch stream in _load_from_bytes, {what} pickle: "
                                                   f"{exc.message}") from None
            values.append(value)
        magic, protocol, info, pending, keys = values
        check_legacy_header(magic, protocol, _Run(self, b"", False).view(info))
        if type(pending) is not PendingStorage:
            raise PolicyViolation(Rule.NESTED, "torch stream in _load_from_bytes: the storage pickle must be "
                                               "exactly one persistent id")
        check_legacy_keys(tuple(keys) if type(keys) is list else keys, pending.key)
        count = _U8(data, pos)[0] if pos + 8 <= len(data) else None
        made = legacy_storage(pending.dtype, pending.numel, count, len(data) - pos - 8)
        return safe_constructors.storage_from_legacy(data[pos + 8:], pending.dtype), made


def _error(exc: PolicyViolation, offset: int) -> AtlasError:
    """The project's error for a refusal: LimitError (limits), FormatError (not a pickle), else UnsafePickleError."""
    rule = exc.rule.value
    if exc.rule.is_limit:
        return LimitError(exc.message, rule=rule, pickle_offset=offset)
    if exc.rule is Rule.STRUCTURE:
        return FormatError(exc.message, rule=rule, pickle_offset=offset)
    module, name = exc.global_name or (None, None)
    flag = f"{module}:{name}"
    flag = flag if flag.isprintable() and " " not in flag else repr(flag)  # a pickle's names are untrusted text
    hint = (f" (to trust it: allowed_globals=[({module!r}, {name!r})] in Python, --allow {flag} on the "
            "command line)") if exc.global_name else ""
    return UnsafePickleError(exc.message + hint, module=module, name=name, rule=rule, pickle_offset=offset)


class _Run:
    """The state of one pickle's interpretation: stack, marks, memo, and what was made here."""

    __slots__ = ("owner", "limits", "data", "persistent", "pos", "protocol", "made", "refs", "trusted", "shared",
                 "markers", "payload", "containers")

    def __init__(self, owner: SafeUnpickler, data: bytes, persistent: bool) -> None:
        self.owner = owner
        self.limits = owner.limits
        self.data = data
        self.persistent = persistent
        self.pos = 0
        self.protocol: int | None = None
        # Objects made here, by id, with their record; each keeps its object alive so ids are never reused.
        self.made: dict[int, tuple[Any, Made]] = {}
        self.refs: dict[int, tuple[Any, Ref]] = {}  # globals pushed here (value and call-only), by id
        self.trusted: dict[int, Any] = {}           # objects made by the caller's trusted globals
        self.shared = False                         # a container was reused through the memo
        self.markers = False                        # a call-only marker was pushed
        self.payload = 0                            # bytes of string and bytes contents (not opcodes)
        self.containers = 0                         # containers made: no result can be deeper

    # -- the opcode loop -------------------------------------------------------------------

    def run(self, pos: int) -> tuple[Any, int]:  # noqa: C901 - one loop over the opcodes, hottest first
        """Interpret from ``pos`` to STOP: (the value, the offset after STOP). Opcodes of protocol 2 and up are
        bytes >= 0x80, the others ASCII: the two halves are tested apart, each hottest first."""
        data = self.data
        n = len(data)
        stack: list[Any] = []
        metastack: list[list[Any]] = []
        memo: dict[int, Any] = {}
        append = stack.append
        key_ok = self.check_key
        handlers = HANDLERS
        payload = 0
        containers = 0
        try:
            while True:
                op = data[pos]
                if op >= 0x80:
                    if op == _MEMOIZE:
                        if not stack:
                            raise structure("MEMOIZE with nothing to store")
                        memo[len(memo)] = stack[-1]
                        pos += 1
                        continue
                    if op == _SHORT_BINUNICODE:
                        end = pos + 2 + data[pos + 1]
                        if end > n:
                            raise structure("the pickle is truncated")
                        append(data[pos + 2:end].decode("utf-8", "surrogatepass"))
                        payload += end - pos - 2
                        pos = end
                        continue
                    if _TUPLE1 <= op <= _TUPLE3:
                        size = op - _TUPLE1 + 1
                        if len(stack) < size:
                            raise structure(f"{OPNAMES[op]} needs {size} values")
                        value = tuple(stack[-size:])
                        del stack[-size:]
                        append(value)
                        containers += 1
                        pos += 1
                        continue
                    if op == _NEWTRUE or op == _NEWFALSE:
                        append(op == _NEWTRUE)
                        pos += 1
                        continue
                    if op == _PROTO:
                        self.protocol = data[pos + 1]
                        if self.protocol > HIGHEST_PROTOCOL:
                            raise structure(f"pickle protocol {self.protocol} is above {HIGHEST_PROTOCOL}")
                        pos += 2
                        continue
                    if op == _FRAME:
                        if pos + 9 + _U8(data, pos + 1)[0] > n:
                            raise structure("FRAME runs past the end of the pickle")
                        pos += 9
                        continue
                elif op == _BININT1:
                    append(data[pos + 1])
                    pos += 2
                    continue
                elif op == _BINUNICODE:
                    end = pos + 5 + U4(data, pos + 1)[0]
                    if end > n:
                        raise structure("the pickle is truncated")
                    append(data[pos + 5:end].decode("utf-8", "surrogatepass"))
                    payload += end - pos - 5
                    pos = end
                    continue
                elif op == _MARK:
                    metastack.append(stack)
                    stack = []
                    append = stack.append
                    pos += 1
                    continue
                elif op == _SETITEMS or op == _SETITEM:
                    if op == _SETITEMS:
                        if not metastack:
                            raise structure("SETITEMS without a MARK")
                        items = stack
                        stack = metastack.pop()
                        append = stack.append
                        if len(items) % 2:
                            raise structure("SETITEMS with an odd number of items")
                    else:
                        if len(stack) < 3:
                            raise structure("SETITEM needs a dict, a key and a value")
                        items = stack[-2:]
                        del stack[-2:]
                    if not stack:
                        raise structure(f"{OPNAMES[op]} without a dict")
                    target = stack[-1]
                    if type(target) is not dict:
                        self.check_target(target, "sets_items", op)
                    for i in range(0, len(items), 2):
                        key = items[i]
                        if type(key) not in _ATOMS:
                            key_ok(key)
                        target[key] = items[i + 1]
                    pos += 1
                    continue
                elif op == _STOP:
                    if len(stack) != 1 or metastack:
                        raise structure(f"{len(stack)} values and {len(metastack)} marks on the stack at STOP "
                                        "(expected exactly the result)")
                    self.payload += payload
                    self.containers += containers
                    return stack[0], pos + 1
                elif op == _APPENDS or op == _APPEND:
                    if op == _APPENDS:
                        if not metastack:
                            raise structure("APPENDS without a MARK")
                        items = stack
                        stack = metastack.pop()
                        append = stack.append
                    else:
                        if len(stack) < 2:
                            raise structure("APPEND needs a list and an item")
                        items = [stack.pop()]
                    if not stack:
                        raise structure(f"{OPNAMES[op]} without a list")
                    target = stack[-1]
                    if type(target) is not list:
                        self.check_target(target, "appends", op)
                    target.extend(items)
                    pos += 1
                    continue
                elif op == _EMPTY_DICT:
                    append({})
                    containers += 1
                    pos += 1
                    continue
                elif op == _EMPTY_LIST:
                    append([])
                    containers += 1
                    pos += 1
                    continue
                elif op == _NONE:
                    append(None)
                    pos += 1
                    continue
                elif op == _BINGET or op == _LONG_BINGET:
                    if op == _BINGET:
                        index = data[pos + 1]
                        pos += 2
                    else:
                        index = U4(data, pos + 1)[0]
                        pos += 5
                    if index not in memo:
                        raise PolicyViolation(Rule.MEMO, f"memo key {index} was never stored")
                    value = memo[index]
                    if type(value) in SHARED_TYPES:
                        self.shared = True
                    append(value)
                    continue
                elif op == _BININT:
                    append(_I4(data, pos + 1)[0])
                    pos += 5
                    continue
                elif op == _BINFLOAT:
                    append(_F8(data, pos + 1)[0])
                    pos += 9
                    continue
                elif op == _SHORT_BINBYTES:
                    end = pos + 2 + data[pos + 1]
                    if end > n:
                        raise structure("the pickle is truncated")
                    append(data[pos + 2:end])
                    payload += end - pos - 2
                    pos = end
                    continue
                handler = handlers.get(op)
                if handler is None:
                    raise structure(f"unknown opcode {op:#04x}")
                stack, pos = handler(self, pos, stack, metastack, memo)
                append = stack.append
        except BaseException:
            self.pos = pos  # the offset of the opcode that failed, for the error
            raise

    # -- globals, calls, BUILD -----------------------------------------------------------------

    def push_global(self, module: str, qualname: str) -> Any:
        module, qualname = resolve_name(module, qualname, self.protocol)
        entry = POLICY.get((module, qualname))
        if entry is None:
            if (module, qualname) in self.owner.trusted:
                value = safe_constructors.resolve(PolicyEntry(module, qualname, "trusted by the caller"))
                self.trusted[id(value)] = value
                return value
            raise refuse_global(module, qualname)
        if not entry.value:
            self.markers = True
            value = _CallOnly(entry)
        else:
            value = self.owner.value_of(entry)
        self.refs[id(value)] = (value, entry.ref)
        return value

    def call(self, func: Any, args: Any, how: str) -> Any:
        """REDUCE (``how`` 'call') or NEWOBJ ('new') of ``func`` with ``args``: the policy's check, then the builder."""
        made = self._make(func, args, how)
        self.containers += type(made) in SHARED_TYPES
        return made

    def _make(self, func: Any, args: Any, how: str) -> Any:
        if id(func) in self.trusted:
            if type(args) is not tuple:
                raise structure("a call's arguments must be a tuple")
            result = func(*args) if how == "call" else func.__new__(func, *args)
            self.trusted[id(result)] = result
            return result
        ref = self.refs.get(id(func))
        entry = POLICY.get((ref[1].module, ref[1].name)) if ref is not None else None
        check = None if entry is None else entry.call if how == "call" else entry.new
        if entry is None or check is None:
            what = "REDUCE" if how == "call" else "NEWOBJ"
            raise PolicyViolation(Rule.CALL, f"{what} on {self._name(func)}, which the policy does not let a pickle "
                                             f"{'call' if how == 'call' else 'instantiate'}")
        if type(args) is not tuple:
            raise structure(f"{entry.module}.{entry.name}: arguments must be a tuple")
        result = check(self.view(args), self.limits)
        if entry.nested:
            storage, made = self.owner.legacy_storage(result)
            self.made[id(storage)] = (storage, made)
            return storage
        if not isinstance(result, Made):
            return result  # plain data computed by the check (bytes, bytearray)
        if result.kind in PLAIN_KINDS:
            members = args[0] if args else ()
            for member in members:
                self.check_key(member)
            return set(members) if result.kind == "set" else frozenset(members)
        obj = safe_constructors.BUILDERS[entry.key](args)
        self.made[id(obj)] = (obj, result)
        return obj

    def build(self, obj: Any, state: Any) -> None:
        if id(obj) in self.trusted:
            _standard_build(obj, state)
            return
        record = self.made.get(id(obj))
        kind = KINDS.get(record[1].kind) if record is not None else None
        if record is None or kind is None or kind.build is None:
            what = self._name(obj) if id(obj) in self.refs else type(obj).__name__
            raise PolicyViolation(Rule.BUILD, f"BUILD on {what}: BUILD may only set the state of an object an "
                                              "allowed constructor made, of a kind whose state the policy declares")
        made = record[1]
        kind.build(made, self.view(state), self.limits)
        if kind.apply == "setstate":
            obj.__setstate__(state)
        else:
            obj.__dict__.update(state)

    def check_target(self, target: Any, ability: str, op: int) -> None:
        record = self.made.get(id(target))
        kind = KINDS.get(record[1].kind) if record is not None else None
        if kind is None or not getattr(kind, ability):
            raise PolicyViolation(Rule.TARGET, f"{OPNAMES[op]} on {type(target).__name__}, not a "
                                               f"{'dict' if ability == 'sets_items' else 'list'} of the pickle")

    # -- views, keys and the final walk --------------------------------------------------------

    def view(self, value: Any, depth: int = 0) -> Any:
        """The policy's view of a real value (pickle_values)."""
        kind = type(value)
        if kind in _PLAIN_VIEW:
            return value
        if depth > VIEW_DEPTH:
            return _Opaque("value nested too deep")
        if kind is tuple:
            for item in value:
                if type(item) not in _PLAIN_VIEW:
                    return tuple(self.view(v, depth + 1) for v in value)
            return value  # a tuple of plain values is its own view
        if kind is list or kind is set or kind is frozenset:
            return Seq(kind.__name__, len(value))
        if kind is dict:
            return Mapping(tuple((self.view(k, depth + 1), self.view(v, depth + 1)) for k, v in value.items()))
        record = self.made.get(id(value))
        if record is not None:
            made = record[1]
            if KINDS[made.kind].container:
                made.facts["length"] = len(value)
            return made
        ref = self.refs.get(id(value))
        if ref is not None:
            return ref[1]
        return _Opaque(kind.__name__)  # what no check accepts: a pending storage, an object of a trusted global

    def check_key(self, key: Any) -> None:
        """A dict key or set member: plain values, tuples and frozensets of keys, globals, numpy scalars; at most
        max_hashed_items nodes, max_depth deep, checked before anything is hashed (PICKLE-9)."""
        if type(key) in _ATOMS:
            return
        limits = self.limits
        budget = limits.max_hashed_items
        todo = [(key, 0)]
        while todo:
            node, depth = todo.pop()
            kind = type(node)
            if kind in _ATOMS:
                continue
            budget -= 1
            if budget < 0 or depth > limits.max_depth:
                raise PolicyViolation(Rule.KEY, f"a dict key or set member larger than {limits.max_hashed_items} "
                                                f"nodes or deeper than {limits.max_depth}")
            if kind is tuple or kind is frozenset:
                todo.extend((item, depth + 1) for item in node)
                continue
            record = self.made.get(id(node))
            if record is not None:
                key_of(record[1])  # raises unless it is a numpy scalar of a plain value
                continue
            if id(node) in self.refs and kind is not _CallOnly or id(node) in self.trusted:
                continue
            raise PolicyViolation(Rule.KEY, f"a {kind.__name__} cannot be a dict key or set member (unhashable)")

    def finish(self, value: Any, size: int) -> None:
        """The result's depth and item count (PICKLE-11), and no call-only global in it. Skipped when they
        cannot be exceeded: without a container reused through the memo (or DUP), each value is placed once,
        so the depth is at most the containers made and the items at most the opcodes, at most the pickle's
        bytes that are not string or bytes contents; without a call-only global pushed, none is in the result."""
        limits = self.limits
        if not (self.shared or self.markers or self.containers > limits.max_depth
                or size - self.payload > limits.max_items):
            return
        items = 0
        deepest = 0
        on_path: set[int] = set()
        todo: list[tuple[Any, int, bool]] = [(value, 0, False)]
        while todo:
            node, depth, leaving = todo.pop()
            if leaving:
                on_path.discard(id(node))
                continue
            children = self._children(node)
            if children is None:
                continue
            if id(node) in on_path:
                raise PolicyViolation(Rule.DEPTH, "a recursive structure (a container inside itself)")
            depth += 1
            deepest = max(deepest, depth)
            if deepest > limits.max_depth:
                raise PolicyViolation(Rule.DEPTH, f"nesting deeper than {limits.max_depth}")
            on_path.add(id(node))
            todo.append((node, depth, True))
            for child in children:
                items += 1
                if items > limits.max_items:
                    raise PolicyViolation(Rule.ITEMS, f"more than {limits.max_items} container items (every "
                                                      "reference counted)")
                todo.append((child, depth, False))

    def _children(self, node: Any) -> Iterable[Any] | None:
        kind = type(node)
        if kind is list or kind is tuple or kind is set or kind is frozenset:
            return node  # type: ignore[no-any-return]
        if kind is dict:
            return [x for pair in node.items() for x in pair]
        if kind is _CallOnly:
            raise PolicyViolation(Rule.GLOBAL, f"{node.entry.module}.{node.entry.name} may only be called, not "
                                               "used as a value")
        record = self.made.get(id(node))
        if record is None or not KINDS[record[1].kind].container:
            return None
        if isinstance(node, dict):
            pairs = [x for pair in node.items() for x in pair]
            return pairs + list(vars(node).values()) if getattr(node, "__dict__", None) else pairs
        return list(node)

    def _name(self, value: Any) -> str:
        ref = self.refs.get(id(value))
        return str(ref[1]) if ref is not None else type(value).__name__


def _standard_build(obj: Any, state: Any) -> None:
    """BUILD as pickle does it, for objects of globals the caller trusts."""
    setstate = getattr(obj, "__setstate__", None)
    if setstate is not None:
        setstate(state)
        return
    slotstate = None
    if isinstance(state, tuple) and len(state) == 2:
        state, slotstate = state
    if state:
        obj.__dict__.update(state)
    if slotstate:
        for key, value in slotstate.items():
            setattr(obj, key, value)


def make_loads(safe: bool, allowed_globals: Iterable[tuple[str, str]] = (),
               limits: PickleLimits = DEFAULT_PICKLE_LIMITS) -> Loads:
    """The deserializer for examples: pickle.loads, or the policy's restricted loader when ``safe``."""
    if not safe:
        return pickle.loads
    return SafeUnpickler(allowed_globals, limits).loads


__all__ = ["SafeUnpickler", "make_loads"]
