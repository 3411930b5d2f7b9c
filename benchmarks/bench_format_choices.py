"""The measurements behind spec/FORMAT.md section 9 (design choices of version 2).

Measured in one run on the same blocks, reported as absolute times and as ratios:
checksum cost against decompression (V2-CHK-1), and the size and speed trade of one
pickle per example with an offset table (V2-BLOCK-3). Not a test.

    python benchmarks/bench_format_choices.py [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import pickle
import random
import string
import time
import zlib
from collections.abc import Callable, Sequence

import lz4.frame
import numpy as np
import xxhash
import zstandard

from atlas_format.block_v2 import encode_block


def best_us(fn: Callable[[bytes], object], items: Sequence[bytes], reps: int = 15) -> float:
    """Best-of-reps mean microseconds per item (the least disturbed run)."""
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, (time.perf_counter() - start) / len(items))
    return best * 1e6


def text_examples(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    alphabet = string.ascii_lowercase + "     "
    return [{"text": "".join(rng.choice(alphabet) for _ in range(rng.randint(100, 600))),
             "a": rng.randint(0, 10**6), "b": rng.randint(0, 100)} for _ in range(n)]


def image_examples(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"image": rng.integers(0, 256, (3, 32, 32), dtype=np.uint8), "label": i % 10} for i in range(n)]


def train(blocks: list[bytes]) -> zstandard.ZstdCompressionDict:
    size = max(int(0.01 * sum(map(len, blocks))) + 1, 1024)
    return zstandard.train_dictionary(size, blocks, level=3)


def checksum_costs(blocks: list[bytes]) -> dict:
    d = train(blocks[:100])
    zstd_blocks = [zstandard.ZstdCompressor(level=3, dict_data=d).compress(b) for b in blocks]
    lz4_blocks = [lz4.frame.compress(b, store_size=True) for b in blocks]
    dctx = zstandard.ZstdDecompressor(dict_data=d)
    out = {
        "block_kb": sum(map(len, blocks)) / len(blocks) / 1024,
        "zstd_dict_decompress_us": best_us(dctx.decompress, zstd_blocks),
        "lz4_decompress_us": best_us(lz4.frame.decompress, lz4_blocks),
        "unpickle_block_us": best_us(pickle.loads, blocks),
    }
    for name, fn in (("xxh3_64", xxhash.xxh3_64_intdigest), ("xxh64", xxhash.xxh64_intdigest),
                     ("crc32", zlib.crc32)):
        out[f"{name}_on_zstd_block_us"] = best_us(fn, zstd_blocks)
        out[f"{name}_on_lz4_block_us"] = best_us(fn, lz4_blocks)
        out[f"{name}_vs_zstd"] = out[f"{name}_on_zstd_block_us"] / out["zstd_dict_decompress_us"]
        out[f"{name}_vs_lz4"] = out[f"{name}_on_lz4_block_us"] / out["lz4_decompress_us"]
    return out


def per_example_costs(examples: list[dict], block_size: int) -> dict:
    chunks = [examples[i:i + block_size] for i in range(0, len(examples), block_size)]
    v1 = [pickle.dumps(c, protocol=4) for c in chunks]
    v2 = [encode_block([pickle.dumps(e, protocol=5) for e in c]) for c in chunks]
    d1, d2 = train(v1[:125]), train(v2[:125])
    z1 = sum(len(zstandard.ZstdCompressor(level=3, dict_data=d1).compress(b)) for b in v1)
    z2 = sum(len(zstandard.ZstdCompressor(level=3, dict_data=d2).compress(b)) for b in v2)
    raw1, raw2 = sum(map(len, v1)), sum(map(len, v2))
    singles = [pickle.dumps(e, protocol=5) for e in examples[:2000]]
    return {
        "block_size": block_size,
        "decoded_overhead": raw2 / raw1 - 1,
        "zstd_dict_overhead": z2 / z1 - 1,
        "unpickle_one_example_us": best_us(pickle.loads, singles),
        "unpickle_whole_block_us": best_us(pickle.loads, v1[:100]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    text = text_examples(64 * 300)
    results = {
        "checksum_text_block_64": checksum_costs([pickle.dumps(text[i:i + 64], protocol=4)
                                                  for i in range(0, len(text), 64)]),
        "checksum_image_block_64": checksum_costs([pickle.dumps(image_examples(64, s), protocol=4)
                                                   for s in range(40)]),
        "per_example_text": [per_example_costs(text, bs) for bs in (8, 64)],
    }
    images = image_examples(64 * 40)
    results["per_example_image"] = [per_example_costs(images, 64)]
    for key in ("checksum_text_block_64", "checksum_image_block_64"):
        r = results[key]
        print(f"{key}: {r['block_kb']:.1f} KB; zstd+dict {r['zstd_dict_decompress_us']:.2f} us, "
              f"lz4 {r['lz4_decompress_us']:.2f} us, unpickle {r['unpickle_block_us']:.2f} us")
        for name in ("xxh3_64", "xxh64", "crc32"):
            print(f"  {name:8s} {r[f'{name}_on_zstd_block_us']:.2f} us on the zstd block "
                  f"({100 * r[f'{name}_vs_zstd']:.1f}% of zstd), {r[f'{name}_on_lz4_block_us']:.2f} us "
                  f"on the lz4 block ({100 * r[f'{name}_vs_lz4']:.1f}% of lz4)")
    for r in results["per_example_text"] + results["per_example_image"]:
        print(f"per-example pickles, block {r['block_size']}: +{100 * r['decoded_overhead']:.1f}% decoded, "
              f"+{100 * r['zstd_dict_overhead']:.1f}% with zstd+dict; one example {r['unpickle_one_example_us']:.2f} "
              f"us vs whole block {r['unpickle_whole_block_us']:.2f} us "
              f"({r['unpickle_whole_block_us'] / r['unpickle_one_example_us']:.0f}x)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
