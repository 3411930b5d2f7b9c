"""Resuming an epoch exactly (issue 19): BlockShuffleSampler.state_dict / load_state_dict, alone and under
torchdata's StatefulDataLoader with worker processes, with the same or another world size, in a new process;
an appended dataset is refused."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from torch_atlas_ds import AtlasDataset, AtlasDatasetWriter, BlockShuffleSampler

N = 240


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume") / "d"
    with AtlasDatasetWriter(root, 100, 8) as w:
        for i in range(N):
            w.add_example({"i": i})
    return root


def run(ds, world_size: int, take: int | None, state=None, epoch: int = 0, **kw) -> tuple[list[list[int]], dict]:
    """Each rank's indices (the first ``take`` of them, or all), and rank 0's state after them."""
    seen, states = [], []
    for rank in range(world_size):
        sampler = BlockShuffleSampler(ds, seed=7, rank=rank, world_size=world_size, **kw)
        sampler.set_epoch(epoch)
        if state is not None:
            sampler.load_state_dict(json.loads(json.dumps(state)))  # a state survives JSON
        it = iter(sampler)
        mine = [next(it) for _ in range(take)] if take is not None else list(it)
        seen.append(mine)
        states.append(sampler.state_dict())
    assert all(s == {**states[0]} for s in states)  # any rank's state describes every rank
    return seen, states[0]


@pytest.mark.parametrize("before, take, after", [(2, 10, 2), (2, 12, 3), (4, 10, 1), (1, 9, 3), (3, 10, 2)])
def test_a_resumed_epoch_yields_exactly_what_no_rank_took(dataset_root, before, take, after):
    """(N - before x take is a multiple of ``after``: no rank's slice is padded, see the padding test.)"""
    ds = AtlasDataset(dataset_root)
    whole, _ = run(ds, before, None)
    first, state = run(ds, before, take)
    assert first == [mine[:take] for mine in whole]  # the state is taken mid-stream
    rest, _ = run(ds, after, None, state)
    assert Counter(i for mine in first + rest for i in mine) == Counter(range(N))  # each example exactly once
    if before == after:
        assert rest == [mine[take:] for mine in whole]  # the same split: every rank continues its own stream
    assert len(BlockShuffleSampler(ds, seed=7, world_size=after)) == N // after  # a fresh run: unchanged


def test_an_epoch_resumes_any_number_of_times_under_any_world_sizes(dataset_root):
    ds = AtlasDataset(dataset_root)
    seen, state = run(ds, 2, 12, epoch=3)  # 216 left
    more, state = run(ds, 3, 6, state, epoch=3)  # 3 x 72, 198 left
    again, state = run(ds, 6, 7, state, epoch=3)  # 6 x 33, 156 left
    samplers = [BlockShuffleSampler(ds, seed=7, rank=r, world_size=4) for r in range(4)]
    for s in samplers:
        s.load_state_dict(state)
    last = [list(s) for s in samplers]
    assert [len(s) for s in samplers] == [len(x) for x in last]
    assert Counter(i for part in (seen, more, again, last) for mine in part for i in mine) == Counter(range(N))
    assert state["epoch"] == 3 and [w for w, _ in state["history"]] == [2, 3] and state["world_size"] == 6


def test_drop_last_and_padding_follow_the_first_split(dataset_root):
    ds = AtlasDataset(dataset_root)
    first, state = run(ds, 2, 9, drop_last=True)
    rest, _ = run(ds, 7, None, state, drop_last=True)  # 2 x (120 - 9) = 222 left: 7 x 31, 5 dropped
    taken = Counter(i for mine in first + rest for i in mine)
    assert max(taken.values()) == 1 and N - len(taken) == 222 % 7
    first, state = run(ds, 2, 9)
    padded, _ = run(ds, 7, None, state)  # without drop_last: 7 x 32, 2 repeated (as DistributedSampler pads)
    taken = Counter(i for mine in first + padded for i in mine)
    assert set(taken) == set(range(N)) and sum(taken.values()) == 18 + 7 * 32


def test_a_state_is_refused_for_an_appended_dataset_or_other_settings(tmp_path):
    root = tmp_path / "d"
    with AtlasDatasetWriter(root, 50, 8) as w:
        for i in range(100):
            w.add_example(i)
    sampler = BlockShuffleSampler(AtlasDataset(root), seed=1)
    it = iter(sampler)
    [next(it) for _ in range(5)]
    state = sampler.state_dict()
    with AtlasDatasetWriter.append(root) as w:
        w.add_example(100)
    with pytest.raises(ValueError, match="appended to or is another dataset"):
        BlockShuffleSampler(AtlasDataset(root), seed=1).load_state_dict(state)
    with pytest.raises(ValueError, match="saved by a sampler with"):
        BlockShuffleSampler(AtlasDataset(root), seed=2).load_state_dict({**state, "num_examples": 101,
                                                                        "dataset_digest": BlockShuffleSampler(
                                                                            AtlasDataset(root)).dataset_digest})
    with pytest.raises(ValueError, match="not a BlockShuffleSampler state"):
        sampler.load_state_dict({"version": 99})


def test_stateful_dataloader_with_workers_resumes_in_a_new_process_under_another_world_size(dataset_root, tmp_path):
    pytest.importorskip("torchdata.stateful_dataloader")
    script = Path(__file__).with_name("resume_job.py")
    saved = tmp_path / "state.pt"
    first = subprocess.run([sys.executable, str(script), str(dataset_root), str(saved), "2", "3"],
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    second = subprocess.run([sys.executable, str(script), str(dataset_root), str(saved), "3", "-1"],
                            capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    seen = [int(i) for line in (first.stdout + second.stdout).split("\n") for i in line.split()]
    assert Counter(seen) == Counter(range(N))
