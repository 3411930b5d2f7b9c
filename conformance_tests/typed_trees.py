"""Values of the typed encoding's closed type set for the typed tests (spec 3.12): a Hypothesis strategy of
random trees and an exact comparison (floats by their bits, arrays by dtype, shape and bytes)."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st

from atlas_format import typed

NUMPY_DTYPES = [d for d in typed.DTYPES if d.numpy]
TORCH_DTYPES = list(typed.DTYPES)


def same(a: Any, b: Any) -> bool:
    """Equal values of equal types, floats by their bits, arrays by dtype, shape and bytes."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and bytes(a.contiguous().view(torch.uint8).numpy()) == \
            bytes(b.contiguous().view(torch.uint8).numpy())
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def array_of(entry: typed.DType, shape: tuple[int, ...], seed: int) -> np.ndarray[Any, Any]:
    """An array of the entry's dtype whose bytes are arbitrary (NaN payloads included), bools 0/1."""
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, size=int(np.prod(shape)) * entry.itemsize, dtype=np.uint8)
    if entry.name == "bool":
        raw %= 2
    return raw.view(np.dtype(entry.numpy)).reshape(shape)


SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(typed.INT_MIN, typed.INT_MAX),
    st.floats(allow_nan=True, allow_infinity=True), st.text(), st.binary(max_size=300))
KEYS = st.one_of(st.text(max_size=8), st.integers(-(2**40), 2**40))
ARRAYS = st.builds(lambda e, shape, seed: array_of(e, tuple(shape), seed), st.sampled_from(NUMPY_DTYPES),
                   st.lists(st.integers(0, 4), max_size=3), st.integers(0, 9))
TREES = st.recursive(
    st.one_of(SCALARS, ARRAYS),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.lists(inner, max_size=4).map(tuple),
                            st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=20)
