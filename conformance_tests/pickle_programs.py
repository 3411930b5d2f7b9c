"""Hypothesis strategies of pickles for the differential test of the two engines of the pickle policy.

Three sources, from the realistic to the hostile:

* ``values``: objects of every type the policy admits, pickled by CPython at protocols 2 to 5;
* ``programs``: opcode sequences assembled from a vocabulary that covers every allowed and refused
  opcode, the policy's globals (and a few dangerous ones), memo indices near the rules' edges,
  BUILD on every kind of target, keys of every kind: mostly malformed, which both engines must
  also agree on;
* ``attacks``: the attack classes of issue 15 with their parameters drawn (dtype states, array
  shapes and data sizes, tensor views, datetime bytes, nested tuples, memo indices).

``mutate`` flips, cuts and inserts bytes in any of them.
"""

from __future__ import annotations

import collections
import datetime
import pathlib
import pickle
import struct
from typing import Any

import numpy as np
from hypothesis import strategies as st

from atlas_format.pickle_policy import POLICY

# -- values of the policy's types ---------------------------------------------------------------

_atoms = (st.none() | st.booleans() | st.integers(-(2 ** 70), 2 ** 70) | st.floats(allow_nan=False)
          | st.text(max_size=12) | st.binary(max_size=12) | st.binary(min_size=250, max_size=300))
_keys = st.none() | st.booleans() | st.integers(-5, 300) | st.text(max_size=6) | st.binary(max_size=4)
_dtypes = st.sampled_from(["b1", "i1", "u1", "<i2", ">u2", "<i4", ">f4", "<f8", "<c8", ">c16", "f2", "S3", "<U2",
                           ">U1", "V2", "<M8[s]", ">m8[ms]", "S0"])


@st.composite
def _arrays(draw: Any) -> Any:
    dtype = np.dtype(draw(_dtypes))
    shape = tuple(draw(st.lists(st.integers(0, 3), max_size=3)))
    raw = draw(st.binary(min_size=int(np.prod(shape)) * dtype.itemsize, max_size=int(np.prod(shape)) * dtype.itemsize))
    array = np.frombuffer(raw, dtype=dtype).reshape(shape).copy() if dtype.itemsize else np.zeros(shape, dtype)
    if dtype.kind == "U":
        array = np.zeros(shape, dtype)  # arbitrary bytes are not always code points
    return np.asfortranarray(array) if draw(st.booleans()) and array.ndim > 1 else array


@st.composite
def _numpy_scalars(draw: Any) -> Any:
    dtype = draw(st.sampled_from(["b1", "i1", "<i8", ">u4", "<f4", ">f8", "c8", "S2", "<M8[D]", "V3"]))
    array = np.frombuffer(draw(st.binary(min_size=np.dtype(dtype).itemsize, max_size=np.dtype(dtype).itemsize)),
                          dtype=dtype)
    return array[0]


@st.composite
def _masked(draw: Any) -> Any:
    data = draw(_arrays())
    mask = draw(st.lists(st.booleans(), min_size=data.size, max_size=data.size))
    masked = np.ma.masked_array(data, mask=np.array(mask, bool).reshape(data.shape))
    if draw(st.booleans()) and data.dtype.kind in "iuf" and data.dtype.itemsize >= 2:
        masked.fill_value = 7
    return masked


_stdlib = st.one_of(
    st.datetimes(timezones=st.none() | st.builds(datetime.timezone, st.timedeltas(
        min_value=datetime.timedelta(hours=-23), max_value=datetime.timedelta(hours=23)))),
    st.dates(), st.times(), st.timedeltas(), st.decimals(allow_nan=True, places=None).filter(
        lambda d: not d.is_snan() and len(str(d)) < 100),
    st.fractions(max_denominator=10 ** 6), st.uuids(), st.builds(complex, st.floats(allow_nan=False),
                                                                   st.floats(allow_nan=False)),
    st.builds(pathlib.PurePosixPath, st.text("ab/", max_size=6)), st.builds(pathlib.PureWindowsPath, st.text(
        "ab\\:", max_size=6)),
    st.builds(range, st.integers(-9, 9), st.integers(-9, 9), st.integers(1, 3)),
    st.builds(slice, st.none() | st.integers(), st.none() | st.integers()), st.just(...), st.just(NotImplemented),
    st.builds(bytearray, st.binary(max_size=6)), st.sampled_from([int, str, list, dict, bytes]),
)


def _torch_values() -> Any:
    import torch

    dtypes = st.sampled_from([torch.float32, torch.float64, torch.int64, torch.uint8, torch.bool, torch.bfloat16,
                              torch.float16, torch.int16, torch.uint16, torch.complex64])

    @st.composite
    def tensors(draw: Any) -> Any:
        dtype = draw(dtypes)
        base = torch.zeros(draw(st.integers(0, 6)), dtype=dtype)
        if base.numel() > 2 and draw(st.booleans()):
            base = base[1:]
        if draw(st.booleans()) and base.numel() > 1 and base.numel() % 2 == 0:
            base = base.reshape(2, -1).t()
        if draw(st.booleans()) and dtype.is_floating_point:
            base = torch.nn.Parameter(base, requires_grad=draw(st.booleans()))
        return base

    return st.one_of(tensors(), st.builds(torch.Size, st.lists(st.integers(0, 5), max_size=3)),
                     st.sampled_from([torch.device("cpu"), torch.device("cuda", 1), torch.float16, torch.int8]))


def values(torch_too: bool = True) -> Any:
    """Objects of the policy's types, nested in containers (dict keys include numpy scalars)."""
    leaves = _atoms | _stdlib | _arrays() | _numpy_scalars() | _masked()
    if torch_too:
        leaves = leaves | _torch_values()
    key = _keys | st.tuples(_keys, _keys) | st.frozensets(st.integers(0, 5), max_size=3) | _numpy_scalars().filter(
        lambda s: s.dtype.kind in "biufcS")
    return st.recursive(leaves, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.tuples(inner, inner), st.dictionaries(key, inner, max_size=4),
        st.sets(st.integers(0, 9), max_size=3), st.builds(collections.OrderedDict, st.dictionaries(st.text(max_size=3),
                                                                                                  inner, max_size=3)),
        st.builds(lambda d: collections.defaultdict(list, d), st.dictionaries(st.text(max_size=3), inner, max_size=3)),
        st.builds(collections.deque, st.lists(inner, max_size=3), st.none() | st.integers(0, 4)),
        st.builds(collections.Counter, st.dictionaries(st.text(max_size=3), st.integers(), max_size=3)),
    ), max_leaves=10)


def pickled_values(torch_too: bool = True) -> Any:
    return st.tuples(values(torch_too), st.integers(2, 5)).map(lambda vp: pickle.dumps(vp[0], protocol=vp[1]))


# -- opcode programs ------------------------------------------------------------------------------

_GLOBALS = sorted(POLICY) + [("os", "system"), ("builtins", "eval"), ("builtins", "getattr"), ("posix", "system"),
                             ("copyreg", "_reconstructor"), ("pathlib", "PosixPath"), ("__builtin__", "set"),
                             ("numpy.core.multiarray", "_reconstruct")]


def _string(text: str) -> bytes:
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def _instruction() -> Any:
    small = st.integers(0, 6)
    return st.one_of(
        st.sampled_from([b"N", b"\x88", b"\x89", b")", b"]", b"}", b"\x8f", b"(", b"t", b"\x85", b"\x86", b"\x87",
                         b"a", b"e", b"s", b"u", b"\x90", b"\x91", b"0", b"1", b"2", b"\x94", b"R", b"b", b"\x81",
                         b"\x92", b"Q", b"\x93", b".", b"l", b"d", b"I1\n", b"\x97", b"\x82\x01"]),
        small.map(lambda k: b"K" + bytes([k])),
        st.integers(-(2 ** 31), 2 ** 31 - 1).map(lambda v: b"J" + struct.pack("<i", v)),
        st.binary(max_size=9).map(lambda b: b"\x8a" + bytes([len(b)]) + b),
        st.floats().map(lambda f: b"G" + struct.pack(">d", f)),
        st.text(max_size=8).map(_string),
        st.binary(max_size=10).map(lambda b: b"C" + bytes([len(b)]) + b),
        st.binary(max_size=10).map(lambda b: b"\x96" + struct.pack("<Q", len(b)) + b),
        small.map(lambda k: b"q" + bytes([k])), small.map(lambda k: b"h" + bytes([k])),
        st.sampled_from([0, 1, 7, 255, 2 ** 28]).map(lambda k: b"r" + struct.pack("<I", k)),
        st.sampled_from(_GLOBALS).map(lambda g: _string(g[0]) + _string(g[1]) + b"\x93"),
        st.sampled_from(_GLOBALS).map(lambda g: b"c" + g[0].encode() + b"\n" + g[1].encode() + b"\n"),
        st.sampled_from(["f4", "i8", "b1", "U2", "S3", "M8", "O8", "V4"]).map(
            lambda d: _string("numpy") + _string("dtype") + b"\x93" + _string(d) + b"\x89\x88\x87R"),
    )


@st.composite
def programs(draw: Any) -> bytes:
    """PROTO, a few dozen instructions, STOP."""
    protocol = draw(st.integers(2, 5))
    body = b"".join(draw(st.lists(_instruction(), max_size=40)))
    return bytes([0x80, protocol]) + body + b"."


# -- expression programs: well-formed pickles that reach the policy's checks -----------------------------

_VALUE_GLOBALS = sorted(k for k, e in POLICY.items() if e.value)
_CALLABLE_GLOBALS = sorted(k for k, e in POLICY.items() if e.call or e.new)
_ANY_GLOBALS = sorted(POLICY) + [("os", "system"), ("pathlib", "PosixPath")]


def _global_op(key: tuple[str, str]) -> bytes:
    return _string(key[0]) + _string(key[1]) + b"\x93"


def _atom() -> Any:
    return st.one_of(
        st.just(b"N"), st.just(b"\x88"), st.just(b"\x89"), st.integers(0, 255).map(lambda k: b"K" + bytes([k])),
        st.integers(-(2 ** 31), 2 ** 31 - 1).map(lambda v: b"J" + struct.pack("<i", v)),
        st.floats().map(lambda f: b"G" + struct.pack(">d", f)), st.text(max_size=6).map(_string),
        st.sampled_from(["latin1", "b", "C", "cpu", "f4", "U3", "M8", "1.5", "int", "is_safe", "__dict__"]).map(
            _string),
        st.binary(max_size=12).map(lambda b: b"C" + bytes([len(b)]) + b),
        st.binary(max_size=12).map(lambda b: b"\x96" + struct.pack("<Q", len(b)) + b),
        st.binary(max_size=9).map(lambda b: b"\x8a" + bytes([len(b)]) + b),
        st.sampled_from([255, 256, 257, 300]).map(lambda n: b"B" + struct.pack("<I", n) + b"z" * n),
        st.sampled_from([255, 257]).map(lambda n: b"\x96" + struct.pack("<Q", n) + b"z" * n),
    )


def _marked(items: list[bytes], closing: bytes) -> bytes:
    return b"(" + b"".join(items) + closing


def _expression(depth: int) -> Any:
    if depth <= 0:
        return _atom() | st.sampled_from(_VALUE_GLOBALS + _ANY_GLOBALS[:3]).map(_global_op)
    inner = _expression(depth - 1)
    items = st.lists(inner, max_size=4)
    return st.one_of(
        _atom(), st.sampled_from(_ANY_GLOBALS).map(_global_op),
        items.map(lambda xs: b"]" + (_marked(xs, b"e") if xs else b"")),
        items.map(lambda xs: _marked(xs, b"t")),
        st.lists(st.tuples(inner, inner), max_size=3).map(
            lambda kvs: b"}" + (_marked([k + v for k, v in kvs], b"u") if kvs else b"")),
        items.map(lambda xs: b"\x8f" + (_marked(xs, b"\x90") if xs else b"")),
        items.map(lambda xs: _marked(xs, b"\x91")),
        st.tuples(st.sampled_from(_CALLABLE_GLOBALS + _VALUE_GLOBALS[:4]), items).map(
            lambda c: _global_op(c[0]) + _marked(c[1], b"t") + b"R"),
        st.tuples(st.sampled_from(_CALLABLE_GLOBALS[:8] + [("uuid", "UUID")]), items).map(
            lambda c: _global_op(c[0]) + _marked(c[1], b"t") + b"\x81"),
        st.tuples(inner, inner).map(lambda ts: ts[0] + ts[1] + b"b"),
        st.tuples(inner, st.integers(0, 3)).map(lambda e: e[0] + b"\x94" + b"h" + bytes([e[1]]) + b"\x86"),
        inner.map(lambda e: e + b"\x94"),
    )


@st.composite
def expressions(draw: Any) -> bytes:
    """PROTO, one expression (atoms, globals, containers, calls, NEWOBJ, BUILD, memo reuse), STOP."""
    return bytes([0x80, draw(st.integers(2, 5))]) + draw(_expression(draw(st.integers(0, 3)))) + b"."


# -- attack classes with drawn parameters --------------------------------------------------------------


def _dtype_build(descr: str, state: tuple[Any, ...]) -> bytes:
    """numpy.dtype(descr, False, True) with a BUILD of ``state`` (protocol 4)."""
    return (b"\x80\x04" + _string("numpy") + _string("dtype") + b"\x93" + _string(descr) + b"\x89\x88\x87R"
            + pickle.dumps(state, protocol=4)[2:-1] + b"b.")


@st.composite
def _dtype_states(draw: Any) -> bytes:
    descr = draw(st.sampled_from(["f8", "i4", "U2", "S3", "V8", "M8", "b1"]))
    honest = np.dtype(descr).__reduce__()[2]
    state = list(honest)
    index = draw(st.integers(0, len(state) - 1))
    state[index] = draw(st.sampled_from([None, -1, 0, 1, 3, 4, 8, 16, 63, "<", ">", "|", "=", (), ("a",), True]))
    return _dtype_build(descr, tuple(state) if draw(st.booleans()) else honest)


@st.composite
def _array_states(draw: Any) -> bytes:
    array = draw(_arrays())
    data = pickle.dumps(array, protocol=4)
    raw = array.tobytes("F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C")
    if raw and raw in data and draw(st.booleans()):
        cut = draw(st.integers(-3, 3))
        new = raw[:max(0, len(raw) + cut)] if cut < 0 else raw + b"\0" * cut
        head = bytes([0x43, len(raw)]) + raw if len(raw) < 256 else None
        if head and head in data and len(new) < 256:
            data = data.replace(head, bytes([0x43, len(new)]) + new)
    return data


@st.composite
def _tensor_views(draw: Any) -> bytes:
    import torch

    tensor = torch.arange(draw(st.integers(1, 6)), dtype=torch.float32)
    data = pickle.dumps(tensor, protocol=2)
    size = struct.pack("<B", tensor.numel())
    offset, new_size, stride = draw(st.integers(0, 8)), draw(st.integers(0, 9)), draw(st.integers(0, 3))
    tail = b"K\x00K" + size + b"\x85q"
    if tail in data:
        data = data.replace(tail, b"K" + bytes([offset]) + b"K" + bytes([new_size]) + b"\x85q", 1)
    return data.replace(b"K\x01\x85q", b"K" + bytes([stride]) + b"\x85q", 1)


@st.composite
def _datetimes(draw: Any) -> bytes:
    state = draw(st.binary(min_size=10, max_size=10))
    return b"\x80\x04" + _string("datetime") + _string("datetime") + b"\x93C\x0a" + state + b"\x85R."


@st.composite
def _nested_keys(draw: Any) -> bytes:
    depth = draw(st.integers(0, 40))
    shared = draw(st.booleans())
    body = b"K\x01" + (b"\x94h\x00h\x00\x86" if shared else b"\x85") * depth
    return b"\x80\x04}" + body + b"K\x02s."


@st.composite
def _uuid_states(draw: Any) -> bytes:
    state = draw(st.dictionaries(st.sampled_from(["int", "is_safe", "x"]), st.integers(-2, 2 ** 130), max_size=3))
    return b"\x80\x04" + _string("uuid") + _string("UUID") + b"\x93)\x81" + pickle.dumps(state, protocol=4)[2:-1] + \
        b"b."


_BIG = st.sampled_from([0, 1, 2, 3, 2 ** 31, 2 ** 62 - 1, 2 ** 62, 2 ** 63, 2 ** 64, 2 ** 1023, 2 ** 1024])


def _int_op(value: int) -> bytes:
    return b"\x8a" + bytes([(value.bit_length() + 8) // 8]) + value.to_bytes((value.bit_length() + 8) // 8, "little",
                                                                               signed=True)


@st.composite
def _big_numbers(draw: Any) -> bytes:
    """Shapes, sizes and numbers at the edges of numpy's, torch's and float's ranges."""
    dims = b"(" + b"".join(_int_op(d) for d in draw(st.lists(_BIG, max_size=3))) + b"t"
    kind = draw(st.sampled_from(["frombuffer", "size", "complex", "range", "reconstruct-state", "decimal"]))
    if kind == "decimal":
        text = draw(st.sampled_from(["1", "-0", "1.5e", "1e99999999999999999999", "1e999999999999999", ".5E-7", "nan",
                                     "sNaN3", "Infinity", "1_000", " 1", "١٢", "1e-999999999999999999"]))
        return b"\x80\x05" + _global_op(("decimal", "Decimal")) + _string(text) + b"\x85R."
    if kind == "frombuffer":
        return (b"\x80\x05" + _global_op(("numpy._core.numeric", "_frombuffer")) + b"(\x96" + struct.pack("<Q", 0)
                + _global_op(("numpy", "dtype")) + _string("u1") + b"\x89\x88\x87R" + dims + _string("C") + b"tR.")
    if kind == "size":
        return b"\x80\x05" + _global_op(("torch", "Size")) + dims + b"\x85R."
    if kind == "complex":
        return b"\x80\x05" + _global_op(("builtins", "complex")) + _int_op(draw(_BIG)) + b"G" + bytes(8) + b"\x86R."
    if kind == "range":
        return b"\x80\x05" + _global_op(("builtins", "range")) + _int_op(draw(_BIG)) + b"\x85R."
    return (b"\x80\x05" + _global_op(("numpy._core.multiarray", "_reconstruct")) + _global_op(("numpy", "ndarray"))
            + b"K\x00\x85C\x01b\x87R(K\x01" + dims + _global_op(("numpy", "dtype")) + _string("f8")
            + b"\x89\x88\x87R\x89C\x00tb.")


def attacks(torch_too: bool = True) -> Any:
    sources = [_dtype_states(), _array_states(), _datetimes(), _nested_keys(), _uuid_states(), _big_numbers()]
    if torch_too:
        sources.append(_tensor_views())
    return st.one_of(*sources)


# -- mutation ---------------------------------------------------------------------------------------

_edit = st.tuples(st.integers(0, 10_000), st.integers(0, 255), st.sampled_from(["flip", "cut", "insert"]))


@st.composite
def mutated(draw: Any, source: Any) -> bytes:
    data = bytearray(draw(source))
    for at, byte, kind in draw(st.lists(_edit, max_size=3)):
        at %= len(data) + 1
        if kind == "flip" and at < len(data):
            data[at] = byte
        elif kind == "cut":
            del data[at:]
        else:
            data[at:at] = bytes([byte])
    return bytes(data)

