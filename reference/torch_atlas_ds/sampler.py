"""BlockShuffleSampler: shuffling that keeps reads block-local, and resumes an epoch exactly.

Fully random indices decode a whole block per example. This sampler permutes shards,
then blocks within each shard, then examples inside a bounded window of consecutive
examples, so a worker decodes each block about once per window while the order still
changes every epoch. Ranks receive contiguous, disjoint slices of the epoch order.

Resuming (``state_dict`` / ``load_state_dict``, the protocol of torchdata's StatefulDataLoader):
the state says how many indices each rank took in the epoch, under which world size, and which
dataset (its size and a digest of its block layout). Ranks advance in lockstep (as data-parallel
training does), so any rank's state describes them all. A resumed epoch continues from what the
ranks have not taken: with the same world size each rank continues its own stream exactly; with
another, the streams' remainders, in rank order, are cut again into contiguous slices, one per new
rank (padded by wrapping, or cut short with ``drop_last``, as the first split is). Every resume is
kept in the state, so an epoch can be resumed any number of times, under any world sizes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch.utils.data

from atlas_format.checksum import XXH3_64

#: The version of the state_dict layout (a state of another version is refused).
STATE_VERSION = 1


class BlockShuffleSampler(torch.utils.data.Sampler[int]):
    """Block-aware shuffling sampler for AtlasDataset (also for distributed training).

    window: examples shuffled together (default: 8 blocks' worth, which the default
        block cache of 16 blocks holds). With ``shuffle=False`` the order is sequential.
    rank/world_size: each rank gets a contiguous slice of the epoch's order; without
        ``drop_last`` the order is padded by wrapping around so every rank has the same
        length (as DistributedSampler); with it the tail is dropped.
    """

    def __init__(self, dataset: Any, seed: int = 0, shuffle: bool = True, window: int | None = None,
                 rank: int = 0, world_size: int = 1, drop_last: bool = False) -> None:
        if not isinstance(world_size, int) or world_size < 1:
            raise ValueError(f"world_size must be an integer >= 1, got {world_size!r}")
        if not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank!r}")
        spans = dataset.block_spans()
        self._spans = [np.array(s, dtype=np.int64).reshape(-1, 2) for s in spans]
        self.num_examples = len(dataset)
        #: the dataset's identity for a resumed epoch: its size and a digest of its block layout
        self.dataset_digest = _digest(self._spans, self.num_examples)
        if window is None:
            block = max((int((s[:, 1] - s[:, 0]).max()) for s in self._spans if len(s)), default=1)
            window = 8 * block
        if not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be an integer >= 1, got {window!r}")
        self.seed, self.shuffle, self.window = seed, shuffle, window
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.epoch = 0
        #: the epoch's earlier runs, [world size, indices each rank took], oldest first (a resumed epoch)
        self.history: list[tuple[int, int]] = []
        #: indices this rank has taken in the current run of the epoch
        self.taken = 0
        self._resume_at = 0  # where the next iteration starts in this rank's stream (set by load_state_dict)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch (call before each epoch: every epoch gets its own permutation). Setting the
        epoch a loaded state is in keeps that state (a training loop calls this before resuming)."""
        if epoch != self.epoch:
            self.history, self.taken, self._resume_at = [], 0, 0
        self.epoch = epoch

    def _order(self, rng: np.random.Generator | None) -> np.ndarray[Any, Any]:
        shard_order = range(len(self._spans)) if rng is None else rng.permutation(len(self._spans))
        pieces: list[np.ndarray[Any, Any]] = []
        for k in shard_order:
            blocks = self._spans[k]
            if len(blocks) == 0:
                continue
            if rng is not None:
                blocks = blocks[rng.permutation(len(blocks))]
            pieces.extend(np.arange(a, b, dtype=np.int64) for a, b in blocks)
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)

    def _per_rank(self, count: int, world_size: int) -> int:
        return count // world_size if self.drop_last else -(-count // world_size)

    def _split(self, order: np.ndarray[Any, Any], world_size: int) -> list[np.ndarray[Any, Any]]:
        """``order`` cut into ``world_size`` contiguous slices of equal length (padded by wrapping, or the tail
        dropped with drop_last)."""
        per_rank = self._per_rank(len(order), world_size)
        total = per_rank * world_size
        if total > len(order) and len(order):
            order = np.resize(order, total)  # wrap around, as DistributedSampler pads
        return [order[r * per_rank:(r + 1) * per_rank] for r in range(world_size)]

    def _first_streams(self, world_size: int) -> list[np.ndarray[Any, Any]]:
        """Every rank's stream of the epoch's first run under ``world_size`` ranks: its slice of the epoch
        order, shuffled by windows with the same permutations in every rank."""
        rng = np.random.default_rng([self.seed, self.epoch]) if self.shuffle else None
        streams = [s.copy() for s in self._split(self._order(rng), world_size)]
        if rng is not None:
            after_order = rng.bit_generator.state
            for mine in streams:
                rng.bit_generator.state = after_order
                for start in range(0, len(mine), self.window):
                    chunk = mine[start:start + self.window]
                    mine[start:start + self.window] = chunk[rng.permutation(len(chunk))]
        return streams

    def _runs(self) -> list[tuple[int, int]]:
        """(world size, indices each rank took) of the epoch's runs before this one, then this run's size."""
        return [*self.history, (self.world_size, 0)]

    def indices(self) -> np.ndarray[Any, Any]:
        """This rank's stream in the current run of the epoch (a resumed run starts after what the ranks
        took before: ``__iter__`` skips what this rank took in this run)."""
        runs = self._runs()
        streams = self._first_streams(runs[0][0])
        for (_, taken), (world_size, _) in zip(runs, runs[1:], strict=False):
            streams = self._split(np.concatenate([s[taken:] for s in streams]), world_size)
        return streams[self.rank]

    def __iter__(self) -> Iterator[int]:
        start, self._resume_at = self._resume_at, 0
        self.taken = start
        for index in self.indices()[start:].tolist():
            self.taken += 1
            yield index

    def __len__(self) -> int:
        """Indices the next iteration yields (computed from the runs' sizes, without the order)."""
        runs = self._runs()
        length = self._per_rank(self.num_examples, runs[0][0])
        for (world_size, taken), (next_size, _) in zip(runs, runs[1:], strict=False):
            length = self._per_rank(world_size * (length - taken), next_size)
        return length - self._resume_at

    # -- resuming ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Where this epoch is: what every rank took, under which world sizes, of which dataset."""
        return {"version": STATE_VERSION, "seed": self.seed, "epoch": self.epoch, "shuffle": self.shuffle,
                "window": self.window, "drop_last": self.drop_last, "num_examples": self.num_examples,
                "dataset_digest": self.dataset_digest, "history": [list(h) for h in self.history],
                "world_size": self.world_size, "taken": self.taken}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume the epoch a state describes (any rank's): the next iteration yields this rank's share of
        what no rank has taken. Refused (ValueError) for another dataset, sampler settings or layout."""
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise ValueError(f"not a BlockShuffleSampler state of version {STATE_VERSION}: "
                             f"{state.get('version') if isinstance(state, dict) else type(state).__name__!r}")
        if (state["num_examples"], state["dataset_digest"]) != (self.num_examples, self.dataset_digest):
            raise ValueError(f"the state was saved for a dataset of {state['num_examples']} examples (block layout "
                             f"{state['dataset_digest']}), this one has {self.num_examples} ({self.dataset_digest}): "
                             "it was appended to or is another dataset; resuming would mix two epochs' orders")
        mine = {"seed": self.seed, "shuffle": self.shuffle, "window": self.window, "drop_last": self.drop_last}
        theirs = {k: state[k] for k in mine}
        if theirs != mine:
            raise ValueError(f"the state was saved by a sampler with {theirs}, this one has {mine}")
        history = [(int(w), int(t)) for w, t in state["history"]]
        world_size, taken = int(state["world_size"]), int(state["taken"])
        self.epoch = int(state["epoch"])
        if world_size == self.world_size and not history:
            self.history, self._resume_at = [], taken  # the same split: this rank continues its own stream
        else:
            self.history, self._resume_at = [*history, (world_size, taken)], 0
        self.taken = self._resume_at


def _digest(spans: list[np.ndarray[Any, Any]], num_examples: int) -> str:
    """A digest of a dataset's block layout (each shard's block spans) and size."""
    parts = [str(num_examples).encode()]
    for s in spans:
        parts += [len(s).to_bytes(8, "little"), np.ascontiguousarray(s, dtype="<i8").tobytes()]
    return XXH3_64.text(XXH3_64.of(b"".join(parts)))
