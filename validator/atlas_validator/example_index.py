"""Examples numbered as the reader numbers them: the index in the whole dataset (what ``ds[i]`` takes).

A shard check knows only its own examples (shards are checked apart, in parallel); once every shard
is checked, the runner adds to each finding that names an example its index in the dataset, from
the example counts of the shards before it, in the readers' shard order.
"""

from __future__ import annotations

import dataclasses

from .common import ShardResult, is_int
from .findings import Finding


def shard_starts(results: list[ShardResult], count_key: str) -> dict[str, int]:
    """The dataset index of each shard's first example, for the shards whose predecessors are all known:
    ``results`` in shard order with contiguous positions, each counting its examples in ``summary[count_key]``
    (a missing shard or an unreadable count leaves the shards after it without an index)."""
    starts: dict[str, int] = {}
    total = 0
    for expected, result in enumerate(results):
        if result.position != expected:
            break
        starts[result.name] = total
        count = result.summary.get(count_key)
        if not is_int(count) or count < 0:
            break
        total += count
    return starts


def with_indexes(findings: list[Finding], starts: dict[str, int]) -> list[Finding]:
    """``findings`` with ``index`` set wherever the shard's start and the example's number in it are known."""
    out = []
    for f in findings:
        if f.index is None and f.example is not None and f.shard is not None and f.shard in starts:
            f = dataclasses.replace(f, index=starts[f.shard] + f.example)
        out.append(f)
    return out
