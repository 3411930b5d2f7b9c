"""ATL605 once per dataset: which globals of the pickle policy (or trusted with ``--allow``) the pickles use.

Shards are checked apart (in parallel), each counting the globals its pickles reference; a note per
global and shard would be thousands of lines on a large dataset, so the runner merges the counts here
into one note per global, with the per-shard counts (bounded) in the finding's ``data``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .common import ShardResult
from .findings import Finding, make

#: Shards listed by name in an ATL605 note's data (the rest are counted, not named).
MAX_SHARDS_LISTED = 64


def dataset_notes(results: Iterable[ShardResult], trusted: frozenset[tuple[str, str]] = frozenset()
                  ) -> list[Finding]:
    """One ATL605 note per global the dataset's pickles reference, in (module, name) order."""
    per_global: dict[tuple[str, str], list[tuple[str, int, dict[str, Any]]]] = {}
    for result in results:
        for module, name, count, where in result.summary.get("allowed", ()):
            per_global.setdefault((module, name), []).append((result.name, count, where))
    notes = []
    for key in sorted(per_global):
        shards = per_global[key]
        pickles = sum(count for _, count, _ in shards)
        listed = shards[:MAX_SHARDS_LISTED]
        how = "trusted with --allow" if key in trusted else "a global of the pickle policy"
        data = {"global": f"{key[0]}:{key[1]}", "trusted": key in trusted, "pickles": pickles,
                "shards": len(shards), "per_shard": {shard: count for shard, count, _ in listed},
                "shards_not_listed": len(shards) - len(listed)}
        text = f"{_count(pickles, 'pickle')} in {_count(len(shards), 'shard')} reference{'s' if pickles == 1 else ''}"
        notes.append(make("ATL605", f"{text} {key[0]}.{key[1]}, {how} (first location given)", data=data,
                          **shards[0][2]))
    return notes


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
