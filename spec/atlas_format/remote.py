"""Dataset files behind a URL (``s3://``, ``gs://``, ``https://``, any fsspec protocol): what
``atlas_format.files.Location`` is for a local folder.

A ``RemoteLocation`` names a file under a dataset root URL. Reads go through fsspec (the ``remote``
extra), one filesystem object per process: it is made on first use and made again after a fork or in
a process that unpickled the location, so DataLoader workers never share a client. Every read checks
the size the store reports against the caller's limit before anything is fetched; a file the store
does not have raises the caller's ``missing`` error. Nothing here is followed, executed or listed:
object stores have no symlinks or folders, so a location is only a key.
"""

from __future__ import annotations

import bisect
import os
import re
import threading
from collections.abc import Iterable
from typing import Any

from .errors import AtlasError, FormatError, LimitError, MissingShardError

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
#: Ranges closer than this are fetched as one request (and split again), as object stores charge per request.
MERGE_GAP = 1 << 16


def is_url(path: Any) -> bool:
    """Whether ``path`` names a dataset behind a URL (``file://`` and plain paths are local)."""
    return isinstance(path, str) and bool(_URL.match(path)) and not path.startswith("file://")


class UrlPath(str):
    """A URL that joins like a path (``url / "meta.json"``), so messages name remote files by their URL."""

    __slots__ = ()

    def __truediv__(self, name: str) -> UrlPath:
        return UrlPath(f"{self.rstrip('/')}/{name}")

    @property
    def name(self) -> str:
        return self.rstrip("/").rsplit("/", 1)[-1]

    @property
    def parent(self) -> UrlPath:
        return UrlPath(self.rstrip("/").rsplit("/", 1)[0])


class RemoteRoot:
    """A dataset root URL and the fsspec storage options it is read with; the filesystem is per process."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url = UrlPath(url.rstrip("/"))
        self.storage_options = dict(storage_options or {})
        self.protocol = url.split("://", 1)[0]
        self._fs: Any = None
        self._pid = -1
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "storage_options": self.storage_options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], state["storage_options"])  # type: ignore[misc]

    def fs(self) -> Any:
        """This process's fsspec filesystem (a new client after a fork: a parent's is never shared)."""
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    try:
                        import fsspec
                    except ImportError:
                        raise ImportError("reading a dataset from a URL needs fsspec: pip install "
                                          "'torch-atlas-ds[remote]'") from None
                    self._fs = fsspec.filesystem(self.protocol, skip_instance_cache=True, **self.storage_options)
                    self._pid = os.getpid()
        return self._fs

    def key(self, rel: str) -> str:
        """What the filesystem calls the file ``rel`` below the root (http keeps the scheme, others drop it)."""
        url = f"{self.url}/{rel}" if rel else str(self.url)
        return url if self.protocol in ("http", "https") else url.split("://", 1)[1]


class RemoteLocation:
    """A file below a remote dataset root: ``root`` and '/'-separated ``rel`` (as ``files.Location``)."""

    __slots__ = ("root", "rel", "size")

    def __init__(self, root: RemoteRoot, rel: str = "") -> None:
        if any(part in ("", ".", "..") for part in rel.split("/")) and rel:
            raise ValueError(f"not a plain relative path inside a dataset: {rel!r}")
        self.root, self.rel = root, rel
        #: the size the store reported (``info``), None before
        self.size: int | None = None

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.rel.split("/")) if self.rel else ()

    @property
    def path(self) -> UrlPath:
        """The URL, as errors and messages show it."""
        return self.root.url / self.rel if self.rel else self.root.url

    @property
    def name(self) -> str:
        return self.path.name

    def __truediv__(self, name: str) -> RemoteLocation:
        return RemoteLocation(self.root, f"{self.rel}/{name}" if self.rel else name)

    def __str__(self) -> str:
        return str(self.path)

    def info(self, *, limit: int, what: str | None = None, missing: type[AtlasError] = MissingShardError,
             shard: str | None = None) -> tuple[int, tuple[Any, ...]]:
        """(size, identity) the store reports, the size checked against ``limit`` (LimitError, nothing
        fetched); an absent file raises ``missing``."""
        what = what or self.name
        try:
            info = self.root.fs().info(self.root.key(self.rel))
        except FileNotFoundError:
            raise missing(f"{what} is missing", path=self.path, shard=shard) from None
        size = info.get("size")
        if not isinstance(size, int) or size < 0:
            raise FormatError(f"the store does not report the size of {what}", path=self.path, shard=shard)
        if size > limit:
            raise LimitError(f"{what} is {size} bytes, above the limit of {limit} bytes (not read)", path=self.path,
                             shard=shard)
        tag = info.get("ETag") or info.get("etag") or info.get("LastModified") or info.get("mtime")
        self.size = size
        return size, (str(self.path), size, str(tag))

    def read(self, *, limit: int, what: str | None = None, missing: type[AtlasError] = MissingShardError,
             shard: str | None = None, size: int | None = None) -> bytes:
        """The whole file, at most ``limit`` bytes (its size is checked before it is fetched; ``size``: what
        ``info`` reported a moment ago, so the store is not asked twice)."""
        if size is None:
            size, _ = self.info(limit=limit, what=what, missing=missing, shard=shard)
        data = self.read_range(0, size) if size else b""
        if len(data) != size:
            raise FormatError(f"{what or self.name} changed while it was read ({len(data)} bytes, the store "
                              f"reported {size})", path=self.path, shard=shard)
        return data

    def read_range(self, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset``, never more: over HTTP through a file object, whose reads refuse a
        server that answers a range request with the whole file instead of reading it into memory."""
        key = self.root.key(self.rel)
        if self.root.protocol not in ("http", "https"):
            data: bytes = self.root.fs().cat_file(key, start=offset, end=offset + length)
            return data
        try:
            with self.root.fs().open(key, "rb", cache_type="none", size=self.size) as handle:
                handle.seek(offset)
                return bytes(handle.read(length))
        except ValueError as exc:  # fsspec: "The HTTP server doesn't appear to support range requests"
            raise FormatError(f"cannot read bytes {offset}..{offset + length} of {self.path}: {exc}",
                              path=self.path) from None

    def read_ranges(self, ranges: Iterable[tuple[int, int]]) -> list[bytes]:
        """The (offset, length) ranges in order: sorted, ranges closer than MERGE_GAP fetched as one request, the
        requests made concurrently (fsspec's ``cat_ranges``), then cut back into the ranges asked for."""
        wanted = list(ranges)
        if not wanted:
            return []
        merged: list[list[int]] = []
        for offset, length in sorted(set(wanted)):
            if merged and offset <= merged[-1][1] + MERGE_GAP:
                merged[-1][1] = max(merged[-1][1], offset + length)
            else:
                merged.append([offset, offset + length])
        key = self.root.key(self.rel)
        if self.root.protocol in ("http", "https"):  # one bounded read each (see read_range)
            fetched: list[Any] = [self.read_range(a, e - a) for a, e in merged]
        else:
            fetched = self.root.fs().cat_ranges([key] * len(merged), [a for a, _ in merged], [e for _, e in merged])
        pieces = {}
        for (start, end), data in zip(merged, fetched, strict=True):
            if isinstance(data, BaseException):
                raise data
            if len(data) != end - start:
                raise FormatError(f"the store returned {len(data)} bytes for bytes {start}..{end}", path=self.path)
            pieces[start] = data
        starts = sorted(pieces)
        out = []
        for offset, length in wanted:
            base = starts[bisect.bisect_right(starts, offset) - 1]
            out.append(pieces[base][offset - base:offset - base + length])
        return out
