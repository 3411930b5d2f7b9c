"""Type-exact equality for round-trip checks: 1 != 1.0 != True, -0.0 != 0.0, nan == nan,
dict key order matters, arrays and tensors compare dtype, shape and bytes."""

from __future__ import annotations

import math
import struct
import sys
from typing import Any


def _float_bits(x: float) -> bytes:
    return struct.pack("<d", x)


def strict_equal(a: Any, b: Any) -> bool:
    """True when ``b`` is an exact reproduction of ``a`` (what a format must give back)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or _float_bits(a) == _float_bits(b)
    if isinstance(a, complex):
        return strict_equal(a.real, b.real) and strict_equal(a.imag, b.imag)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(strict_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a.keys()) == list(b.keys()) and all(strict_equal(a[k], b[k]) for k in a)
    if isinstance(a, (set, frozenset)):
        return bool(a == b)
    module = type(a).__module__
    if module == "numpy":
        import numpy as np

        if isinstance(a, np.ndarray):
            if a.dtype != b.dtype or a.shape != b.shape:
                return False
            if a.dtype.hasobject:
                return all(strict_equal(x, y) for x, y in zip(a.ravel().tolist(), b.ravel().tolist(), strict=True))
            return bool(np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes())
        return bool(a.dtype == b.dtype and a.tobytes() == b.tobytes())  # numpy scalar
    if module.startswith("torch") and "torch" in sys.modules:
        import torch

        if isinstance(a, torch.Tensor):
            if (a.dtype, a.shape, a.requires_grad) != (b.dtype, b.shape, b.requires_grad):
                return False
            left = a.detach().contiguous().reshape(-1).view(torch.uint8)
            right = b.detach().contiguous().reshape(-1).view(torch.uint8)
            return bool(torch.equal(left, right))
    return bool(a == b)
