"""BlockShuffleSampler: shuffling that keeps reads block-local.

Fully random indices decode a whole block per example. This sampler permutes shards,
then blocks within each shard, then examples inside a bounded window of consecutive
examples, so a worker decodes each block about once per window while the order still
changes every epoch. Ranks receive contiguous, disjoint slices of the epoch order.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch.utils.data


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
        if window is None:
            block = max((int((s[:, 1] - s[:, 0]).max()) for s in self._spans if len(s)), default=1)
            window = 8 * block
        if not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be an integer >= 1, got {window!r}")
        self.seed, self.shuffle, self.window = seed, shuffle, window
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.epoch = 0
        if drop_last:
            self.per_rank = self.num_examples // world_size
        else:
            self.per_rank = -(-self.num_examples // world_size)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch (call before each epoch: every epoch gets its own permutation)."""
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

    def indices(self) -> np.ndarray[Any, Any]:
        """This rank's indices for the current epoch."""
        rng = np.random.default_rng([self.seed, self.epoch]) if self.shuffle else None
        order = self._order(rng)
        total = self.per_rank * self.world_size
        if total > len(order) and len(order):
            order = np.resize(order, total)  # wrap around, as DistributedSampler pads
        mine = order[self.rank * self.per_rank:(self.rank + 1) * self.per_rank].copy()
        if rng is not None:
            for start in range(0, len(mine), self.window):
                chunk = mine[start:start + self.window]
                mine[start:start + self.window] = chunk[rng.permutation(len(chunk))]
        return mine

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return self.per_rank
