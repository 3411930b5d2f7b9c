"""Decoding one stored block safely, shared by both versions.

The order is the one LIM-2 requires: look at the frame header (dictionary id, content
checksum flag), compare the declared size with the expected size and the limits, and
only then decompress with ``strict_decompress``, which streams and never produces more
than the limit, and reports bytes after the frame. The C helper
``zstandard.get_frame_parameters`` reads the header on the hot path; the construct
declaration is used only to explain a header that does not parse.
"""

from __future__ import annotations

from typing import Any

import zstandard

from atlas_format.binary import parse
from atlas_format.codecs import CodecInfo, check_declared_size, zstd_decompressor
from atlas_format.constants import Limits
from atlas_format.enums import Codec
from atlas_format.errors import AtlasError, CodecError, LimitError
from atlas_format.lz4_frame import Lz4FrameHeader
from atlas_format.zstd_frame import ZstdFrameHeader

from .common import Sink


def decode_block(info: CodecInfo, data: bytes, *, expected_raw: int | None, dict_id: int, dctx: Any,
                 limits: Limits, sink: Sink, path: str, block: int, offset: int) -> bytes | None:
    """The decoded bytes of a stored block, or None after reporting why it cannot be decoded.

    ``expected_raw`` is the index's raw_size (version 2) or None (version 1, where only
    the limit bounds the frame). ``dict_id`` is the id the frame must carry (0: none).
    """
    where = {"path": path, "block": block, "offset": offset}
    codec = info.codec
    if codec == Codec.NONE:
        return data
    if not data:
        sink.add("ATL400", f"{info.label} block is empty", **where)
        return None
    if codec == Codec.ZSTD:
        try:
            params = zstandard.get_frame_parameters(data)
        except zstandard.ZstdError as exc:
            _explain_header(ZstdFrameHeader, data, sink, where, f"not a zstd frame ({exc})")
            return None
        if params.has_checksum:
            sink.add("ATL406", "zstd frame carries a content checksum", **where)
        if params.dict_id != dict_id:
            expected = f"dictionary id {dict_id}" if dict_id else "no dictionary id"
            sink.add("ATL407", f"zstd frame carries dictionary id {params.dict_id}, expected {expected}", **where)
            return None
    try:
        declared = info.declared_size(data)
    except CodecError as exc:
        header = Lz4FrameHeader if codec == Codec.LZ4 else ZstdFrameHeader
        _explain_header(header, data, sink, where, exc.message)
        return None
    if declared is None:
        sink.add("ATL401", f"{info.label} frame does not declare its content size (refused)", **where)
        return None
    try:
        check_declared_size(info, data, expected_raw, limits)
    except LimitError as exc:
        sink.add("ATL901", exc.message, **where)
        return None
    except CodecError as exc:
        sink.add("ATL403", exc.message, **where)
        return None
    try:
        raw, trailing = info.strict_decompress(data, declared, dctx)
    except LimitError as exc:
        sink.add("ATL901", exc.message, **where)
        return None
    except CodecError as exc:
        sink.add("ATL400", exc.message, **where)
        return None
    if trailing:
        sink.add("ATL404", f"{trailing} bytes follow the {info.label} frame inside the block", path=path, block=block,
                 offset=offset + len(data) - trailing)
    if expected_raw is not None and len(raw) != expected_raw:
        sink.add("ATL400", f"block decodes to {len(raw)} bytes, the index says {expected_raw}", **where)
    return raw


def make_dctx(dictionary: bytes | None, sink: Sink, *, path: str) -> Any:
    """A zstd decompressor for a dictionary, or None with ATL408 when libzstd refuses the dictionary."""
    try:
        return zstd_decompressor(dictionary)
    except zstandard.ZstdError as exc:
        sink.add("ATL408", f"zstd cannot load the dictionary: {exc}", path=path)
        return None


def _explain_header(struct: Any, data: bytes, sink: Sink, where: dict[str, Any], fallback: str) -> None:
    """Report a frame header that libzstd refused, with the construct declaration's reason when it has one."""
    try:
        parse(struct, data[:32], path=where["path"], offset=where["offset"])
    except AtlasError as exc:
        sink.from_error("ATL400", exc, block=where["block"])
        return
    sink.add("ATL400", fallback, **where)
