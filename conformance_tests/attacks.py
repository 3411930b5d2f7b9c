"""The attack classes of issue 15 as pickles: what each does to a standard unpickler, and what the policy says.

Every attack uses only globals of the pickle policy, or no global at all; a dataset that holds
one is sealed with correct checksums, so only the policy can stop it. Each entry gives the
finding id the validator reports and the error safe loading raises. ``MARKER`` is the file the
code-running payloads would create (they never run: the tests check it does not exist).

Used by ``test_trust_boundary.py`` (validator, safe loading under a 3 GiB address-space limit,
the process unchanged afterwards) and ``make_invalid_vectors.py`` (the golden vectors).
"""

from __future__ import annotations

import os
import pickle
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MARKER = "atlas-pwned-attack"


def _s(text: str) -> bytes:
    """SHORT_BINUNICODE of ``text``."""
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def _global(module: str, name: str) -> bytes:
    return _s(module) + _s(name) + b"\x93"


def _bytes(data: bytes) -> bytes:
    return b"B" + struct.pack("<I", len(data)) + data


class _Call:
    def __init__(self, function: Callable[..., Any], *args: Any) -> None:
        self.function, self.args = function, args

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.function, self.args)


def _code_running_stream() -> bytes:
    """What torch.load(weights_only=False) would unpickle first: a call of os.system."""
    return pickle.dumps(_Call(os.system, f"touch {MARKER}"), protocol=2)


def dtype_object_field() -> bytes:
    """An array whose dtype is a V8 with the flags of an object dtype: numpy reads its 8 data bytes as a pointer."""
    dtype = (_global("numpy", "dtype") + _s("V8") + b"\x89\x88\x87R\x94"
             + b"(K\x03\x8c\x01|NNNK\x08K\x01K?tb")
    return (b"\x80\x04" + _global("numpy._core.multiarray", "_reconstruct") + _global("numpy", "ndarray")
            + b"K\x00\x85C\x01b\x87R(K\x01K\x01\x85" + dtype + b"\x89" + _bytes(struct.pack("<Q", 0x4141414141414141))
            + b"tb.")


def build_function_defaults() -> bytes:
    """BUILD with slot state on torch._utils._rebuild_tensor_v2 itself: would set its __defaults__ for the process."""
    return (b"\x80\x04" + _global("torch._utils", "_rebuild_tensor_v2")
            + b"N}" + _s("__defaults__") + _s("pwned") + b"\x85s\x86b.")


def build_class_attribute() -> bytes:
    """BUILD with slot state on collections.OrderedDict (a value global): would set a class attribute."""
    return b"\x80\x04" + _global("collections", "OrderedDict") + b"N}" + _s("__len__") + b"Ns\x86b."


def load_from_bytes_indirect() -> bytes:
    """_rebuild_from_type_v2(_load_from_bytes, Tensor, (stream,), {}): the rebuild calls its first argument."""
    return (b"\x80\x04" + _global("torch._tensor", "_rebuild_from_type_v2")
            + b"(" + _global("torch.storage", "_load_from_bytes") + _global("torch", "Tensor")
            + _bytes(_code_running_stream()) + b"\x85}tR.")


def load_from_bytes_bytearray() -> bytes:
    """_load_from_bytes(bytearray(stream)): the argument is not the bytes a scanner would read."""
    return (b"\x80\x04" + _global("torch.storage", "_load_from_bytes") + _global("builtins", "bytearray")
            + _bytes(_code_running_stream()) + b"\x85R\x85R.")


def nested_tuple_key(depth: int = 1_000_000) -> bytes:
    """A dict whose key is a tuple nested ``depth`` deep: hashing it overflows the C stack."""
    return b"\x80\x04}K\x01" + b"\x85" * depth + b"K\x02s."


def memo_index() -> bytes:
    """A 9-byte pickle storing to memo index 2**28: the C unpickler allocates a 4 GiB memo."""
    return b"\x80\x04N" + b"r" + struct.pack("<I", 1 << 28) + b"."


def tensor_from_size() -> bytes:
    """torch.Tensor(2**30): an uninitialized 4 GiB allocation."""
    return b"\x80\x04" + _global("torch", "Tensor") + b"J\x00\x00\x00@\x85R."


def tensor_uninitialized() -> bytes:
    """torch.Tensor(512): uninitialized heap memory handed to the caller."""
    return b"\x80\x04" + _global("torch", "Tensor") + b"M\x00\x02\x85R."


def reconstruct_shape() -> bytes:
    """numpy _reconstruct with a 2**40 shape: allocated before any state is checked."""
    return (b"\x80\x04" + _global("numpy._core.multiarray", "_reconstruct") + _global("numpy", "ndarray")
            + b"\x8a\x06\x00\x00\x00\x00\x00\x01\x85C\x01b\x87R.")


def fraction_text() -> bytes:
    """Fraction('1e10000000'): a ten-million-digit integer."""
    return b"\x80\x04" + _global("fractions", "Fraction") + _s("1e10000000") + b"\x85R."


@dataclass(frozen=True)
class Attack:
    name: str
    description: str
    build: Callable[[], bytes]
    finding: str   # the validator's finding id
    error: str     # the class of safe loading's error
    rule: str      # the policy rule both cite


ATTACKS: tuple[Attack, ...] = (
    Attack("dtype-object-field", "BUILD state on numpy.dtype with object flags, then an array of it",
           dtype_object_field, "ATL608", "UnsafePickleError", "build"),
    Attack("build-function-defaults", "BUILD slot state on torch._utils._rebuild_tensor_v2 (its __defaults__)",
           build_function_defaults, "ATL608", "UnsafePickleError", "build"),
    Attack("build-class-attribute", "BUILD slot state on the collections.OrderedDict class",
           build_class_attribute, "ATL608", "UnsafePickleError", "build"),
    Attack("load-from-bytes-indirect", "_load_from_bytes reached through _rebuild_from_type_v2",
           load_from_bytes_indirect, "ATL607", "UnsafePickleError", "call"),
    Attack("load-from-bytes-bytearray", "_load_from_bytes of a bytearray(...) argument",
           load_from_bytes_bytearray, "ATL607", "UnsafePickleError", "call"),
    Attack("nested-tuple-key", "a million nested tuples as a dict key (no global)",
           nested_tuple_key, "ATL610", "UnsafePickleError", "key"),
    Attack("memo-index", "LONG_BINPUT 2**28 in a 9-byte pickle (no global)", memo_index, "ATL611", "LimitError",
           "memo"),
    Attack("tensor-from-size", "torch.Tensor(2**30)", tensor_from_size, "ATL607", "UnsafePickleError", "call"),
    Attack("tensor-uninitialized", "torch.Tensor(512)", tensor_uninitialized, "ATL607", "UnsafePickleError",
           "call"),
    Attack("reconstruct-shape", "numpy _reconstruct with a 2**40 shape", reconstruct_shape, "ATL607",
           "UnsafePickleError", "call"),
    Attack("fraction-text", "Fraction('1e10000000')", fraction_text, "ATL607", "UnsafePickleError", "call"),
)
