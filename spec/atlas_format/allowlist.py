"""The pickle allow-list: the globals a safe loader may resolve and the validator accepts.

Each entry says why it is safe. An allow-list is only as safe as its most powerful
entry, so every function here was read for what it does with its arguments:

* ``torch.storage._load_from_bytes`` calls ``torch.load(..., weights_only=False)``,
  which runs any pickle: it is admitted ONLY with ``substitute="torch_load_weights_only"``,
  meaning a safe loader MUST resolve it to a function that calls
  ``torch.load(io.BytesIO(b), weights_only=True)`` instead, and the validator scans the
  nested archive's pickle against the same allow-list.
* ``builtins.bytearray(n)`` with an integer allocates n bytes: admitted with
  ``substitute="bytes_only"`` (a safe loader accepts only a bytes-like or str argument).
* Not admitted, on purpose: ``builtins.getattr`` (reaches any attribute, e.g. os.system),
  ``builtins.eval/exec/compile/open/__import__``, ``copyreg._reconstructor`` (calls
  ``base.__new__`` on a class of the pickle's choosing), ``builtins.range`` (``set(range(10**12))``
  hangs), ``numpy.load``/``numpy.fromfile`` (file access), ``torch.load``, anything of os,
  subprocess, sys, importlib, pickle, shutil, socket.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class AllowedGlobal:
    """One allowed global: module, qualified name, why it is safe, and a required substitute."""

    module: str
    name: str
    reason: str
    substitute: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.module, self.name)


def _entries(module: str, names: Iterable[str], reason: str, substitute: str | None = None) -> list[AllowedGlobal]:
    return [AllowedGlobal(module, name, reason, substitute) for name in names]


_TORCH_DTYPES = (
    "float32 float64 float16 bfloat16 complex32 complex64 complex128 uint8 uint16 uint32 uint64 "
    "int8 int16 int32 int64 bool float8_e4m3fn float8_e5m2 float8_e4m3fnuz float8_e5m2fnuz "
    "qint8 quint8 qint32 quint4x2"
).split()

_TORCH_STORAGES = (
    "FloatStorage DoubleStorage HalfStorage BFloat16Storage LongStorage IntStorage ShortStorage CharStorage "
    "ByteStorage BoolStorage ComplexFloatStorage ComplexDoubleStorage UntypedStorage"
).split()

ALLOWED_GLOBALS: tuple[AllowedGlobal, ...] = tuple(
    _entries("builtins", ["set", "frozenset"], "builds a container from an iterable of already-loaded objects")
    + _entries("builtins", ["complex"], "builds a number from numbers or a numeric string")
    + _entries("builtins", ["slice"], "stores three already-loaded values; runs nothing")
    + _entries("builtins", ["bytearray"], "copies a bytes object (protocol <= 4 form of bytearray); an int "
               "argument would allocate that many bytes, so safe loaders accept bytes-like or str only",
               substitute="bytes_only")
    + _entries("collections", ["OrderedDict"], "a dict subclass; also torch's empty backward-hooks argument")
    + _entries("collections", ["defaultdict"], "a dict whose factory is itself resolved through this allow-list")
    + _entries("collections", ["deque", "Counter"], "containers filled from already-loaded objects")
    + _entries("datetime", ["date", "time", "datetime", "timedelta", "timezone"],
               "value types rebuilt from integers and bytes")
    + _entries("decimal", ["Decimal"], "a number parsed from a string")
    + _entries("fractions", ["Fraction"], "a number built from two integers or a string")
    + _entries("uuid", ["UUID"], "a 128-bit value; state is set from an integer")
    + _entries("numpy", ["ndarray"], "the array type, passed to _reconstruct")
    + _entries("numpy", ["dtype"], "a data type built from a type code string")
    + _entries("numpy.core.multiarray", ["_reconstruct", "scalar"],
               "numpy < 2 array and scalar constructors: allocate from shape/dtype, then copy given bytes "
               "(sizes are checked against the bytes)")
    + _entries("numpy._core.multiarray", ["_reconstruct", "scalar"], "numpy >= 2 spelling of the same constructors")
    + _entries("numpy.core.numeric", ["_frombuffer"],
               "numpy < 2 protocol-5 array constructor: frombuffer over given bytes, then reshape")
    + _entries("numpy._core.numeric", ["_frombuffer"], "numpy >= 2 spelling of _frombuffer")
    + _entries("torch", ["Size"], "a tuple subclass of integers")
    + _entries("torch", ["Tensor"], "the tensor type, target of _rebuild_from_type_v2")
    + _entries("torch.nn.parameter", ["Parameter"], "a tensor subclass, target of _rebuild_from_type_v2")
    + _entries("torch", _TORCH_DTYPES, "a dtype singleton looked up by name")
    + _entries("torch", ["device"], "a device descriptor parsed from a string")
    + _entries("torch._utils", ["_rebuild_tensor_v2", "_rebuild_tensor_v3"],
               "views a loaded storage with bounds-checked size and stride; hooks are loaded objects")
    + _entries("torch._utils", ["_rebuild_parameter"], "wraps a loaded tensor in a Parameter")
    + _entries("torch._tensor", ["_rebuild_from_type_v2"],
               "calls a function that must itself be allowed, then as_subclass to an allowed type")
    + _entries("torch", _TORCH_STORAGES,
               "a storage class named inside the persistent id of a nested legacy torch.save stream "
               "(a class reference; torch.load(weights_only=True) resolves it, nothing calls it with data)")
    + _entries("torch.storage", ["_load_from_bytes"],
               "how plain pickle stores a tensor's storage; the original calls torch.load(weights_only=False), "
               "so safe loaders substitute torch.load(weights_only=True) and validators scan the nested archive",
               substitute="torch_load_weights_only")
)

ALLOWED: dict[tuple[str, str], AllowedGlobal] = {entry.key: entry for entry in ALLOWED_GLOBALS}

# Globals seen in real attacks; the validator names them as such (all are refused anyway).
KNOWN_DANGEROUS_MODULES = frozenset({
    "os", "posix", "nt", "subprocess", "sys", "builtins.eval", "shutil", "socket", "importlib", "pickle",
    "_pickle", "runpy", "pty", "code", "codeop", "ctypes", "webbrowser", "multiprocessing", "signal",
})
KNOWN_DANGEROUS_BUILTINS = frozenset({"eval", "exec", "compile", "open", "__import__", "getattr", "setattr",
                                      "delattr", "globals", "locals", "vars", "input", "breakpoint", "help"})


def is_allowed(module: str, name: str, extra: Iterable[tuple[str, str]] = ()) -> bool:
    """True when ``module.name`` is on the allow-list or in the caller's ``extra`` pairs."""
    return (module, name) in ALLOWED or (module, name) in set(extra)


def is_known_dangerous(module: str, name: str) -> bool:
    """True for globals used to run code (reported with extra emphasis; refused either way)."""
    top = module.split(".")[0]
    return top in KNOWN_DANGEROUS_MODULES or (module == "builtins" and name in KNOWN_DANGEROUS_BUILTINS)
