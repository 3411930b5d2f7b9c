"""Decoding one stored block, or one example frame (version 2 framing "example"), safely; and
checking a decoded block that is one pickle of a list (version 1, version 2 framing "list").

The order is the one LIM-2 requires: look at the frame header (dictionary id, content
checksum flag), compare the declared size with the expected size and the limits, and
only then decompress with ``strict_decompress``, which streams and never produces more
than the declared size, and reports bytes after the frame. The C helper
``zstandard.get_frame_parameters`` reads the header on the hot path; the construct
declaration is used only to explain a header that does not parse.
"""

from __future__ import annotations

from typing import Any

import zstandard

from atlas_format.binary import parse
from atlas_format.codecs import CodecInfo, zstd_decompressor
from atlas_format.constants import Limits
from atlas_format.enums import Codec
from atlas_format.errors import AtlasError, CodecError, LimitError
from atlas_format.list_items import list_item_at
from atlas_format.lz4_frame import Lz4FrameHeader
from atlas_format.zstd_frame import ZstdFrameHeader

from .common import Sink
from .pickle_scan import ScanLimits, scan_pickle

#: A standard zstd frame's first bytes (its header's magic field), which a magicless frame has not.
_ZSTD_MAGIC_BYTES: bytes = ZstdFrameHeader.subcons[0].build(None)


def decode_block(info: CodecInfo, data: bytes, *, expected_raw: int | None, dict_id: int, dctx: Any,
                 limits: Limits, sink: Sink, path: str, block: int, offset: int) -> bytes | None:
    """The decoded bytes of a stored block, or None after reporting why it cannot be decoded.

    ``expected_raw`` is the index's raw_size (version 2) or None (version 1, where only
    the limit bounds the frame). ``dict_id`` is the id the frame must carry (0: none).
    """
    where = {"path": path, "block": block, "offset": offset}
    if info.codec == Codec.NONE:
        return data
    declared = frame_declared_size(info, data, dict_id=dict_id, limits=limits, sink=sink, where=where)
    if declared is None:
        return None
    if expected_raw is not None and declared != expected_raw:
        sink.add("ATL403", f"{info.label} frame declares {declared} bytes, the index says {expected_raw}", **where)
        return None
    raw = decode_frame(info, data, declared, dctx, sink=sink, where=where)
    if raw is not None and expected_raw is not None and len(raw) != expected_raw:
        sink.add("ATL400", f"block decodes to {len(raw)} bytes, the index says {expected_raw}", **where)
    return raw


def frame_declared_size(info: CodecInfo, data: bytes, *, dict_id: int, limits: Limits, sink: Sink,
                        where: dict[str, Any], frame: str = "frame", clause: str | None = None) -> int | None:
    """The content size one compressed frame declares, read from its header alone; None after reporting why not.

    Everything LIM-2 asks before decompressing: the header parses, a zstd frame carries
    ``dict_id`` (and should carry no content checksum), the size is declared and is not
    above the limit. ``frame`` names the frame in messages, ``clause`` overrides the
    catalog's clause of the frame-rule findings (a block frame and an example frame
    follow different clauses).
    """
    rule = {"clause": clause} if clause else {}
    if not data:
        sink.add("ATL400", f"{info.label} {frame} is empty", **where, **rule)
        return None
    if info.codec == Codec.ZSTD:
        if info.magicless and bytes(data[:len(_ZSTD_MAGIC_BYTES)]) == _ZSTD_MAGIC_BYTES:
            sink.add("ATL417", f"{frame} is a standard zstd frame (it starts with the magic number "
                               f"{_ZSTD_MAGIC_BYTES.hex(' ')}); framing grouped writes magicless frames", **where)
            return None
        fmt = zstandard.FORMAT_ZSTD1_MAGICLESS if info.magicless else zstandard.FORMAT_ZSTD1
        try:
            params = zstandard.get_frame_parameters(data, format=fmt)
        except zstandard.ZstdError as exc:
            prefix = "" if frame == "frame" else f"{frame}: "
            kind = "magicless zstd frame" if info.magicless else "zstd frame"
            _explain_header(info.frame_header, data, sink, where, f"{prefix}not a {kind} ({exc})", frame)
            return None
        if params.has_checksum:
            sink.add("ATL406", f"zstd {frame} carries a content checksum", **where)
        if info.magicless and params.dict_id:
            sink.add("ATL417", f"magicless zstd {frame} carries dictionary id {params.dict_id}; framing grouped "
                               "frames carry none (the shard names its dictionary)", **where)
            return None
        if params.dict_id != dict_id and not info.magicless:
            expected = f"dictionary id {dict_id}" if dict_id else "no dictionary id"
            sink.add("ATL407", f"zstd {frame} carries dictionary id {params.dict_id}, expected {expected}", **where)
            return None
    try:
        declared = info.declared_size(data)
    except CodecError as exc:
        header = Lz4FrameHeader if info.codec == Codec.LZ4 else info.frame_header or ZstdFrameHeader
        _explain_header(header, data, sink, where, exc.message if frame == "frame" else f"{frame}: {exc.message}",
                        frame)
        return None
    if declared is None:
        sink.add("ATL401", f"{info.label} {frame} does not declare its content size (refused)", **where, **rule)
        return None
    if declared > limits.max_block_raw_size:
        sink.add("ATL901", f"{info.label} {frame} declares {declared} bytes, above the limit of "
                           f"{limits.max_block_raw_size} bytes (refused before allocating)", **where)
        return None
    return declared


def decode_frame(info: CodecInfo, data: bytes, declared: int, dctx: Any, *, sink: Sink, where: dict[str, Any],
                 frame: str = "frame", clause: str | None = None,
                 span: str = "its slice of the frame table") -> bytes | None:
    """Decompress one frame whose declared size was checked: streamed, never more than ``declared`` bytes.

    Reports bytes after the frame (ATL404, at their offset in the file) and a frame that
    decodes to less than it declares (ATL400; more is refused while decoding).
    """
    rule = {"clause": clause} if clause else {}
    try:
        raw, trailing = info.strict_decompress(data, declared, dctx)
    except LimitError as exc:
        sink.add("ATL901", exc.message if frame == "frame" else f"{frame}: {exc.message}", **where)
        return None
    except CodecError as exc:
        sink.add("ATL400", exc.message if frame == "frame" else f"{frame}: {exc.message}", **where, **rule)
        return None
    if trailing:
        inside = "inside the block" if frame == "frame" else f"inside {span}"
        sink.add("ATL404", f"{trailing} bytes follow the {info.label} {frame} {inside}",
                 **{**where, "offset": where["offset"] + len(data) - trailing}, **rule)
    if frame != "frame" and len(raw) != declared:
        sink.add("ATL400", f"{frame} decodes to {len(raw)} bytes, it declares {declared}", **where, **rule)
    return raw


def make_dctx(dictionary: bytes | None, sink: Sink, *, path: str, magicless: bool = False) -> Any:
    """A zstd decompressor for a dictionary, or None with ATL408 when libzstd refuses the dictionary."""
    try:
        return zstd_decompressor(dictionary, magicless=magicless)
    except zstandard.ZstdError as exc:
        sink.add("ATL408", f"zstd cannot load the dictionary: {exc}", path=path)
        return None


def _explain_header(struct: Any, data: bytes, sink: Sink, where: dict[str, Any], fallback: str,
                    frame: str = "frame") -> None:
    """Report a frame header that the codec library refused, with the construct declaration's reason (and the
    offset of the bad header byte) when it has one."""
    try:
        parse(struct, data[:32], path=where["path"], offset=where["offset"])
    except AtlasError as exc:
        prefix = "" if frame == "frame" else f"{frame}: "
        sink.add("ATL400", prefix + exc.message, **{**where, "offset": where["offset"] if exc.offset is None
                                                    else exc.offset})
        return
    sink.add("ATL400", fallback, **where)


def protocol_text(protocol: int | None) -> str:
    """A pickle's protocol as findings name it (no PROTO opcode means protocol 0 or 1)."""
    return "0 or 1 (no PROTO opcode)" if protocol is None else str(protocol)


def check_list_pickle(raw: bytes, *, scan_limits: ScanLimits, sink: Sink, path: str, block: int, offset: int,
                      compressed: bool, expected: int | None, clauses: dict[str, str],
                      protocol: int | None = None, allowed: frozenset[tuple[str, str]] = frozenset(),
                      first: int | None = None) -> None:
    """Scan a decoded block that must be one pickle of a list of ``expected`` examples (None: not known),
    ending with STOP at the end of the block: version 1 blocks (V1-BLOCK-2) and version 2 blocks of
    framing "list" (V2-FRAME-5). Never unpickles: the opcode scan counts the list's items.

    ``offset`` is the block's offset in data.bin; an issue inside an uncompressed block is located at its
    byte, inside a compressed one at the block with the decoded offset in the message. ``clauses`` gives
    the clause of the shape findings by id (ATL411, ATL412, ATL414, and ATL415 with ``protocol``);
    ``protocol``, when given, is the protocol writers must use (ATL415, a warning, otherwise). ``allowed``:
    globals trusted by the caller (``scan_pickle``). An issue inside one example's opcodes also names that
    example (its position, from the issue's offset, as the reader finds it: ``atlas_format.list_items``;
    ``first`` + position in the shard).
    """
    where = {"path": path, "block": block}
    result = scan_pickle(raw, limits=scan_limits, shape=True, allowed=allowed)
    sink.note_allowed(result.allowed, **where, offset=offset)
    for issue in result.issues:
        position = None if issue.offset is None else list_item_at(raw, issue.offset)
        example = {} if position is None else {
            "position": position, "example": None if first is None else first + position}
        if compressed:
            sink.add(issue.id, f"{issue.message} (decoded offset {issue.offset})", **where, **example, offset=offset)
        else:
            sink.add(issue.id, issue.message, **where, **example, offset=offset + (issue.offset or 0))
    if result.end is None:
        return
    if result.end != len(raw):
        extra = len(raw) - result.end
        sink.add("ATL414", f"{extra} bytes follow the pickle's STOP opcode" + (
            f" (decoded offset {result.end})" if compressed else ""), **where,
            offset=offset if compressed else offset + result.end, clause=clauses["ATL414"])
    if not result.top_is_list:
        sink.add("ATL412", "the block's pickle does not produce a list", **where, offset=offset,
                 clause=clauses["ATL412"])
    elif expected is not None and result.top_count != expected:
        sink.add("ATL411", f"block holds {result.top_count} examples, expected {expected}", **where, offset=offset,
                 clause=clauses["ATL411"])
    if protocol is not None and result.protocol != protocol:
        sink.add("ATL415", f"the block's pickle uses protocol {protocol_text(result.protocol)}, writers must use "
                           f"{protocol}", **where,
                 offset=offset, clause=clauses.get("ATL415"))
