"""Every construct declaration round-trips: build then parse, parse then build, on Hypothesis values
and on real frames produced by the codec libraries."""

from __future__ import annotations

import io

import lz4.frame
import numpy as np
import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from atlas_format import block_v2, index_v2, lz4_frame, npy, zstd_frame
from atlas_format.binary import parse
from atlas_format.errors import FormatError

u8, u16, u32, u64 = (st.integers(0, 2**b - 1) for b in (8, 16, 32, 64))


# -- v1 index.npy ------------------------------------------------------------------------

offsets_st = st.lists(st.integers(1, 2**40), max_size=40).map(lambda steps: [0, *np.cumsum(steps).tolist()])


@given(offsets_st)
def test_npy_index_matches_np_save_and_round_trips(offsets):
    descr = npy.v1_index_dtype(offsets[-1])
    bio = io.BytesIO()
    np.save(bio, np.array(offsets, dtype=descr))
    built = npy.build_v1_index(offsets)
    assert built == bio.getvalue()
    parsed = npy.NpyIndexFile.parse(built)
    assert list(parsed.entries) == offsets
    assert npy.NpyIndexFile.build(parsed) == built


@pytest.mark.parametrize(("last", "descr"), [(0, "<u1"), (255, "<u1"), (256, "<u2"), (65535, "<u2"),
                                             (65536, "<u4"), (2**32 - 1, "<u4"), (2**32, "<u8")])
def test_v1_index_dtype_rule(last, descr):
    assert npy.v1_index_dtype(last) == descr


def test_npy_header_rejects_code_and_bad_shapes():
    evil = b"\x93NUMPY\x01\x00" + (20).to_bytes(2, "little") + b"__import__('os')    "
    with pytest.raises(FormatError) as info:
        parse(npy.NpyIndexFile, evil, path="x/index.npy")
    assert "x/index.npy" in str(info.value) and "byte offset" in str(info.value)
    two_d = npy.NpyHeader.build({"major": 1, "header": {"descr": "<u2", "fortran_order": False, "shape": (2, 2)}})
    with pytest.raises(FormatError):
        parse(npy.NpyIndexFile, two_d + bytes(8))
    signed = npy.NpyHeader.build({"major": 1, "header": {"descr": "<i4", "fortran_order": False, "shape": (1,)}})
    with pytest.raises(FormatError):
        parse(npy.NpyIndexFile, signed + bytes(4))
    truncated = npy.build_v1_index([0, 300, 600])[:-1]
    with pytest.raises(FormatError):
        parse(npy.NpyIndexFile, truncated)


# -- zstd ------------------------------------------------------------------------------------

zstd_header_st = st.builds(
    lambda size, dict_id, checksum, single: zstd_frame.frame_header_fields(size, dict_id, checksum=checksum,
                                                                           single_segment=single),
    st.one_of(st.none(), u64), st.one_of(st.none(), u32), st.booleans(), st.booleans())


@given(zstd_header_st)
def test_zstd_frame_header_build_parse_build(fields):
    built = zstd_frame.ZstdFrameHeader.build(fields)
    parsed = zstd_frame.ZstdFrameHeader.parse(built)
    assert zstd_frame.ZstdFrameHeader.build(parsed) == built
    assert parsed.dict_id == (fields["dict_id"] or None)
    if fields["fcs_field"] is not None:
        assert parsed.content_size is not None


@given(st.binary(max_size=3000), st.integers(1, 19))
def test_zstd_header_agrees_with_libzstd(data, level):
    frame = zstandard.ZstdCompressor(level=level).compress(data)
    header = zstd_frame.ZstdFrameHeader.parse(frame)
    params = zstandard.get_frame_parameters(frame)
    assert header.content_size == params.content_size == len(data)
    assert (header.dict_id or 0) == params.dict_id
    assert frame.startswith(zstd_frame.ZstdFrameHeader.build(header))


def test_zstd_dictionary_header_and_frames_with_dictionary():
    samples = [(f"sample {i} " * (i % 13 + 3)).encode() for i in range(400)]
    trained = zstandard.train_dictionary(2048, samples)
    raw = trained.as_bytes()
    parsed = zstd_frame.ZstdDictionary.parse(raw)
    assert parsed.dict_id == trained.dict_id()
    assert zstd_frame.ZstdDictionary.build(parsed) == raw
    frame = zstandard.ZstdCompressor(dict_data=trained).compress(samples[5])
    assert zstd_frame.ZstdFrameHeader.parse(frame).dict_id == trained.dict_id()
    with pytest.raises(FormatError):
        parse(zstd_frame.ZstdDictionary, b"\x00" * 16)


@given(u32, st.binary(max_size=64))
def test_zstd_dictionary_build_parse(dict_id, body):
    value = {"dict_id": dict_id, "body": body}
    assert zstd_frame.ZstdDictionary.parse(zstd_frame.ZstdDictionary.build(value)).dict_id == dict_id


# -- lz4 ---------------------------------------------------------------------------------------


@given(st.one_of(st.none(), u64), st.sampled_from([4, 5, 6, 7]), st.booleans(), st.booleans())
def test_lz4_frame_header_build_parse_build(size, bmax, indep, cksum):
    fields = lz4_frame.frame_header_fields(size, block_max_size=bmax, block_independence=indep,
                                           content_checksum=cksum)
    built = lz4_frame.Lz4FrameHeader.build(fields)
    parsed = lz4_frame.Lz4FrameHeader.parse(built)
    assert parsed.descriptor.value.content_size == size
    assert lz4_frame.Lz4FrameHeader.build({"descriptor": {"value": parsed.descriptor.value}}) == built


@given(st.binary(min_size=1, max_size=3000), st.integers(0, 12))
def test_lz4_header_agrees_with_liblz4(data, level):
    frame = lz4.frame.compress(data, compression_level=level, store_size=True)
    header = lz4_frame.Lz4FrameHeader.parse(frame)
    assert header.descriptor.value.content_size == len(data)
    assert frame.startswith(lz4_frame.Lz4FrameHeader.build({"descriptor": {"value": header.descriptor.value}}))


def test_lz4_header_checksum_is_checked():
    frame = bytearray(lz4.frame.compress(b"hello world" * 10, store_size=True))
    frame[6] ^= 0xFF  # inside the content size: the header checksum no longer matches
    with pytest.raises(FormatError):
        parse(lz4_frame.Lz4FrameHeader, bytes(frame))


# -- v2 index ----------------------------------------------------------------------------------

entry_st = st.tuples(u64, u32, u32, u64)
header_st = st.fixed_dictionaries({
    "codec": st.integers(0, 2), "dictionary": st.sampled_from(["none", "shared", "shard"]),
    "checksum_algorithm": st.just(1), "block_size": u32, "block_count": st.integers(0, 50),
    "example_count": u64, "data_size": u64, "dict_id": u32,
})


@given(header_st, st.data())
def test_v2_index_build_parse_build(header, data):
    entries = data.draw(st.lists(entry_st, min_size=header["block_count"], max_size=header["block_count"]))
    built = index_v2.build_index(index_v2.header_value(**header), entries)
    assert len(built) == 64 + 24 * len(entries)
    parsed = index_v2.IndexFile.parse(built)
    assert [tuple(e.entry.values())[1:] if False else (e.entry.offset, e.entry.stored_size, e.entry.raw_size,
                                                        e.entry.checksum) for e in parsed.entries] == entries
    assert parsed.header.checksum == index_v2.compute_index_checksum(built)
    assert index_v2.IndexFile.build(parsed) == built
    # the numpy views derived from the declarations read the same values
    head = np.frombuffer(built, dtype=index_v2.INDEX_HEADER_DTYPE, count=1)[0]
    assert int(head["block_count"]) == header["block_count"] and int(head["dict_id"]) == header["dict_id"]
    arr = np.frombuffer(built, dtype=index_v2.INDEX_ENTRY_DTYPE, offset=64)
    assert [tuple(int(x) for x in row) for row in arr] == entries


def test_v2_index_header_extension_is_skipped_and_checksummed():
    header = index_v2.header_value(codec=1, dictionary="none", checksum_algorithm=1, block_size=4,
                                   block_count=1, example_count=3, data_size=10, dict_id=0)
    header["header_size"] = 72
    header["entry_size"] = 28
    body = index_v2.IndexHeader.build({**header, "checksum": 0}) + b"EXTENDED" + (
        index_v2.IndexEntry.build({"offset": 0, "stored_size": 10, "raw_size": 20, "checksum": 5}) + b"more")
    checksum = index_v2.compute_index_checksum(body)
    data = index_v2.IndexHeader.build({**header, "checksum": checksum}) + body[64:]
    parsed = index_v2.IndexFile.parse(data)
    assert parsed.extension == b"EXTENDED" and parsed.entries[0].entry.raw_size == 20
    assert parsed.header.checksum == index_v2.compute_index_checksum(data)


def test_v2_index_rejects_bad_magic_and_truncation():
    good = index_v2.build_index(index_v2.header_value(codec=0, dictionary="none", checksum_algorithm=1,
                                                      block_size=1, block_count=2, example_count=2,
                                                      data_size=2, dict_id=0), [(0, 1, 1, 0), (1, 1, 1, 0)])
    with pytest.raises(FormatError):
        parse(index_v2.IndexFile, b"ATLASIDY" + good[8:])
    with pytest.raises(FormatError) as info:
        parse(index_v2.IndexFile, good[:-3], path="s/index.bin")
    assert info.value.offset is not None and info.value.offset > 64


# -- v2 block ------------------------------------------------------------------------------------


@given(st.lists(st.binary(min_size=1, max_size=50), max_size=30))
def test_v2_block_build_parse_build(examples):
    encoded = block_v2.encode_block(examples)
    assert encoded == block_v2.Block.build({"examples": examples})
    parsed = block_v2.Block.parse(encoded)
    assert list(parsed.examples) == examples
    assert parsed.count == len(examples)
    table = block_v2.BlockTable.parse(encoded)
    assert len(encoded) == block_v2.table_size(len(examples)) + table.offsets[-1]
    for j, ex in enumerate(examples):  # the fast path reads one example through the table alone
        start, end = block_v2.U32_PAIR.unpack_from(encoded, block_v2.COUNT_SIZE + 4 * j)
        base = block_v2.table_size(len(examples))
        assert encoded[base + start:base + end] == ex


def test_v2_block_rejects_trailing_bytes_and_short_payload():
    encoded = block_v2.encode_block([b"ab", b"cde"])
    with pytest.raises(FormatError):
        parse(block_v2.Block, encoded + b"x")
    with pytest.raises(FormatError):
        parse(block_v2.Block, encoded[:-1])
