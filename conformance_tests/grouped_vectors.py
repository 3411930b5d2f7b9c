"""Framing grouped for the test writer (validator_vectors.write_v2): its own pickling of a shard's preamble and
slices (V2-FRAME-6), from the standard pickle module and atlas_format.grouped alone (no reference writer).

The preamble memoizes every object that two examples of the shard share (what a protocol 3 Pickler memoizes:
dict keys, strings, globals); each slice is its example pickled with protocol 3 by a Pickler whose memo starts
as the preamble's, without PROTO and STOP, as conformance_tests/test_format_grouped.py ``_layout`` does.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import struct
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from atlas_format import grouped
from atlas_format.codecs import codec_info
from atlas_format.constants import V2_LIST_PICKLE_PROTOCOL
from atlas_format.zstd_frame import ZstdMagiclessFrameHeader, frame_header_fields


def _pickle(obj: Any, memo: dict[int, Any] | None) -> tuple[bytes, dict[int, Any]]:
    f = io.BytesIO()
    p = pickle.Pickler(f, grouped.GROUPED_PICKLE_PROTOCOL)
    if memo:
        p.memo = memo
    p.dump(obj)
    return f.getvalue(), p.memo.copy()


def preamble_of(examples: list[Any]) -> tuple[bytes, dict[int, Any]]:
    """(P, the Pickler memo after P) for a shard's examples: the objects two of them share, memoized once."""
    memos = [_pickle(e, None)[1] for e in examples]
    counts = Counter(k for m in memos for k in m)
    shared = list({k: obj for m in memos for k, (_, obj) in sorted(m.items(), key=lambda item: item[1][0])
                   if counts[k] >= 2}.values())  # by memo index: a memo copy iterates by object address
    data, memo = _pickle(shared, None)
    return data[:-1] + grouped.PREAMBLE_SUFFIX, memo


def slice_of(example: Any, memo: dict[int, Any]) -> bytes:
    """One example's slice: its protocol 3 pickle after the preamble's memo, without PROTO and STOP."""
    data = _pickle(example, dict(memo))[0]
    return data[len(grouped.PREAMBLE_PREFIX):-1]


def decoded_frames(preamble: bytes, memo: dict[int, Any], block: list[Any], *, fallback: bool = False,
                   slices_hook: Callable[[bytes, list[bytes]], list[bytes]] | None = None,
                   offsets_out: list[list[list[int]]] | None = None, group: int = grouped.FRAME_GROUP) -> list[bytes]:
    """A block's decoded frames (V2-FRAME-6), or with ``fallback`` its one protocol 4 list pickle (V2-FRAME-8).
    ``slices_hook(preamble, slices) -> slices`` alters the slices before the table is computed; ``offsets_out``
    gets the block's head group offsets (``grouped.frame_group_offsets`` of its slices; [] for one frame);
    ``group``: the shard's group size."""
    if fallback:
        if offsets_out is not None:
            offsets_out.append([])
        return [pickle.dumps(list(block), protocol=V2_LIST_PICKLE_PROTOCOL)]
    slices = [slice_of(e, memo) for e in block]
    if slices_hook:
        slices = slices_hook(preamble, slices)
    if offsets_out is not None:
        offsets_out.append(grouped.frame_group_offsets(slices, group) if len(slices) > grouped.FRAME_EXAMPLES
                           else [])
    return grouped.encode_frames(preamble, slices, group)


def stored(n: int, frames: list[bytes], *, fallback: bool, group_offsets: list[list[int]] | None = None,
           raw_size: int = 0, group: int = grouped.FRAME_GROUP) -> bytes:
    """The stored block of encoded ``frames`` after its head (V2-FRAME-7: frame starts, then ``group_offsets``
    of ``offset_width(raw_size)``); a fallback: its one encoded pickle after the empty frames (V2-FRAME-8)."""
    if fallback:
        return grouped.fallback_block(n, frames[0], raw_size, group) if grouped.frames(n) > 1 else frames[0]
    return grouped.stored_block(frames, group_offsets, raw_size)


# -- crafted defects: each breaks one rule of framing grouped, checksums correct -----------------------------


def memo_count(preamble: bytes) -> int:
    """p: the memo entries the preamble makes (its PUTs)."""
    ops = pickletools.genops(io.BytesIO(preamble + grouped.LIST_END))
    return sum(op.name in ("BINPUT", "LONG_BINPUT") for op, _arg, _pos in ops)


def slice_after(preamble: bytes, obj: Any) -> bytes:
    """A slice of ``obj`` whose PUTs start at p (it shares nothing with the preamble)."""
    keep = [object() for _ in range(memo_count(preamble))]
    return slice_of(obj, {id(o): (i, o) for i, o in enumerate(keep)})


def get_op(index: int) -> bytes:
    """BINGET or LONG_BINGET of a memo index."""
    return b"h" + bytes([index]) if index < 256 else b"j" + struct.pack("<I", index)


def with_offsets(frame: bytes, n: int, change: Callable[[list[int]], list[int]]) -> bytes:
    """A one-frame block's decoded bytes with its group offsets changed (same width, same start)."""
    g = grouped.groups(n)
    table = grouped.GroupTable.parse(frame, groups=g)
    built = grouped.GroupTable.build({"length": table.length, "start": table.start,
                                      "offsets": change(list(table.offsets))}, groups=g)
    return built + frame[len(built):]


def replace_slice(k: int, make: Callable[[bytes, list[bytes]], bytes]) -> Callable[..., list[bytes]]:
    def hook(shard: int, block: int, preamble: bytes, slices: list[bytes]) -> list[bytes]:
        if (shard, block) == (0, 0):
            slices = list(slices)
            slices[k] = make(preamble, slices)
        return slices
    return hook


def _first_block(change: Callable[[list[bytes]], list[bytes]]) -> Callable[..., list[bytes]]:
    def hook(shard: int, block: int, frames: list[bytes]) -> list[bytes]:
        return change(frames) if (shard, block) == (0, 0) else frames
    return hook


def _magicless_bomb(frame: bytes) -> bytes:
    header = ZstdMagiclessFrameHeader.build(frame_header_fields(1 << 40, None))
    return header + b"\x01\x00\x00junk"


def _standard_frame(frames: list[bytes]) -> Callable[..., bytes]:
    def hook(shard: int, block: int, j: int, frame: bytes) -> bytes:
        if (shard, block, j) == (0, 0, 0):
            return bytes(codec_info("zstd").compressor(3, None)(frames[0]))
        return frame
    return hook


#: name -> (finding id, description, write_v2 options). Block 0 of shard 0 carries the defect; examples are
#: validator_vectors.examples (text dicts); the block size is in the options.
CRAFTED: dict[str, tuple[str, str, dict[str, Any]]] = {
    "slice-reads-another-groups-memo": (
        "ATL422", "example 1 of block 0 is a BINGET of the memo index example 0 PUT (groups of 1): an in-order "
        "read returns example 0 again, a random read of example 1 fails (two readings)",
        {"block_size": 8, "slices_hook": replace_slice(1, lambda p, s: get_op(memo_count(p)))}),
    "slice-writes-preamble-memo": (
        "ATL422", "example 2 of block 0 ends with a BINPUT to memo index 0, which the preamble holds",
        {"block_size": 8, "slices_hook": replace_slice(2, lambda p, s: s[2] + get_op(0).replace(b"h", b"q", 1))}),
    "slice-holds-proto": (
        "ATL421", "example 1 of block 0 starts with PROTO 3",
        {"block_size": 8, "slices_hook": replace_slice(1, lambda p, s: grouped.PREAMBLE_PREFIX + s[1])}),
    "slice-pops-previous-example": (
        "ATL420", "example 3 of block 0 starts with POP: an in-order read drops example 2, a random read takes the "
        "list's MARK", {"block_size": 8, "slices_hook": replace_slice(3, lambda p, s: b"0" + s[3])}),
    "group-offset-inside-opcode": (
        "ATL420", "group offset 1 of block 0 (of 8 examples) moved one byte into example 1's first opcode",
        {"block_size": 8, "raw_hook": _first_block(lambda f: [with_offsets(f[0], 8, lambda o: [
            o[0], o[1] + 1, *o[2:]])])}),
    "frame-boundary-inside-opcode": (
        "ATL420", "block 0 (70 examples, 3 frames): the last decoded byte of frame 0 moved to the start of frame 1",
        {"block_size": 70, "shard_size": 140,
         "raw_hook": _first_block(lambda f: [f[0][:-1], f[0][-1:] + f[1], *f[2:]])}),
    "head-group-offset-inside-example": (
        "ATL420", "block 0 (70 examples, 3 frames): frame 1's first head group offset moved halfway to its second, "
        "into the middle of the examples of group 1 (a random read of positions 40..47 unpickles other bytes)",
        {"block_size": 70, "shard_size": 140, "head_hook": lambda k, b, o: [
            o[0], [(o[1][0] + o[1][1]) // 2, *o[1][1:]], *o[2:]] if (k, b) == (0, 0) else o}),
    "head-group-offsets-not-increasing": (
        "ATL416", "block 0 (70 examples): frame 0's third head group offset equals its second (an empty group)",
        {"block_size": 70, "shard_size": 140, "head_hook": lambda k, b, o: [
            [o[0][0], o[0][1], o[0][1]], *o[1:]] if (k, b) == (0, 0) else o}),
    "group-table-offset-not-zero": (
        "ATL418", "block 0's group table starts its offsets at 1",
        {"block_size": 8, "raw_hook": _first_block(lambda f: [with_offsets(f[0], 8, lambda o: [1, *o[1:]])])}),
    "block-preamble-differs": (
        "ATL419", "block 0's copy of the preamble spells the key 'text' as 'texu' (same length)",
        {"block_size": 8, "raw_hook": _first_block(lambda f: [f[0].replace(b"text", b"texu", 1)])}),
    "frame-starts-not-increasing": (
        "ATL416", "block 0 (70 examples): frame 2 starts where frame 1 does",
        {"block_size": 70, "shard_size": 140, "stored_hook": lambda k, b, s: (
            s[:4] + s[:4] + s[8:]) if (k, b) == (0, 0) else s}),
    "standard-zstd-frame": (
        "ATL417", "block 0's frame is a standard zstd frame (with the magic number), not a magicless one",
        {"block_size": 8}),  # frame_hook set by crafted_options (it needs the decoded frame)
    "magicless-frame-bomb": (
        "ATL901", "block 0's frame declares 2^40 bytes (refused before allocating)",
        {"block_size": 8, "frame_hook": lambda k, b, j, f: _magicless_bomb(f) if (k, b) == (0, 0) else f}),
    "preamble-not-canonical-base64": (
        "ATL216", "shard 000000's pickle_preamble lost its base64 padding",
        {"block_size": 8, "shard_meta_hook": lambda k, d: d.update(
            pickle_preamble=d["pickle_preamble"].rstrip("=") + ("A" if d["pickle_preamble"].endswith("=") else ""))
         if k == 0 else None}),
}


def crafted_options(name: str) -> dict[str, Any]:
    """write_v2 options of a crafted defect (framing grouped, codec zstd)."""
    options = {"framing": "grouped", "codec": "zstd", **CRAFTED[name][2]}
    if name == "standard-zstd-frame":
        seen: list[bytes] = []
        options["raw_hook"] = lambda k, b, f: (seen.extend(f) if (k, b) == (0, 0) else None) or f
        options["frame_hook"] = _standard_frame(seen)
    return options


def write_crafted(name: str, root: Path, items: list[Any] | None = None) -> Path:
    """The dataset of crafted defect ``name`` at ``root`` (validator_vectors.write_v2; by default text examples)."""
    from validator_vectors import examples, write_v2  # (it imports this module)

    options = crafted_options(name)
    options.setdefault("shard_size", 16 if options["block_size"] <= grouped.FRAME_EXAMPLES else 140)
    if items is None:
        items = examples(40 if options["block_size"] <= grouped.FRAME_EXAMPLES else 150)
    return write_v2(root, items, **options)
