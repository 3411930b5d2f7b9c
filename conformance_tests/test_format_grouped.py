"""Framing grouped's declarations (atlas_format.grouped, V2-FRAME-6..9) and its magicless zstd frames
(V2-CODEC-4), checked with the standard pickle module: any part a random read unpickles gives the
example that the whole block gives."""

from __future__ import annotations

import json
import pickle
from typing import Any

import grouped_vectors as gv
import jsonschema
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from atlas_format import codecs, grouped, zstd_frame
from atlas_format.constants import Limits
from atlas_format.enums import INDEX_FLAG_GROUPED_BLOCKS, Codec, Framing
from atlas_format.errors import CodecError, LimitError
from atlas_format.metadata import load_schema


def _layout(examples: list[Any]) -> tuple[bytes, list[bytes]]:
    """(preamble, slices) as V2-FRAME-6 describes: shared objects memoized once, slices after it (the
    validator tests' independent writer, ``grouped_vectors``)."""
    preamble, memo = gv.preamble_of(examples)
    return preamble, [gv.slice_of(e, memo) for e in examples]


def _random_read(stored: bytes, preamble: bytes, n: int, k: int, decode: Any, raw_size: int, group: int) -> Any:
    """V2-FRAME-9's random read of example k of a shard of groups of ``group``."""
    m = grouped.frames(n)
    if m == 1:
        raw = decode(stored)
        start, offsets = grouped.group_table(raw, n, group)
        q, pos = grouped.group_of(n, k, group)
        size = grouped.group_size(n, group)
        part = pickle.loads(raw[:start] + raw[start + offsets[q]:start + offsets[q + 1]] + grouped.LIST_END)
        assert len(part) == min(size, n - q * size)
        return part[pos]
    j, within = divmod(k, grouped.FRAME_EXAMPLES)
    q, pos = divmod(within, group)
    lo, hi = grouped.frame_span(stored, n, j, len(stored), raw_size)
    frame = decode(stored[lo:hi])
    offsets = grouped.read_head(stored, n, raw_size, group)[1][j]
    end = len(frame) - (len(grouped.LIST_END) if j == m - 1 else 0)
    a, b = grouped.frame_group_span(offsets, q, len(preamble) if j == 0 else 0, end)
    part = pickle.loads(preamble + frame[a:b] + grouped.LIST_END)
    assert len(part) == min(group, grouped.frame_counts(n)[j] - q * group)
    return part[pos]


EXAMPLE = st.fixed_dictionaries({"text": st.text(max_size=40), "label": st.integers(-5, 10**12),
                                 "tags": st.lists(st.sampled_from(["a", "bb", "ccc"]), max_size=3)})


@settings(max_examples=40, deadline=None)
@given(examples=st.lists(EXAMPLE, min_size=1, max_size=80), codec=st.sampled_from(list(Codec)),
       group=st.sampled_from(grouped.GROUP_SIZES))
def test_every_part_a_random_read_takes_gives_the_in_order_example(examples, codec, group):
    info = codecs.codec_info(codec, magicless=True)
    compress = info.compressor(3, None)
    dctx = codecs.zstd_decompressor(magicless=True) if codec is Codec.ZSTD else None
    preamble, slices = _layout(examples)
    decoded = grouped.encode_frames(preamble, slices, group)
    n = len(examples)
    raw_size = sum(map(len, decoded))
    groups_of = grouped.frame_group_offsets(slices, group) if n > grouped.FRAME_EXAMPLES else None
    stored = grouped.stored_block([compress(f) for f in decoded], groups_of, raw_size)
    assert len(decoded) == grouped.frames(n)
    whole = b"".join(decoded)
    assert whole.startswith(b"\x80\x03") and whole.endswith(grouped.LIST_END)
    assert pickle.loads(whole) == examples
    if n <= grouped.FRAME_EXAMPLES:
        table = grouped.GroupTable.parse(decoded[0], groups=grouped.groups(n, group))
        assert table.start == grouped.group_table(decoded[0], n, group)[0]
        assert decoded[0][table.start - len(preamble) + 2:table.start] == preamble[2:]
        assert table.offsets[0] == 0 and table.offsets[-1] == len(whole) - table.start - 2
    else:
        assert decoded[0].startswith(preamble)
        interior = grouped.interior_groups(n, group)
        head = grouped.GroupedHead.parse(stored, frames=grouped.frames(n), interior=sum(interior),
                                         width=grouped.offset_width(raw_size))
        starts, offsets = grouped.read_head(stored, n, raw_size, group)
        assert list(head.starts) == list(starts[1:])
        assert list(starts) == sorted(set(starts)) and starts[0] == grouped.head_size(n, raw_size, group)
        assert [o for frame in offsets for o in frame] == list(head.group_offsets)
        assert [len(o) for o in offsets] == interior
    assert not grouped.is_fallback(stored, n, decoded[0], raw_size, group)

    def decode(frame: bytes) -> bytes:
        return codecs.decode(info, frame, dctx)

    for k in range(n):
        assert _random_read(stored, preamble, n, k, decode, raw_size, group) == examples[k]


@pytest.mark.parametrize("n,size,count", [(1, 1, 1), (8, 1, 8), (9, 2, 5), (16, 2, 8), (17, 3, 6), (32, 4, 8)])
def test_group_sizes_follow_the_rule(n, size, count):
    assert (grouped.group_size(n), grouped.groups(n), grouped.frames(n)) == (size, count, 1)
    assert (grouped.group_size(n, 4), grouped.groups(n, 4)) == (size, count)  # at most 8 groups of at most 4


@pytest.mark.parametrize("n,group,size,count", [(32, 2, 2, 16), (17, 2, 2, 9), (8, 2, 1, 8), (32, 1, 1, 32),
                                                (1, 1, 1, 1)])
def test_a_smaller_group_size_caps_the_groups_of_a_one_frame_block(n, group, size, count):
    assert (grouped.group_size(n, group), grouped.groups(n, group)) == (size, count)


@pytest.mark.parametrize("mean,group", [(100, 8), (255, 8), (256, 8), (511, 8), (512, 4), (1023, 4), (1024, 2),
                                        (2047, 2), (2048, 1), (3180, 1)])
def test_writers_choose_the_smallest_group_of_at_least_2_kib(mean, group):
    assert grouped.choose_group(mean) == group


def test_the_group_size_is_in_index_flags_bits_3_and_4_and_in_meta_json():
    assert [grouped.group_flags(g) for g in grouped.GROUP_SIZES] == [0x00, 0x08, 0x10, 0x18]
    assert [grouped.group_of_flags(INDEX_FLAG_GROUPED_BLOCKS | f) for f in (0, 8, 16, 24)] == [8, 4, 2, 1]
    assert Framing.from_index_flags(INDEX_FLAG_GROUPED_BLOCKS | 0x18) is Framing.GROUPED
    assert grouped.group_member(8) == {} and grouped.group_member(2) == {"group_size": 2}
    assert grouped.group_of_meta({}) == 8 and grouped.group_of_meta({"group_size": 1}) == 1
    for bad in (3, 16, 0, True, 8.0, "8"):
        with pytest.raises(ValueError, match="group_size must be one of 8, 4, 2, 1"):
            grouped.group_of_meta({"group_size": bad})


def test_frames_of_32_and_the_fallback_marker():
    assert [grouped.frames(n) for n in (1, 32, 33, 64, 65)] == [1, 1, 2, 2, 3]
    data = pickle.dumps(list(range(70)), protocol=4)
    stored = grouped.fallback_block(70, data, len(data))
    head = grouped.head_size(70, len(data))
    assert head == 8 + 2 * (3 + 3 + 0)  # two u32 starts; frames of 32, 32, 6: 4, 4 and 1 groups of 8
    assert grouped.read_head(stored, 70, len(data))[0] == (head, head, head)
    assert grouped.is_fallback(stored, 70, b"", len(data))
    assert grouped.is_fallback(data, 5, data, len(data))  # one frame: its decoded bytes start with PROTO 4


def test_a_table_that_does_not_fit_the_group_count_is_refused():
    preamble, slices = _layout([{"a": i} for i in range(8)])
    raw = grouped.encode_frames(preamble, slices)[0]
    with pytest.raises(ValueError, match="does not hold"):
        grouped.group_table(raw, 5)  # 5 examples have 5 groups, the table holds 8


def test_the_magicless_zstd_frame_has_no_magic_and_no_dictionary_id():
    samples = [json.dumps({"k": i, "text": "word " * (i % 17)}).encode() for i in range(400)]
    dictionary = zstandard.train_dictionary(2048, samples).as_bytes()
    info = codecs.codec_info(Codec.ZSTD, magicless=True)
    data = b"".join(samples[:40])
    frame = info.compressor(3, dictionary)(data)
    assert frame[:4] != b"\x28\xb5\x2f\xfd"
    header = zstd_frame.ZstdMagiclessFrameHeader.parse(frame)
    assert header.dict_id is None and header.content_size == len(data)
    assert not header.descriptor.content_checksum
    dctx = codecs.zstd_decompressor(dictionary, magicless=True)
    assert codecs.decode(info, frame, dctx, size=len(data)) == data
    assert info.strict_decompress(frame, len(data), dctx) == (data, 0)
    # what FORMAT.md tells a zstd user: prepend the magic number, give the dictionary
    plain = zstandard.ZstdDecompressor(dict_data=zstandard.ZstdCompressionDict(dictionary))
    assert plain.decompress(b"\x28\xb5\x2f\xfd" + frame) == data
    with pytest.raises(CodecError):  # the standard decoder does not take it as is
        codecs.decode(codecs.codec_info(Codec.ZSTD), frame, plain)


def test_a_magicless_frame_is_size_checked_before_decoding():
    info = codecs.codec_info(Codec.ZSTD, magicless=True)
    header = zstd_frame.ZstdMagiclessFrameHeader.build(zstd_frame.frame_header_fields(1 << 40, None))
    with pytest.raises(LimitError):
        codecs.decode(info, header + b"\x01\x00\x00junk", None, limits=Limits())
    frame = info.compressor(3, None)(b"x" * 1000)
    with pytest.raises(CodecError, match="index says"):
        codecs.decode(info, frame, None, size=999)


def test_grouped_is_flag_bit_2_and_needs_its_preamble_in_the_shard_metadata():
    assert Framing.GROUPED.index_flags == INDEX_FLAG_GROUPED_BLOCKS == 0x04
    assert Framing.from_index_flags(0x04) is Framing.GROUPED and Framing.from_index_flags(0) is Framing.BLOCK
    with pytest.raises(ValueError, match="two framings"):
        Framing.from_index_flags(0x06)
    shard_schema = load_schema("v2-shard")
    validator = jsonschema.Draft202012Validator(shard_schema)
    base = {"framing": "grouped"}
    assert any("pickle_preamble" in e.message for e in validator.iter_errors(base))
    assert not any("pickle_preamble" in e.message for e in validator.iter_errors(
        {**base, "pickle_preamble": grouped.preamble_to_json(b"\x80\x03]q\x000](")}))
    assert any("pickle_preamble" in str(e.instance) or "should not be valid" in e.message
               for e in validator.iter_errors({"framing": "list", "pickle_preamble": "gAM="}))


def test_the_schema_admits_group_size_only_for_grouped_and_only_8_4_2_1():
    validator = jsonschema.Draft202012Validator(load_schema("v2-shard"))

    def errors(doc: dict[str, Any]) -> list[str]:
        return [f"{list(e.path)} {e.message}" for e in validator.iter_errors(doc) if e.validator != "required"]

    grouped_doc = {"framing": "grouped", "pickle_preamble": "gAM="}
    assert errors({**grouped_doc, "group_size": 1}) == []
    for bad in (3, 16, True, "2"):
        assert any("group_size" in e for e in errors({**grouped_doc, "group_size": bad})), bad
    for framing in ({"framing": "list"}, {"framing": "block"}, {}):
        assert errors({**framing, "group_size": 8}), framing


@pytest.mark.parametrize("text", ["gAM", "gAM=\n", "gAN=", 3, "g@M="])
def test_the_preamble_member_must_be_canonical_base64(text):
    with pytest.raises(ValueError):
        grouped.preamble_from_json(text)
