"""The validator's own decoder of typed examples (atlas_validator.typed_scan, spec TYPED-2..5): it decodes what
the reference encodes to the values the reference's msgspec decoder returns, reports every broken rule under
its id with the offset of the defect, and stays linear on hostile bytes (no recursion past the depth limit,
no allocation from a declared length)."""

from __future__ import annotations

import struct
import time
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from typed_trees import TREES, same

from atlas_format import typed
from atlas_validator.typed_scan import TensorValue, scan_typed
from torch_atlas_ds.errors import FormatError
from torch_atlas_ds.typed_codec import TypedDecoder, encode

DECODER = TypedDecoder()


def as_validator_sees(value: Any) -> Any:
    """The reference's value with tensors as the validator's TensorValue."""
    if isinstance(value, torch.Tensor):
        raw = value.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b""
        return TensorValue(str(value.dtype).removeprefix("torch."), tuple(value.shape), raw)
    if isinstance(value, list):
        return [as_validator_sees(v) for v in value]
    if isinstance(value, tuple):
        return tuple(as_validator_sees(v) for v in value)
    if isinstance(value, dict):
        return {k: as_validator_sees(v) for k, v in value.items()}
    return value


@settings(max_examples=200, deadline=None)
@given(TREES)
def test_the_validator_decodes_what_the_reference_encodes_to_the_same_values(tree):
    data = encode(tree)
    value, issues = scan_typed(data)
    assert issues == []
    assert same(value, DECODER.decode(data))


def test_tensors_and_every_dtype_decode_alike():
    value = {"t": torch.arange(6, dtype=torch.bfloat16).reshape(2, 3), "b": torch.tensor([True, False]),
             "a": [np.arange(4, dtype=d.numpy) for d in typed.DTYPES if d.numpy and d.name != "bool"],
             "e": torch.empty((0, 4), dtype=torch.float16)}
    got, issues = scan_typed(encode(value))
    assert issues == []
    assert all(same(a, b) for a, b in zip(got["a"], value["a"], strict=True))
    for key in ("t", "b", "e"):
        assert got[key] == as_validator_sees(value[key]), key


def ext32(code: int, payload: bytes) -> bytes:
    return b"\xc9" + struct.pack(">I", len(payload)) + struct.pack(">b", code) + payload


def array_ext(shape: tuple[int, ...] = (2, 3), dtype: int = 6, pad: int = 0, reserved: int = 0,
              data: bytes | None = None, pad_bytes: bytes | None = None, code: int = typed.EXT_NDARRAY) -> bytes:
    head = typed.ARRAY_HEAD.pack(dtype, len(shape), pad, reserved) + typed.shape_struct(len(shape)).pack(*shape)
    entry = typed.DTYPE_BY_CODE.get(dtype)
    body = data if data is not None else bytes(int(np.prod(shape)) * (entry.itemsize if entry else 1))
    return ext32(code, head + (pad_bytes if pad_bytes is not None else bytes(pad)) + body)


def aligned(ext: bytes, before: bytes = b"\x92") -> bytes:
    """``before`` then ``ext`` with its data on 16 bytes: a str of the right length between them."""
    for filler in range(64):
        data = before + (b"\xd9" + bytes((filler,)) + b"x" * filler) + ext
        head = len(before) + 2 + filler + 6
        _, ndim, pad, _ = typed.ARRAY_HEAD.unpack_from(data, head)
        if (head + typed.header_size(ndim) + pad) % typed.ALIGNMENT == 0:
            return data
    raise AssertionError("no filler aligns it")


@pytest.mark.parametrize("data, finding, words", [
    (b"\x92\x01", "ATL700", "truncated"),
    (b"\xc1", "ATL700", "0xc1"),
    (b"\x01\x02", "ATL700", "1 bytes follow"),
    (b"\xdd\x00\x00\x10\x00\x01", "ATL700", "declares 4096 items in 6 bytes"),
    (b"\x82\xcb" + struct.pack(">d", 1.5) + b"\x01\xa1a\x02", "ATL701", "is float, not str or int"),
    (b"\x82\xa1a\x01\xa1a\x02", "ATL701", "'a' at offset 4 appears twice"),
    (b"\x81\xc0\x01", "ATL701", "is NoneType"),
    (b"\xa2\xc3\x28", "ATL702", "not UTF-8"),
    (b"\xa3\xed\xa0\x80", "ATL702", "not UTF-8"),  # an encoded surrogate
    (ext32(7, b"\x00"), "ATL703", "extension type 7"),
    (ext32(typed.EXT_TUPLE, b"\x01"), "ATL703", "not an array"),
    (ext32(typed.EXT_TUPLE, b"\x90\x01"), "ATL703", "1 bytes after its array"),
    (aligned(array_ext(data=bytes(7))), "ATL704", "takes 6 bytes, the payload holds 7"),
    (aligned(array_ext(dtype=99, data=b"")), "ATL704", "dtype code 99 is not in the table"),
    (aligned(array_ext(dtype=11, data=bytes(12))), "ATL704", "bfloat16 is for tensors only"),
    (aligned(array_ext(pad=16)), "ATL704", "pad 16 is not below 16"),
    (aligned(array_ext(reserved=1)), "ATL704", "reserved is 1"),
    (aligned(array_ext(shape=(2,), dtype=1, data=b"\x00\x02")), "ATL704", "other than 0 and 1"),
    (array_ext(code=typed.EXT_NDARRAY, data=bytes(6)), "ATL705", "not a multiple of 16"),
    (b"\x91" * 65 + b"\xc0", "ATL706", "nests 65 containers deep"),
    (b"\xdd\x01\x00\x00\x01" + b"\xc0", "ATL706", "above the limit of 16777216"),
])
def test_each_broken_rule_is_reported_under_its_id_at_its_offset(data, finding, words):
    _, issues = scan_typed(data)
    found = [i for i in issues if i.id == finding]
    assert found and words in found[0].message, issues
    assert 0 <= found[0].offset <= len(data)


def test_nonzero_pad_bytes_are_reported():
    ext = array_ext(pad=3, pad_bytes=b"\x00\x07\x00")
    for filler in range(32):
        data = b"\x92" + b"\xd9" + bytes((filler,)) + b"x" * filler + ext
        head = 1 + 2 + filler + 6
        if (head + typed.header_size(2) + 3) % typed.ALIGNMENT == 0:
            break
    _, issues = scan_typed(data)
    assert [i.id for i in issues] == ["ATL704"] and "pad bytes are not zero" in issues[0].message


def test_a_depth_bomb_and_a_length_bomb_cost_no_recursion_and_no_allocation():
    start = time.perf_counter()
    _, deep = scan_typed(b"\x91" * 1_000_000 + b"\xc0")
    _, wide = scan_typed(b"\xdf\x7f\xff\xff\xff")
    assert [i.id for i in deep] == ["ATL706"] and [i.id for i in wide] == ["ATL706"]
    assert time.perf_counter() - start < 5  # linear, bounded: it stops at the first container past the limit
    limit: Any = []
    for _ in range(typed.MAX_DEPTH - 1):
        limit = [limit]
    assert scan_typed(encode(limit)) == (limit, [])  # exactly the limit: what the writer writes, the validator passes


@pytest.mark.parametrize("data", [
    aligned(array_ext(data=bytes(7))), ext32(7, b"\x00"), b"\x92\x01", b"\x01\x02",
    aligned(array_ext(shape=(2,), dtype=1, data=b"\x00\x02")), ext32(typed.EXT_TUPLE, b"\x01"),
])
def test_what_the_reader_refuses_the_validator_reports(data):
    with pytest.raises(FormatError):
        DECODER.decode(data)
    _, issues = scan_typed(data)
    assert any(i.id != "ATL705" for i in issues)


def test_atlas_validate_says_typed_examples_are_never_unpickled(tmp_path):
    import json
    import subprocess
    import sys

    from atlas_format.testing.vectors import default_vectors_root

    vectors = default_vectors_root()
    assert vectors is not None
    for name, verdict in (("v2/28-typed-block", "every example decodes"),
                          ("invalid/v2-typed-wrong-shape-sealed", "not every example decodes")):
        dataset = vectors / name / "dataset"
        text = subprocess.run([sys.executable, "-m", "atlas_validator", str(dataset)], capture_output=True,
                              text=True).stdout
        assert f"typed examples (MessagePack, never unpickled): {verdict}" in text and "safe loading" not in text
        report = json.loads(subprocess.run([sys.executable, "-m", "atlas_validator", str(dataset), "--format",
                                            "json"], capture_output=True, text=True).stdout)
        assert report["reports"][0]["encoding"] == "typed"
    grouped = vectors / "v2/21-grouped-shared-dict/dataset"
    pickled = subprocess.run([sys.executable, "-m", "atlas_validator", str(grouped), "--format", "json"],
                             capture_output=True, text=True).stdout
    assert json.loads(pickled)["reports"][0]["encoding"] == "pickle"
