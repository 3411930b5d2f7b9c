"""Design study: how fast could a random ``ds[i]`` of typed text at block 8 be (not a test).

Issue 18 asks typed reads to be at least 3x safe-mode pickle. At block 8 a random read of text is mostly
work both encodings share: find the block, verify its checksum, read its head, decompress its one frame,
then decode one example (typed: msgspec, 0.35 µs; safe pickle: about 11 µs). With F the shared part, the
ratio is (F + safe) / (F + typed), so it depends on F alone. This study measures, in one process over the
same 20,000 random indices of the acceptance benchmark's 50,000 text examples:

- the reader: ``ds[i]`` on the typed dataset, the pickle dataset, and the pickle dataset with ``safe=True``;
- a bare loop doing only what such a read must (bisect, the stored block's slice, its checksum once, the
  head read through ``atlas_format.grouped``'s declaration, the frame's declared size, the frame, the
  example's slice decoded), without and with the reader's block cache bookkeeping (``BlockCache`` of the
  default 16 blocks: a lookup, a ``CachedBlock``, ``keep``).

Best of 5 loops each (a loop starts with no block verified). The gap between the bare loop with the cache
and the reader is what the reader's layers cost a read.

    python benchmarks/study_random_read_floor.py
"""

from __future__ import annotations

import bisect
import random
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import xxhash
import zstandard

from atlas_format import grouped, typed
from torch_atlas_ds import AtlasDataset, AtlasDatasetWriter
from torch_atlas_ds.block_cache import BlockCache, CachedBlock

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_default_vs_original import text_examples  # noqa: E402  (the acceptance workload)
from bench_typed_codec import best_us  # noqa: E402  (best of loops, µs per item)

BLOCK = 8


def bare_loop(ds: AtlasDataset, indices: list[int], cache: BlockCache | None) -> Callable[[], None]:
    """The work a random read of a typed grouped block of 8 must do, with the shard's own maps and decoders."""
    shards, starts = ds.shards, ds._starts
    for shard in shards:
        shard._maps()
    decode, dctx = shards[0].loads, shards[0]._dctx()
    first = len(typed.array_header(BLOCK))
    group = shards[0].group

    def run() -> None:
        verified = [bytearray(s.num_blocks) for s in shards]
        for i in indices:
            k = bisect.bisect_right(starts, i) - 1
            shard = shards[k]
            b, pos = divmod(i - starts[k], BLOCK)
            if cache is not None:
                cache.get((shard.label, b))
            maps = shard._m
            offset, raw = maps.offsets[b], maps.raw[b]
            stored = maps.data.read(offset, maps.stored[b])
            if not verified[k][b]:
                if xxhash.xxh3_64_intdigest(stored) != maps.checksums[b]:
                    raise ValueError(f"block {b} of shard {k}: checksum")
                verified[k][b] = 1
            width = grouped.offset_width(raw)
            head = grouped.head_struct(BLOCK, width, group, True)
            offsets = head.unpack_from(stored)
            frame_data = stored[head.size:]
            params = zstandard.get_frame_parameters(frame_data, format=zstandard.FORMAT_ZSTD1_MAGICLESS)
            if params.content_size != raw:
                raise ValueError(f"block {b} of shard {k}: declared size")
            frame = dctx.decompress(frame_data)
            if cache is not None:
                blk = CachedBlock(shard.label, b, b * BLOCK, BLOCK, stored, raw, raw)
                blk.part = (0, frame, (first, offsets, len(frame)), 1)
                cache.keep(blk)
            decode(frame[first + offsets[pos - 1] if pos else first:
                         first + offsets[pos] if pos < len(offsets) else len(frame)])
    return run


def main() -> int:
    examples = text_examples(50_000)
    rng = random.Random(1)
    indices = [rng.randrange(len(examples)) for _ in range(20_000)]
    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for encoding in ("typed", "pickle"):
            with AtlasDatasetWriter(f"{tmp}/{encoding}", 10_000, BLOCK, encoding=encoding) as writer:
                for example in examples:
                    writer.add_example(example)

        def reader(path: str, **options: Any) -> Callable[[], None]:
            def run() -> None:
                ds = AtlasDataset(path, **options)
                for i in indices:
                    ds[i]
            return run

        n = len(indices)
        rows.append(("reader, typed", best_us(reader(f"{tmp}/typed"), n, 5)))
        rows.append(("reader, pickle", best_us(reader(f"{tmp}/pickle"), n, 5)))
        rows.append(("reader, pickle, safe=True", best_us(reader(f"{tmp}/pickle", safe=True), n, 5)))
        typed_ds = AtlasDataset(f"{tmp}/typed")
        rows.append(("bare loop, typed", best_us(bare_loop(typed_ds, indices, None), n, 5)))
        rows.append(("bare loop, typed, with the block cache (16)",
                     best_us(bare_loop(typed_ds, indices, BlockCache(16, 64 << 20)), n, 5)))
    print("| random ds[i], text, block 8 | µs a read |")
    print("|---|---|")
    for label, us in rows:
        print(f"| {label} | {us:.2f} |")
    values = dict(rows)
    safe_extra = values["reader, pickle, safe=True"] - values["reader, pickle"]
    print(f"\nsafe loading adds {safe_extra:.2f} µs a read; typed / safe now "
          f"{values['reader, pickle, safe=True'] / values['reader, typed']:.2f}x")
    for label in ("bare loop, typed", "bare loop, typed, with the block cache (16)"):
        floor = values[label]
        print(f"with the {label}'s cost as the typed read: {(floor + safe_extra) / floor:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
