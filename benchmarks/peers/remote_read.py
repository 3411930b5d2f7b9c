"""One measurement of bench_remote's peer rows, run with the system's own venv (not a test).

    <venv>/bin/python benchmarks/peers/remote_read.py '<json task>'

Tasks: {"op": "write", "system", "examples": pickle path, "path"} writes the examples with the system's
writer into a local folder (uploaded by the parent); {"op": "random" | "batched", "system", "url",
"endpoint", "cache", "n", "count", "seed"} opens the dataset at the S3 URL through the endpoint, the
system's documented way, with an empty cache folder, and reads. Prints one JSON line last.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

#: The credentials moto accepts; the endpoint comes with the task.
KEY, SECRET, REGION = "testing", "testing", "us-east-1"
#: MDS columns of the text workload (bench_default_vs_original.text_examples).
MDS_COLUMNS = {"text": "str", "id": "int", "source": "str", "score": "float64"}


def write(system: str, examples: list[Any], path: str) -> None:
    """Each peer's writer with its documented defaults (MDS: shards of size_limit 64 MB, no compression;
    litdata: chunks of 64 MB, the value its docs use)."""
    if system == "mds":
        from systems import _fake_torchvision

        _fake_torchvision()
        from streaming import MDSWriter

        with MDSWriter(out=path, columns=MDS_COLUMNS) as w:
            for example in examples:
                w.write(example)
    elif system == "litdata":
        from litdata.streaming.writer import BinaryWriter

        writer = BinaryWriter(path, chunk_bytes="64MB")
        for i, example in enumerate(examples):
            writer[i] = example
        writer.done()
        writer.merge()
    else:
        raise ValueError(f"no writer for {system!r}")


def open_remote(task: dict[str, Any]) -> Any:
    """The dataset at ``task['url']`` (s3://) through ``task['endpoint']``, as each system documents it."""
    system, url, endpoint, cache = task["system"], task["url"], task["endpoint"], task["cache"]
    if system in ("atlas", "atlas-cached"):  # atlas-cached: verified blocks kept in the cache folder
        from torch_atlas_ds import AtlasDataset

        return AtlasDataset(url, storage_options={"key": KEY, "secret": SECRET, "client_kwargs": {
            "endpoint_url": endpoint, "region_name": REGION}}, local_cache=cache if system == "atlas-cached" else None)
    if system == "mds":  # streaming reads S3_ENDPOINT_URL and boto3's usual credentials
        os.environ.update(S3_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET,
                          AWS_DEFAULT_REGION=REGION)
        from systems import _fake_torchvision

        _fake_torchvision()
        from streaming import StreamingDataset
        from streaming.base.util import clean_stale_shared_memory

        clean_stale_shared_memory()
        return StreamingDataset(remote=url, local=cache, shuffle=False, batch_size=64)
    if system == "litdata":
        from litdata import StreamingDataset

        return StreamingDataset(input_dir=url, cache_dir=cache, storage_options={
            "endpoint_url": endpoint, "aws_access_key_id": KEY, "aws_secret_access_key": SECRET,
            "region_name": REGION})
    raise ValueError(f"unknown system {system!r}")


def read(task: dict[str, Any]) -> dict[str, float]:
    """Random ``ds[i]`` (or batches of 64 random indices) from a fresh dataset and an empty cache: examples/s,
    and the seconds the first read took (what a fetch of its shard, chunk or block costs)."""
    rng = random.Random(task["seed"])
    n, count = task["n"], task["count"]
    start = time.perf_counter()
    ds = open_remote(task)
    opened = time.perf_counter()
    if task["op"] == "random":
        indices = [rng.randrange(n) for _ in range(count)]
        first = time.perf_counter()
        check([indices[0]], [ds[indices[0]]])
        first_s = time.perf_counter() - first
        for i in indices[1:]:
            ds[i]
        reads = count
    else:
        groups = [[rng.randrange(n) for _ in range(64)] for _ in range(count)]
        get_many = getattr(ds, "__getitems__", None) if task["system"].startswith("atlas") else None
        first = time.perf_counter()
        for k, group in enumerate(groups):
            # no batched read in MDS or litdata: one ds[i] per index
            got = get_many(group) if get_many is not None else [ds[i] for i in group]
            if k == 0:
                check(group, got)
                first_s = time.perf_counter() - first
        reads = 64 * count
    seconds = time.perf_counter() - first
    return {"rate": reads / seconds, "first_s": first_s, "open_s": opened - start, "reads": reads}


def check(indices: list[int], examples: list[Any]) -> None:
    """The examples read are the ones asked for (each holds its index as "id")."""
    got = [int(example["id"]) for example in examples]
    if got != indices:
        raise RuntimeError(f"read ids {got[:5]}..., asked for {indices[:5]}...")


def main() -> None:
    task = json.loads(sys.argv[1])
    if task["op"] == "write":
        with open(task["examples"], "rb") as f:
            examples = pickle.load(f)  # noqa: S301 - written by bench_remote.py in this run
        write(task["system"], examples, task["path"])
        print(json.dumps({"written": len(examples)}))
        return
    print(json.dumps(read(task)))


if __name__ == "__main__":
    main()
