"""Where a shard's bytes come from: a small seam between the shard reader and storage.

A shard reader asks a ``ByteSource`` for its size, one byte range or several; framing and
codecs only ever see the buffers it returns. ``MappedFile`` is the first implementation: a
local file opened through ``atlas_format.files`` (FILE-1..4: no symlink followed, regular
files only, size limit checked before anything is read) and memory-mapped, so a range is a
zero-copy view. A remote store (HTTP ranges, an object store) implements the same four
members, and the shard reader, framing and codecs stay as they are.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from atlas_format.files import Location, open_regular
from atlas_format.remote import RemoteLocation

from ._util import file_identity

Buffer = bytes | bytearray | memoryview


class ByteSource(Protocol):
    """Read-only bytes of one file. ``identity`` changes when the bytes behind it may have changed (what
    was verified of the old bytes is then verified again)."""

    size: int
    identity: tuple[Any, ...]
    #: whether bytes verified once stay verified (else every read of them is verified again)
    verified_once: bool

    def read(self, offset: int, length: int) -> Buffer:
        """``length`` bytes from ``offset`` (the caller keeps within ``size``)."""
        ...

    def read_many(self, ranges: Iterable[tuple[int, int]]) -> list[Buffer]:
        """The (offset, length) ranges, in order (a remote store may fetch them in one request)."""
        ...

    def close(self) -> None:
        """Let go of the storage; buffers already returned may keep it alive until they go."""
        ...


class MappedFile:
    """A local dataset file, checked as dataset files are (FILE-1..4), mapped read-only (or read whole
    with ``mapped=False``). The descriptor is closed at once: the map keeps its own."""

    __slots__ = ("location", "size", "identity", "_map", "_view")

    #: whether bytes verified once stay verified (a mapped file's do; a store may serve other bytes later)
    verified_once = True

    def __init__(self, location: Location, *, limit: int, shard: str | None = None, mapped: bool = True,
                 what: str | None = None) -> None:
        self.location = location
        with open_regular(location, limit=limit, shard=shard, what=what) as f:
            self.size: int = f.size
            self.identity: tuple[Any, ...] = file_identity(f.status)
            if mapped:
                self._map, self._view = f.map()
            else:
                self._map, self._view = None, memoryview(f.read())

    def read(self, offset: int, length: int) -> memoryview:
        return self._view[offset:offset + length]

    def read_many(self, ranges: Iterable[tuple[int, int]]) -> list[Buffer]:
        view = self._view
        return [view[offset:offset + length] for offset, length in ranges]

    def close(self) -> None:
        """Drop this object's references; the map closes when the last view of it goes."""
        self._view = memoryview(b"")
        self._map = None


class RemoteFile:
    """A dataset file behind a URL (``atlas_format.remote``): its size checked against the limit when it is
    opened, every range fetched when it is read (nothing is kept: the shard reader verifies each block it
    fetches, ``verified_once`` False), several ranges merged and fetched concurrently."""

    __slots__ = ("location", "size", "identity")

    #: whether bytes verified once stay verified (a mapped file's do; a store may serve other bytes later)
    verified_once = False

    def __init__(self, location: RemoteLocation, *, limit: int, shard: str | None = None, what: str | None = None
                 ) -> None:
        self.location = location
        self.size, self.identity = location.info(limit=limit, what=what, shard=shard)

    def read(self, offset: int, length: int) -> bytes:
        return self.location.read_range(offset, length) if length else b""

    def read_many(self, ranges: Iterable[tuple[int, int]]) -> list[Buffer]:
        return list(self.location.read_ranges(ranges))

    def close(self) -> None:
        return None


def open_source(location: Location | RemoteLocation, *, limit: int, shard: str | None = None, mapped: bool = True,
                what: str | None = None) -> MappedFile | RemoteFile:
    """The byte source of a dataset file: mapped when it is local, fetched by range when it is behind a URL."""
    if isinstance(location, RemoteLocation):
        return RemoteFile(location, limit=limit, shard=shard, what=what)
    return MappedFile(location, limit=limit, shard=shard, mapped=mapped, what=what)
