"""The codec registry of version 2 (and the zstd codec of version 1).

Adding a codec is one ``CodecInfo`` entry here plus a row in the codec table of
spec/FORMAT.md. Every decoder checks the size a frame declares against the size the
index records and the limits *before* decompressing, because the libraries allocate
the declared size up front (a tiny block can otherwise demand a terabyte).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import construct as cs
import lz4.frame
import zstandard

from .constants import DEFAULT_LIMITS, Limits
from .enums import Codec
from .errors import CodecError, LimitError
from .lz4_frame import Lz4FrameHeader
from .lz4_frame import declared_content_size as _lz4_content_size
from .zstd_frame import ZstdFrameHeader, ZstdMagiclessFrameHeader

Buffer = bytes | bytearray | memoryview
Compress = Callable[[bytes], bytes]


@dataclass(frozen=True)
class CodecInfo:
    """One codec: its id and JSON label, its declared frame header, and how to (de)compress."""

    codec: Codec
    frame_header: cs.Construct | None
    supports_dictionary: bool
    level_range: tuple[int, int]
    declared_size: Callable[[Buffer], int | None]
    compressor: Callable[[int, bytes | None], Compress]
    #: one frame whose declared size ``decode`` checked (the int: that size), decoded
    decompress: Callable[[Buffer, int, zstandard.ZstdDecompressor | None], bytes]
    strict_decompress: Callable[[Buffer, int, zstandard.ZstdDecompressor | None], tuple[bytes, int]]
    #: the declared size read without a full header parse (readers' hot path: the decoder checks the
    #: rest): None or a negative number when the frame declares none; ValueError (or the library's
    #: error) when the bytes do not start like a frame of this codec
    peek_size: Callable[[Buffer], int | None]
    #: frames without a magic number or dictionary id (zstd in framing "grouped", V2-CODEC-4); a
    #: decompressor for them comes from ``zstd_decompressor(dictionary, magicless=True)``
    magicless: bool = False

    @property
    def label(self) -> str:
        return self.codec.label


# -- none ---------------------------------------------------------------------------


def _none_compressor(level: int, dictionary: bytes | None) -> Compress:
    return bytes


def _none_decompress(data: Buffer, limit: int, dctx: object) -> bytes:
    return bytes(data)


def _none_strict(data: Buffer, limit: int, dctx: object) -> tuple[bytes, int]:
    return bytes(data), 0


# -- zstd ---------------------------------------------------------------------------


def zstd_decompressor(dictionary: bytes | None = None, *, magicless: bool = False,
                      max_window: int = 0) -> zstandard.ZstdDecompressor:
    """A decompressor for one dataset or shard (reuse it: creating one costs microseconds); ``magicless``
    for the frames of framing "grouped" (V2-CODEC-4); ``max_window`` bounds what it holds for a frame
    (0: libzstd's default, 128 MiB)."""
    fmt = zstandard.FORMAT_ZSTD1_MAGICLESS if magicless else zstandard.FORMAT_ZSTD1
    dict_data = None if dictionary is None else zstandard.ZstdCompressionDict(dictionary)
    return zstandard.ZstdDecompressor(dict_data=dict_data, format=fmt, max_window_size=max_window)


def _zstd_declared(data: Buffer) -> int | None:
    try:
        size = zstandard.frame_content_size(data)
    except zstandard.ZstdError as exc:
        raise CodecError(f"not a zstd frame: {exc}") from None
    return None if size < 0 else size


def _zstd_compressor(level: int, dictionary: bytes | None) -> Compress:
    cctx = zstandard.ZstdCompressor(
        level=level,
        dict_data=None if dictionary is None else zstandard.ZstdCompressionDict(dictionary),
        write_checksum=False, write_content_size=True, write_dict_id=True,
    )
    return cctx.compress


def _magicless_declared(data: Buffer) -> int | None:
    try:
        size = zstandard.get_frame_parameters(data, format=zstandard.FORMAT_ZSTD1_MAGICLESS).content_size
    except zstandard.ZstdError as exc:
        raise CodecError(f"not a magicless zstd frame: {exc}") from None
    return None if size < 0 else int(size)


def _magicless_peek(data: Buffer) -> int:
    size: int = zstandard.get_frame_parameters(data, format=zstandard.FORMAT_ZSTD1_MAGICLESS).content_size
    return size


def _magicless_compressor(level: int, dictionary: bytes | None) -> Compress:
    params = zstandard.ZstdCompressionParameters.from_level(
        level, format=zstandard.FORMAT_ZSTD1_MAGICLESS, write_checksum=False, write_content_size=True,
        write_dict_id=False)
    cctx = zstandard.ZstdCompressor(
        dict_data=None if dictionary is None else zstandard.ZstdCompressionDict(dictionary),
        compression_params=params)
    return cctx.compress


def _magicless_decompress(data: Buffer, limit: int, dctx: zstandard.ZstdDecompressor | None) -> bytes:
    return _zstd_decompress(data, limit, dctx or zstd_decompressor(magicless=True))


def _magicless_strict(data: Buffer, limit: int, dctx: zstandard.ZstdDecompressor | None) -> tuple[bytes, int]:
    return _zstd_strict(data, limit, dctx or zstd_decompressor(magicless=True), declared=_magicless_declared)


def _zstd_decompress(data: Buffer, limit: int, dctx: zstandard.ZstdDecompressor | None) -> bytes:
    # Only ever given a frame whose declared size ``decode`` checked: libzstd then decodes into a buffer of
    # exactly that size and refuses to write more ("Destination buffer is too small"), so ``limit`` is not
    # passed on (max_output_size costs 160 ns a frame, a third of decoding a small one).
    try:
        return (dctx or zstandard.ZstdDecompressor()).decompress(data)
    except zstandard.ZstdError as exc:
        raise CodecError(f"zstd cannot decode the block: {exc}") from None


def _zstd_strict(data: Buffer, limit: int, dctx: zstandard.ZstdDecompressor | None,
                 declared: Callable[[Buffer], int | None] = _zstd_declared) -> tuple[bytes, int]:
    """Decode one frame, never more than ``limit`` bytes; return (bytes, trailing bytes).

    A frame that declares a size within ``limit`` is decoded in one call (libzstd writes
    exactly the declared size, and refuses extra input); anything else, and any error,
    goes through the streaming decoder, which bounds its output and counts trailing bytes.
    """
    dctx = dctx or zstandard.ZstdDecompressor()
    try:
        size = declared(data)
    except CodecError:
        size = None
    if size is not None and 0 <= size <= limit:
        try:
            whole: bytes = dctx.decompress(data, allow_extra_data=False)
            if len(whole) == size:
                return whole, 0
        except zstandard.ZstdError:
            pass  # the streaming decoder below names the problem
    obj = dctx.decompressobj(write_size=min(limit, 1 << 20) or 1)
    out = bytearray()
    view = memoryview(data)
    step = 1 << 16
    try:
        for start in range(0, len(view), step):
            out += obj.decompress(view[start:start + step])
            if len(out) > limit:
                raise LimitError(f"zstd frame decodes to more than the limit of {limit} bytes")
            if obj.eof:
                break
    except zstandard.ZstdError as exc:
        raise CodecError(f"zstd cannot decode the block: {exc}") from None
    if not obj.eof:
        raise CodecError("zstd frame is truncated (the decoder wants more input)")
    consumed_to = min(len(view), start + step)
    trailing = len(obj.unused_data) + (len(view) - consumed_to)
    return bytes(out), trailing


# -- lz4 ----------------------------------------------------------------------------


def _lz4_declared(data: Buffer) -> int | None:
    try:
        size = lz4.frame.get_frame_info(data)["content_size"]
    except (RuntimeError, ValueError) as exc:
        raise CodecError(f"not an lz4 frame: {exc}") from None
    return None if not size else int(size)


def _lz4_compressor(level: int, dictionary: bytes | None) -> Compress:
    def compress(data: bytes) -> bytes:
        out: bytes = lz4.frame.compress(data, compression_level=level, store_size=True, content_checksum=False)
        return out

    return compress


def _lz4_decompress(data: Buffer, limit: int, dctx: object) -> bytes:
    try:
        out: bytes = lz4.frame.decompress(data)
    except RuntimeError as exc:
        raise CodecError(f"lz4 cannot decode the block: {exc}") from None
    return out


def _lz4_strict(data: Buffer, limit: int, dctx: object) -> tuple[bytes, int]:
    dec = lz4.frame.LZ4FrameDecompressor()
    try:
        out = dec.decompress(bytes(data), max_length=limit + 1)
    except RuntimeError as exc:
        raise CodecError(f"lz4 cannot decode the block: {exc}") from None
    if len(out) > limit:
        raise LimitError(f"lz4 frame decodes to more than the limit of {limit} bytes")
    if not dec.eof:
        raise CodecError("lz4 frame is truncated (the decoder wants more input)")
    return out, len(dec.unused_data or b"")


CODECS: dict[Codec, CodecInfo] = {
    Codec.NONE: CodecInfo(Codec.NONE, None, False, (0, 0), lambda data: len(data), _none_compressor,
                          _none_decompress, _none_strict, lambda data: len(data)),
    Codec.ZSTD: CodecInfo(Codec.ZSTD, ZstdFrameHeader, True, (-131072, 22), _zstd_declared, _zstd_compressor,
                          _zstd_decompress, _zstd_strict, zstandard.frame_content_size),
    Codec.LZ4: CodecInfo(Codec.LZ4, Lz4FrameHeader, False, (0, 16), _lz4_declared, _lz4_compressor,
                         _lz4_decompress, _lz4_strict, _lz4_content_size),
}


#: The frames of framing "grouped" (V2-CODEC-4): zstd's are magicless and name no dictionary; the
#: other codecs' are their usual frames.
MAGICLESS_CODECS: dict[Codec, CodecInfo] = {
    **CODECS,
    Codec.ZSTD: CodecInfo(Codec.ZSTD, ZstdMagiclessFrameHeader, True, (-131072, 22), _magicless_declared,
                          _magicless_compressor, _magicless_decompress, _magicless_strict, _magicless_peek,
                          magicless=True),
}


#: The largest block whose frames ``decode_frames`` decodes in one call; its decompressor refuses windows
#: above this, so a frame header cannot make it hold more (its sizes are not peeked first).
FRAMES_MAX = 1 << 20


def decode_frames(info: CodecInfo, data: Buffer, dctx: zstandard.ZstdDecompressor, size: int) -> bytearray:
    """Consecutive zstd frames decoded straight into one buffer of exactly ``size`` bytes, in one call:
    framing grouped's whole block without a call per frame and a join (1.7 of the 41 us that reading a block
    of 64 text examples takes). ``dctx`` is a ``zstd_decompressor(..., max_window=FRAMES_MAX)`` and ``size``
    at most FRAMES_MAX. A CodecError when the frames fail or decode to another size; the caller then decodes
    frame by frame, which names the fault."""
    if info.codec is not Codec.ZSTD or size > FRAMES_MAX:
        raise CodecError(f"decode_frames takes zstd frames of at most {FRAMES_MAX} bytes")
    out = bytearray(size + 1)  # one byte more: frames that decode to more than ``size`` fill it
    try:
        got = dctx.stream_reader(data, read_across_frames=True).readinto(out)
    except zstandard.ZstdError as exc:
        raise CodecError(f"zstd cannot decode the frames: {exc}") from None
    if got != size:
        raise CodecError(f"the frames decode to {'more than ' if got > size else ''}{min(got, size)} bytes, "
                         f"expected {size}")
    del out[size:]
    return out


def codec_info(key: Codec | int | str, *, magicless: bool = False) -> CodecInfo:
    """The registry entry for a codec id or label (``magicless``: the form framing "grouped" writes,
    V2-CODEC-4); an unknown codec is a CodecError."""
    try:
        codec = Codec.from_label(key) if isinstance(key, str) else Codec(key)
        return (MAGICLESS_CODECS if magicless else CODECS)[codec]
    except (KeyError, ValueError):
        known = ", ".join(f"{c.value} {c.label}" for c in CODECS)
        raise CodecError(f"unknown codec {key!r} (this implementation knows: {known})") from None


def check_declared_size(info: CodecInfo, data: Buffer, expected: int | None,
                        limits: Limits = DEFAULT_LIMITS, *, limit: int | None = None) -> int:
    """The size a frame declares, refused before anything is allocated when it is absent, above the
    limits, not ``expected`` (the index's raw_size) or above ``limit`` (what the block allows)."""
    try:
        declared = info.peek_size(data)
    except (ValueError, zstandard.ZstdError) as exc:
        raise CodecError(f"not a readable {info.label} frame header: {exc}") from None
    if declared is None or declared < 0:
        raise CodecError(f"{info.label} frame does not declare its content size")
    if declared > limits.max_block_raw_size:
        raise LimitError(f"{info.label} frame declares {declared} bytes, above the limit of "
                         f"{limits.max_block_raw_size} bytes (refused before allocating)")
    if expected is not None and declared != expected:
        raise CodecError(f"{info.label} frame declares {declared} bytes, the index says {expected}")
    if limit is not None and declared > limit:
        raise LimitError(f"{info.label} frame declares {declared} bytes, more than its block's raw_size allows "
                         f"({limit}); refused before allocating")
    return declared


def decode(info: CodecInfo, data: Buffer, dctx: zstandard.ZstdDecompressor | None = None, *,
           size: int | None = None, limit: int | None = None, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """One frame decoded, its declared size checked first (``check_declared_size``), then the output
    checked against it.

    Readers decode every frame through this call, whatever the codec (errors carry no location: the
    caller knows the file, block and example and adds them)."""
    try:
        declared = info.peek_size(data)
    except (ValueError, zstandard.ZstdError):
        declared = None
    bound = limits.max_block_raw_size if limit is None or limit > limits.max_block_raw_size else limit
    if declared is None or not 0 <= declared <= bound or (size is not None and declared != size):
        declared = check_declared_size(info, data, size, limits, limit=limit)  # raises, naming the rule broken
    out = info.decompress(data, declared, dctx)
    if len(out) != declared:
        raise CodecError(f"{info.label} frame decodes to {len(out)} bytes, it declares {declared}")
    return out
