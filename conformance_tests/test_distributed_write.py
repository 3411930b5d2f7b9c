"""Writing from a distributed engine (issue 19): a dask.bag.Bag on a distributed LocalCluster with 2 worker
processes writes the dataset write_dataset writes from the same examples (example for example, validating
clean); a failed task publishes nothing; a worker killed mid-write is retried without duplicating a shard."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from atlas_validator import validate
from torch_atlas_ds import AtlasDataset, write_dataset

distributed = pytest.importorskip("distributed")
dask_bag = pytest.importorskip("dask.bag")

import engine_helpers  # noqa: E402  (after the skips: the helpers need nothing, the test needs dask)

N = 1000


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        yield client


def test_a_bag_writes_what_write_dataset_writes_from_the_same_examples(client, tmp_path):
    expected = [engine_helpers.example(i) for i in range(N)]
    plain = write_dataset(expected, tmp_path / "plain", shard_size=150, block_size=16, num_workers=1)
    bag = dask_bag.range(N, npartitions=4).map(engine_helpers.example)
    written = write_dataset(bag, tmp_path / "bag", shard_size=150, block_size=16)
    ds = AtlasDataset(written)
    assert list(ds) == list(AtlasDataset(plain)) == expected
    assert [ds[i] for i in (0, 249, 250, 999)] == [expected[i] for i in (0, 249, 250, 999)]
    assert [s.num_examples for s in ds.shards] == [150, 100, 150, 100, 150, 100, 150, 100]  # partitions of 250
    report = validate(written)
    assert report.ok and not [f for f in report.findings if f.severity != "info"], report.ids()
    assert sorted(os.listdir(written)) == [f"{k:06d}" for k in range(8)] + ["meta.json", "zstd_dict.bin"]


def test_a_failed_task_publishes_nothing(client, tmp_path):
    bag = dask_bag.range(N, npartitions=4).map(engine_helpers.failing)
    with pytest.raises(ValueError, match="example 500 is broken"):
        write_dataset(bag, tmp_path / "d", shard_size=150, block_size=16)
    assert os.listdir(tmp_path) == []  # neither the dataset nor its temporary folder


def test_a_worker_killed_mid_write_is_retried_and_no_shard_is_written_twice(client, tmp_path):
    marker = tmp_path / "killed-once"
    bag = dask_bag.range(N, npartitions=4).map(engine_helpers.dies_once(str(marker), 880))
    written = write_dataset(bag, tmp_path / "d", shard_size=100, block_size=16)
    assert marker.exists()  # a worker died while writing partition 3's second shard, after its first
    expected = [engine_helpers.example(i) for i in range(N)]
    ds = AtlasDataset(written)
    assert list(ds) == expected
    assert [s.num_examples for s in ds.shards] == [100, 100, 50] * 4
    assert not [p for p in Path(written).iterdir() if p.name.startswith(".")]
    assert validate(written).ok


def test_shards_are_validated_as_tasks_of_the_cluster(client, tmp_path):
    bag = dask_bag.range(N, npartitions=4).map(engine_helpers.example)
    written = write_dataset(bag, tmp_path / "d", shard_size=150, block_size=16)
    assert validate(written, executor=client).ok
    data = bytearray((written / "000005" / "data.bin").read_bytes())
    data[40] ^= 0x10
    (written / "000005" / "data.bin").write_bytes(bytes(data))
    local, distributed_report = validate(written), validate(written, executor=client)
    assert not distributed_report.ok
    assert [(f.id, f.path, f.block) for f in distributed_report.findings] == \
        [(f.id, f.path, f.block) for f in local.findings]
    assert {f.path for f in distributed_report.findings if f.severity == "error"} == {"000005/data.bin"}
