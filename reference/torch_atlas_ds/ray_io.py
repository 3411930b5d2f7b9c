"""Ray Data: ``ds.write_datasink(AtlasDatasink(path, ...))`` and ``ray.data.read_datasource(AtlasDatasource(path))``.

Writing uses the engine-neutral core of ``engines``: the driver opens the writer (its temporary folder) in
``on_write_start`` and, for a shared dictionary, trains it and the preamble seed from ``sample`` (examples
the caller passes, e.g. ``ray_dataset.take(10_000)``) before any task compresses; each write task builds the
complete shards of its blocks into a folder of its own under the temporary folder and returns their records;
``on_write_complete`` names the shards in task order, moves them into place and publishes once. A failed write
publishes nothing; a task's retry writes into a new folder, and only the folders of the tasks whose results
the driver receives are published. Ray's rows are the examples (a row of one ``item`` column, as
``ray.data.from_items`` makes of values that are not dicts, is its value).

Reading makes one read task per shard; each yields its examples as rows of one ``item`` column.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from ray.data import Datasink, Datasource
from ray.data.block import BlockMetadata
from ray.data.datasource import ReadTask

from .engines import ATTEMPT_PREFIX, adopt_staged, prime
from .parallel import _build_shard, _Chunk, _job
from .writer import AtlasDatasetWriter


class AtlasDatasink(Datasink[list[tuple[int, int, str, dict[str, Any]]]]):
    """A Ray Data sink writing an Atlas dataset (version 2) at ``path``; the other arguments are
    AtlasDatasetWriter's. ``sample``: examples to train the shared dictionary on (needed with the default,
    shared-dictionary, compression)."""

    def __init__(self, path: str | os.PathLike[str], shard_size: int, block_size: int, *,
                 sample: Sequence[Any] | None = None, **writer_options: Any) -> None:
        self.path, self.shard_size, self.block_size = str(path), shard_size, block_size
        self.sample = list(sample) if sample is not None else None
        self.writer_options = writer_options
        self._writer: AtlasDatasetWriter | None = None
        self._job: Any = None

    def on_write_start(self, schema: Any = None) -> None:
        writer = AtlasDatasetWriter(self.path, self.shard_size, self.block_size, **self.writer_options)
        try:
            if writer.format_version != 2:
                raise ValueError("AtlasDatasink writes version 2 (format_version=2)")
            prime(writer, self.sample)
        except BaseException:
            writer.abort()
            raise
        self._writer, self._job = writer, _job(writer)

    def __getstate__(self) -> dict[str, Any]:
        """What Ray ships to the write tasks: everything but the driver's writer (its lock stays on the driver)."""
        return {**self.__dict__, "_writer": None}

    def write(self, blocks: Iterable[Any], ctx: Any) -> list[tuple[int, int, str, dict[str, Any]]]:
        """One task: its rows in shards of ``shard_size``, each built in this attempt's folder."""
        from ray.data.block import BlockAccessor

        job = self._job
        attempt = Path(job.folder) / f"{ATTEMPT_PREFIX}{uuid.uuid4().hex}"
        attempt.mkdir()
        examples: list[Any] = []
        built: list[tuple[int, int, str, dict[str, Any]]] = []

        def flush() -> None:
            k = len(built)
            number, record = _build_shard(_replace_folder(job, attempt), _Chunk(k, examples=list(examples), first=0))
            built.append((ctx.task_idx, k, str(attempt / record["name"]), record))
            examples.clear()

        for block in blocks:
            row: dict[str, Any]
            for row in BlockAccessor.for_block(block).iter_rows(public_row_format=True):
                examples.append(_example(row))
                if len(examples) == job.shard_size:
                    flush()
        if examples:
            flush()
        return built

    def on_write_complete(self, write_result: Any) -> None:
        writer = self._writer
        assert writer is not None  # noqa: S101 - on_write_start ran
        try:
            staged = sorted(s for returned in write_result.write_returns for s in returned)
            adopt_staged(writer, [(folder, record) for _, _, folder, record in staged])
            writer.close()
        except BaseException:
            writer.abort()
            raise

    def on_write_failed(self, error: Exception) -> None:
        if self._writer is not None:
            self._writer.abort()


def _replace_folder(job: Any, folder: Path) -> Any:
    import dataclasses

    return dataclasses.replace(job, folder=str(folder))


def _example(row: dict[str, Any]) -> Any:
    """The example a Ray row holds: the row (a dict), or its value when it is ``from_items``' ``item`` column."""
    return row["item"] if len(row) == 1 and "item" in row else dict(row)


class AtlasDatasource(Datasource):
    """A Ray Data source over an Atlas dataset: one read task per shard, rows of one ``item`` column."""

    def __init__(self, path: str | os.PathLike[str], **dataset_options: Any) -> None:
        from .dataset import AtlasDataset

        self.path, self.dataset_options = str(path), dataset_options
        dataset = AtlasDataset(self.path, **dataset_options)
        self._shards = [(start, len(shard)) for start, shard in zip(dataset._starts, dataset.shards, strict=True)]

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context: Any = None) -> list[ReadTask]:
        tasks = []
        for start, count in self._shards:
            if not count:
                continue
            metadata = BlockMetadata(num_rows=count, size_bytes=None, input_files=None, exec_stats=None)
            tasks.append(ReadTask(_reader(self.path, self.dataset_options, start, count), metadata))
        return tasks


def _reader(path: str, options: dict[str, Any], start: int, count: int) -> Any:
    def read() -> Iterable[pd.DataFrame]:
        from .dataset import AtlasDataset

        dataset = AtlasDataset(path, **options)
        yield pd.DataFrame({"item": dataset.__getitems__(list(range(start, start + count)))})
    return read
