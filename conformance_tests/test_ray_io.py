"""Ray Data (issue 19): ``ds.write_datasink(AtlasDatasink(path, ...))`` on a local Ray instance writes the
dataset write_dataset writes from the same examples (example for example, validating clean; the examples are
values Ray's Arrow blocks keep: they turn tuples into lists); ``ray.data.read_datasource(AtlasDatasource(path))``
reads it back in order; a failed task publishes nothing; a write task that dies mid-write and is retried
(played on the sink as Ray calls it) publishes each shard once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from atlas_validator import validate
from torch_atlas_ds import AtlasDataset, write_dataset

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

import engine_helpers  # noqa: E402  (after the skips)

from torch_atlas_ds.ray_io import AtlasDatasink, AtlasDatasource  # noqa: E402

N = 1000


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    here = str(Path(__file__).resolve().parent)  # workers import engine_helpers from here
    path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # the dataset's order is the examples' order
    yield
    ray.shutdown()


def items(n: int = N):
    return ray.data.range(n, override_num_blocks=4).map(lambda row: {"item": row["id"]})


def test_a_ray_dataset_writes_what_write_dataset_writes_and_reads_back(tmp_path):
    expected = [engine_helpers.row_example(i) for i in range(N)]
    plain = write_dataset(expected, tmp_path / "plain", shard_size=120, block_size=16, num_workers=1)
    data = items().map(lambda row: engine_helpers.row_example(int(row["item"])))
    data.write_datasink(AtlasDatasink(tmp_path / "ray", 120, 16, sample=data.take(120)))
    written = AtlasDataset(tmp_path / "ray")
    assert list(written) == list(AtlasDataset(plain)) == expected
    report = validate(tmp_path / "ray")
    assert report.ok and not [f for f in report.findings if f.severity != "info"], report.ids()
    assert sorted(os.listdir(tmp_path / "ray"))[-2:] == ["meta.json", "zstd_dict.bin"]
    rows = ray.data.read_datasource(AtlasDatasource(tmp_path / "ray")).take_all()
    assert [row["item"] for row in rows] == expected


def test_a_shared_dictionary_needs_a_sample_and_a_failed_task_publishes_nothing(tmp_path):
    with pytest.raises(ValueError, match="pass sample="):
        items(10).write_datasink(AtlasDatasink(tmp_path / "d", 5, 2))
    with pytest.raises(Exception, match="example 500 is broken"):
        items().map(engine_helpers.broken_row).write_datasink(
            AtlasDatasink(tmp_path / "d", 100, 16, compression_strategy=1))
    assert os.listdir(tmp_path) == []


def test_the_sink_ray_ships_to_its_tasks_leaves_the_drivers_writer_and_lock_behind(tmp_path):
    """Ray pickles the sink into every write task after on_write_start. The driver's writer holds a lock
    descriptor; a copy of it in a worker closed whatever file the worker had under that number (Ray's own
    memory probe failed with EBADF in CI). The tasks get the job, never the writer."""
    import cloudpickle

    sink = AtlasDatasink(tmp_path / "d", 10, 2, compression_strategy=1)
    sink.on_write_start()
    try:
        shipped = cloudpickle.loads(cloudpickle.dumps(sink))
        assert shipped._writer is None and shipped._job == sink._job
        assert sink._writer is not None and sink._writer._lock.held
    finally:
        sink.on_write_failed(RuntimeError("test over"))
    assert os.listdir(tmp_path) == []


def test_a_write_task_that_dies_mid_write_and_is_retried_publishes_each_shard_once(tmp_path):
    """What Ray does when a task dies and is retried, played on the sink: attempt 1 of task 1 builds a shard and
    dies in its second; attempt 2 writes all of it; the driver receives attempt 2's result (and task 0's)."""
    import pandas as pd

    class Task:
        def __init__(self, k: int) -> None:
            self.task_idx = k

    def blocks(first: int, n: int, die_at: int | None = None):
        for start in range(first, first + n, 50):
            if die_at is not None and start >= die_at:
                raise SystemExit("the worker died")
            yield pd.DataFrame([engine_helpers.row_example(i) for i in range(start, start + 50)])

    sink = AtlasDatasink(tmp_path / "d", 100, 16, compression_strategy=1)
    sink.on_write_start()
    first = sink.write(blocks(0, 250), Task(0))
    with pytest.raises(SystemExit):
        sink.write(blocks(250, 250, die_at=400), Task(1))  # its shard 250-349 is built, then the attempt dies
    retried = sink.write(blocks(250, 250), Task(1))
    sink.on_write_complete(type("WriteResult", (), {"write_returns": [first, retried]})())
    written = AtlasDataset(tmp_path / "d")
    assert list(written) == [engine_helpers.row_example(i) for i in range(500)]
    assert [s.num_examples for s in written.shards] == [100, 100, 50, 100, 100, 50]
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [f"{k:06d}" for k in range(6)] + ["meta.json"]
    assert validate(tmp_path / "d").ok


def test_a_write_task_whose_worker_is_killed_mid_write_is_retried_by_ray_and_publishes_each_shard_once(tmp_path):
    """A real kill under Ray's scheduling: one task maps and writes all rows (map and write fused), its map batches of
    50 rows streamed into the write as blocks; the worker dies at row 400, after its attempt built the shards of rows
    0-399. Ray retries the task; the dataset holds every example once, and no attempt folder is left."""
    import json

    context = ray.data.DataContext.get_current()
    saved = context.target_max_block_size
    context.target_max_block_size = 2048  # a block per map batch, streamed into the fused write
    marker = tmp_path / "killed.json"
    try:
        data = ray.data.from_items(list(range(1000)), override_num_blocks=1).map_batches(
            engine_helpers.ray_kill_once_at, batch_size=50, batch_format="pandas",
            fn_kwargs={"at": 400, "marker": str(marker), "staging": str(tmp_path)})
        data.write_datasink(AtlasDatasink(tmp_path / "d", 100, 16, compression_strategy=1))
    finally:
        context.target_max_block_size = saved
    assert list(json.loads(marker.read_text()).values()) == [4]  # the dead attempt had built 4 shards
    written = AtlasDataset(tmp_path / "d")
    assert list(written) == [engine_helpers.row_example(i) for i in range(1000)]
    assert [s.num_examples for s in written.shards] == [100] * 10
    assert not list(tmp_path.rglob(".attempt-*")) and sorted(os.listdir(tmp_path)) == ["d", "killed.json"]
    assert validate(tmp_path / "d").ok
