"""Reading a dataset from a URL against reading it locally (issue 19; not a test).

The acceptance benchmark's text workload (``bench_default_vs_original.text_examples``), written once with the
defaults at block 64, then read three ways in the same run: the local folder, over HTTP with byte ranges and
from S3 (moto's server), both on 127.0.0.1 (the servers of ``conformance_tests/remote_servers.py``). Per
way: random ``ds[i]`` examples/s (a fresh dataset, random indices), batched ``__getitems__`` of 64 random
indices examples/s, and over HTTP the bytes fetched per example read (the server counts them). A loopback
server has no network latency, so the ratios show this implementation's cost per request (HTTP parsing,
fsspec, verification), not a store's latency, which dominates real remote reads and which batching and
the local cache (a second run) are for.

    python benchmarks/bench_remote.py [--examples 20000] [--reads 2000] [--batches 100]
"""

from __future__ import annotations

import argparse
import datetime
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "conformance_tests"))
import remote_servers  # noqa: E402
from bench_default_vs_original import text_examples  # noqa: E402

from torch_atlas_ds import AtlasDataset, AtlasDatasetWriter  # noqa: E402


def measure(open_dataset: Any, n: int, reads: int, batches: int, server: Any = None) -> dict[str, float]:
    rng = random.Random(7)
    indices = [rng.randrange(n) for _ in range(reads)]
    ds = open_dataset()
    ds[0]
    if server is not None:
        server.reset_counts()
    start = time.perf_counter()
    for i in indices:
        ds[i]
    random_rate = reads / (time.perf_counter() - start)
    per_example = server.bytes_sent / reads if server is not None else 0.0
    ds = open_dataset()
    ds[0]
    groups = [[rng.randrange(n) for _ in range(64)] for _ in range(batches)]
    if server is not None:
        server.reset_counts()
    start = time.perf_counter()
    for group in groups:
        ds.__getitems__(group)
    batch_rate = 64 * batches / (time.perf_counter() - start)
    batch_requests = server.requests / batches if server is not None else 0.0
    return {"random": random_rate, "batched": batch_rate, "bytes_per_read": per_example,
            "requests_per_batch": batch_requests}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=20_000)
    parser.add_argument("--reads", type=int, default=2_000)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--output", default=str(Path(__file__).with_name("RESULTS-remote.md")))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-remote-") as tmp:
        folder = Path(tmp) / "served"
        with AtlasDatasetWriter(folder / "text", 10_000, 64) as w:
            for example in text_examples(args.examples):
                w.add_example(example)
        stored = sum(p.stat().st_size for p in (folder / "text").rglob("data.bin"))
        blocks = -(-args.examples // 64)
        http = remote_servers.RangeServer(folder)
        s3 = remote_servers.S3Server()
        try:
            url = s3.upload(folder / "text", "text")
            rows = {
                "local folder": measure(lambda: AtlasDataset(folder / "text"), args.examples, args.reads, args.batches),
                "HTTP, byte ranges": measure(lambda: AtlasDataset(f"{http.url}/text"), args.examples, args.reads,
                                             args.batches, http),
                "S3 (moto)": measure(lambda: AtlasDataset(url, storage_options=s3.options), args.examples,
                                     args.reads, args.batches),
            }
        finally:
            http.close()
            s3.close()
    base = rows["local folder"]
    lines = [
        "# Reading from a URL against reading locally (issue 19)", "",
        f"- Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; Python {platform.python_version()}, "
        "2 shared cores; `python benchmarks/bench_remote.py`",
        f"- {args.examples:,} text examples of the acceptance workload, the defaults at block 64 ({blocks} blocks, "
        f"{stored / blocks / 1024:.1f} KiB stored a block); {args.reads:,} random `ds[i]` and {args.batches} "
        "batches of 64 random indices, each on a fresh dataset; servers on 127.0.0.1 (no network latency)", "",
        "| read from | random ex/s | vs local | batched ex/s | vs local | bytes fetched per random read | requests a "
        "batch |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        fetched = f"{r['bytes_per_read']:,.0f}" if r["bytes_per_read"] else "-"
        requests = f"{r['requests_per_batch']:.1f}" if r["requests_per_batch"] else "-"
        lines.append(f"| {name} | {r['random']:,.0f} | {r['random'] / base['random']:.2f}x | {r['batched']:,.0f} | "
                     f"{r['batched'] / base['batched']:.2f}x | {fetched} | {requests} |")
    lines += ["", "A random read fetches one stored block (its bytes, then decodes one group of it); a batch of 64 "
              f"random indices over {blocks} blocks fetches its distinct blocks in merged ranges (fewer requests "
              "than blocks when they are within 64 KiB of each other).", ""]
    Path(args.output).write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
