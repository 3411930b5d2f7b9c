"""Writing from a distributed engine: a ``dask.bag.Bag``'s partitions become shards written by the engine's tasks.

The core is ``write_dataset``'s (``parallel.py``): this process writes shard 0 from the first partition (with a
shared dictionary it trains the dictionary on it, as the sequential writer does), then each task builds the
complete shards of one partition into the writer's temporary folder and returns their root records; this
process writes the root metadata and publishes with one atomic rename. Shard numbers are planned from the
partitions' lengths (a first pass over the bag), so a task knows its shards' names: a retried task builds them
again in a folder of its own and replaces what an earlier attempt left, and no shard is written twice. A failed
task publishes nothing. Each partition's last shard may hold fewer than ``shard_size`` examples (V2-META-6).
Tasks need the writer's temporary folder on a file system they share with this process (one machine, or a
shared mount).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from atlas_format.layout import v2_shard_name

from .writer import AtlasDatasetWriter

#: Where a task builds a shard before moving it into place (removed before the dataset is published).
ATTEMPT_PREFIX = ".attempt-"


def is_dask_bag(obj: Any) -> bool:
    """Whether ``obj`` is a dask.bag.Bag (checked by type, without importing dask)."""
    kind = type(obj)
    return kind.__name__ == "Bag" and kind.__module__.startswith("dask.bag")


def write_bag(bag: Any, writer: AtlasDatasetWriter, bar: Any) -> None:
    """Write every example of ``bag``, in order, through ``writer`` (not yet closed): shard 0 here, the rest
    by one task per partition on the scheduler dask uses (a ``distributed.Client`` if one is active). Each
    task computes its partition and writes it (dask fuses the two), so a task that dies mid-write is
    computed again from its inputs."""
    import dask.bag

    from .parallel import _adopt, _job

    if writer.format_version != 2:
        raise ValueError("a dask.bag.Bag is written as version 2 only (format_version=2)")
    lengths = list(bag.map_partitions(_count).compute())
    first = next((p for p, n in enumerate(lengths) if n), None)
    if first is None:
        return  # an empty bag: an empty dataset
    head = list(itertools.islice(bag.to_delayed()[first].compute(), writer.shard_size))
    for example in head:
        writer.add_example(example)
    bar.update(len(head))
    if sum(lengths) == len(head):
        return
    writer._close_v2_shard()  # shard 0 decides the dictionary (or its fallback) and the preamble seed
    job = _job(writer)
    plans, number, index = [], 1, 0
    for p, n in enumerate(lengths):
        skip = len(head) if p == first else 0
        plans.append((skip, number, index + skip))
        number += -(-max(0, n - skip) // writer.shard_size)
        index += n
    plan_bag = dask.bag.from_sequence(plans, npartitions=len(plans))  # type: ignore[no-untyped-call]
    results = sorted(bag.map_partitions(_write_partition, plan_bag, job=job).compute())
    remove_attempts(writer)
    bar.update(sum(r["num_examples"] for _, r in results))
    _adopt(writer, results)


def remove_attempts(writer: AtlasDatasetWriter) -> None:
    """Remove the folders task attempts left in the writer's temporary folder (of attempts that died and were
    retried, or whose results the driver did not receive) before it publishes."""
    for leftover in Path(writer._tmp).glob(ATTEMPT_PREFIX + "*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _count(partition: Any) -> list[int]:
    return [sum(1 for _ in partition)]


def _write_partition(examples: Any, plan: list[tuple[int, int, int]], job: Any) -> list[tuple[int, Any]]:
    """One task: the shards of one partition after its first ``skip`` examples, numbered from ``number``, the
    first being the dataset's ``index``-th example (``plan``: one (skip, number, index)). Each shard is built in
    this attempt's folder, then moved into place; the partition is read as the shards are built."""
    from .parallel import _build_shard, _Chunk

    ((skip, number, index),) = plan
    items = itertools.islice(iter(examples), skip, None)
    attempt = Path(job.folder) / f"{ATTEMPT_PREFIX}{uuid.uuid4().hex}"
    attempt.mkdir()
    built = []
    try:
        for k in itertools.count():
            chunk_examples = list(itertools.islice(items, job.shard_size))
            if not chunk_examples:
                break
            chunk = _Chunk(number + k, examples=chunk_examples, first=index + k * job.shard_size)
            built.append(_build_shard(dataclasses.replace(job, folder=str(attempt)), chunk))
            name = v2_shard_name(number + k)
            final = Path(job.folder) / name
            if final.exists():  # an earlier attempt of this task finished this shard before it died
                shutil.rmtree(final)
            os.rename(attempt / name, final)
    finally:
        shutil.rmtree(attempt, ignore_errors=True)
    return built


def prime(writer: AtlasDatasetWriter, sample: Sequence[Any] | None) -> None:
    """Before tasks write (an engine whose tasks cannot see shard 0): train the shared dictionary and the
    preamble seed on ``sample`` as shard 0 would be (a scratch shard, then removed). Needed for a shared
    dictionary: without a sample that is a ValueError naming the choices."""
    from .writer import _V2ShardBuilder

    if writer.mode.value != "shared":
        return
    if not sample:
        raise ValueError("a shared dictionary is trained on examples before the tasks write: pass sample= (e.g. "
                         "ray_dataset.take(10_000)), or compression_strategy=STANDARD_COMPRESSION (or "
                         "DICTIONARY_COMPRESSION: a dictionary per shard)")
    scratch = Path(writer._tmp) / f"{ATTEMPT_PREFIX}sample"
    builder = _V2ShardBuilder(scratch, "000000", writer.block_size, writer.codec, writer.compression_level,
                              writer.compression_dict_size, "train-shared", None, writer.limits,
                              framing=writer.framing, encoding=writer.encoding)
    try:
        trained = builder.write_all(sample)[1]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    writer._preamble_seed = builder._encoder.shared
    if trained is not None:
        writer._shared = trained
        writer._write_shared_dictionary(trained)


def adopt_staged(writer: AtlasDatasetWriter, staged: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """Publish-ready: shards built by tasks in folders of their own (``staged``: (shard folder, record) in
    dataset order) get their names (the writer's next numbers), are moved into the writer's temporary folder
    with their meta.json rewritten for the name, and are handed to the writer; every attempt folder goes."""
    from atlas_format.metadata import dump_checksummed_json, parse_json

    from .parallel import _adopt

    results = []
    for k, (folder, record) in enumerate(staged):
        name = v2_shard_name(writer._shard_number + k)
        meta_path = Path(folder) / "meta.json"
        doc = parse_json(meta_path.read_bytes())
        doc["shard"] = name
        meta = dump_checksummed_json(doc)
        meta_path.write_bytes(meta)
        os.rename(folder, Path(writer._tmp) / name)
        checksum = meta[len(b'{\n  "checksum": "'):meta.index(b'",\n')].decode("ascii")
        results.append((k, {**record, "name": name, "meta_checksum": checksum}))
    remove_attempts(writer)
    _adopt(writer, results)
