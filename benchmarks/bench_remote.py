"""Reading a dataset from a URL against reading it locally, and against peers reading from S3 (issue 19; not
a test).

The acceptance benchmark's text workload (``bench_default_vs_original.text_examples``), written once with the
defaults at block 64, then read three ways in the same run: the local folder, over HTTP with byte ranges and
from S3 (moto's server), both on 127.0.0.1 (the servers of ``conformance_tests/remote_servers.py``). Per
way: random ``ds[i]`` examples/s (a fresh dataset, random indices), batched ``__getitems__`` of 64 random
indices examples/s, and the bytes fetched per example read. A loopback server has no network latency, so
the ratios show each implementation's cost per request (HTTP parsing, fsspec, verification), not a store's
latency, which dominates real remote reads and which batching and the local cache (a second run) are for.

Peers (when ``bash benchmarks/peers/setup.sh mds litdata`` made their venvs): MosaicML Streaming and
litdata write the same examples with their writers' defaults, the folders go to the same S3 endpoint, and
each reads them its documented way (``StreamingDataset(remote=..., local=cache)``;
``StreamingDataset(input_dir="s3://...", cache_dir=..., storage_options=...)``) in a fresh process with an
empty cache, as does this package (``benchmarks/peers/remote_read.py``). Every S3 row goes through one
counting proxy in front of moto, so bytes fetched are counted the same way for all.

    python benchmarks/bench_remote.py [--examples 20000] [--reads 2000] [--batches 100] [--no-peers]
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import pickle
import platform
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "conformance_tests"))
import remote_servers  # noqa: E402
from bench_default_vs_original import text_examples  # noqa: E402

from torch_atlas_ds import AtlasDataset, AtlasDatasetWriter  # noqa: E402

HERE = Path(__file__).resolve().parent
VENVS = HERE / ".work" / "venvs"
PEERS = {"mds": "MosaicML Streaming", "litdata": "litdata"}


class CountingProxy:
    """A TCP relay on 127.0.0.1 in front of ``endpoint`` that counts the bytes it returns to clients."""

    def __init__(self, endpoint: str) -> None:
        host, port = endpoint.rsplit("//", 1)[1].rsplit(":", 1)
        self._target = (host, int(port))
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self.bytes_sent = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, count: bool) -> None:
        try:
            while chunk := source.recv(1 << 16):
                sink.sendall(chunk)
                if count:
                    with self._lock:
                        self.bytes_sent += len(chunk)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._server.close()


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


def run_read_child(python: str, task: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run([python, str(HERE / "peers" / "remote_read.py"), json.dumps(task)], check=True,
                         capture_output=True, text=True, timeout=3600)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def s3_rows(systems: dict[str, tuple[str, str, str]], proxy: CountingProxy, tmp: Path, n: int, reads: int,
            batches: int) -> dict[str, dict[str, float]]:
    """Each system (label: (system, python, url)) reading from S3 through ``proxy`` in a fresh process with an
    empty cache: random and batched examples/s, the first read's seconds and bytes fetched per example read
    (opening included)."""
    rows = {}
    for label, (system, python, url) in systems.items():
        row: dict[str, float] = {}
        for name, op, count in (("first", "random", 1), ("random", "random", reads), ("batched", "batched", batches)):
            proxy.bytes_sent = 0
            cache = tempfile.mkdtemp(prefix=f"{system}-{name}-", dir=tmp)
            res = run_read_child(python, {"op": op, "system": system, "url": url, "endpoint": proxy.url,
                                          "cache": cache, "n": n, "count": count, "seed": 7})
            row[name], row[f"{name}_first_ms"] = res["rate"], res["first_s"] * 1000
            row[f"{name}_bytes_per_read"] = proxy.bytes_sent / res["reads"]
        rows[label] = row
        print(label, json.dumps(row), file=sys.stderr, flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=20_000)
    parser.add_argument("--reads", type=int, default=2_000)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--no-peers", action="store_true", help="leave out MosaicML Streaming and litdata")
    parser.add_argument("--output", default=str(Path(__file__).with_name("RESULTS-remote.md")))
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
    peers = {} if args.no_peers else {name: VENVS / name / "bin" / "python" for name in PEERS
                                      if (VENVS / name / "bin" / "python").exists()}
    with tempfile.TemporaryDirectory(prefix="bench-remote-") as tmp_name:
        tmp = Path(tmp_name)
        folder = tmp / "served"
        examples = text_examples(args.examples)
        with AtlasDatasetWriter(folder / "text", 10_000, 64) as w:
            for example in examples:
                w.add_example(example)
        stored = sum(p.stat().st_size for p in (folder / "text").rglob("data.bin"))
        blocks = -(-args.examples // 64)
        with open(tmp / "examples.pkl", "wb") as f:
            pickle.dump(examples, f)
        for name, python in peers.items():
            run_read_child(str(python), {"op": "write", "system": name, "examples": str(tmp / "examples.pkl"),
                                         "path": str(tmp / name)})
        http = remote_servers.RangeServer(folder)
        s3 = remote_servers.S3Server()
        proxy = CountingProxy(s3.endpoint)
        try:
            url = s3.upload(folder / "text", "text")
            rows = {
                "local folder": measure(lambda: AtlasDataset(folder / "text"), args.examples, args.reads, args.batches),
                "HTTP, byte ranges": measure(lambda: AtlasDataset(f"{http.url}/text"), args.examples, args.reads,
                                             args.batches, http),
                "S3 (moto)": measure(lambda: AtlasDataset(url, storage_options=s3.options), args.examples,
                                     args.reads, args.batches),
            }
            systems = {"torch-atlas-ds (the default, block 64)": ("atlas", sys.executable, url),
                       "torch-atlas-ds, `local_cache=folder`": ("atlas-cached", sys.executable, url)}
            for name, python in peers.items():
                systems[PEERS[name]] = (name, str(python), s3.upload(tmp / name, name))
            peer_rows = s3_rows(systems, proxy, tmp, args.examples, args.reads, args.batches)
            written = {system: folder / "text" if system.startswith("atlas") else tmp / system
                       for system, _, _ in systems.values()}
            sizes = {label: sum(p.stat().st_size for p in written[system].rglob("*") if p.is_file())
                     for label, (system, _, _) in systems.items()}
        finally:
            proxy.close()
            http.close()
            s3.close()
    base = rows["local folder"]
    lines = [
        "# Reading from a URL against reading locally, and against peers on the same S3 endpoint (issue 19)", "",
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
    lines += [
        "## The same S3 endpoint: this package and its peers", "",
        "Each system wrote the same examples with its writer's defaults (MosaicML Streaming: `MDSWriter`, shards up "
        "to 64 MB, no compression; litdata: `BinaryWriter(chunk_bytes=\"64MB\")`, no compression), the folder went "
        "to the same bucket, and each read it its documented way in a fresh process with an empty cache "
        "(`benchmarks/peers/remote_read.py`; MDS and litdata have no batched read, so a batch is 64 `ds[i]`). "
        "Bytes fetched are counted by one relay in front of moto for every row, opening included.", "",
        "| system | dataset bytes | one random read: ms | bytes fetched | random ex/s | bytes fetched per random "
        f"read ({args.reads:,}) | batched ex/s | bytes fetched per batched example ({64 * args.batches:,}) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, r in peer_rows.items():
        lines.append(f"| {label} | {sizes[label]:,} | {r['first_first_ms']:,.1f} | {r['first_bytes_per_read']:,.0f} "
                     f"| {r['random']:,.0f} | {r['random_bytes_per_read']:,.0f} | {r['batched']:,.0f} | "
                     f"{r['batched_bytes_per_read']:,.0f} |")
    if not peers:
        lines += ["", "Peers left out (`--no-peers`, or no venvs: `bash benchmarks/peers/setup.sh mds litdata`): "
                  "this package only."]
    lines.append("")
    Path(args.output).write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
