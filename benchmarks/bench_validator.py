"""Benchmark of atlas-validate: full validation against reading the dataset once, and --quick time.

Not a test. Run: python benchmarks/bench_validator.py [--write] [--examples N]
--write replaces benchmarks/RESULTS-validator.md with the numbers measured.

What is compared, in the same run and on the same blocks:
  raw      read each stored block from data.bin and decompress it (zstd with the dataset's
           dictionary, or LZ4), nothing else: the floor any full validation must pay;
  trusted  read the dataset once in trusted mode: ``for example in AtlasDataset(path)`` (checksums,
           decompression, pickle.loads of every example);
  full     atlas_validator.validate(path, jobs=J): checksums, frame checks, strict streaming
           decompression, example tables and the pickle policy checked on every pickle by the
           validator's scanner (pure Python: it never runs the C unpickler on a dataset's bytes);
  quick    validate(path, quick=True) on a dataset of 10,000 blocks (no block is read).
Throughput is stored (on-disk) megabytes of data.bin per second.
"""

from __future__ import annotations

import argparse
import os
import pickletools
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import zstandard

from atlas_format.codecs import codec_info
from atlas_format.index_v2 import INDEX_ENTRY_DTYPE
from atlas_validator import validate
from atlas_validator.pickle_scan import scan_pickle

HERE = Path(__file__).resolve().parent


def text_examples(n: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    words = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore "
             "et dolore magna aliqua").split()
    out = []
    for i in range(n):
        k = int(rng.integers(100, 600))
        text = " ".join(words[j] for j in rng.integers(0, len(words), k // 5))[:k]
        out.append({"text": text, "id": i, "label": int(rng.integers(0, 10))})
    return out


def binary_examples(n: int) -> list[dict[str, Any]]:
    """Image-like examples: 12 KB of bytes (compressible noise) and two small fields."""
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        pixels = (rng.integers(0, 16, 12288, dtype=np.uint8) * 16).tobytes()
        out.append({"image": pixels, "id": i, "label": int(rng.integers(0, 10))})
    return out


def write(path: Path, items: list[Any], **kw: Any) -> Path:
    from torch_atlas_ds import AtlasDatasetWriter

    with AtlasDatasetWriter(path, **kw) as writer:
        for ex in items:
            writer.add_example(ex)
    return path


def v1_blocks(path: Path) -> Any:
    """(stored block, decompressor or None) of every block of a version 1 dataset, read as the original does."""
    import json

    shared = path / "zstd_dict.bin"
    for folder in sorted(p for p in path.iterdir() if p.is_dir() and p.name.isdigit()):
        meta = json.loads((folder / "meta.json").read_bytes())
        strategy = meta["compression_strategy"]
        dictionary = (folder / "zstd_dict.bin") if strategy == 3 else shared if strategy == 2 else None
        dctx = None if strategy == 0 else zstandard.ZstdDecompressor(
            dict_data=zstandard.ZstdCompressionDict(dictionary.read_bytes())) if dictionary else \
            zstandard.ZstdDecompressor()
        offsets = np.load(folder / "index.npy").tolist()
        if len(offsets) < 2:
            continue
        data = (folder / "data.bin").read_bytes()
        for a, z in zip(offsets, offsets[1:], strict=False):
            yield data[a:z], dctx


def raw_decompress(path: Path) -> tuple[float, int, int]:
    """Seconds to read and decompress every block (no checks), stored bytes, decoded bytes."""
    import json

    root = json.loads((path / "meta.json").read_bytes())
    if root["version"] == 1:
        stored_total = decoded_total = 0
        start = time.perf_counter()
        for block, dctx in v1_blocks(path):
            out = dctx.decompress(block) if dctx else block
            stored_total += len(block)
            decoded_total += len(out)
        return time.perf_counter() - start, stored_total, decoded_total
    info = codec_info(root["codec"])
    shared = (path / "zstd_dict.bin").read_bytes() if root["dictionary"] == "shared" else None
    stored_total = decoded_total = 0
    start = time.perf_counter()
    for shard in root["shards"]:
        folder = path / shard["name"]
        own = folder / "zstd_dict.bin"
        dictionary = own.read_bytes() if own.exists() else shared if shard["dictionary"] == "shared" else None
        dctx = zstandard.ZstdDecompressor(dict_data=zstandard.ZstdCompressionDict(dictionary)) if dictionary \
            else zstandard.ZstdDecompressor()
        index = (folder / "index.bin").read_bytes()
        entries = np.frombuffer(index, dtype=INDEX_ENTRY_DTYPE, offset=64)
        with open(folder / "data.bin", "rb") as handle:
            data = handle.read()
        for offset, stored, raw, _checksum in entries.tolist():
            block = data[offset:offset + stored]
            out = info.decompress(block, raw, dctx)
            stored_total += stored
            decoded_total += len(out)
    return time.perf_counter() - start, stored_total, decoded_total


def scan_only(path: Path) -> tuple[float, float, int]:
    """Seconds of the validator's pickle scan alone, of bare pickletools.genops iteration, and the opcode count."""
    import json

    from atlas_format.block_v2 import U32, table_size

    root = json.loads((path / "meta.json").read_bytes())
    if root["version"] == 1:
        decoded = [dctx.decompress(block) if dctx else block for block, dctx in v1_blocks(path)]
        start = time.perf_counter()
        for block in decoded:
            scan_pickle(block, shape=True)
        scan = time.perf_counter() - start
        ops = 0
        start = time.perf_counter()
        for block in decoded:
            for _ in pickletools.genops(block):
                ops += 1
        return scan, time.perf_counter() - start, ops
    info = codec_info(root["codec"])
    shared = (path / "zstd_dict.bin").read_bytes() if root["dictionary"] == "shared" else None
    pieces = []
    blocks = []
    for shard in root["shards"]:
        folder = path / shard["name"]
        dctx = zstandard.ZstdDecompressor(dict_data=zstandard.ZstdCompressionDict(shared)) if shared \
            else zstandard.ZstdDecompressor()
        entries = np.frombuffer((folder / "index.bin").read_bytes(), dtype=INDEX_ENTRY_DTYPE, offset=64)
        data = (folder / "data.bin").read_bytes()
        for offset, stored, raw, _ in entries.tolist():
            block = info.decompress(data[offset:offset + stored], raw, dctx)
            (n,) = U32.unpack_from(block, 0)
            offs = np.frombuffer(block, "<u4", n + 1, 4).tolist()
            base = table_size(n)
            bounds = [(base + offs[k], base + offs[k + 1]) for k in range(n)]
            blocks.append((block, bounds))
            pieces += [block[a:z] for a, z in bounds]
    start = time.perf_counter()
    for block, bounds in blocks:  # what the validator does: one scan of each example's slice
        for a, z in bounds:
            scan_pickle(block[a:z])
    scan = time.perf_counter() - start
    ops = 0
    start = time.perf_counter()
    for p in pieces:
        for _ in pickletools.genops(p):
            ops += 1
    return scan, time.perf_counter() - start, ops


def trusted_read(path: Path) -> float:
    """Seconds to read every example once in trusted mode, as a user would: for x in AtlasDataset(path)."""
    from torch_atlas_ds import AtlasDataset

    start = time.perf_counter()
    for _ in AtlasDataset(path):
        pass
    return time.perf_counter() - start


def grouped_read(path: Path) -> tuple[float, int]:
    """Seconds of an in-order read of a framing grouped dataset (V2-FRAME-9: decode every frame, one
    pickle.loads per block) without the reference reader, and the stored bytes."""
    import json
    import pickle

    from atlas_format import grouped

    start = time.perf_counter()
    root = json.loads((path / "meta.json").read_bytes())
    info = codec_info(root["codec"], magicless=True)
    shared = (path / "zstd_dict.bin").read_bytes() if root["dictionary"] == "shared" else None
    dctx = zstandard.ZstdDecompressor(dict_data=zstandard.ZstdCompressionDict(shared) if shared else None,
                                      format=zstandard.FORMAT_ZSTD1_MAGICLESS)
    stored_total = 0
    for shard in root["shards"]:
        folder = path / shard["name"]
        entries = np.frombuffer((folder / "index.bin").read_bytes(), dtype=INDEX_ENTRY_DTYPE, offset=64)
        data = (folder / "data.bin").read_bytes()
        left = shard["num_examples"]
        for offset, stored, raw, _ in entries.tolist():
            n = min(root["block_size"], left)
            left -= n
            block = data[offset:offset + stored]
            spans = [grouped.frame_span(block, n, j, stored, raw) for j in range(grouped.frames(n))]
            pickle.loads(b"".join(info.decompress(block[a:z], raw, dctx) for a, z in spans))
            stored_total += stored
    return time.perf_counter() - start, stored_total


def grouped_case(args: Any, tmp: Path) -> None:
    """Framing grouped (no reference writer or reader yet): written by conformance_tests/validator_vectors.write_v2,
    read once in order (``grouped_read``) against validate(jobs=1)."""
    sys.path.insert(0, str(HERE.parent / "conformance_tests"))
    from validator_vectors import write_v2

    for label, items, block_size in (("text", text_examples(args.examples), 64),
                                     ("text", text_examples(args.examples), 8),
                                     ("binary 12 KB", binary_examples(args.examples // 4), 16)):
        path = write_v2(tmp / f"grouped-{label.replace(' ', '_')}-{block_size}", items, codec="zstd",
                        dictionary="shared", block_size=block_size, shard_size=2048, framing="grouped")
        report = validate(path, jobs=1)
        assert report.ok, [f.to_dict() for f in report.errors]
        read_s, stored = min(grouped_read(path) for _ in range(args.repeat))
        full1 = min(validate(path, jobs=1).stats.seconds for _ in range(args.repeat))
        full2 = min(validate(path, jobs=2).stats.seconds for _ in range(args.repeat))
        print(f"grouped {label}, block {block_size}, zstd shared: {report.stats.blocks} blocks, {stored / 1e6:.2f} MB "
              f"stored; in-order read {stored / 1e6 / read_s:.1f} MB/s ({read_s:.3f} s), full -j1 "
              f"{stored / 1e6 / full1:.1f} MB/s ({full1:.3f} s, {read_s / full1:.0%} of the read's speed), -j2 "
              f"{stored / 1e6 / full2:.1f} MB/s", flush=True)


def best(fn: Any, repeat: int) -> Any:
    results = [fn() for _ in range(repeat)]
    return min(results, key=lambda r: r[0] if isinstance(r, tuple) else r)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write benchmarks/RESULTS-validator.md")
    parser.add_argument("--examples", type=int, default=16384, help="text examples (binary: a quarter)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--grouped", action="store_true", help="only framing grouped (printed, not written)")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-validator-"))
    lines: list[str] = []
    if args.grouped:
        try:
            grouped_case(args, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return 0
    try:
        configs = [
            ("text, zstd shared dictionary", text_examples(args.examples),
             {"shard_size": 2048, "block_size": 64, "compression_strategy": 2, "framing": "block"}),
            ("text, lz4", text_examples(args.examples), {"shard_size": 2048, "block_size": 64, "codec": "lz4"}),
            ("binary 12 KB examples, zstd", binary_examples(args.examples // 4),
             {"shard_size": 512, "block_size": 16, "compression_strategy": 1, "framing": "block"}),
            ("version 1: text, zstd shared dictionary", text_examples(args.examples),
             {"shard_size": 2048, "block_size": 64, "compression_strategy": 2, "format_version": 1}),
            ("version 1: binary 12 KB examples, zstd", binary_examples(args.examples // 4),
             {"shard_size": 512, "block_size": 16, "compression_strategy": 1, "format_version": 1}),
        ]
        rows = []
        for label, items, kw in configs:
            path = write(tmp / label.replace(" ", "_").replace(",", "").replace(":", ""), items, **kw)
            raw_s, stored, decoded = best(lambda p=path: raw_decompress(p), args.repeat)
            trusted_s = min(trusted_read(path) for _ in range(args.repeat))
            full1 = min(validate(path, jobs=1).stats.seconds for _ in range(args.repeat))
            full2 = min(validate(path, jobs=2).stats.seconds for _ in range(args.repeat))
            report = validate(path, jobs=1)
            assert report.ok, [f.to_dict() for f in report.errors]
            scans = [scan_only(path) for _ in range(args.repeat)]
            scan_s, floor_s, ops = min(x[0] for x in scans), min(x[1] for x in scans), scans[0][2]
            rows.append((label, report.stats.blocks, stored, decoded, raw_s, full1, full2, scan_s, floor_s, ops,
                         trusted_s))
            print(f"{label}: {report.stats.blocks} blocks, {stored / 1e6:.2f} MB stored, {decoded / 1e6:.2f} MB "
                  f"decoded; raw {stored / 1e6 / raw_s:.1f} MB/s, trusted read {stored / 1e6 / trusted_s:.1f} MB/s, "
                  f"full -j1 {stored / 1e6 / full1:.1f} MB/s "
                  f"({raw_s / full1:.0%} of raw), -j2 {stored / 1e6 / full2:.1f} MB/s; scan alone {scan_s:.3f} s "
                  f"of {full1:.3f} s ({scan_s / ops * 1e9:.0f} ns per opcode), bare genops {floor_s:.3f} s "
                  f"({floor_s / ops * 1e9:.0f} ns per opcode)", flush=True)
        # --quick on 10,000 blocks
        quick_path = write(tmp / "quick10k", [{"i": i} for i in range(10_000)], shard_size=2_000, block_size=1,
                           compression_strategy=1)
        quick_times = [validate(quick_path, quick=True).stats.seconds for _ in range(max(args.repeat, 5))]
        one_shard = write(tmp / "quick10k1", [{"i": i} for i in range(10_000)], shard_size=10_000, block_size=1,
                          compression_strategy=1)
        quick_one = [validate(one_shard, quick=True).stats.seconds for _ in range(max(args.repeat, 5))]
        print(f"--quick, 10,000 blocks in 5 shards: best {min(quick_times):.3f} s, median "
              f"{statistics.median(quick_times):.3f} s; in 1 shard: best {min(quick_one):.3f} s")
        lines = _markdown(rows, quick_times, quick_one, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.write:
        (HERE / "RESULTS-validator.md").write_text("\n".join(lines) + "\n")
        print(f"wrote {HERE / 'RESULTS-validator.md'}")
    return 0


def _markdown(rows: list[tuple[Any, ...]], quick_times: list[float], quick_one: list[float], args: Any) -> list[str]:
    lines = [
        "# atlas-validate benchmark",
        "",
        f"Generated by `python benchmarks/bench_validator.py --write` (examples={args.examples}, best of "
        f"{args.repeat}). Machine: {os.cpu_count()} CPUs (shared), Python {platform.python_version()}, "
        f"zstandard {zstandard.__version__}, {sys.platform}.",
        "",
        "Throughput is stored megabytes of data.bin per second. *raw* reads and decompresses every block",
        "and does nothing else; *trusted read* is `for x in AtlasDataset(path)` (checksums, decompression,",
        "`pickle.loads` of every example); *full* is `validate(path, jobs=J)`: block checksums, frame checks,",
        "strict streaming decompression, example tables and the pickle policy (spec/FORMAT.md section 5)",
        "checked on every pickle by the validator's own scanner, in Python.",
        "",
        "| dataset | blocks | MB stored | raw MB/s | trusted read MB/s | full -j1 MB/s | full/trusted | full/raw "
        "| full -j2 MB/s | scan share of -j1 | ns per opcode |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, blocks, stored, _decoded, raw_s, full1, full2, scan_s, _floor, ops, trusted_s in rows:
        lines.append(f"| {label} | {blocks} | {stored / 1e6:.2f} | {stored / 1e6 / raw_s:.1f} "
                     f"| {stored / 1e6 / trusted_s:.1f} | {stored / 1e6 / full1:.1f} | {trusted_s / full1:.0%} "
                     f"| {raw_s / full1:.0%} | {stored / 1e6 / full2:.1f} | {min(scan_s / full1, 1):.0%} "
                     f"| {scan_s / ops * 1e9:.0f} |")
    text = rows[0]
    met_raw = [r[0] for r in rows if "binary" in r[0] and r[4] / r[5] >= 0.7]
    met_trusted = [r[0] for r in rows if "text" in r[0] and r[10] / r[5] >= 1.0]
    lines += [
        "",
        "*scan share* is the validator's pickle scan alone over the decoded examples, as a share of full -j1;",
        "*ns per opcode* is that scan's time over the opcodes it follows.",
        "",
        "Targets: full -j1 at least as fast as the trusted read on text: "
        + (f"met for {'; '.join(met_trusted)}." if met_trusted else "**not met**.")
        + " Full -j1 at least 70% of raw decompression on payload-heavy data: "
        + (f"met for {'; '.join(met_raw)}." if met_raw else "not met.")
        + "",
        "",
        f"Why not on text: an example of *{text[0]}* averages {text[9] / args.examples:.0f} opcodes; the trusted "
        "read",
        "decodes it with CPython's C unpickler (well under 1 us), the validator follows every opcode in Python",
        f"({text[7] / text[9] * 1e9:.0f} ns each) and checks the policy's rules (memo indices, dict keys, depth and "
        "items of the",
        "result) that the C unpickler does not. The C unpickler cannot be the scanner: it allocates a memo of",
        "16 bytes per index before any check (LONG_BINPUT 2**28 is 4 GiB), hashes dict keys in C (a million",
        "nested tuples overflow the C stack, a shared-tuple DAG hashes in exponential time), and offers no",
        "hook between opcodes. `--jobs N` scales with free cores.",
        "",
        f"`--quick` on 10,000 blocks (5 shards of 2,000): best {min(quick_times) * 1000:.0f} ms, median "
        f"{statistics.median(quick_times) * 1000:.0f} ms; one shard of 10,000 blocks: best "
        f"{min(quick_one) * 1000:.0f} ms (target: under 1 s).",
        "",
    ]
    return lines


if __name__ == "__main__":
    sys.exit(main())
