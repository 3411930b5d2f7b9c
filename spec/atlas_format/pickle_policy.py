"""The pickle policy: the one declaration of what an Atlas example pickle may do (spec/FORMAT.md section 5).

Two engines enforce it and never import each other: the safe loader
(``torch_atlas_ds.safe_pickle``) builds real objects, the validator
(``atlas_validator.pickle_scan``) only follows the opcodes. Both read from here:

* ``OPCODES``: the opcodes of protocols 2 to 5 that a pickle may use (POLICY-2);
* ``POLICY``: every global a pickle may name, what it may be (a plain value, the callable of
  REDUCE, the class of NEWOBJ) and, through its check (``pickle_checks``), with which arguments;
* ``KINDS``: what an allowed constructor makes: whether it is a container, and what
  BUILD may do to it (only these, never BUILD on a global itself);
* ``PickleLimits``: memo, depth, items, sizes.

Each entry's reason says why it is safe; the checks say exactly which arguments are.
Not admitted, on purpose: ``builtins.getattr/eval/exec/compile/open/__import__``,
``copyreg._reconstructor`` (calls ``base.__new__`` on any class), ``numpy.load``,
``torch.load``, anything of os, subprocess, sys, importlib, pickle, shutil, socket; and the
protocol 0/1 text opcodes, INST/OBJ, the extension registry and out-of-band buffers.
"""

from __future__ import annotations

import _compat_pickle
import pickletools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import pickle_checks as c
from .pickle_checks import BuildCheck, Check
from .pickle_values import DEFAULT_PICKLE_LIMITS, Made, Mapping, PickleLimits, PolicyViolation, Ref, Rule, Seq

__all__ = [
    "DEFAULT_PICKLE_LIMITS", "KINDS", "OPCODES", "POLICY", "Kind", "Made", "Mapping", "PickleLimits", "PolicyEntry",
    "PolicyViolation", "Ref", "Rule", "Seq", "is_known_dangerous", "key_of", "resolve_name",
]

# -- opcodes (POLICY-2) -------------------------------------------------------------------------

#: What CPython's pickler writes at protocols 2 to 5, less out-of-band buffers and the extension registry,
#: plus POP, POP_MARK and DUP (recursive tuples). BINPERSID only inside the torch stream of _load_from_bytes.
OPCODES: frozenset[str] = frozenset({
    "PROTO", "FRAME", "STOP", "NONE", "NEWTRUE", "NEWFALSE", "BININT", "BININT1", "BININT2", "LONG1", "LONG4",
    "BINFLOAT", "SHORT_BINBYTES", "BINBYTES", "BINBYTES8", "BYTEARRAY8", "SHORT_BINUNICODE", "BINUNICODE",
    "BINUNICODE8", "EMPTY_TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "TUPLE", "MARK", "POP", "POP_MARK", "DUP",
    "EMPTY_LIST", "APPEND", "APPENDS", "EMPTY_DICT", "SETITEM", "SETITEMS", "EMPTY_SET", "ADDITEMS", "FROZENSET",
    "MEMOIZE", "BINPUT", "LONG_BINPUT", "BINGET", "LONG_BINGET", "GLOBAL", "STACK_GLOBAL", "REDUCE", "BUILD",
    "NEWOBJ", "NEWOBJ_EX", "BINPERSID",
})
#: Why each other opcode is refused.
REFUSED_OPCODES: dict[str, str] = {
    **{name: "a protocol 0/1 text opcode (CPython writes none of them at protocol 2 or above)"
       for name in ("INT", "LONG", "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "FLOAT", "GET", "PUT", "DICT",
                    "LIST", "PERSID")},
    "INST": "instantiates a class by name (protocol 0/1); allowed constructors are reached through REDUCE",
    "OBJ": "instantiates a class from the stack (protocol 1); allowed constructors are reached through REDUCE",
    "EXT1": "loads a global from the copyreg extension registry", "EXT2": "loads a global from the copyreg extension "
    "registry", "EXT4": "loads a global from the copyreg extension registry",
    "NEXT_BUFFER": "needs an out-of-band buffer, which a dataset cannot supply",
    "READONLY_BUFFER": "needs an out-of-band buffer, which a dataset cannot supply",
}
assert OPCODES | set(REFUSED_OPCODES) == {op.name for op in pickletools.opcodes}  # noqa: S101 - import-time invariant
#: The highest pickle protocol (PROTO argument) a pickle may declare.
HIGHEST_PROTOCOL = 5


# -- kinds: what allowed constructors make --------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """What an allowed constructor makes. ``container`` kinds hold items that the depth and item limits
    count and that APPEND (``appends``) or SETITEM (``sets_items``) may add; ``build`` is the only BUILD
    such an object accepts, and ``apply`` how engines apply it (``setstate``: the class's __setstate__
    with the checked state; ``dict``: an update of the instance __dict__)."""

    name: str
    container: bool = False
    appends: bool = False
    sets_items: bool = False
    build: BuildCheck | None = None
    apply: str | None = None


def _build_ordered_dict(made: Made, state: Any, limits: PickleLimits) -> None:
    """An OrderedDict's instance attributes (torch's state dicts keep ``_metadata`` there): str names only."""
    if not isinstance(state, Mapping) or not all(type(k) is str for k, _ in state.items):
        c.refuse(f"OrderedDict attributes must be a dict of str names, got {type(state).__name__}", Rule.BUILD)


KINDS: dict[str, Kind] = {kind.name: kind for kind in (
    Kind("set", container=True), Kind("frozenset", container=True),
    Kind("complex"), Kind("slice"), Kind("range"),
    Kind("OrderedDict", container=True, sets_items=True, build=_build_ordered_dict, apply="dict"),
    Kind("defaultdict", container=True, sets_items=True),
    Kind("Counter", container=True, sets_items=True),
    Kind("deque", container=True, appends=True),
    Kind("date"), Kind("time"), Kind("datetime"),
    Kind("timedelta"), Kind("timezone"), Kind("Decimal"),
    Kind("Fraction"), Kind("purepath"),
    Kind("uuid-stub", build=c.build_uuid, apply="setstate"), Kind("uuid"),
    Kind("dtype", build=c.build_dtype, apply="setstate"),
    Kind("ndarray-stub", build=c.build_ndarray, apply="setstate"), Kind("ndarray"),
    Kind("numpy-scalar"),
    Kind("masked-stub", build=c.build_masked, apply="setstate"), Kind("masked"),
    Kind("torch.Size"), Kind("torch.device"), Kind("storage"),
    Kind("tensor"), Kind("parameter"),
)}
#: Kinds engines make as their plain Python type (not recorded as made objects).
PLAIN_KINDS = frozenset({"set", "frozenset"})


def key_of(made: Made) -> Any:
    """The plain value a made object is equal to as a dict key or set member (POLICY-7): only numpy scalars of
    numbers, bools, bytes and str have one (they hash and compare as that value). Every other made object is
    refused as a key: its equality (datetime across time zones, Decimal == int, dtype == str) would need the
    validator to run it to decide which keys collide."""
    value = made.facts.get("key") if made.kind == "numpy-scalar" else None
    if value is None:
        raise PolicyViolation(Rule.KEY, f"a {made.kind} cannot be a dict key or set member (only plain values, "
                                        "tuples and frozensets of them, globals and numpy scalars can)")
    return value


#: Globals that name the same object (dict keys that are both collide in a real dict).
ALIASES: dict[Ref, Ref] = {Ref("numpy.ma.core", "MaskedArray"): Ref("numpy.ma", "MaskedArray")}


# -- globals (POLICY-3, POLICY-4) --------------------------------------------------------------


@dataclass(frozen=True)
class PolicyEntry:
    """One global a pickle may name.

    ``value``: it may be used as a plain value (a type, a singleton, a function object); the
    call-only entries (``value=False``) may only be the callable of REDUCE. ``call``/``new``: the
    check of REDUCE / NEWOBJ arguments (None: not callable that way). ``hashes``: the call hashes
    the members of its first argument (set, frozenset). ``nested``: the call reads a torch stream
    (engines parse it with this policy, POLICY-10).
    """

    module: str
    name: str
    reason: str
    value: bool = True
    call: Check | None = None
    new: Check | None = None
    nested: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.module, self.name)

    @property
    def ref(self) -> Ref:
        return Ref(self.module, self.name)


def _entries(module: str, names: Iterable[str], reason: str, **kw: Any) -> list[PolicyEntry]:
    return [PolicyEntry(module, name, reason, **kw) for name in names]


_TYPE_VALUES = ("list", "dict", "set", "frozenset", "tuple", "int", "float", "complex", "str", "bytes", "bytearray",
                "bool", "range", "slice")
_NUMPY_CORE = ("numpy.core", "numpy._core")  # numpy < 2 and numpy >= 2 spellings of the same functions

_POLICY: list[PolicyEntry] = (
    _entries("builtins", [n for n in _TYPE_VALUES if n not in ("set", "frozenset", "complex", "bytearray", "bytes",
                                                                "range", "slice")],
             "a builtin type as a value (a defaultdict factory, a dtype-like field); never called by the pickle")
    + [PolicyEntry("builtins", "set", "protocol 2/3 sets: set(list) of loaded members", call=c.check_set),
       PolicyEntry("builtins", "frozenset", "protocol 2/3 frozensets", call=c.check_frozenset),
       PolicyEntry("builtins", "complex", "a number from two numbers", call=c.check_complex),
       PolicyEntry("builtins", "slice", "three integers or None; runs nothing", call=c.check_slice),
       PolicyEntry("builtins", "range", "a lazy range of integers (never iterated by the loader)",
                   call=c.check_range),
       PolicyEntry("builtins", "bytearray", "copies bytes the pickle holds; never bytearray(n)",
                   call=c.check_bytearray),
       PolicyEntry("builtins", "bytes", "protocol 2 form of b''; never bytes(n)", call=c.check_bytes),
       PolicyEntry("builtins", "Ellipsis", "the ... singleton"),
       PolicyEntry("builtins", "NotImplemented", "the NotImplemented singleton"),
       PolicyEntry("_codecs", "encode", "protocol 2/3 bytes: encode(str, 'latin1') only (other codecs decompress)",
                   value=False, call=c.check_codecs_encode),
       PolicyEntry("collections", "OrderedDict", "an empty dict subclass filled by SETITEMS",
                   call=c.check_ordered_dict),
       PolicyEntry("collections", "defaultdict", "a dict whose factory is a builtin type (called for missing keys)",
                   call=c.check_defaultdict),
       PolicyEntry("collections", "deque", "a container of loaded items", call=c.check_deque),
       PolicyEntry("collections", "Counter", "a dict subclass built from a loaded dict", call=c.check_counter),
       PolicyEntry("datetime", "date", "from its 4-byte state, every field range-checked", call=c.check_date),
       PolicyEntry("datetime", "time", "from its 6-byte state and a timezone", call=c.check_time),
       PolicyEntry("datetime", "datetime", "from its 10-byte state and a timezone", call=c.check_datetime),
       PolicyEntry("datetime", "timedelta", "three range-checked integers", call=c.check_timedelta),
       PolicyEntry("datetime", "timezone", "a fixed offset under 24 hours and a name", call=c.check_timezone),
       PolicyEntry("decimal", "Decimal", "parses a bounded decimal string", call=c.check_decimal),
       PolicyEntry("fractions", "Fraction", "two bounded integers (never a string: '1e10000000')",
                   call=c.check_fraction),
       PolicyEntry("uuid", "UUID", "object.__new__, then a 128-bit integer as state", new=c.check_uuid_new),
       PolicyEntry("pathlib", "PurePosixPath", "a pure path: strings, no file system access",
                   call=c.check_pure_path),
       PolicyEntry("pathlib", "PureWindowsPath", "a pure path: strings, no file system access",
                   call=c.check_pure_path),
       PolicyEntry("numpy", "ndarray", "the array type, argument of _reconstruct"),
       PolicyEntry("numpy", "dtype", "a dtype of the closed set, copied before its state is set",
                   call=c.check_dtype),
       PolicyEntry("numpy.ma.core", "MaskedArray", "the masked array type, argument of _mareconstruct"),
       PolicyEntry("numpy.ma", "MaskedArray", "numpy >= 2 spelling of the masked array type"),
       PolicyEntry("numpy.ma.core", "_mareconstruct", "an empty masked array; its state is checked at BUILD",
                   value=False, call=c.check_mareconstruct)]
    + [entry for core in _NUMPY_CORE for entry in (
        PolicyEntry(f"{core}.multiarray", "_reconstruct", "an empty array; its state is checked at BUILD",
                    value=False, call=c.check_reconstruct),
        PolicyEntry(f"{core}.multiarray", "scalar", "a numpy scalar read from exactly itemsize bytes", value=False,
                    call=c.check_scalar),
        PolicyEntry(f"{core}.numeric", "_frombuffer", "protocol 5 arrays: a view of bytes the pickle holds",
                    value=False, call=c.check_frombuffer))]
    + _entries("torch", list(c.TORCH_DTYPES), "a dtype singleton looked up by name")
    + _entries("torch", ["Tensor"], "the tensor type, argument of _rebuild_from_type_v2")
    + _entries("torch.nn.parameter", ["Parameter"], "the parameter type")
    + [PolicyEntry(module, name, "a storage class named by the persistent id of a legacy torch stream (never called)")
       for module, name in c.TORCH_STORAGES]
    + [PolicyEntry("torch", "Size", "a tuple of bounded integers", call=c.check_torch_size),
       PolicyEntry("torch", "device", "a device descriptor (cpu, cuda, meta, mps, xpu); nothing is initialized",
                   call=c.check_torch_device),
       PolicyEntry("torch._utils", "_rebuild_tensor_v2", "a bounds-checked view of a loaded storage", value=False,
                   call=c.check_rebuild_tensor_v2),
       PolicyEntry("torch._utils", "_rebuild_tensor_v3", "a bounds-checked view of a loaded untyped storage",
                   value=False, call=c.check_rebuild_tensor_v3),
       PolicyEntry("torch._utils", "_rebuild_parameter", "wraps a loaded tensor; no hooks", value=False,
                   call=c.check_rebuild_parameter),
       PolicyEntry("torch._tensor", "_rebuild_from_type_v2", "calls only the tensor rebuild functions", value=False,
                   call=c.check_rebuild_from_type_v2),
       PolicyEntry("torch.storage", "_load_from_bytes", "a legacy torch stream, read by the engine with this "
                   "policy; never torch.load", value=False, call=c.check_load_from_bytes, nested=True)]
)
POLICY: dict[tuple[str, str], PolicyEntry] = {entry.key: entry for entry in _POLICY}


def resolve_name(module: str, name: str, protocol: int | None) -> tuple[str, str]:
    """The (module, name) the standard loader looks up: Python 2 names mapped to Python 3 below protocol 3
    (``fix_imports``, as ``pickle.Unpickler`` does by default)."""
    if protocol is None or protocol < 3:
        if (module, name) in _compat_pickle.NAME_MAPPING:
            return _compat_pickle.NAME_MAPPING[(module, name)]
        if module in _compat_pickle.IMPORT_MAPPING:
            return _compat_pickle.IMPORT_MAPPING[module], name
    return module, name


# Globals seen in real attacks; refused like every global outside the policy, and named as such.
KNOWN_DANGEROUS_MODULES = frozenset({
    "os", "posix", "nt", "subprocess", "sys", "shutil", "socket", "importlib", "pickle", "_pickle", "runpy", "pty",
    "code", "codeop", "ctypes", "webbrowser", "multiprocessing", "signal",
})
KNOWN_DANGEROUS_BUILTINS = frozenset({"eval", "exec", "compile", "open", "__import__", "getattr", "setattr",
                                      "delattr", "globals", "locals", "vars", "input", "breakpoint", "help"})


def is_known_dangerous(module: str, name: str) -> bool:
    """True for globals used to run code (reported with extra emphasis; refused either way)."""
    top = module.split(".")[0]
    return top in KNOWN_DANGEROUS_MODULES or (module == "builtins" and name in KNOWN_DANGEROUS_BUILTINS)


def refuse_global(module: str, name: str) -> PolicyViolation:
    danger = " (a known code-execution global)" if is_known_dangerous(module, name) else ""
    return PolicyViolation(Rule.GLOBAL, f"refused global {module}.{name}{danger}: not in the pickle policy",
                           global_name=(module, name))

