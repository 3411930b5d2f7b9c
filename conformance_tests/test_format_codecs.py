"""The codec registry refuses bombs before allocating; the allow-list holds nothing that runs code."""

from __future__ import annotations

import tracemalloc

import lz4.frame
import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from atlas_format import codecs, zstd_frame
from atlas_format.constants import Limits
from atlas_format.enums import Codec, CompressionStrategy, DictionaryMode, strategy_to_v2, v2_to_strategy
from atlas_format.errors import CodecError, LimitError


@pytest.mark.parametrize("codec", list(Codec))
@given(data=st.binary(min_size=1, max_size=5000), level=st.integers(1, 9))
def test_codecs_round_trip(codec, data, level):
    info = codecs.codec_info(codec)
    stored = info.compressor(level, None)(data)
    assert codecs.check_declared_size(info, stored, len(data)) == len(data)
    assert info.decompress(stored, len(data), None) == data
    assert info.strict_decompress(stored, len(data), None) == (data, 0)


def test_unknown_codec_is_refused():
    with pytest.raises(CodecError):
        codecs.codec_info(7)
    with pytest.raises(CodecError):
        codecs.codec_info("brotli")


def test_zstd_bomb_is_refused_before_allocating():
    # A frame header declaring 1 TiB followed by a few junk bytes: 20 bytes that would make
    # python-zstandard try to allocate a terabyte.
    header = zstd_frame.ZstdFrameHeader.build(zstd_frame.frame_header_fields(1 << 40, None))
    bomb = header + b"\x01\x00\x00junk"
    info = codecs.codec_info(Codec.ZSTD)
    tracemalloc.start()
    try:
        with pytest.raises(LimitError):
            codecs.check_declared_size(info, bomb, None)
        with pytest.raises(LimitError):  # the limit is checked before the index's expectation
            codecs.check_declared_size(info, bomb, 100)
        with pytest.raises((LimitError, CodecError)):
            info.strict_decompress(bomb, 1 << 20, None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_declared_size_must_match_index_and_limits():
    data = b"x" * 5000
    for codec in (Codec.ZSTD, Codec.LZ4):
        info = codecs.codec_info(codec)
        stored = info.compressor(3, None)(data)
        with pytest.raises(CodecError):
            codecs.check_declared_size(info, stored, 4999)
        with pytest.raises(LimitError):
            codecs.check_declared_size(info, stored, None, Limits(max_block_raw_size=4000))
    no_size = zstandard.ZstdCompressor(write_content_size=False).compressobj()
    frame = no_size.compress(data) + no_size.flush()
    with pytest.raises(CodecError):
        codecs.check_declared_size(codecs.codec_info(Codec.ZSTD), frame, None)


def test_strict_decompress_reports_trailing_and_truncation():
    for codec in (Codec.ZSTD, Codec.LZ4):
        info = codecs.codec_info(codec)
        stored = info.compressor(3, None)(b"hello" * 100)
        assert info.strict_decompress(stored + b"tail", 10_000, None) == (b"hello" * 100, 4)
        with pytest.raises(CodecError):
            info.strict_decompress(stored[:-5], 10_000, None)
        with pytest.raises(LimitError):
            info.strict_decompress(stored, 100, None)
    assert lz4.frame  # imported for the codec under test


def test_strategy_mapping_is_a_bijection_onto_v2_modes():
    assert [int(s) for s in CompressionStrategy] == [0, 1, 2, 3]
    for strategy in CompressionStrategy:
        assert v2_to_strategy(*strategy_to_v2(strategy)) is strategy
    assert v2_to_strategy(Codec.LZ4, DictionaryMode.NONE) is None


@given(data=st.binary(max_size=3000), store_size=st.booleans(), level=st.sampled_from([0, 9]))
def test_lz4_fast_declared_size_agrees_with_the_declaration(data, store_size, level):
    """The hot-path reader of the LZ4 content size reads what Lz4FrameHeader declares."""
    from atlas_format.lz4_frame import Lz4FrameHeader, declared_content_size

    frame = lz4.frame.compress(data, compression_level=level, store_size=store_size)
    parsed = Lz4FrameHeader.parse(frame).descriptor.value.content_size
    assert declared_content_size(frame) == parsed
    assert parsed == (len(data) if store_size and data else None)  # lz4 omits the size of empty content
    assert declared_content_size(memoryview(frame)) == parsed
    for bad in (b"", frame[:3], b"\x00" * 20, zstandard.ZstdCompressor().compress(data)):
        with pytest.raises(ValueError):
            declared_content_size(bad)


def _magicless_frame(data: bytes) -> bytes:
    return codecs.codec_info(Codec.ZSTD, magicless=True).compressor(3, None)(data)


def test_decode_frames_writes_consecutive_frames_into_one_buffer_of_exactly_their_size():
    parts = [bytes(range(256)) * 7, b"the second frame " * 90]
    joined = b"".join(parts)
    stored = b"".join(map(_magicless_frame, parts))
    info = codecs.codec_info(Codec.ZSTD, magicless=True)
    dctx = codecs.zstd_decompressor(magicless=True, max_window=codecs.FRAMES_MAX)
    assert codecs.decode_frames(info, stored, dctx, len(joined)) == joined
    with pytest.raises(CodecError, match=f"decode to more than {len(joined) - 1} bytes"):
        codecs.decode_frames(info, stored, dctx, len(joined) - 1)
    with pytest.raises(CodecError, match=f"decode to {len(joined)} bytes, expected {len(joined) + 1}"):
        codecs.decode_frames(info, stored, dctx, len(joined) + 1)
    with pytest.raises(CodecError, match="zstd cannot decode"):
        codecs.decode_frames(info, stored[:-1] + bytes([stored[-1] ^ 0xFF]) + b"\x00" * 8, dctx, len(joined))
    with pytest.raises(CodecError, match="at most"):  # the one-call path is for small blocks only
        codecs.decode_frames(info, stored, dctx, codecs.FRAMES_MAX + 1)


def test_decode_frames_refuses_a_frame_whose_window_is_above_its_bound():
    """Sizes are not peeked before the one call, so its decompressor bounds the window a frame may ask for
    (libzstd would otherwise keep up to 128 MiB for a few bytes of header)."""
    fields = zstd_frame.frame_header_fields(None, None)
    fields["window_descriptor"] = {"exponent": 17, "mantissa": 0}  # 2**27 bytes
    header = zstd_frame.ZstdMagiclessFrameHeader.build(fields)
    info = codecs.codec_info(Codec.ZSTD, magicless=True)
    dctx = codecs.zstd_decompressor(magicless=True, max_window=codecs.FRAMES_MAX)
    with pytest.raises(CodecError, match="memory"):
        codecs.decode_frames(info, header + b"\x01\x00\x00junk", dctx, 100)
