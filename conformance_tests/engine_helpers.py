"""Functions the distributed-engine tests hand to dask (an importable module, so workers find them)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def example(i: int) -> dict[str, Any]:
    return {"i": i, "text": "word " * (i % 9), "pair": (i, -i)}


def row_example(i: int) -> dict[str, Any]:
    """An example Ray's rows hold unchanged (its Arrow blocks turn tuples into lists)."""
    return {"i": i, "text": "word " * (i % 9), "pair": [i, -i]}


def failing(i: int) -> dict[str, Any]:
    """An example that cannot be made: the task fails."""
    if i == 500:
        raise ValueError("example 500 is broken")
    return example(i)


class DiesWhenWritten:
    """A value whose pickling (when a task writes its shard) marks the file and kills the worker process."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        Path(self.marker).touch()
        os._exit(1)  # the worker dies mid-write, as a killed task would


def dies_once(marker: str, at: int) -> Any:
    """A map whose example ``at`` kills the worker writing it, until the marker exists (the task's retry then
    makes the plain example)."""
    def make(i: int) -> dict[str, Any]:
        value = example(i)
        if i == at and not Path(marker).exists():
            value["pair"] = DiesWhenWritten(marker)
        return value
    return make


def broken_row(row: dict[str, Any]) -> dict[str, Any]:
    """A Ray map whose row 500 fails its task."""
    if row["item"] == 500:
        raise ValueError("example 500 is broken")
    return row_example(int(row["item"]))


def ray_kill_once_at(batch: Any, at: int, marker: str, staging: str) -> Any:
    """A Ray ``map_batches`` function making row examples; the batch holding row ``at`` kills its worker process the
    first time, after writing to ``marker`` how many shards each write attempt under ``staging`` had built by
    then (so a test can tell the kill came in the middle of a task's write)."""
    import json

    import pandas as pd

    items = [int(i) for i in batch["item"]]
    if at in items and not Path(marker).exists():
        attempts = [p for p in Path(staging).rglob(".attempt-*") if p.is_dir()]
        built = {p.name: sum(1 for q in p.iterdir() if (q / "meta.json").exists()) for p in attempts}
        Path(marker).write_text(json.dumps(built))
        os._exit(1)
    return pd.DataFrame([row_example(i) for i in items])
