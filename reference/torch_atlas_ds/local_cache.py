"""A local cache of verified stored blocks for a dataset read from a URL, bounded in bytes.

A block fetched from the store and verified against its index checksum is written to
``<folder>/<dataset key>/<shard>/<block>-<checksum>``; a later read (in any process, any later run) takes it
from there instead of the store. The checksum in the name ties a file to one version of the block: a dataset
rewritten in the store has other checksums, so nothing stale is ever read. A cached file is verified again
when it is read (a local disk can fail too); one that does not match is removed and the block fetched.
Files are written to a temporary name and renamed, so concurrent DataLoader workers never read a partial
one. When what this process added takes the folder past ``max_bytes``, the least recently used files (by
modification time, refreshed on each hit) are removed until the folder is at 90% of the bound.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from atlas_format.checksum import XXH3_64


class LocalBlockCache:
    """Verified stored blocks of one dataset (``key``: its URL) kept in ``folder``, at most ``max_bytes``."""

    def __init__(self, folder: str | os.PathLike[str], key: str, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"local_cache_bytes must be >= 0, got {max_bytes}")
        self.top = Path(folder)
        self.folder = self.top / hashlib.sha256(key.encode()).hexdigest()[:24]
        self.max_bytes = max_bytes
        self._added = 0  # bytes this process wrote since it last counted the folder

    def _path(self, shard: str, b: int, checksum: int) -> Path:
        return self.folder / shard / f"{b}-{checksum:016x}"

    def has(self, shard: str, b: int, checksum: int) -> bool:
        """Whether a copy of the block is here (``get`` verifies it)."""
        return self._path(shard, b, checksum).is_file()

    def get(self, shard: str, b: int, checksum: int) -> bytes | None:
        """Block ``b`` of ``shard`` if a verified copy is here (None: fetch it)."""
        path = self._path(shard, b, checksum)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if XXH3_64.of(data) != checksum:
            path.unlink(missing_ok=True)
            return None
        try:
            os.utime(path)  # recently used
        except OSError:
            pass
        return data

    def put(self, shard: str, b: int, checksum: int, data: Any) -> None:
        """Keep a verified stored block (nothing when it alone is above the bound)."""
        if len(data) > self.max_bytes:
            return
        path = self._path(shard, b, checksum)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.{os.getpid()}")
            temporary.write_bytes(bytes(data))
            os.replace(temporary, path)
        except OSError:
            return  # a cache that cannot be written is a cache that misses
        self._added += len(data)
        if self._added > self.max_bytes // 10:
            self._added = 0
            self.evict()

    def evict(self) -> None:
        """Remove the least recently used files until the folder holds at most 90% of ``max_bytes``."""
        files = []
        for path in self.folder.rglob("*"):
            try:
                st = path.stat()
            except OSError:
                continue
            if path.is_file():
                files.append((st.st_mtime_ns, st.st_size, path))
        total = sum(size for _, size, _ in files)
        if total <= self.max_bytes:
            return
        for _, size, path in sorted(files):
            if total <= self.max_bytes * 9 // 10:
                break
            path.unlink(missing_ok=True)
            total -= size

    def nbytes(self) -> int:
        """Bytes the folder holds now."""
        return sum(p.stat().st_size for p in self.folder.rglob("*") if p.is_file())
