"""A deliberately broken reader (off by one), used to prove the kit fails on wrong data."""

from __future__ import annotations

from typing import Any


class _OffByOne:
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i: int) -> Any:
        return self.inner[(i + 1) % len(self.inner)]


def open(path: Any) -> Any:  # noqa: A001 - the kit's adapter name
    from torch_atlas_ds import AtlasDataset

    return _OffByOne(AtlasDataset(path))
