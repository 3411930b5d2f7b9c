"""write_dataset: write any iterable or indexable source, shards built in parallel processes.

Shard 0 is built first, in this process: with a shared dictionary it is the shard the
dictionary is trained on, exactly as the sequential writer does, so the output does not
depend on the number of workers (it is byte for byte the same). The other shards are
built by worker processes into the writer's temporary folder; this process then writes
the root metadata last and publishes with one atomic rename (AtlasDatasetWriter.close).
If anything fails, nothing is published.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atlas_format import DEFAULT_LIMITS, Codec, CompressionStrategy, Framing, Limits
from atlas_format.layout import v2_shard_name

from .engines import is_dask_bag, write_bag
from .writer import AtlasDatasetWriter, _V1ShardBuilder, _V2ShardBuilder


@dataclass(frozen=True)
class _Chunk:
    """The examples of one shard: a list, or a range of an indexable source read in the worker."""

    number: int
    examples: list[Any] | None = None
    source: Any = None
    start: int = 0
    stop: int = 0
    #: the dataset index of the shard's first example (None: number x shard_size, every shard before is full)
    first: int | None = None

    def __iter__(self) -> Iterator[Any]:
        if self.examples is not None:
            return iter(self.examples)
        return _read_range(self.source, self.start, self.stop)

    def __len__(self) -> int:
        return len(self.examples) if self.examples is not None else self.stop - self.start


def _read_range(source: Any, start: int, stop: int, step: int = 256) -> Iterator[Any]:
    batched = getattr(source, "__getitems__", None)
    for lo in range(start, stop, step):
        hi = min(lo + step, stop)
        if batched is not None:
            yield from batched(list(range(lo, hi)))
        else:
            for i in range(lo, hi):
                yield source[i]


@dataclass(frozen=True)
class _ShardJob:
    """What a worker needs to build one shard (everything picklable)."""

    folder: str
    format_version: int
    block_size: int
    codec: int
    strategy: int
    mode: str
    level: int
    dict_size: float
    dictionary: bytes | None
    limits: Limits
    framing: Framing = Framing.GROUPED
    preamble_seed: list[Any] | None = None  # framing grouped: shard 0's shared objects (grouped_writer)
    encoding: str = "pickle"  # or "typed" (spec 3.12)
    shard_size: int = 0  # names an example that cannot be encoded by its dataset index


def _build_shard(job: _ShardJob, chunk: _Chunk) -> tuple[int, Any]:
    """Build one shard (in a worker); returns (shard number, v2 root record or v1 example count)."""
    if job.format_version == 1:
        import zstandard

        dictionary = None if job.dictionary is None else zstandard.ZstdCompressionDict(job.dictionary)
        v1 = _V1ShardBuilder(Path(job.folder) / str(chunk.number), job.block_size, CompressionStrategy(job.strategy),
                             job.level, job.dict_size, dictionary)
        try:
            for example in chunk:
                v1.add_example(example)
            v1.close()
        except BaseException:
            v1.abort()
            raise
        return chunk.number, v1.count
    name = v2_shard_name(chunk.number)
    v2 = _V2ShardBuilder(Path(job.folder) / name, name, job.block_size, Codec(job.codec), job.level, job.dict_size,
                         job.mode, job.dictionary, job.limits, framing=job.framing, preamble_seed=job.preamble_seed,
                         encoding=job.encoding,
                         first=chunk.number * job.shard_size if chunk.first is None else chunk.first)
    return chunk.number, v2.write_all(chunk)[0]


def _chunks(examples: Any, shard_size: int, by_range: bool) -> Iterator[_Chunk]:
    if by_range:
        n = len(examples)
        for number, start in enumerate(range(0, n, shard_size)):
            yield _Chunk(number, source=examples, start=start, stop=min(start + shard_size, n))
        return
    iterator = iter(examples)
    for number in itertools.count():
        block = list(itertools.islice(iterator, shard_size))
        if not block:
            return
        yield _Chunk(number, examples=block)


def _progress(total: int | None, enabled: bool | None, desc: str) -> Any:
    if enabled is None:
        enabled = sys.stderr.isatty()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="ex", disable=not enabled, dynamic_ncols=True)


def write_dataset(examples: Iterable[Any] | Any, path: str | os.PathLike[str], *, shard_size: int, block_size: int,
                  compression_strategy: CompressionStrategy | int | None = None, compression_level: int = 3,
                  compression_dict_size: float = 0.01, codec: Codec | str | None = None, format_version: int = 2,
                  user_metadata: dict[str, Any] | None = None, num_workers: int | None = None,
                  progress: bool | None = None, limits: Limits = DEFAULT_LIMITS, desc: str = "writing",
                  framing: Framing | str | None = None, encoding: str | None = None,
                  before_publish: Callable[[Path], None] | None = None) -> Path:
    """Write ``examples`` to a new dataset at ``path``, shards built by ``num_workers`` processes.

    ``examples`` may be any iterable, or an indexable dataset (``len`` and ``[i]``, e.g. an
    AtlasDataset or a HuggingFace dataset) that workers read directly by index range, or a
    ``dask.bag.Bag``, whose partitions dask's tasks write (``engines.write_bag``: version 2, each
    partition's last shard may be partial; ``num_workers`` does not apply).
    ``num_workers`` defaults to the CPU count; 1 writes in this process. The arguments
    otherwise mean what they mean for AtlasDatasetWriter. ``before_publish(folder)`` is called with
    the finished temporary folder (a complete dataset) just before it is published; if it raises,
    nothing is published (``atlas-ds convert`` validates there). Returns the published path.
    """
    workers = os.cpu_count() or 1 if num_workers is None else int(num_workers)
    if workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers!r}")
    writer = AtlasDatasetWriter(path, shard_size, block_size, compression_strategy, compression_level,
                                compression_dict_size, codec=codec, format_version=format_version,
                                user_metadata=user_metadata, limits=limits, framing=framing, encoding=encoding)
    writer.before_publish = before_publish
    if is_dask_bag(examples):
        bar = _progress(None, progress, desc)
        try:
            write_bag(examples, writer, bar)
            writer.close()
        except BaseException:
            writer.abort()
            raise
        finally:
            bar.close()
        return Path(path)
    by_range = hasattr(examples, "__len__") and hasattr(examples, "__getitem__") and not isinstance(examples, list)
    total = len(examples) if hasattr(examples, "__len__") else None  # type: ignore[arg-type]
    bar = _progress(total, progress, desc)
    pool: ProcessPoolExecutor | None = None
    try:
        chunks = _chunks(examples, writer.shard_size, by_range)
        first = next(chunks, None)
        if first is not None:  # shard 0 in this process, through the writer (it trains a shared dictionary)
            for example in first:
                writer.add_example(example)
                bar.update(1)
        second = next(chunks, None)
        results: list[tuple[int, Any]] = []
        if second is not None:
            if writer.format_version == 1:
                writer._close_v1_shard()
            else:
                writer._close_v2_shard()
            job = _job(writer)  # after shard 0: the shared dictionary, or the fallback, is known
            futures: list[Future[tuple[int, Any]]] = []
            if workers > 1:
                pool = ProcessPoolExecutor(max_workers=workers)
            for chunk in itertools.chain([second], chunks):
                if pool is None:
                    results.append(_build_shard(job, chunk))
                    bar.update(len(chunk))
                else:
                    future = pool.submit(_build_shard, job, chunk)
                    future.add_done_callback(_count_into(bar, len(chunk)))
                    futures.append(future)
            results += [f.result() for f in futures]
            results.sort(key=lambda r: r[0])
        _adopt(writer, results)
        writer.close()
    except BaseException:
        if pool is not None:  # stop the workers before their shards' folder is removed
            pool.shutdown(wait=True, cancel_futures=True)
        writer.abort()
        raise
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    return Path(path)


def _count_into(bar: Any, n: int) -> Any:
    """A done-callback advancing the progress bar by a finished shard's examples."""
    def done(future: Future[tuple[int, Any]]) -> None:
        if not future.cancelled() and future.exception() is None:
            bar.update(n)

    return done


def _job(writer: AtlasDatasetWriter) -> _ShardJob:
    """The shard settings for shards after the first (dictionary and fallback decided by shard 0)."""
    if writer.format_version == 1:
        strategy = writer.strategy
        dictionary = None
        if strategy == CompressionStrategy.SHARED_DICTIONARY_COMPRESSION:
            if writer._shared is None:
                strategy = CompressionStrategy.STANDARD_COMPRESSION
            else:
                dictionary = writer._shared.as_bytes()
        return _ShardJob(str(writer._tmp), 1, writer.block_size, int(writer.codec), int(strategy), "",
                         writer.compression_level, writer.compression_dict_size, dictionary, writer.limits)
    mode = writer.mode.value
    dictionary = None
    if mode == "shared":
        mode, dictionary = ("shared", writer._shared) if writer._shared is not None else ("none", None)
    return _ShardJob(str(writer._tmp), 2, writer.block_size, int(writer.codec), int(writer.strategy), mode,
                     writer.compression_level, writer.compression_dict_size, dictionary, writer.limits,
                     writer.framing, writer._preamble_seed, writer.encoding, writer.shard_size)


def _adopt(writer: AtlasDatasetWriter, results: list[tuple[int, Any]]) -> None:
    """Hand the worker-built shards to the writer, which writes the root metadata and publishes."""
    if not results:
        return
    if writer.format_version == 2:
        writer._records.extend(record for _, record in results)
        writer.num_examples += sum(r["num_examples"] for _, r in results)
        writer._shard_number += len(results)
        return
    # Version 1: the writer closes its current shard at close(); make the last built shard current
    # by re-opening nothing: record the counts of shards 1..N-1 and leave shard 0 closed.
    counts = [count for _, count in results]
    writer._v1_written.extend(counts[:-1])
    writer.num_examples += sum(counts)
    writer._shard_number += len(results)
    writer._current = _ClosedV1Shard(counts[-1])


class _ClosedV1Shard:
    """Stands for the last version 1 shard, already built by a worker, when the writer closes."""

    def __init__(self, count: int) -> None:
        self.count = count

    def close(self, shared_mode: bool = False) -> tuple[int, None]:
        return 0, None

    def abort(self) -> None:
        return None
