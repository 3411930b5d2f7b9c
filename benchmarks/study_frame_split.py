"""Design study: where framing grouped cuts a block of 64 into zstd pieces (not a test).

Issue 17 asks for iteration at least as fast as the original and random reads at least 1.5x at block
64. The default stores a block of 64 as two magicless frames of 32 (V2-FRAME-6/7): a random read decodes
one, iteration decodes both, and each frame loads the shared dictionary's entropy tables again. This
study takes the default's own decoded blocks (preamble and slices, text workload of the acceptance
benchmark) and stores them again, with the same dictionary and level, as:

- ``two frames``: the default (frames of 32);
- ``one frame``: one frame per block (what iteration would like; a random read decodes it all);
- ``one frame, a zstd block per k groups``: one frame whose zstd blocks end at every k-th group boundary
  (``COMPRESSOBJ_FLUSH_BLOCK``), so a random read decodes the frame's prefix through its group's zstd
  block (``decompressobj`` fed that prefix); the stored head would need one end offset per zstd block.

Per layout: bytes against the default, the decode time of a whole block (iteration's share), and the
mean decode time of a random read over the block's groups. Best of 5 timing loops per block, mean over
the blocks sampled. Decoding only: unpickling is the same for every layout.

    python benchmarks/study_frame_split.py [--blocks 16]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import zstandard

from atlas_format import grouped
from atlas_format.index_v2 import INDEX_ENTRY_DTYPE, IndexHeader
from torch_atlas_ds import AtlasDatasetWriter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_default_vs_original import text_examples  # noqa: E402  (the acceptance benchmark's workload)

GROUPS = grouped.FRAME_EXAMPLES // grouped.FRAME_GROUP  # groups of 8 in a frame of 32


def best_us(fn: Callable[[], Any], loops: int = 300) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        best = min(best, (time.perf_counter() - start) / loops)
    return best * 1e6


def stored_blocks(root: Path, count: int) -> list[tuple[bytes, int]]:
    """(stored block, raw size) of ``count`` full blocks spread over shard 0."""
    raw_index = (root / "000000" / "index.bin").read_bytes()
    header = IndexHeader.parse(raw_index)
    entries = np.frombuffer(raw_index, dtype=INDEX_ENTRY_DTYPE, offset=header.header_size)
    data = (root / "000000" / "data.bin").read_bytes()
    step = max(1, (len(entries) - 1) // count)
    out = []
    for b in range(0, len(entries) - 1, step)[:count]:
        at, size = int(entries["offset"][b]), int(entries["stored_size"][b])
        out.append((data[at:at + size], int(entries["raw_size"][b])))
    return out


def decode_all(dctx: Any, frames: list[bytes]) -> list[bytes]:
    return [dctx.decompress(f) for f in frames]


def decode_prefix(dctx: Any, data: bytes, end: int) -> bytes:
    """What a streaming decoder gives for the first ``end`` bytes of a frame (its complete zstd blocks)."""
    return bytes(dctx.decompressobj().decompress(data[:end]))


def flushed(whole: bytes, bounds: list[int], every: int, dictionary: Any, params: Any) -> tuple[bytes, list[int]]:
    """One frame of ``whole`` whose zstd blocks end at every ``every``-th group boundary, and for each group
    where the zstd block holding its end ends."""
    cobj = zstandard.ZstdCompressor(dict_data=dictionary, compression_params=params).compressobj(size=len(whole))
    out, ends = b"", []
    for q in range(len(bounds) - 1):
        out += cobj.compress(whole[bounds[q]:bounds[q + 1]])
        if (q + 1) % every == 0:
            out += cobj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
            ends.extend([len(out)] * every)
    out += cobj.flush()
    ends[-1] = len(out)
    return out, ends


def measure(stored: bytes, raw_size: int, preamble_size: int, dictionary: Any, params: Any,
            dctx: Any) -> list[tuple[str, int, float, float]]:
    """(layout, stored bytes with its head, whole-block decode us, mean random-read decode us) of one block."""
    starts, offsets = grouped.read_head(stored, 64, raw_size)
    frames = [stored[starts[0]:starts[1]], stored[starts[1]:]]
    decoded = decode_all(dctx, frames)
    whole = b"".join(decoded)
    out = [("two frames of 32 (the default)", len(stored), best_us(lambda: decode_all(dctx, frames)),
            statistics.mean(best_us(lambda f=f: dctx.decompress(f)) for f in frames))]
    one = zstandard.ZstdCompressor(dict_data=dictionary, compression_params=params).compress(whole)
    one_us = best_us(lambda: dctx.decompress(one))
    out.append(("one frame", len(one) + 2 * (2 * GROUPS - 1), one_us, one_us))
    # group boundaries in the decoded block: frame 0's after the preamble, frame 1's after frame 0
    bounds = [0, *(preamble_size + o for o in offsets[0]), len(decoded[0]),
              *(len(decoded[0]) + o for o in offsets[1]), len(whole)]
    for every in (1, 2, 4):
        data, ends = flushed(whole, bounds, every, dictionary, params)
        assert decode_prefix(dctx, data, len(data)) == whole
        assert all(len(decode_prefix(dctx, data, e)) >= bounds[q + 1] for q, e in enumerate(ends))
        head = 2 * (len(bounds) - 2) + 2 * (2 * GROUPS // every - 1)  # group offsets + zstd block ends
        out.append((f"one frame, a zstd block per {every} group{'s' if every > 1 else ''}", len(data) + head,
                    best_us(lambda d=data: decode_prefix(dctx, d, len(d))),
                    statistics.mean(best_us(lambda d=data, e=e: decode_prefix(dctx, d, e), 150) for e in ends)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=16)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="frame-split-") as tmp:
        root = Path(tmp) / "text64"
        with AtlasDatasetWriter(root, 10000, 64) as writer:
            for example in text_examples(50_000):
                writer.add_example(example)
        dictionary = zstandard.ZstdCompressionDict((root / "zstd_dict.bin").read_bytes())
        meta = json.loads((root / "000000" / "meta.json").read_text())
        preamble_size = len(grouped.preamble_from_json(meta[grouped.PREAMBLE_MEMBER]))
        blocks = stored_blocks(root, args.blocks)
    params = zstandard.ZstdCompressionParameters.from_level(
        3, format=zstandard.FORMAT_ZSTD1_MAGICLESS, write_checksum=False, write_content_size=True,
        write_dict_id=False)
    dctx = zstandard.ZstdDecompressor(dict_data=dictionary, format=zstandard.FORMAT_ZSTD1_MAGICLESS)
    rows: dict[str, list[tuple[int, float, float]]] = {}
    for stored, raw_size in blocks:
        for name, size, whole_us, random_us in measure(stored, raw_size, preamble_size, dictionary, params, dctx):
            rows.setdefault(name, []).append((size, whole_us, random_us))
    base = sum(r[0] for r in rows["two frames of 32 (the default)"])
    print(f"{len(blocks)} blocks of 64 text examples (acceptance workload), zstd level 3, shared dictionary, "
          "magicless frames; decode only, best of 5 loops, mean over blocks")
    print("| layout | bytes vs the default | whole block decode, µs | random read decode, µs |")
    print("|---|---|---|---|")
    for name, values in rows.items():
        print(f"| {name} | {sum(v[0] for v in values) / base:.4f}x | {statistics.mean(v[1] for v in values):.2f} | "
              f"{statistics.mean(v[2] for v in values):.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
