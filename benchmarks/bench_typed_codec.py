"""Typed examples against pickle, one example at a time (not a test): what the encoding itself costs.

Issue 18 targets typed reads at least as fast as trusted pickle on arrays, within 10% of it on text, and
at least 3x safe-mode pickle, for no more bytes. Before datasets store typed examples, this measures the
encoding alone on the acceptance benchmark's workloads: bytes per example (raw and zstd level 3 over
blocks of 64), decode and encode time per example against ``pickle.loads``/``pickle.dumps`` (protocol 5,
the per-example protocol of framings block and example) and against the safe loader, and the msgspec
decoder against msgpack's. Best of 7 loops over every example, same run.

Then what a dataset's read decodes: every decoded block of the default layout at block 64 (framing grouped),
written with each encoding, given to its shard's decoder (pickle: one ``loads`` with the preamble; typed:
msgspec and the extension hook), and the typed block with a hook that returns None (msgspec's own part).

    python benchmarks/bench_typed_codec.py [--text 20000] [--numpy 4000]
"""

from __future__ import annotations

import argparse
import pickle
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import msgspec
import zstandard

from torch_atlas_ds import AtlasDataset, AtlasDatasetWriter
from torch_atlas_ds.safe_pickle import SafeUnpickler
from torch_atlas_ds.typed_codec import TypedDecoder, encode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_default_vs_original import numpy_examples, text_examples  # noqa: E402  (the acceptance workloads)


def best_us(fn: Callable[[], Any], n: int, loops: int = 7) -> float:
    best = float("inf")
    for _ in range(loops):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best / n * 1e6


def compressed(items: list[bytes]) -> int:
    """zstd level 3 over blocks of 64 concatenated items (no dictionary)."""
    cctx = zstandard.ZstdCompressor(level=3)
    return sum(len(cctx.compress(b"".join(items[a:a + 64]))) for a in range(0, len(items), 64))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--text", type=int, default=20_000)
    parser.add_argument("--numpy", type=int, default=4_000)
    args = parser.parse_args(argv)
    decoder, safe = TypedDecoder(), SafeUnpickler()
    rows = []
    for label, examples in (("text dicts", text_examples(args.text)), ("numpy dicts", numpy_examples(args.numpy))):
        n = len(examples)
        pickles = [pickle.dumps(e, protocol=5) for e in examples]
        typed_bytes = [encode(e) for e in examples]
        row = {
            "label": label, "n": n,
            "bytes": (sum(map(len, pickles)) / n, sum(map(len, typed_bytes)) / n),
            "zstd": (compressed(pickles) / n, compressed(typed_bytes) / n),
            "pickle": best_us(lambda p=pickles: [pickle.loads(x) for x in p], n),
            "safe": best_us(lambda p=pickles: [safe.loads(x) for x in p], n, 3),
            "typed": best_us(lambda t=typed_bytes: [decoder.decode(x) for x in t], n),
            "msgpack": best_us(lambda t=typed_bytes: [msgpack.unpackb(x, strict_map_key=False,
                                                                      ext_hook=lambda c, d: d) for x in t], n),
            "dumps": best_us(lambda e=examples: [pickle.dumps(x, protocol=5) for x in e], n),
            "encode": best_us(lambda e=examples: [encode(x) for x in e], n),
        }
        rows.append(row)
    print("| examples | bytes pickle / typed | zstd bytes pickle / typed | pickle.loads µs | safe loader µs | "
          "typed decode µs | typed / pickle | safe / typed | msgpack (no arrays built) µs | pickle.dumps µs | "
          "typed encode µs |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['label']} ({r['n']:,}) | {r['bytes'][0]:.0f} / {r['bytes'][1]:.0f} | {r['zstd'][0]:.0f} / "
              f"{r['zstd'][1]:.0f} | {r['pickle']:.2f} | {r['safe']:.2f} | {r['typed']:.2f} | "
              f"{r['typed'] / r['pickle']:.2f}x | {r['safe'] / r['typed']:.1f}x | {r['msgpack']:.2f} | "
              f"{r['dumps']:.2f} | {r['encode']:.2f} |")
    print()
    print("| examples, block 64 | pickle block µs | typed block µs | typed / pickle | msgspec with a no-op hook µs |")
    print("|---|---|---|---|---|")
    for label, examples in (("text dicts", text_examples(args.text)), ("numpy dicts", numpy_examples(args.numpy))):
        pickled, typed_, tree = block_decode_us(examples)
        print(f"| {label} ({len(examples):,}) | {pickled:.1f} | {typed_:.1f} | {typed_ / pickled:.2f}x | {tree:.1f} |")
    return 0


def block_decode_us(examples: list[Any]) -> tuple[float, float, float]:
    """µs a block of 64 (mean over the dataset's blocks, best of 7): pickle's and typed's decode of each decoded
    block, and msgspec's decode of the typed blocks with a hook returning None."""
    out = []
    noop = msgspec.msgpack.Decoder(ext_hook=lambda code, payload: None)
    with tempfile.TemporaryDirectory() as tmp:
        for encoding in ("pickle", "typed"):
            with AtlasDatasetWriter(f"{tmp}/{encoding}", len(examples), 64, encoding=encoding) as writer:
                for example in examples:
                    writer.add_example(example)
            shard = AtlasDataset(f"{tmp}/{encoding}").shards[0]
            blocks = [bytes(shard.decoded_block(b)) for b in range(len(shard) // 64)]
            loads = shard.loads
            out.append(best_us(lambda blocks=blocks, loads=loads: [loads(x) for x in blocks], len(blocks)))
        out.append(best_us(lambda blocks=blocks: [noop.decode(x) for x in blocks], len(blocks)))
    return out[0], out[1], out[2]


if __name__ == "__main__":
    raise SystemExit(main())
