"""Where the time goes in this project's reader: cProfile of random ds[i], batched __getitems__ and a
DataLoader-style batch fetch, per layout (text workload).

    benchmarks/.work/venvs/atlas/bin/python benchmarks/peers/profile_reader.py [--n 20000] [--layouts lz4-64,zstd-64]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import random
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    from bench_reference import text_examples

    from torch_atlas_ds import AtlasDataset, AtlasDatasetWriter, Codec, CompressionStrategy

    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--layouts", default="v1zstd-64,zstd-64,lz4-64,none-64")
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--paths", default="random,batched", help="any of random,batched,seq,iter")
    ap.add_argument("--loader-ceiling", action="store_true",
                    help="also time one DataLoader epoch (2 workers, batch 256) over an in-memory list: the loader's "
                         "own cost (IPC, collate), the ceiling of any dataset's epoch")
    args = ap.parse_args()
    work = ROOT / "benchmarks" / ".work" / "data" / "profile"
    work.mkdir(parents=True, exist_ok=True)
    examples = text_examples(args.n)
    rng = random.Random(99)
    idx = [rng.randrange(args.n) for _ in range(20_000)]
    if args.loader_ceiling:
        import torch
        from torch.utils.data import DataLoader, RandomSampler

        class InMemory(torch.utils.data.Dataset):  # type: ignore[type-arg]
            def __len__(self) -> int:
                return len(examples)

            def __getitem__(self, i: int) -> object:
                return examples[i]

            def __getitems__(self, idx: list[int]) -> list[object]:
                return [examples[i] for i in idx]

        for collate in ("default", "identity"):
            kw = {} if collate == "default" else {"collate_fn": lambda b: b}
            loader = DataLoader(InMemory(), batch_size=256, num_workers=2,
                                sampler=RandomSampler(range(len(examples)), generator=torch.Generator().manual_seed(0)),
                                **kw)
            start = time.perf_counter()
            count = sum(len(b["id"]) if isinstance(b, dict) else len(b) for b in loader)
            secs = time.perf_counter() - start
            print(f"### DataLoader ceiling, in-memory list, {collate} collate: {count / secs:,.0f} ex/s "
                  f"({count} examples, {secs:.2f} s)")
    for layout in args.layouts.split(","):
        codec, block = layout.split("-")
        kw: dict = {"compression_strategy": CompressionStrategy.SHARED_DICTIONARY_COMPRESSION}
        if codec == "v1zstd":
            kw["format_version"] = 1
        elif codec == "lz4":
            kw = {"codec": Codec.LZ4}
        elif codec == "none":
            kw = {"compression_strategy": CompressionStrategy.NO_COMPRESSION}
        path = work / layout
        shutil.rmtree(path, ignore_errors=True)
        with AtlasDatasetWriter(path, args.n // 5, int(block), **kw) as w:
            for ex in examples:
                w.add_example(ex)
        for what in args.paths.split(","):
            ds = AtlasDataset(path)
            prof = cProfile.Profile()
            start = time.perf_counter()
            prof.enable()
            count = len(idx)
            if what == "random":
                for i in idx:
                    ds[i]
            elif what == "seq":
                for i in range(len(ds)):
                    ds[i]
                count = len(ds)
            elif what == "iter":
                count = sum(1 for _ in ds)
            else:
                for k in range(0, len(idx), 256):
                    ds.__getitems__(idx[k:k + 256])
            prof.disable()
            secs = time.perf_counter() - start
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(args.top)
            body = "\n".join(line for line in out.getvalue().splitlines() if line.strip()
                             and not line.startswith(("   Ordered", "         ")) or "ncalls" in line)
            print(f"### {layout} {what}: {count / secs:,.0f} ex/s under cProfile\n{body}\n")
        shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
