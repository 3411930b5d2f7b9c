"""Design study of issue 17, deliverable 1: which version 2 block layout can be the default (not a test).

Every candidate is an encoder/decoder pair built here, outside the reference package: the
encoder turns a workload into shards (stored blocks, index entries, a shared zstd dictionary),
the decoder reads the stored bytes the way a reader would (a memory map, one slice per block,
XXH3-64 once per block and process for version 2, zstd with the shared dictionary, pickle).
The baseline ``original`` is the original's algorithm on the original's bytes (a pickled
list per block, zstd's default dictionary training, a 4-byte offset per block, the last
decoded block kept); every ratio is candidate / original measured in the same run.

Reads run in a fresh process each (random ``ds[i]``, in-order ``ds[i]``, iteration); each
cell is the median of ``--reps`` runs with candidates and baseline alternating order.

    python benchmarks/study_default_layout.py                 # about 3 minutes on 2 cores (--reps 5: 5)
    python benchmarks/study_default_layout.py --quick --candidates original,preamble

Writes the measured tables into benchmarks/RESULTS-default-layout-study.md (``--output``) between
its markers, keeping the analysis around them, with the micro-costs (decompress us per block,
unpickle us per block and per example) that the analysis's arithmetic uses.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import mmap
import os
import pickle
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import xxhash
import zstandard
from bench_default_vs_original import WORKLOADS, random_indices

SHARD_SIZE = 10_000
LEVEL = 3
DICT_FRACTION = 0.01  # compression_dict_size of the user's call
MIN_DICT = 1024
V2_TRAINING = {"k": 400, "d": 8}  # the reference writer's fixed fastCover parameters (V2_DICTIONARY_TRAINING)
V1_INDEX_ENTRY, V2_INDEX_ENTRY = 4, 24  # bytes per block: uint32 offset against offset, sizes, XXH3-64
V1_INDEX_HEADER, V2_INDEX_HEADER = 128, 64  # index.npy header, index.bin header (per shard)
U32 = struct.Struct("<I")

# -- pickling helpers ----------------------------------------------------------------------


def table(lengths: list[int]) -> bytes:
    """V2-BLOCK-3's example-offset table: count, then n + 1 u32 offsets."""
    offsets = [0]
    for n in lengths:
        offsets.append(offsets[-1] + n)
    return struct.pack(f"<{len(offsets) + 1}I", len(lengths), *offsets)


def read_table(raw: Any) -> tuple[int, tuple[int, ...]]:
    """(payload start, offsets) of a decoded block that starts with the table."""
    n = U32.unpack_from(raw, 0)[0]
    return 8 + 4 * n, struct.unpack_from(f"<{n + 1}I", raw, 4)


def pickle_with_memo(example: Any, memo: dict[int, Any] | None, protocol: int = 3) -> tuple[bytes, Any]:
    """(pickle, the pickler's final memo) of ``example`` with a pre-populated memo."""
    f = io.BytesIO()
    p = pickle.Pickler(f, protocol)
    if memo:
        p.memo = memo
    p.dump(example)
    return f.getvalue(), p.memo


def shared_objects(examples: list[Any]) -> list[Any]:
    """Objects (by identity) that the pickles of two or more ``examples`` memoize: globals, dtypes, keys."""
    memos = [pickle_with_memo(e, None)[1].copy() for e in examples]
    counts = Counter(k for m in memos for k in m)
    seen: dict[int, Any] = {}
    for m in memos:
        for k, (_, obj) in m.items():
            if counts[k] >= 2 and k not in seen:
                seen[k] = obj
    return list(seen.values())


def preamble_of(shared: list[Any]) -> tuple[bytes, dict[int, Any]]:
    """(preamble ops, pickler memo): a protocol 3 pickle that memoizes ``shared``, pops it, starts a list.

    ``preamble + slice_0 + ... + slice_n-1 + b"e."`` is one pickle of the block's list; a slice
    refers only to the preamble's memo entries (BINGET) and writes its own with explicit BINPUT
    indices above them, so ``preamble + slice_k + b"e."`` unpickles to ``[example_k]`` alone.
    """
    data, memo = pickle_with_memo(shared, None)
    return data[:-1] + b"0](", memo.copy()


def memo_free_slices(examples: list[Any], memo: dict[int, Any]) -> list[bytes]:
    """Per-example protocol 3 pickles with ``memo`` pre-populated, PROTO and STOP removed."""
    out = []
    for e in examples:
        data, _ = pickle_with_memo(e, dict(memo))
        out.append(data[2:-1])  # b"\x80\x03" ... b"."
    return out


def strip_header(data: bytes) -> bytes:
    """A protocol 5 pickle without PROTO (2 bytes), its FRAME (9 bytes, when present) and STOP."""
    return data[11:-1] if data[2:3] == b"\x95" else data[2:-1]


# -- candidates ------------------------------------------------------------------------------


class Candidate:
    """A layout: ``encode_block`` makes decoded blocks; a Reader reads them back."""

    name = ""
    doc = ""
    version = 2
    index_entry = V2_INDEX_ENTRY
    per_example_frames = False
    preamble_outside = False
    frames_per_block = 1  # 1: one zstd frame per block; 0: frames of 16 (or frame_examples) under a table
    unpickles_lists = True  # a second read of a block unpickles its whole list (one loads)
    grouped = False
    split = False  # multi-frame blocks: frames without group tables after u32 frame starts
    compressor_args: dict[str, Any] = {}

    def dataset_preamble(self, first_block: list[Any]) -> tuple[bytes, dict[int, Any]]:
        """(preamble bytes, pickler memo) made from the dataset's first block; none by default."""
        return b"", {}

    def encode_block(self, examples: list[Any], pre: dict[int, Any]) -> bytes:
        raise NotImplementedError

    # reading: per decoded block, ``prepare`` returns a state; ``one``/``all`` use it
    def prepare(self, raw: Any, shard: ShardReader) -> Any:
        return raw

    def one(self, state: Any, k: int, shard: ShardReader) -> Any:
        raise NotImplementedError

    def all(self, state: Any, shard: ShardReader) -> list[Any]:
        raise NotImplementedError


class Original(Candidate):
    name = "original"
    doc = "version 1: one protocol 4 list pickle per block, one frame, 4-byte offset index"
    version = 1
    index_entry = V1_INDEX_ENTRY

    def encode_block(self, examples: list[Any], pre: dict[int, Any]) -> bytes:
        return pickle.dumps(examples, protocol=4)

    def prepare(self, raw: Any, shard: ShardReader) -> Any:
        return pickle.loads(raw)

    def one(self, state: Any, k: int, shard: ShardReader) -> Any:
        return state[k]

    def all(self, state: Any, shard: ShardReader) -> list[Any]:
        return state


class ListFraming(Original):
    name = "list"
    doc = "framing list today: version 1's block bytes, version 2's 24-byte index entry"
    version = 2
    index_entry = V2_INDEX_ENTRY


class BlockFraming(Candidate):
    name = "block"
    unpickles_lists = False
    doc = "framing block (today's default): table + per-example protocol 5 pickles, one frame"

    def encode_block(self, examples: list[Any], pre: dict[int, Any]) -> bytes:
        pickles = [pickle.dumps(e, protocol=5) for e in examples]
        return table([len(p) for p in pickles]) + b"".join(pickles)

    def prepare(self, raw: Any, shard: ShardReader) -> Any:
        start, offsets = read_table(raw)
        return memoryview(raw)[start:], offsets

    def one(self, state: Any, k: int, shard: ShardReader) -> Any:
        payload, offsets = state
        return pickle.loads(payload[offsets[k]:offsets[k + 1]])

    def all(self, state: Any, shard: ShardReader) -> list[Any]:
        payload, offsets = state
        return [pickle.loads(payload[a:b]) for a, b in zip(offsets[:-1], offsets[1:], strict=True)]


class Headerless(BlockFraming):
    name = "block-headerless"
    doc = "block framing, each pickle without PROTO/FRAME/STOP (put back at read time)"

    def encode_block(self, examples: list[Any], pre: dict[int, Any]) -> bytes:
        pickles = [strip_header(pickle.dumps(e, protocol=5)) for e in examples]
        return table([len(p) for p in pickles]) + b"".join(pickles)

    def one(self, state: Any, k: int, shard: ShardReader) -> Any:
        payload, offsets = state
        return pickle.loads(b"\x80\x05" + payload[offsets[k]:offsets[k + 1]] + b".")

    def all(self, state: Any, shard: ShardReader) -> list[Any]:
        payload, offsets = state
        return [pickle.loads(b"\x80\x05" + payload[a:b] + b".") for a, b in zip(offsets[:-1], offsets[1:], strict=True)]


class ExampleFraming(BlockFraming):
    name = "example"
    doc = "framing example: a zstd frame per example (with the dictionary) under an uncompressed table"
    per_example_frames = True


class MemoFreeList(Candidate):
    name = "memo-free-list"
    doc = ("table + one protocol 3 list pickle whose items use explicit BINPUT indices and no shared "
           "memo: one loads reads the block, slice + STOP reads one example")

    def encode_block(self, examples: list[Any], pre: dict[int, Any]) -> bytes:
        slices = memo_free_slices(examples, {})
        return table([len(s) for s in slices]) + b"\x80\x03](" + b"".join(slices) + b"e."

    def prepare(self, raw: Any, shard: ShardReader) -> Any:
        start, offsets = read_table(raw)
        return memoryview(raw)[start:], offsets, 4  # the slices start after PROTO, EMPTY_LIST, MARK

    def one(self, state: Any, k: int, shard: ShardReader) -> Any:
        payload, offsets, base = state
        return pickle.loads(payload[base + offsets[k]:base + offsets[k + 1]].tobytes() + b".")

    def all(self, state: Any, shard: ShardReader) -> list[Any]:
        return pickle.loads(state[0])  # type: ignore[no-any-return]


class BlockPreamble(Candidate):
    name = "preamble-block"
    doc = ("table + [preamble][slices][APPENDS STOP]: one protocol 3 list pickle per block; a preamble "
           "per block memoizes what the examples share; a random read unpickles preamble + slice")

    def dataset_preamble(self, first_block: list[Any]) -> tuple[bytes, dict[int, Any]]:
        return preamble_of(shared_objects(first_block))

    def encode_block(self, examples: list[Any], pre: dict[int, Any]) -> bytes:
        pre_bytes, memo = pre["bytes"], pre["memo"]
        slices = memo_free_slices(examples, memo)
        return table([len(pre_bytes)] + [len(s) for s in slices]) + pre_bytes + b"".join(slices) + b"e."

    def prepare(self, raw: Any, shard: ShardReader) -> Any:
        start, offsets = read_table(raw)
        return memoryview(raw)[start:], offsets

    def one(self, state: Any, k: int, shard: ShardReader) -> Any:
        payload, offsets = state
        return pickle.loads(payload[:offsets[1]].tobytes() + payload[offsets[k + 1]:offsets[k + 2]] + b"e.")[0]

    def all(self, state: Any, shard: ShardReader) -> list[Any]:
        return pickle.loads(state[0])  # type: ignore[no-any-return]


class ShardPreamble(Candidate):
    name = "preamble-shard"
    doc = ("as preamble-block, but the preamble is stored outside the blocks (once, like the dictionary) and its "
           "unpickled memo cached: a random read is one Unpickler over the slice with that memo")
    preamble_outside = True

    def dataset_preamble(self, first_block: list[Any]) -> tuple[bytes, dict[int, Any]]:
        return preamble_of(shared_objects(first_block))

    def encode_block(self, examples: list[Any], pre: dict[int, Any]) -> bytes:
        slices = memo_free_slices(examples, pre["memo"])
        return table([len(s) for s in slices]) + b"".join(slices) + b"e."

    def prepare(self, raw: Any, shard: ShardReader) -> Any:
        start, offsets = read_table(raw)
        return memoryview(raw)[start:], offsets

    def one(self, state: Any, k: int, shard: ShardReader) -> Any:
        payload, offsets = state
        u = pickle.Unpickler(io.BytesIO(payload[offsets[k]:offsets[k + 1]].tobytes() + b"."))
        u.memo = shard.preamble_memo()
        return u.load()

    def all(self, state: Any, shard: ShardReader) -> list[Any]:
        u = pickle.Unpickler(io.BytesIO(b"](" + state[0].tobytes()))
        u.memo = shard.preamble_memo()
        return u.load()  # type: ignore[no-any-return]


class ShardPreambleLean(ShardPreamble):
    name = "preamble-shard-lean"
    doc = ("preamble-shard with lean zstd frames: no magic number, no dictionary id, no content size "
           "(the index entry's raw_size and the shard's dict_id say them)")
    compressor_args = {"magicless": True, "write_dict_id": False, "write_content_size": False}


class ShardPreambleSub(ShardPreamble):
    name = "preamble-shard-sub16"
    doc = ("preamble-shard cut into zstd frames of at most 16 examples inside a block (table first, "
           "uncompressed): a random read decodes one sub-frame")
    frames_per_block = 0  # 0: one frame per 16 examples


class Grouped(Candidate):
    """The recommended family: one protocol 3 list pickle per block that carries its own group table.

    Decoded frame j of a block (a block is one frame unless ``frame_examples`` cuts it):
    ``PROTO 3`` (frame 0 only), ``SHORT_BINBYTES t POP`` (t: u32 start of the slices in this frame,
    then the offsets of groups of ceil(m/8) of its m examples, u16 if the slices take < 64 KiB,
    else u32), the dataset preamble (frame 0 only,
    memoizes shared globals/keys/dtypes, ends with EMPTY_LIST MARK), the examples' memo-free slices,
    ``APPENDS STOP`` (last frame only). The frames' concatenation is one pickle of the block's list.
    """

    name = "grouped"
    doc = ("one protocol 3 list pickle per block = PROTO, a popped SHORT_BINBYTES table of <= 8 group "
           "offsets, the dataset preamble, memo-free example slices, APPENDS STOP; random read: preamble + one "
           "group; in-order: one loads of the block")
    frame_examples = 0  # 0: the whole block in one frame
    grouped = True

    def dataset_preamble(self, first_block: list[Any]) -> tuple[bytes, dict[int, Any]]:
        return preamble_of(shared_objects(first_block))

    def frame_parts(self, examples: list[Any], pre: dict[str, Any]) -> list[bytes]:
        """The decoded frames of a block."""
        slices = memo_free_slices(examples, pre["memo"])
        size = self.frame_examples or len(slices)
        parts = []
        for a in range(0, len(slices), size):
            chunk = slices[a:a + size]
            g = -(-len(chunk) // 8)
            head = pre["bytes"][2:] if a == 0 else b""
            offsets = [0]
            for i in range(0, len(chunk), g):
                offsets.append(offsets[-1] + sum(map(len, chunk[i:i + g])))
            first = b"\x80\x03" if a == 0 else b""
            width = "H" if offsets[-1] < 1 << 16 else "I"  # u16 group offsets when the slices fit in 64 KiB
            tab_len = 4 + struct.calcsize(f"<{len(offsets)}{width}")
            start = len(first) + 2 + tab_len + 1 + len(head)
            tab = struct.pack(f"<I{len(offsets)}{width}", start, *offsets)
            tail = b"e." if a + size >= len(slices) else b""
            parts.append(first + b"C" + bytes([tab_len]) + tab + b"0" + head + b"".join(chunk) + tail)
        return parts

    def encode_block(self, examples: list[Any], pre: dict[str, Any]) -> bytes:
        return b"".join(self.frame_parts(examples, pre))

    def all(self, state: Any, shard: ShardReader) -> list[Any]:
        return pickle.loads(state)  # type: ignore[no-any-return]

    def one(self, state: Any, k: int, shard: ShardReader) -> Any:
        return self.group(state, 0, k, shard.preamble_bytes(), shard.block)

    def group(self, raw: Any, j: int, k: int, pre: bytes, n_in_frame: int) -> Any:
        """Example ``k`` of decoded frame ``j``: unpickle the dataset preamble + its group's slices."""
        p = 4 if j == 0 else 2  # after PROTO (frame 0), the table's opcode and length byte
        tab_len = raw[p - 1]
        g = -(-n_in_frame // 8)
        count = -(-n_in_frame // g) + 1
        width = "H" if tab_len - 4 == 2 * count else "I"
        start, *offsets = struct.unpack_from(f"<I{count}{width}", raw, p)
        gi = k // g
        return pickle.loads(pre + raw[start + offsets[gi]:start + offsets[gi + 1]] + b"e.")[0 if g == 1 else k % g]


class GroupedLean(Grouped):
    name = "grouped-lean"
    doc = "grouped, with lean zstd frames: no magic number, no dictionary id, no content size"
    compressor_args = {"magicless": True, "write_dict_id": False, "write_content_size": False}


class GroupedLeanSub(GroupedLean):
    name = "grouped-lean-sub16"
    doc = ("grouped-lean (content size kept) cut into frames of 16 examples under an uncompressed u32 frame "
           "table (a block of <= 16 examples is one frame, no table): a random read decodes one frame; the "
           "frames' concatenation is still one pickle")
    frame_examples = 16
    frames_per_block = 0
    compressor_args = {"magicless": True, "write_dict_id": False, "write_content_size": True}


class GroupedLeanSub32(GroupedLeanSub):
    name = "grouped-lean-sub32"
    doc = "as grouped-lean-sub16 with frames of 32 examples (a block of 64: two frames)"
    frame_examples = 32


class GroupedSplit(GroupedLeanSub32):
    """grouped-lean; a block of more than 32 examples is cut into frames of 32 without group tables."""

    name = "grouped-lean-split32"
    doc = ("grouped-lean for blocks of <= 32 examples; a larger block is frames of 32 examples (content size "
           "kept) after (frames - 1) u32 frame starts, each frame without a group table: a random read decodes "
           "and unpickles its frame; the frames' concatenation is one pickle")
    split = True

    def frame_parts(self, examples: list[Any], pre: dict[str, Any]) -> list[bytes]:
        if len(examples) <= self.frame_examples:
            return super().frame_parts(examples, pre)
        slices = memo_free_slices(examples, pre["memo"])
        f = self.frame_examples
        parts = [b"".join(slices[a:a + f]) for a in range(0, len(slices), f)]
        parts[0] = pre["bytes"] + parts[0]
        parts[-1] += b"e."
        return parts


CANDIDATES: dict[str, Candidate] = {c.name: c for c in (
    Original(), ListFraming(), BlockFraming(), Headerless(), ExampleFraming(), MemoFreeList(), BlockPreamble(),
    ShardPreamble(), Grouped(), GroupedLean(), GroupedLeanSub(), GroupedLeanSub32(), GroupedSplit())}


# -- encoding ------------------------------------------------------------------------------------


def compressor(cand: Candidate, dictionary: zstandard.ZstdCompressionDict | None) -> Callable[[bytes], bytes]:
    """The candidate's zstd compress function at LEVEL with the shared dictionary."""
    args = cand.compressor_args
    if args.get("magicless"):
        params = zstandard.ZstdCompressionParameters.from_level(
            LEVEL, format=zstandard.FORMAT_ZSTD1_MAGICLESS, write_checksum=False,
            write_content_size=args.get("write_content_size", True), write_dict_id=args.get("write_dict_id", True))
        return zstandard.ZstdCompressor(dict_data=dictionary, compression_params=params).compress
    return zstandard.ZstdCompressor(level=LEVEL, dict_data=dictionary, write_checksum=False,
                                    write_content_size=args.get("write_content_size", True),
                                    write_dict_id=args.get("write_dict_id", True)).compress


def sub_groups(n: int) -> list[tuple[int, int]]:
    return [(a, min(a + 16, n)) for a in range(0, n, 16)]


def encode(cand: Candidate, examples: list[Any], block: int, out: Path) -> dict[str, Any]:
    """Writes the candidate's shards under ``out``; returns the layout's bytes and seconds."""
    start = time.perf_counter()
    out.mkdir(parents=True)
    total = 0
    dictionary = None
    shards = []
    for s0 in range(0, len(examples), SHARD_SIZE):
        shard_ex = examples[s0:s0 + SHARD_SIZE]
        blocks = [shard_ex[b:b + block] for b in range(0, len(shard_ex), block)]
        if not shards:  # one preamble per dataset, made from its first block (as the shared dictionary is)
            pre_bytes, memo = cand.dataset_preamble(blocks[0])
            pre = {"bytes": pre_bytes, "memo": memo}
            total += len(pre_bytes) * (cand.preamble_outside or cand.grouped)  # stored once (root)
        if cand.grouped:
            raws = [cand.frame_parts(b, pre) for b in blocks]  # type: ignore[attr-defined]
        elif cand.frames_per_block != 1:
            raws = [[cand.encode_block(b[a:z], pre) for a, z in sub_groups(len(b))] for b in blocks]
        elif cand.per_example_frames:
            raws = [[strip_table(cand.encode_block([e], pre)) for e in b] for b in blocks]
        else:
            raws = [[cand.encode_block(b, pre)] for b in blocks]
        if dictionary is None:  # the shared dictionary: trained on the first shard's decoded blocks
            samples = [b"".join(r) for r in raws]
            size = max(int(DICT_FRACTION * sum(map(len, samples))) + 1, MIN_DICT)
            params = V2_TRAINING if cand.version == 2 else {}
            dictionary = zstandard.train_dictionary(size, samples, level=LEVEL, **params)
            total += len(dictionary.as_bytes())
        compress = compressor(cand, dictionary)
        data = bytearray()
        entries = []
        for parts in raws:
            frames = [compress(p) for p in parts]
            one_frame = cand.frames_per_block == 1 or (cand.grouped and len(frames) == 1)
            if cand.split and len(frames) > 1:
                starts = [sum(map(len, frames[:i])) for i in range(1, len(frames))]
                frames = [struct.pack(f"<{len(starts)}I", *starts) + frames[0], *frames[1:]]
                one_frame = False
            stored = frames[0] if one_frame and not cand.per_example_frames else b"".join(frames) if cand.split else \
                table([len(f) for f in frames]) + b"".join(frames)
            entries.append((len(data), len(stored), sum(map(len, parts)), xxhash.xxh3_64_intdigest(stored)))
            data += stored
        (out / f"{len(shards)}.data").write_bytes(data)
        header = V1_INDEX_HEADER if cand.version == 1 else V2_INDEX_HEADER
        total += len(data) + header + cand.index_entry * len(entries)
        shards.append({"entries": entries, "count": len(shard_ex), "preamble": pre_bytes.hex()})
    (out / "dict.bin").write_bytes(dictionary.as_bytes() if dictionary else b"")
    (out / "layout.json").write_text(json.dumps({"candidate": cand.name, "block": block, "shards": shards}))
    return {"bytes": total, "seconds": time.perf_counter() - start}


def strip_table(raw: bytes) -> bytes:
    """The one example of a one-example block (for per-example frames)."""
    start, offsets = read_table(raw)
    return raw[start:]


# -- reading -------------------------------------------------------------------------------------


class ShardReader:
    """One shard of a candidate: mmap, index lists, a verified-block set, the last decoded block."""

    def __init__(self, root: Path, k: int, info: dict[str, Any], cand: Candidate, dctx: Any, block: int) -> None:
        self.cand, self.block, self.dctx = cand, block, dctx
        f = open(root / f"{k}.data", "rb")  # noqa: SIM115 - lives as long as the reader
        self.mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self.view = memoryview(self.mm)
        self.offsets = [e[0] for e in info["entries"]]
        self.stored = [e[1] for e in info["entries"]]
        self.raw = [e[2] for e in info["entries"]]
        self.sums = [e[3] for e in info["entries"]]
        self.verified: set[int] = set()
        self.count = info["count"]
        self._pre = bytes.fromhex(info["preamble"])
        self._memo: Any = None
        self.last: tuple[Any, Any] = (-1, None)
        self.hits = 0

    def preamble_memo(self) -> Any:
        if self._memo is None:
            u = pickle.Unpickler(io.BytesIO(self._pre + b"e."))
            u.load()
            self._memo = u.memo  # a memo proxy: assigning a dict to Unpickler.memo loses it (CPython 3.11)
        return self._memo

    def stored_block(self, b: int) -> Any:
        """Block ``b``'s stored bytes (a view of the map), its checksum verified once (version 2)."""
        o = self.offsets[b]
        data = self.view[o:o + self.stored[b]]
        if self.cand.version == 2 and b not in self.verified:
            if xxhash.xxh3_64_intdigest(data) != self.sums[b]:
                raise ValueError(f"block {b}: checksum mismatch")
            self.verified.add(b)
        return data

    def frames(self, b: int) -> tuple[Any, int, tuple[int, ...], int]:
        """(stored block, payload start, frame offsets, raw bound) of a block stored as a table of frames."""
        data = self.stored_block(b)
        if self.cand.split:
            m = -(-self.block_count(b) // self.cand.frame_examples)  # type: ignore[attr-defined]
            starts = struct.unpack_from(f"<{m - 1}I", data, 0)
            return data, 4 * (m - 1), (0, *starts, len(data) - 4 * (m - 1)), self.raw[b]
        start, offsets = read_table(data)
        return data, start, offsets, self.raw[b]

    def frame(self, state: Any, j: int) -> bytes:
        data, start, offsets, bound = state
        return self.dctx.decompress(data[start + offsets[j]:start + offsets[j + 1]], max_output_size=bound)

    def get(self, j: int) -> Any:
        """Example ``j`` of the shard, as ``ds[i]`` would read it (the last decoded block or sub-frame kept)."""
        b, k = divmod(j, self.block)
        cand = self.cand
        if cand.grouped:
            return self.get_grouped(b, k)
        if cand.per_example_frames:
            if b != self.last[0]:
                self.last = (b, self.frames(b))
            return pickle.loads(self.frame(self.last[1], k))
        key: Any = b
        if cand.frames_per_block != 1:
            g, k = divmod(k, 16)
            key = (b, g)
        last_key, state = self.last
        if key != last_key:
            if cand.frames_per_block != 1:
                state = cand.prepare(self.frame(self.frames(b), g), self)
            else:
                state = cand.prepare(self.dctx.decompress(self.stored_block(b), max_output_size=self.raw[b]), self)
                if k == 0 and b == last_key + 1 and cand.unpickles_lists and type(state) is not list:
                    state = cand.all(state, self)  # reading on from the previous block's end: one loads
            self.last = (key, state)
            self.hits = 0
        else:
            self.hits += 1
        if type(state) is list:
            return state[k]
        if self.hits == 1 and cand.unpickles_lists:  # a second read of the block: unpickle its list once
            state = cand.all(state, self)
            self.last = (key, state)
            return state[k]
        return cand.one(state, k, self)

    def whole(self, b: int, have: tuple[int, bytes] | None = None) -> list[Any]:
        """Block ``b`` decoded and unpickled in one loads (grouped family); ``have``: (frame, its decoded
        bytes) already decoded by a random read of the block."""
        if self.multi_frame(b):
            state = self.frames(b)
            raw = b"".join([have[1] if have and have[0] == g else self.frame(state, g)
                            for g in range(len(state[2]) - 1)])
        else:
            raw = have[1] if have else self.dctx.decompress(self.stored_block(b), max_output_size=self.raw[b])
        return pickle.loads(raw)  # type: ignore[no-any-return]

    def get_grouped(self, b: int, k: int) -> Any:
        """Random read: decode the example's frame, unpickle preamble + its group (the decoded frame kept);
        the second read of the same block unpickles the whole block in one loads and keeps the list."""
        last_b, state = self.last
        if b == last_b:
            if type(state) is not list:
                state = self.whole(b, state)
                self.last = (b, state)
            return state[k]
        if k == 0 and b == last_b + 1:  # reading on from the previous block's end: in order, one loads
            state = self.whole(b)
            self.last = (b, state)
            return state[0]
        pre = self.preamble_bytes()
        if self.multi_frame(b):
            fe = self.cand.frame_examples  # type: ignore[attr-defined]
            j, kk = divmod(k, fe)
            raw = self.frame(self.frames(b), j)
            self.last = (b, (j, raw))
            n_frame = min(fe, self.block_count(b) - j * fe)
            if self.cand.split:  # the whole frame: (preamble +) its slices (+ APPENDS STOP)
                last = (j + 1) * fe >= self.block_count(b)
                return pickle.loads((b"" if j == 0 else pre) + raw + (b"" if last else b"e."))[kk]
            return self.cand.group(raw, j, kk, pre, n_frame)  # type: ignore[attr-defined]
        raw = self.dctx.decompress(self.stored_block(b), max_output_size=self.raw[b])
        self.last = (b, (0, raw))
        return self.cand.group(raw, 0, k, pre, self.block_count(b))  # type: ignore[attr-defined]

    def multi_frame(self, b: int) -> bool:
        return self.cand.frames_per_block != 1 and self.block_count(b) > self.cand.frame_examples  # type: ignore

    def block_count(self, b: int) -> int:
        return min(self.block, self.count - b * self.block)

    def preamble_bytes(self) -> bytes:
        """The dataset preamble (with its PROTO), ready to prefix one group's slices."""
        return self._pre

    def iterate(self) -> Iterator[Any]:
        """Every example in order, each block decoded once (``for x in ds``)."""
        cand = self.cand
        for b in range(len(self.offsets)):
            if cand.grouped:
                yield from self.whole(b)
            elif cand.per_example_frames:
                state = self.frames(b)
                yield from (pickle.loads(self.frame(state, j)) for j in range(len(state[2]) - 1))
            elif cand.frames_per_block != 1 and not cand.grouped:
                state = self.frames(b)
                for g in range(len(state[2]) - 1):
                    yield from cand.all(cand.prepare(self.frame(state, g), self), self)
            else:
                yield from cand.all(cand.prepare(self.dctx.decompress(self.stored_block(b),
                                                                      max_output_size=self.raw[b]), self), self)


class Dataset:
    """The candidate's dataset: shards located by count, as a reader's ``ds[i]``."""

    def __init__(self, root: Path) -> None:
        layout = json.loads((root / "layout.json").read_text())
        cand = CANDIDATES[layout["candidate"]]
        dict_bytes = (root / "dict.bin").read_bytes()
        params = {}
        if cand.compressor_args.get("magicless"):
            params["format"] = zstandard.FORMAT_ZSTD1_MAGICLESS
        dctx = zstandard.ZstdDecompressor(dict_data=zstandard.ZstdCompressionDict(dict_bytes) if dict_bytes
                                          else None, **params)
        self.block = layout["block"]
        self.shards = [ShardReader(root, k, s, cand, dctx, self.block) for k, s in enumerate(layout["shards"])]
        self.n = sum(s.count for s in self.shards)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Any:
        k, j = divmod(i, SHARD_SIZE)
        return self.shards[k].get(j)

    def __iter__(self) -> Iterator[Any]:
        for s in self.shards:
            yield from s.iterate()


# -- measurement -----------------------------------------------------------------------------------


def child(job: dict[str, Any]) -> dict[str, float]:
    """One read in a fresh process: examples/s of random, in-order or iteration; or micro-costs."""
    ds = Dataset(Path(job["root"]))
    n = len(ds)
    if job["op"] == "micro":
        return micro(ds)
    start = time.perf_counter()
    if job["op"] == "iter":
        count = sum(1 for _ in ds)
        if count != n:
            raise RuntimeError(f"iteration gave {count} examples, expected {n}")
    else:
        indices = random_indices(n, job["count"]) if job["op"] == "random" else range(n)
        for i in indices:
            ds[i]
        count = len(indices)
    return {"rate": count / (time.perf_counter() - start)}


def micro(ds: Dataset) -> dict[str, float]:
    """Microseconds, over the first shard's full blocks: decompress a block, unpickle it all, unpickle one."""
    shard = ds.shards[0]
    cand = shard.cand
    blocks = range(len(shard.offsets) - 1)
    if cand.per_example_frames or cand.frames_per_block != 1:
        return {}
    for b in blocks:
        shard.stored_block(b)  # verify checksums first

    def timed(fn: Callable[[int], Any], reps: int = 3) -> float:
        best = float("inf")
        for _ in range(reps):
            t = time.perf_counter()
            for b in blocks:
                fn(b)
            best = min(best, (time.perf_counter() - t) / len(blocks) * 1e6)
        return best

    raws = {b: shard.dctx.decompress(shard.stored_block(b), max_output_size=shard.raw[b]) for b in blocks}
    decode = timed(lambda b: shard.dctx.decompress(shard.stored_block(b), max_output_size=shard.raw[b]))
    states = {b: cand.prepare(raws[b], shard) for b in blocks}
    prepare = timed(lambda b: cand.prepare(raws[b], shard))
    whole = timed(lambda b: cand.all(states[b], shard)) if type(states[0]) is not list else prepare
    one = timed(lambda b: cand.one(states[b], b % ds.block, shard)) if type(states[0]) is not list else 0.0
    return {"decode_us": decode, "prepare_us": prepare, "all_us": whole, "one_us": one,
            "stored": statistics.mean(shard.stored[b] for b in blocks), "raw": statistics.mean(raws[b].__len__()
                                                                                                  for b in blocks)}


def run_child(job: dict[str, Any]) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(job)], check=True, capture_output=True,
                         text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


OPS = ("random", "inorder", "iter")


def measure(workload: str, examples: list[Any], block: int, names: list[str], reps: int, n_random: int,
            work: Path) -> dict[str, dict[str, Any]]:
    """Per candidate: bytes, median write/read rates over ``reps`` alternating runs, micro-costs."""
    runs: dict[str, dict[str, list[float]]] = {c: {op: [] for op in ("write", *OPS)} for c in names}
    out: dict[str, dict[str, Any]] = {c: {} for c in names}
    for rep in range(reps):
        order = names if rep % 2 == 0 else names[::-1]
        for c in order:
            res = encode(CANDIDATES[c], examples, block, work / c)
            out[c]["bytes"] = res["bytes"]
            runs[c]["write"].append(len(examples) / res["seconds"])
        for op in OPS:
            for c in order:
                runs[c][op].append(run_child({"root": str(work / c), "op": op, "count": n_random})["rate"])
        if rep == reps - 1:
            for c in names:
                out[c]["micro"] = run_child({"root": str(work / c), "op": "micro"})
        for c in names:
            shutil.rmtree(work / c)
    for c in names:
        out[c].update({op: statistics.median(v) for op, v in runs[c].items()})
        out[c]["runs"] = runs[c]
        print(f"{workload} {block} {c}: {json.dumps(out[c])}", file=sys.stderr, flush=True)
    return out


TARGETS = {64: (1.01, 1.5), 8: (1.03, 1.2)}  # block: (bytes at most, random at least)


def verdict(block: int, r: dict[str, Any], base: dict[str, Any]) -> str:
    max_bytes, min_random = TARGETS.get(block, (1.03, 1.2))
    missed = [label for label, ok in (
        ("bytes", r["bytes"] / base["bytes"] <= max_bytes), ("random", r["random"] / base["random"] >= min_random),
        ("in-order", r["inorder"] >= base["inorder"]), ("iteration", r["iter"] >= base["iter"]),
        ("write", r["write"] >= base["write"]))
        if not ok]
    return "all met" if not missed else "misses " + ", ".join(missed)


def render(results: list[tuple[str, int, dict[str, dict[str, Any]]]], args: argparse.Namespace,
           load: tuple[float, float]) -> str:
    lines = [
        "# Default layout study (issue 17, deliverable 1): measured tables",
        "",
        f"- Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; Python {platform.python_version()}, "
        f"zstandard {zstandard.__version__}, {os.cpu_count()} logical CPUs shared with other jobs (1-minute load "
        f"{load[0]:.2f} at start, {load[1]:.2f} at end)",
        f"- Command: `python benchmarks/study_default_layout.py {' '.join(args.argv)}`",
        f"- Workloads of `bench_default_vs_original.py`: text {args.text:,}, numpy {args.numpy:,} examples; shards "
        f"of {SHARD_SIZE:,}; zstd level {LEVEL}, shared dictionary of 1% of the first shard's decoded blocks "
        "(original: zstd's default training; others: fastCover k=400 d=8)",
        "- bytes = stored blocks + index (original: 128 + 4 per block per shard; others 64 + 24) + dictionary "
        "(+ the preamble once, where a reader needs it outside the blocks); JSON metadata (about 1 KB a shard) "
        "is left out",
        f"- reads: each in a fresh process, median of {args.reps} runs, candidates alternating order; random "
        f"`ds[i]` over {args.random:,} indices; ratio = candidate / original in the same run",
        "",
        "## Candidates",
        "",
    ]
    lines += [f"- `{c.name}`: {c.doc}" for c in CANDIDATES.values() if c.name in args.names]
    lines += ["", "## Ratios against the original", "",
              "| workload, block | candidate | bytes | random | in-order | iteration | write | targets |",
              "|---|---|---|---|---|---|---|---|"]
    for workload, block, res in results:
        base = res["original"]
        for c, r in res.items():
            if c == "original":
                lines.append(f"| {workload}, {block} | original | {base['bytes'] / 1e6:.3f} MB | "
                             f"{base['random']:,.0f}/s | {base['inorder']:,.0f}/s | {base['iter']:,.0f}/s | "
                             f"{base['write']:,.0f}/s | |")
                continue
            lines.append(f"| {workload}, {block} | {c} | {r['bytes'] / base['bytes']:.4f}x | "
                         f"{r['random'] / base['random']:.2f}x | {r['inorder'] / base['inorder']:.2f}x | "
                         f"{r['iter'] / base['iter']:.2f}x | {r['write'] / base['write']:.2f}x | "
                         f"{verdict(block, r, base)} |")
    lines += ["", "## Measured costs (first shard, full blocks, best of 3 passes, in a fresh process)", "",
              "| workload, block | candidate | stored B/block | decoded B/block | decompress us/block "
              "| table/list us | unpickle all us/block | unpickle one us |",
              "|---|---|---|---|---|---|---|---|"]
    for workload, block, res in results:
        for c, r in res.items():
            m = r.get("micro") or {}
            if m:
                lines.append(f"| {workload}, {block} | {c} | {m['stored']:,.0f} | {m['raw']:,.0f} | "
                             f"{m['decode_us']:.1f} | {m['prepare_us']:.2f} | {m['all_us']:.1f} | "
                             f"{m['one_us']:.2f} |")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--text", type=int, default=50_000)
    parser.add_argument("--numpy", type=int, default=10_000)
    parser.add_argument("--random", type=int, default=10_000)
    parser.add_argument("--blocks", default="64,8")
    parser.add_argument("--quick", action="store_true", help="10k text, 3k numpy, 3k random reads, 1 run")
    parser.add_argument("--output", default=str(Path(__file__).with_name("RESULTS-default-layout-study.md")))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    args.argv = sys.argv[1:]
    if args.quick:
        args.text, args.numpy, args.random, args.reps = 10_000, 3_000, 3_000, 1
    args.names = ["original", *[c for c in args.candidates.split(",") if c != "original"]]
    load0 = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="atlas-layout-study-"))
    results = []
    try:
        for workload, n in (("text", args.text), ("numpy", args.numpy)):
            examples = WORKLOADS[workload](n)
            check(examples[:200])
            for block in (int(b) for b in args.blocks.split(",")):
                res = measure(workload, examples, block, args.names, args.reps, min(args.random, n), work)
                results.append((workload, block, res))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = render(results, args, (load0, os.getloadavg()[0]))
    write_results(Path(args.output), text)
    print(text)


BEGIN, END = "<!-- measured: written by study_default_layout.py -->", "<!-- end of measured -->"


def write_results(path: Path, tables: str) -> None:
    """Writes the measured tables into ``path`` between the markers, keeping the analysis around them."""
    block = f"{BEGIN}\n{tables}\n{END}"
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    if BEGIN in old and END in old:
        block = old[:old.index(BEGIN)] + block + old[old.index(END) + len(END):]
    path.write_text(block, encoding="utf-8")


def check(examples: list[Any]) -> None:
    """Every candidate reads back what it wrote (random, in-order and iteration)."""
    import numpy as np

    def same(a: Any, b: Any) -> bool:
        return pickle.dumps(a, 4) == pickle.dumps(b, 4) if not isinstance(a, dict) else \
            a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)

    with tempfile.TemporaryDirectory() as tmp:
        for c in CANDIDATES:
            encode(CANDIDATES[c], examples, 8, Path(tmp) / c)
            ds = Dataset(Path(tmp) / c)
            got = [ds[i] for i in (5, 77, 3, 150, 151, 152)] + [ds[i] for i in range(len(examples))] + list(ds)
            want = [examples[i] for i in (5, 77, 3, 150, 151, 152)] + examples + examples
            if not all(same(a, b) for a, b in zip(got, want, strict=True)):
                raise AssertionError(f"{c} does not read back what it wrote")


if __name__ == "__main__":
    main()
