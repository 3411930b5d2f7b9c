"""The two engines of the pickle policy agree on every pickle (spec/FORMAT.md PICKLE-4).

The safe loader (torch_atlas_ds.safe_pickle) builds objects; the validator
(atlas_validator.pickle_scan) never does. For generated pickles, realistic, hostile and
mangled, the validator passes exactly the pickles safe loading loads, under the default
limits and under small ones. What both accept loads in safe mode to what pickle.loads
gives, and the standard unpickler asks for no global outside the policy.
"""

from __future__ import annotations

import collections
import decimal
import io
import pickle
from typing import Any

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pickle_programs import attacks, expressions, mutated, pickled_values, programs

from atlas_format.errors import FormatError, LimitError, UnsafePickleError
from atlas_format.pickle_policy import POLICY, resolve_name
from atlas_format.pickle_values import DEFAULT_PICKLE_LIMITS, PickleLimits
from atlas_validator.pickle_scan import scan_pickle
from torch_atlas_ds.safe_pickle import SafeUnpickler

MANY = settings(max_examples=settings().max_examples * 5)
small_limits = st.builds(PickleLimits, max_depth=st.integers(1, 12), max_items=st.integers(1, 60),
                         max_hashed_items=st.integers(1, 8), max_int_bytes=st.integers(1, 16))
limits = st.just(DEFAULT_PICKLE_LIMITS) | small_limits


def loader_verdict(data: bytes, limits: PickleLimits) -> tuple[bool, Any]:
    """(loaded, value or the error); any exception but the project's refusals fails the test."""
    try:
        return True, SafeUnpickler(limits=limits).loads(data)
    except (UnsafePickleError, LimitError, FormatError) as exc:
        return False, exc


def validator_verdict(data: bytes, limits: PickleLimits) -> tuple[bool, Any]:
    result = scan_pickle(data, limits=limits)
    return (not result.issues and result.end == len(data)), result


def agree(data: bytes, limits: PickleLimits) -> tuple[bool, Any]:
    loaded, value = loader_verdict(data, limits)
    clean, result = validator_verdict(data, limits)
    assert loaded == clean, (f"safe loading {'loads' if loaded else 'refuses'} but the validator "
                             f"{'passes' if clean else 'refuses'}: loader {value!r}, validator {result.issues}, "
                             f"pickle {data!r}")
    if loaded:
        _standard_unpickler_stays_inside_the_policy(data)
    return loaded, value


class _PolicyOnly(pickle.Unpickler):
    """The standard unpickler, failing the test if it is asked for a global outside the policy."""

    def find_class(self, module: str, name: str) -> Any:
        key = resolve_name(module, name, self.proto)  # type: ignore[attr-defined]
        assert key in POLICY, f"the standard unpickler resolves {key}, outside the policy"
        return super().find_class(module, name)

    def load(self) -> Any:
        return super().load()


def _standard_unpickler_stays_inside_the_policy(data: bytes) -> None:
    unpickler = _PolicyOnly(io.BytesIO(data))
    unpickler.proto = data[1] if data[:1] == b"\x80" else 0  # type: ignore[attr-defined]
    try:
        unpickler.load()
    except AssertionError:
        raise
    except Exception:  # noqa: BLE001,S110 - torch's own loader fails on some pickles it wrote (empty uint16)
        pass


def same(a: Any, b: Any) -> bool:
    """Equal in value and type, recursively (arrays, tensors, NaNs, containers of them)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ma.MaskedArray):
        return same(a.data, b.data) and same(np.ma.getmaskarray(a), np.ma.getmaskarray(b)) and \
            np.asarray(a.fill_value).tobytes() == np.asarray(b.fill_value).tobytes()
    if isinstance(a, (np.ndarray, np.generic)):
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and a.stride() == b.stride() and \
            a.requires_grad == b.requires_grad and bool(torch.equal(a, b))
    if isinstance(a, (list, tuple, collections.deque)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True)) and \
            getattr(a, "maxlen", None) == getattr(b, "maxlen", None)
    if isinstance(a, dict):  # keys in order, compared as values (a NaN key is not == itself)
        return len(a) == len(b) and all(same(ka, kb) and same(va, vb) for (ka, va), (kb, vb)
                                        in zip(a.items(), b.items(), strict=True)) and \
            getattr(a, "default_factory", None) is getattr(b, "default_factory", None) and \
            same(getattr(a, "__dict__", None), getattr(b, "__dict__", None))
    if isinstance(a, (set, frozenset)):
        return a == b
    if isinstance(a, (float, complex, decimal.Decimal)):
        return str(a) == str(b)
    return bool(a == b)


@MANY
@given(data=pickled_values())
def test_every_value_of_the_policy_loads_exactly_and_scans_clean(data):
    loaded, value = agree(data, DEFAULT_PICKLE_LIMITS)
    assert loaded, value
    try:
        expected = pickle.loads(data)
    except Exception:  # noqa: BLE001 - torch 2.13 cannot load the empty uint16 tensors it pickles
        return
    assert same(value, expected)


@MANY
@given(data=mutated(pickled_values()), limits=limits)
def test_engines_agree_on_mangled_values(data, limits):
    agree(data, limits)


@MANY
@given(data=programs() | mutated(programs()), limits=limits)
def test_engines_agree_on_opcode_programs(data, limits):
    agree(data, limits)


@MANY
@given(data=expressions(), limits=limits)
def test_engines_agree_on_expression_programs(data, limits):
    agree(data, limits)


@MANY
@given(data=attacks() | mutated(attacks()), limits=limits)
def test_engines_agree_on_attack_classes(data, limits):
    agree(data, limits)


def test_call_only_globals_are_refused_anywhere_in_the_result():
    """A call-only global (PICKLE-5) may only be REDUCE's callable: as the result, in a list, a dict or a tuple
    it is refused by both engines, even in a pickle too small for the depth and item limits to matter."""
    rebuild = b"\x8c\x0ctorch._utils\x8c\x12_rebuild_tensor_v2\x93"
    for body in (rebuild, b"]" + rebuild + b"a", b"}K\x01" + rebuild + b"s", rebuild + b"\x85"):
        loaded, error = agree(b"\x80\x04" + body + b".", DEFAULT_PICKLE_LIMITS)
        assert not loaded and error.rule == "global" and "may only be called" in str(error)


_KEYS = {  # a key's opcodes -> whether PICKLE-9 admits it as a dict key
    b"K\x01": True, b"\x8c\x01a": True, b"N": True, b"C\x01x": True, b"G" + b"\x00" * 8: True,
    b"K\x01\x8c\x01a\x86": True, b"(K\x01\x91": True,  # a tuple, a frozenset of plain values
    b"\x8c\x08builtins\x8c\x03int\x93": True,  # a value global
    b"\x8c\x05numpy\x8c\x05dtype\x93\x8c\x02i8\x89\x88\x87R\x940\x8c\x16numpy._core.multiarray\x8c\x06scalar\x93"
    b"h\x00C\x08\x07\x00\x00\x00\x00\x00\x00\x00\x86R": True,  # a numpy scalar (equal to 7)
    b"]": False, b"}": False, b"\x8f": False,  # a list, a dict, a set
    b"\x96\x01\x00\x00\x00\x00\x00\x00\x00x": False,  # a bytearray
    b"B\x2c\x01\x00\x00" + b"k" * 300: True,  # long bytes (the validator does not copy them out)
    b"\x96\x2c\x01\x00\x00\x00\x00\x00\x00" + b"k" * 300: False,  # a long bytearray
    b"K\x01]\x86": False,  # a tuple holding a list
    b"\x8c\x08datetime\x8c\x04date\x93C\x04\x07\xea\x0c\x04\x85R": False,  # a made object other than a scalar
    b"\x8c\x0ctorch._utils\x8c\x12_rebuild_tensor_v2\x93": False,  # a call-only global
}


def test_dict_keys_and_set_members_of_every_kind():
    """PICKLE-9 for both engines, as dict keys (SETITEM) and as set members (ADDITEMS)."""
    for key, admitted in _KEYS.items():
        as_key = b"\x80\x04}" + key + b"K\x02s."
        as_member = b"\x80\x04\x8f(" + key + b"\x90."
        for data in (as_key, as_member):
            loaded, outcome = agree(data, DEFAULT_PICKLE_LIMITS)
            assert loaded == admitted, (key, outcome)
            if not admitted:
                assert outcome.rule == "key", (key, outcome)
    numpy_key = next(k for k in _KEYS if b"scalar" in k)
    loaded, value = agree(b"\x80\x04}(" + numpy_key + b"K\x02K\x07K\x03u.", DEFAULT_PICKLE_LIMITS)
    assert loaded and value == {7: 3} and len(value) == 1  # np.int64(7) and 7 are one key, as in a real dict


def _nested_lists(depth: int) -> bytes:
    """A pickle of ``depth`` lists nested in one another (the innermost empty): EMPTY_LIST x depth, APPEND x depth-1."""
    return b"\x80\x04" + b"]" * depth + b"a" * (depth - 1) + b"."


def test_big_values_agree_with_the_default_limits():
    """At the default limits: 1000 nested lists load, 1001 do not; a list shared 4096 times counts each time."""
    assert agree(_nested_lists(1000), DEFAULT_PICKLE_LIMITS)[0]
    assert not agree(_nested_lists(1001), DEFAULT_PICKLE_LIMITS)[0]
    shared = list(range(4095))
    assert agree(pickle.dumps([shared] * 4096, protocol=4), DEFAULT_PICKLE_LIMITS)[0]  # 4096 * 4096 = 2**24 items
    assert not agree(pickle.dumps([shared] * 4097, protocol=4), DEFAULT_PICKLE_LIMITS)[0]
