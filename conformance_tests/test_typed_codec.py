"""Typed examples (spec TYPED-2..6), the encoding of one example: the reference's encoder and msgspec decoder
round-trip every value of the closed type set exactly, place array data on ALIGNMENT, refuse what the set
does not hold by the value's path, and refuse damaged payloads with FormatError; a second MessagePack
implementation (msgpack) reads the same bytes as the same MessagePack values."""

from __future__ import annotations

import math
import pickle
import struct
from typing import Any

import msgpack
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from typed_trees import NUMPY_DTYPES, TORCH_DTYPES, TREES, array_of, same

from atlas_format import typed
from torch_atlas_ds.errors import FormatError
from torch_atlas_ds.typed_codec import TypedDecoder, encode, encode_walk

DECODER = TypedDecoder()

def _skip(data: bytes, at: int, found: list[int]) -> int:
    """Where the MessagePack object at ``at`` ends; appends where each array or tensor's data starts (a walk of
    the format's headers written for this test, independent of both codecs)."""
    b = data[at]
    sized = {0xC4: (1, 0), 0xC5: (2, 0), 0xC6: (4, 0), 0xD9: (1, 0), 0xDA: (2, 0), 0xDB: (4, 0)}
    if b <= 0x7F or b >= 0xE0 or b in (0xC0, 0xC2, 0xC3):
        return at + 1
    if 0xA0 <= b <= 0xBF:
        return at + 1 + (b & 0x1F)
    if b in sized:
        width = sized[b][0]
        return at + 1 + width + int.from_bytes(data[at + 1:at + 1 + width], "big")
    fixed = {0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}
    if b in fixed:
        return at + 1 + fixed[b]
    if 0x90 <= b <= 0x9F or 0x80 <= b <= 0x8F or b in (0xDC, 0xDD, 0xDE, 0xDF):
        width = {0xDC: 2, 0xDD: 4, 0xDE: 2, 0xDF: 4}.get(b, 0)
        count = (b & 0x0F) if not width else int.from_bytes(data[at + 1:at + 1 + width], "big")
        at += 1 + width
        for _ in range(count * (2 if b in (0xDE, 0xDF) or 0x80 <= b <= 0x8F else 1)):
            at = _skip(data, at, found)
        return at
    assert b == 0xC9, f"the encoder writes every extension as ext 32, found {b:#x}"
    size, code = int.from_bytes(data[at + 1:at + 5], "big"), data[at + 5]
    payload = at + 6
    if code == typed.EXT_TUPLE:
        assert _skip(data, payload, found) == payload + size
    else:
        _, ndim, pad, _ = typed.ARRAY_HEAD.unpack_from(data, payload)
        found.append(payload + typed.header_size(ndim) + pad)
    return payload + size


def data_offsets(data: bytes) -> list[int]:
    """Where each array or tensor's data starts in typed bytes."""
    found: list[int] = []
    assert _skip(data, 0, found) == len(data)
    return found


@settings(max_examples=200, deadline=None)
@given(TREES)
def test_random_trees_round_trip_exactly(tree):
    data = encode(tree)
    assert same(DECODER.decode(data), tree)
    assert all(at % typed.ALIGNMENT == 0 for at in data_offsets(data))
    assert encode(DECODER.decode(data)) == data  # one encoding per value
    assert encode_walk(tree) == data  # msgspec's bytes for plain trees are the walk's


@pytest.mark.parametrize("entry", NUMPY_DTYPES, ids=lambda e: e.name)
@pytest.mark.parametrize("shape", [(), (0,), (5,), (2, 3), (1, 2, 3, 1)])
def test_every_numpy_dtype_round_trips_with_its_data_aligned(entry, shape):
    for lead in range(17):  # every offset the array can start at
        value = ["x" * lead, array_of(entry, shape, lead)]
        data = encode(value)
        for out in (DECODER.decode(data), DECODER.decode(data)):  # checked, then the hook's fast case
            assert same(out, value), (out, value)
            assert out[1].flags.writeable and out[1].flags.c_contiguous and out[1].flags.aligned
        offsets = data_offsets(data)
        assert len(offsets) == 1 and offsets[0] % typed.ALIGNMENT == 0, offsets


@pytest.mark.parametrize("entry", TORCH_DTYPES, ids=lambda e: e.name)
def test_every_torch_dtype_round_trips(entry):
    dtype = getattr(torch, entry.torch)
    raw = torch.arange(64, dtype=torch.uint8)
    if entry.name == "bool":
        value = torch.tensor([[True, False, True], [False, False, True]])
    else:
        value = raw.view(dtype).reshape(2, -1)
    out = DECODER.decode(encode({"t": value, "empty": torch.empty((0, 2), dtype=dtype)}))
    assert same(out["t"], value) and out["t"].dtype is dtype and out["empty"].shape == (0, 2)


def test_strides_and_byte_order_are_normalised():
    big = np.arange(12, dtype=">i4").reshape(3, 4)[:, ::2]
    out = DECODER.decode(encode(big))
    assert out.dtype == np.dtype("<i4") and out.flags.c_contiguous and (out == big).all()
    t = torch.arange(12, dtype=torch.float32).reshape(3, 4).t()
    back = DECODER.decode(encode(t))
    assert back.is_contiguous() and torch.equal(back, t)


def test_nan_payloads_negative_zero_and_the_integer_range_keep_their_bits():
    nan = struct.unpack("<d", b"\x01\x00\x00\x00\x00\x00\xf8\x7f")[0]
    value = [nan, -0.0, float("inf"), typed.INT_MAX, typed.INT_MIN, 0, -1, 127, 128, -32, -33]
    out = DECODER.decode(encode(value))
    assert same(out, value) and struct.pack("<d", out[0]) == struct.pack("<d", nan)
    assert math.copysign(1.0, out[1]) == -1.0


def test_ten_deep_and_empty_containers_round_trip():
    value: Any = {"leaf": ()}
    for k in range(10):
        value = [value, (k,), {}, []] if k % 2 else {"k": value, "t": ()}
    assert same(DECODER.decode(encode(value)), value)


@pytest.mark.parametrize("value, path, what", [
    ({"meta": {"when": __import__("datetime").datetime(2020, 1, 1)}}, "['meta']['when']", "datetime.datetime"),
    ([1, {2, 3}], "[1]", "set"),
    ({"a": (1, object())}, "['a'][1]", "object"),
    ({"x": np.float32(1)}, "['x']", "numpy.float32"),
    ({"x": bytearray(b"1")}, "['x']", "bytearray"),
    ({"x": np.array(["a"])}, "['x']", "dtype <U1"),
    ({"x": np.ma.array([1])}, "['x']", "MaskedArray"),
    ({"x": [2**64]}, "['x'][0]", "above 2**64 - 1"),
    ({"x": -(2**63) - 1}, "['x']", "below -2**63"),
    ({"x": "\ud800"}, "['x']", "lone surrogate"),
    ({(1,): 2}, "the example", "dict key of type tuple"),
    ({1.5: 2}, "the example", "dict key of type float"),
])
def test_a_value_outside_the_type_set_is_a_type_error_naming_its_path(value, path, what):
    with pytest.raises(TypeError) as info:
        encode(value)
    assert str(info.value).startswith(path + ": ") and what in str(info.value)


def test_a_custom_class_and_containers_beyond_the_limits_are_refused():
    class Point:
        pass

    with pytest.raises(TypeError, match=r"^\['p'\]: .*Point is not encodable"):
        encode({"p": Point()})
    deep: Any = []
    for _ in range(typed.MAX_DEPTH):
        deep = [deep]
    with pytest.raises(TypeError, match=f"nested deeper than {typed.MAX_DEPTH}"):
        encode(deep)
    inner: Any = []
    for _ in range(typed.MAX_DEPTH - 1):
        inner = [inner]
    assert same(DECODER.decode(encode(inner)), inner)  # exactly MAX_DEPTH: allowed


def test_a_second_msgpack_implementation_reads_the_same_values():
    value = {"text": "héllo", 7: [1, -2, 2**63, None, True, 1.5, b"\x00\x01"], "t": (1, 2)}
    decoded = msgpack.unpackb(encode(value), strict_map_key=False, raw=False,
                              ext_hook=lambda code, data: (code, msgpack.unpackb(data)))
    assert decoded == {"text": "héllo", 7: [1, -2, 2**63, None, True, 1.5, b"\x00\x01"], "t": (3, [1, 2])}


def _array_bytes(shape: tuple[int, ...] = (2, 3), dtype: int = 6, pad: int | None = None, extra: int = 0,
                 data: bytes | None = None) -> bytes:
    head = typed.ArrayHeader.build({"dtype": dtype, "ndim": len(shape), "pad": pad or 0, "shape": list(shape)})
    body = data if data is not None else bytes(int(np.prod(shape)) + extra)
    payload = head + bytes(pad or 0) + body
    return b"\xc9" + struct.pack(">I", len(payload)) + bytes((typed.EXT_NDARRAY,)) + payload


@pytest.mark.parametrize("data, words", [
    (_array_bytes(extra=1), "takes 6 bytes, its payload holds 7"),
    (_array_bytes(extra=-1), "takes 6 bytes, its payload holds 5"),
    (_array_bytes(dtype=99), "unknown dtype code 99"),
    (_array_bytes(dtype=11, data=bytes(12)), "bfloat16, which numpy has not"),
    (_array_bytes(shape=(2,), dtype=1, data=b"\x00\x02"), "bool array holds a byte other than 0 and 1"),
    (_array_bytes(pad=16), "pad 16"),
    (b"\xc9\x00\x00\x00\x02\x01\x06\x01", "shorter than its header"),
    (b"\xc9\x00\x00\x00\x01\x07\x00", "unknown MessagePack extension type 7"),
    (b"\xc9\x00\x00\x00\x01\x03\x01", "a tuple's payload holds int"),
    (b"\x92\x01", "truncated"),
    (b"\x01\x02", "trailing"),
    (b"\x91" * 100_000 + b"\xc0", "nests containers too deeply"),
    (b"\xdd\x7f\xff\xff\xff", "truncated"),
])
def test_damaged_typed_bytes_are_a_format_error(data, words):
    with pytest.raises(FormatError) as info:
        DECODER.decode(data)
    assert words in str(info.value)


def test_decoding_never_unpickles(monkeypatch):
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("pickle was called")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    value = {"a": np.arange(4, dtype=np.float32), "t": torch.ones(2, dtype=torch.bfloat16), "u": (1, [2])}
    assert same(DECODER.decode(encode(value)), value)


def test_the_array_header_fast_path_is_the_declaration():
    built = typed.ArrayHeader.build({"dtype": 13, "ndim": 3, "pad": 5, "shape": [2, 0, 7]})
    assert typed.ARRAY_HEAD.unpack_from(built) == (13, 3, 5, 0)
    assert typed.shape_struct(3).unpack_from(built, typed.ARRAY_HEAD.size) == (2, 0, 7)
    assert len(built) == typed.header_size(3)
    assert [d.code for d in typed.DTYPES] == list(range(1, 16))
    assert {d.name for d in typed.DTYPES if d.numpy is None} == {"bfloat16"}


def test_the_decoders_header_table_is_bounded_and_never_skips_a_check():
    decoder = TypedDecoder()
    many = [np.zeros((1, k), np.uint8) for k in range(TypedDecoder.LAYOUTS + 50)]  # a header per shape
    assert all(np.array_equal(decoder.decode(encode(a)), a) for a in many)
    assert len(decoder._layouts) <= TypedDecoder.LAYOUTS
    data = encode(np.arange(6, dtype=np.int32).reshape(2, 3))
    assert np.array_equal(decoder.decode(data), np.arange(6).reshape(2, 3))
    assert data[0] == 0xC9  # ext 32: u32 payload size, then the type
    short = data[:1] + (int.from_bytes(data[1:5], "big") - 1).to_bytes(4, "big") + data[5:-1]
    with pytest.raises(FormatError, match=r"takes 24 bytes"):  # the header is known, the payload one byte short
        decoder.decode(short)
    flags = encode(np.array([True, False]))
    assert decoder.decode(flags).tolist() == [True, False]
    with pytest.raises(FormatError, match="other than 0 and 1"):  # checked on every bool array, known header or not
        decoder.decode(flags[:-1] + b"\x02")
    assert len(decoder._by_size) <= TypedDecoder.LAYOUTS


def test_arrays_of_one_payload_size_and_other_headers_alternate_exactly():
    """The hook's fast case is keyed by payload size: arrays of the same size with another shape, dtype or bool
    must each be decoded by their own header, in any order, however often they alternate."""
    decoder = TypedDecoder()
    rng = np.random.default_rng(5)
    kinds = [rng.integers(0, 2, (6, 4), dtype=np.uint8), rng.integers(0, 2, (4, 6), dtype=np.uint8),
             rng.integers(0, 2, (24,), dtype=np.uint8).reshape(2, 12), rng.integers(0, 2, (4, 6)).astype(bool),
             rng.integers(0, 2, (4, 6), dtype=np.int8)]
    payloads = {len(encode(k)) for k in kinds[:2] + kinds[3:]}
    assert len(payloads) == 1  # the same size, other headers
    for k in [0, 1, 2, 3, 4, 1, 0, 3, 3, 4, 0] * 3:
        got = decoder.decode(encode({"a": kinds[k]}))["a"]
        assert got.dtype == kinds[k].dtype and got.shape == kinds[k].shape and np.array_equal(got, kinds[k])
    bad = bytearray(encode(kinds[3]))
    bad[-1] = 2
    with pytest.raises(FormatError, match="other than 0 and 1"):  # a bool array of a known size is still checked
        decoder.decode(bytes(bad))
    tensor = decoder.decode(encode(torch.arange(3, dtype=torch.bfloat16)))
    assert tensor.dtype == torch.bfloat16 and tensor.tolist() == [0.0, 1.0, 2.0]
