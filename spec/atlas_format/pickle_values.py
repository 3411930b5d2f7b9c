"""The vocabulary of the pickle policy: its rules, its limits, and the views its checks read.

Both engines (the safe loader, which builds real objects, and the validator, which never
does) describe what a pickle hands to a callable or to BUILD as a *view*: plain Python
values for data (None, bool, int, float, str, bytes, bytearray, tuples of views), and small
records for everything else (``Seq`` for a list or set, ``Mapping`` for a dict, ``Made`` for
an object an allowed constructor made, ``Ref`` for a global). The policy's checks read views
only, so one declaration drives both engines (spec/FORMAT.md section 5).
"""

from __future__ import annotations

from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Union


class Rule(str, Enum):
    """The policy rule a refusal cites (FORMAT.md clause PICKLE-POLICY-n)."""

    OPCODE = "opcode"        # an opcode outside the safe subset (POLICY-2)
    GLOBAL = "global"        # a global the policy does not declare (POLICY-3)
    CALL = "call"            # a call (REDUCE, NEWOBJ) with arguments outside the declaration (POLICY-4)
    BUILD = "build"          # BUILD on a target, or with a state, the policy does not declare (POLICY-5)
    TARGET = "target"        # APPEND/SETITEM/ADDITEMS on an object that is not a container of that kind (POLICY-6)
    KEY = "key"              # a dict key or set member that is not a plain value, or too deep or big (POLICY-7)
    MEMO = "memo"            # a memo index not as assigned, or a key never stored (POLICY-8)
    DEPTH = "depth"          # nesting deeper than max_depth (POLICY-9)
    ITEMS = "items"          # more container items than max_items, counting every reference (POLICY-9)
    SIZE = "size"            # a pickle, an integer or a number's text longer than its limit (POLICY-9)
    NESTED = "nested"        # the torch stream inside _load_from_bytes is not what torch writes (POLICY-10)
    STRUCTURE = "structure"  # not a well-formed pickle: stack underflow, a missing MARK, truncation (POLICY-1)

    @property
    def is_limit(self) -> bool:
        """Limits are reported as LimitError by readers (the rest as UnsafePickleError or FormatError)."""
        return self in (Rule.DEPTH, Rule.ITEMS, Rule.SIZE, Rule.MEMO)


class PolicyViolation(Exception):
    """A pickle breaks a rule of the policy; ``offset`` is the opcode's offset in the pickle when known."""

    def __init__(self, rule: Rule, message: str, offset: int | None = None,
                 global_name: tuple[str, str] | None = None) -> None:
        self.rule = rule
        self.message = message
        self.offset = offset
        self.global_name = global_name  # (module, name) of a refused global
        super().__init__(f"[{rule.value}] {message}")


@dataclass(frozen=True)
class PickleLimits:
    """Bounds every engine enforces on one pickle (an example, or a block of framing list / version 1).

    Defaults admit everything the standard pickler writes at its default recursion limit; a
    reader may lower them. Each bound is checked before the work or allocation it prevents.
    """

    max_pickle_size: int = 1 << 30      # bytes of one pickle (the block limit, LIM-1)
    max_depth: int = 1000               # container nesting: what pickle.dumps can write by default
    max_items: int = 1 << 24            # container items, every reference counted (DAGs cannot multiply)
    max_hashed_items: int = 4096        # items of one dict key or set member (a tuple's hash visits them all)
    max_int_bytes: int = 4096           # two's-complement bytes of one integer (LONG1, LONG4)
    max_number_text: int = 4300         # characters of a number parsed from text (Python's int/str limit)
    max_dimensions: int = 64            # array and tensor dimensions (numpy's NPY_MAXDIMS)


DEFAULT_PICKLE_LIMITS = PickleLimits()
#: Nesting beyond which engines describe an argument as opaque (no check accepts anything this deep: the
#: deepest argument the policy admits, a datetime's tzinfo or an array state's dtype, is 3 levels down).
VIEW_DEPTH = 32


@dataclass(frozen=True)
class Ref:
    """A global the pickle pushed (a type, a singleton or a callable of the policy)."""

    module: str
    name: str

    def __str__(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass(frozen=True)
class Seq:
    """A list, set, frozenset or deque handed to a check: its kind and length (items are not read)."""

    kind: str
    length: int


@dataclass(frozen=True)
class Mapping:
    """A plain dict handed to a check, with its items as views (dicts in arguments and states are small)."""

    items: tuple[tuple[Any, Any], ...]


@dataclass(eq=False)
class Made:
    """An object an allowed constructor made: its kind (``KINDS`` in pickle_policy) and the facts checks need.

    Identity matters (``eq=False``): two arrays with the same facts are two objects. Facts of a
    container kind include its current ``length``, filled in by the engine when it makes the view.
    """

    kind: str
    facts: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.facts[key]


View = Union[None, bool, int, float, str, bytes, bytearray, tuple[Any, ...], Ref, Seq, Mapping, Made]  # noqa: UP007


def is_int(value: Any) -> bool:
    """An int that is not a bool (pickles keep the two apart: NEWTRUE is not BININT1 1)."""
    return type(value) is int


def describe(value: Any) -> str:
    """A short name of a view for messages."""
    if isinstance(value, Made):
        return value.kind
    if isinstance(value, Ref):
        return f"global {value}"
    if isinstance(value, Seq):
        return f"{value.kind} of {value.length}"
    if isinstance(value, Mapping):
        return f"dict of {len(value.items)}"
    if isinstance(value, (str, bytes, bytearray)) and len(value) > 40:
        return f"{type(value).__name__} of {len(value)}"
    if isinstance(value, tuple) and len(value) > 8:
        return f"tuple of {len(value)}"
    return repr(value)


def describe_args(args: tuple[Any, ...]) -> str:
    return "(" + ", ".join(describe(a) for a in args) + ")"


def plain_mapping(value: Any) -> AbcMapping[Any, Any] | None:
    """The items of a Mapping view as a dict when every key is a str, else None."""
    if not isinstance(value, Mapping) or not all(type(k) is str for k, _ in value.items):
        return None
    return dict(value.items)
