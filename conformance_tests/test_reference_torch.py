"""PyTorch integration: DataLoader workers (fork, spawn, persistent), batched reads, the block sampler."""

from __future__ import annotations

import multiprocessing
from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader

from torch_atlas_ds import AtlasDataset, AtlasDatasetWriter, BlockShuffleSampler

N = 203


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("torch") / "d"
    with AtlasDatasetWriter(root, 64, 8) as w:
        for i in range(N):
            w.add_example({"i": i, "x": float(i)})
    return root


def _ids(loader) -> list[int]:
    out = []
    for batch in loader:
        out.extend(batch["i"].tolist())
    return out


def test_is_a_torch_dataset(dataset_root):
    assert isinstance(AtlasDataset(dataset_root), torch.utils.data.Dataset)


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_two_workers_every_example_once_per_epoch(dataset_root, context):
    if context not in multiprocessing.get_all_start_methods():
        pytest.skip(f"{context} unavailable")
    ds = AtlasDataset(dataset_root)
    ds[0]  # handles open in the parent: workers must reopen their own
    sampler = BlockShuffleSampler(ds, seed=3)
    loader = DataLoader(ds, batch_size=16, sampler=sampler, num_workers=2, persistent_workers=True,
                        multiprocessing_context=context)
    orders = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        ids = _ids(loader)
        assert sorted(ids) == list(range(N))
        orders.append(ids)
    assert orders[0] != orders[1]


def test_dataloader_zero_workers_and_shuffle(dataset_root):
    ds = AtlasDataset(dataset_root)
    assert _ids(DataLoader(ds, batch_size=10)) == list(range(N))
    assert sorted(_ids(DataLoader(ds, batch_size=10, shuffle=True))) == list(range(N))


def test_getitems_decodes_each_block_once(dataset_root, monkeypatch):
    ds = AtlasDataset(dataset_root, block_cache_size=0)
    calls = Counter()
    for shard in ds.shards:  # every framing reads a block's stored bytes once per decode of it
        original = shard._stored

        def counting(b, maps, _orig=original, _label=shard.label):
            calls[(_label, b)] += 1
            return _orig(b, maps)

        monkeypatch.setattr(shard, "_stored", counting)
    batch = ds.__getitems__([0, 7, 1, 3, 64, 65, 200, 6, 2])
    assert [x["i"] for x in batch] == [0, 7, 1, 3, 64, 65, 200, 6, 2]
    assert set(calls.values()) == {1} and len(calls) == 3
    calls.clear()
    assert [x["i"] for x in ds] == list(range(N))
    # every block decoded at most once (a shard's most recent block may still be memoized from the batch)
    assert set(calls.values()) == {1}
    assert len(calls) >= sum(s.num_blocks for s in ds.shards) - len(ds.shards)


def test_sampler_is_a_permutation_that_changes_with_epoch_and_seed(dataset_root):
    ds = AtlasDataset(dataset_root)
    s = BlockShuffleSampler(ds, seed=0)
    first = list(s)
    assert sorted(first) == list(range(N)) and len(s) == N
    assert list(s) == first  # deterministic for an epoch
    s.set_epoch(1)
    second = list(s)
    assert sorted(second) == list(range(N)) and second != first
    other = list(BlockShuffleSampler(ds, seed=1))
    assert other != first
    assert list(BlockShuffleSampler(ds, shuffle=False)) == list(range(N))


def test_sampler_window_keeps_reads_block_local(dataset_root):
    ds = AtlasDataset(dataset_root)
    window = 16
    order = list(BlockShuffleSampler(ds, seed=5, window=window))
    for start in range(0, N, window):
        blocks = {ds._locate(i)[0] * 1000 + ds._locate(i)[1] // 8 for i in order[start:start + window]}
        assert len(blocks) <= window // 8 + 2


@pytest.mark.parametrize("world_size", [2, 3, 4])
@pytest.mark.parametrize("drop_last", [False, True])
def test_sampler_ranks_are_disjoint_and_covering(dataset_root, world_size, drop_last):
    ds = AtlasDataset(dataset_root)
    for epoch in (0, 1):
        parts = []
        for rank in range(world_size):
            s = BlockShuffleSampler(ds, seed=7, rank=rank, world_size=world_size, drop_last=drop_last)
            s.set_epoch(epoch)
            parts.append(list(s))
            assert len(parts[-1]) == len(s)
        assert len({len(p) for p in parts}) == 1
        flat = [i for p in parts for i in p]
        if drop_last:
            assert len(set(flat)) == len(flat) == (N // world_size) * world_size
        else:
            assert set(flat) == set(range(N))
            assert len(flat) - len(set(flat)) == len(flat) - N  # only the wrap-around padding repeats
    with pytest.raises(ValueError):
        BlockShuffleSampler(ds, rank=2, world_size=2)


@pytest.mark.parametrize("format_version", [1, 2])
def test_threads_share_one_reader(tmp_path, format_version):
    import random
    from concurrent.futures import ThreadPoolExecutor

    root = tmp_path / "d"
    with AtlasDatasetWriter(root, 50, 4, format_version=format_version) as w:
        for i in range(200):
            w.add_example({"i": i, "s": "text " * (i % 13)})
    ds = AtlasDataset(root, block_cache_size=2)

    def work(seed: int) -> bool:
        rng = random.Random(seed)
        for _ in range(400):
            i = rng.randrange(200)
            if ds[i] != {"i": i, "s": "text " * (i % 13)}:
                return False
        return True

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(work, range(8)))
