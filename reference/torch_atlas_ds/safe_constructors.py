"""What the safe loader builds for each global of the pickle policy, once the policy's check passed.

The checks (``atlas_format.pickle_checks``) decide *whether*; this module decides *how*: each
builder takes the real arguments, already checked, and makes the object the trusted loader
would make, without handing control to anything the pickle named. ``_load_from_bytes`` is
never called: the legacy torch stream it would pass to ``torch.load(weights_only=False)`` is
read here (``storage_from_legacy``), its pickles by the same restricted interpreter.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import fractions
import importlib
import pathlib
import uuid
from collections.abc import Callable
from typing import Any

from atlas_format.pickle_policy import PolicyEntry

Builder = Callable[[tuple[Any, ...]], Any]


def _numpy_core(module: str, name: str) -> Any:
    """A numpy internal under its numpy >= 2 module, or its numpy < 2 one."""
    for prefix in ("numpy._core", "numpy.core"):
        try:
            return getattr(importlib.import_module(f"{prefix}.{module}"), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"numpy has no {module}.{name}")


def _reconstruct(args: tuple[Any, ...]) -> Any:
    import numpy as np

    return np.ndarray.__new__(np.ndarray, (0,), "b")


def _frombuffer(args: tuple[Any, ...]) -> Any:
    import numpy as np

    buffer, dtype, shape, order = args
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order)


def _scalar(args: tuple[Any, ...]) -> Any:
    return _numpy_core("multiarray", "scalar")(*args)


def _dtype(args: tuple[Any, ...]) -> Any:
    import numpy as np

    return np.dtype(args[0], False, True)


def _mareconstruct(args: tuple[Any, ...]) -> Any:
    import numpy as np

    return importlib.import_module("numpy.ma.core")._mareconstruct(np.ma.MaskedArray, np.ndarray, (0,), "b")


def _torch(name: str) -> Builder:
    def build(args: tuple[Any, ...]) -> Any:
        import torch

        target: Any = torch
        for part in name.split("."):
            target = getattr(target, part)
        return target(*args)

    return build


def _rebuild_from_type_v2(args: tuple[Any, ...]) -> Any:
    """Only the tensor rebuild functions, as torch.Tensor, with an empty state: the inner rebuild is the result
    (``args[0]`` is the call-only marker of that function, which names its policy entry)."""
    func, _new_type, inner, _state = args
    return BUILDERS[func.entry.key](inner)


def _uuid_new(args: tuple[Any, ...]) -> Any:
    return uuid.UUID.__new__(uuid.UUID)


BUILDERS: dict[tuple[str, str], Builder] = {
    ("builtins", "complex"): lambda a: complex(*a),
    ("builtins", "slice"): lambda a: slice(*a),
    ("builtins", "range"): lambda a: range(*a),
    ("collections", "OrderedDict"): lambda a: collections.OrderedDict(),
    ("collections", "defaultdict"): lambda a: collections.defaultdict(*a),
    ("collections", "deque"): lambda a: collections.deque(*a),
    ("collections", "Counter"): lambda a: collections.Counter(*a),
    ("datetime", "date"): lambda a: datetime.date(*a),
    ("datetime", "time"): lambda a: datetime.time(*a),
    ("datetime", "datetime"): lambda a: datetime.datetime(*a),
    ("datetime", "timedelta"): lambda a: datetime.timedelta(*a),
    ("datetime", "timezone"): lambda a: datetime.timezone(*a),
    ("decimal", "Decimal"): lambda a: decimal.Decimal(*a),
    ("fractions", "Fraction"): lambda a: fractions.Fraction(*a),
    ("uuid", "UUID"): _uuid_new,
    ("pathlib", "PurePosixPath"): lambda a: pathlib.PurePosixPath(*a),
    ("pathlib", "PureWindowsPath"): lambda a: pathlib.PureWindowsPath(*a),
    ("numpy", "dtype"): _dtype,
    ("numpy.ma.core", "_mareconstruct"): _mareconstruct,
    **{(f"{core}.multiarray", "_reconstruct"): _reconstruct for core in ("numpy.core", "numpy._core")},
    **{(f"{core}.multiarray", "scalar"): _scalar for core in ("numpy.core", "numpy._core")},
    **{(f"{core}.numeric", "_frombuffer"): _frombuffer for core in ("numpy.core", "numpy._core")},
    ("torch", "Size"): _torch("Size"),
    ("torch", "device"): _torch("device"),
    ("torch._utils", "_rebuild_tensor_v2"): _torch("_utils._rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor_v3"): _torch("_utils._rebuild_tensor_v3"),
    ("torch._utils", "_rebuild_parameter"): _torch("_utils._rebuild_parameter"),
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
}


def resolve(entry: PolicyEntry) -> Any:
    """The real object of a value entry (a type, a singleton, a dtype): imported from its fixed module."""
    module = importlib.import_module(entry.module)
    return getattr(module, entry.name)


def storage_from_legacy(raw: bytes, dtype: str | None) -> Any:
    """The storage of a legacy torch stream from its checked bytes, as torch's legacy loader returns it: a
    TypedStorage of ``dtype`` (of uint8 for an UntypedStorage, dtype None) over a bytearray copy of the bytes."""
    import torch

    buffer = bytearray(raw)
    element = torch.uint8 if dtype is None else getattr(torch, dtype)
    flat = torch.frombuffer(buffer, dtype=element) if buffer else torch.empty(0, dtype=element)
    return torch.storage.TypedStorage(  # type: ignore[no-untyped-call]
        wrap_storage=flat.untyped_storage(), dtype=element, _internal=True)
