"""Opening dataset files as untrusted input (spec FILE-1..3), the one way both engines do it.

A dataset made by someone else may hold a symlink to ``/dev/zero`` or to a folder elsewhere,
a FIFO on which a plain ``open()`` blocks forever, a device node, or a file far larger than
any limit. So, below the dataset root:

* no path component is followed if it is a symlink: each one is ``lstat``-ed, then opened
  with ``O_NOFOLLOW`` relative to its parent folder's descriptor (the root itself may be a
  symlink: the user named it);
* only regular files and real folders are used; anything else is refused without being
  opened, and a file is opened with ``O_NONBLOCK`` and checked again with ``fstat``, so
  swapping in a FIFO between the two steps cannot block;
* a file's size is compared with its limit before a byte is read or mapped.

Refusals are ``atlas_format.errors`` exceptions naming the file and what was expected.
"""

from __future__ import annotations

import mmap
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import TracebackType

from .errors import AtlasError, FormatError, LimitError, MissingShardError
from .remote import RemoteLocation

_FLAG = {name: getattr(os, name, 0) for name in ("O_NOFOLLOW", "O_NONBLOCK", "O_NOCTTY", "O_CLOEXEC", "O_BINARY",
                                                   "O_DIRECTORY")}
_FILE_FLAGS = os.O_RDONLY | _FLAG["O_NOFOLLOW"] | _FLAG["O_NONBLOCK"] | _FLAG["O_NOCTTY"] | _FLAG["O_CLOEXEC"] | \
    _FLAG["O_BINARY"]
_DIR_FLAGS = os.O_RDONLY | _FLAG["O_NOFOLLOW"] | _FLAG["O_DIRECTORY"] | _FLAG["O_CLOEXEC"]
#: Whether folders can be walked by descriptor (POSIX). Elsewhere each component is lstat-ed by path.
_BY_DESCRIPTOR = bool(_FLAG["O_DIRECTORY"]) and os.open in os.supports_dir_fd and os.stat in os.supports_dir_fd

_KINDS: tuple[tuple[Callable[[int], bool], str], ...] = (
    (stat.S_ISLNK, "a symlink"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder"),
    (stat.S_ISREG, "a regular file"))


def kind(mode: int) -> str:
    """What a file mode is, as messages name it ("a symlink", "a FIFO", ...)."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


@dataclass(frozen=True)
class Location:
    """A path inside a dataset: ``root``, the folder the user named (followed if it is a symlink: the
    user's choice), and ``rel``, '/'-separated names below it, none of which is followed if it is one."""

    root: Path
    rel: str = ""

    def __post_init__(self) -> None:
        if any(part in ("", ".", "..") for part in self.parts) or "\\" in self.rel:
            raise ValueError(f"not a plain relative path inside a dataset: {self.rel!r}")

    @cached_property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.rel.split("/")) if self.rel else ()

    @property
    def path(self) -> Path:
        """The path as errors and messages show it."""
        return self.root / self.rel if self.rel else self.root

    def prefix(self, k: int) -> Path:
        """The path of component ``k`` (the root joined with the first k + 1 names)."""
        return self.root.joinpath(*self.parts[:k + 1])

    @property
    def name(self) -> str:
        return self.parts[-1] if self.rel else self.root.name

    def __truediv__(self, name: str) -> Location:
        return Location(self.root, f"{self.rel}/{name}" if self.rel else name)

    def __str__(self) -> str:
        return str(self.path)


class RegularFile:
    """A dataset file opened by ``open_regular``: its descriptor, ``fstat`` status and size (checked
    against a limit). Read it whole or map it, then close it (it is a context manager); a map
    stays valid after ``close`` (in CPython it keeps a descriptor of its own).
    """

    __slots__ = ("fd", "status", "size", "location")

    def __init__(self, fd: int, status: os.stat_result, location: Location) -> None:
        self.fd = fd
        self.status = status
        self.size = status.st_size
        self.location = location

    def read(self, n: int | None = None) -> bytes:
        """The file's first ``n`` bytes, by default all ``size`` of them (fewer if it shrank since it was opened)."""
        os.lseek(self.fd, 0, os.SEEK_SET)
        with open(self.fd, "rb", closefd=False) as handle:
            return handle.read(self.size if n is None else min(n, self.size))

    def raw_map(self) -> mmap.mmap | None:
        """A read-only map of the file's ``size`` bytes (None for an empty file, which cannot be mapped)."""
        return mmap.mmap(self.fd, self.size, access=mmap.ACCESS_READ) if self.size else None

    def map(self) -> tuple[mmap.mmap | None, memoryview]:
        """(read-only map or None, memoryview of it): slices of the view copy nothing; an empty file is b''."""
        mapped = self.raw_map()
        return mapped, memoryview(b"" if mapped is None else mapped)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> RegularFile:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def open_regular(location: Location, *, limit: int, what: str | None = None,
                 missing: type[AtlasError] = MissingShardError, shard: str | None = None) -> RegularFile:
    """Open a dataset file that must be a regular file of at most ``limit`` bytes, never blocking.

    ``what`` names the file in messages (default: its name). An absent file (or folder on
    the way) raises ``missing``; a symlink, FIFO, socket, device or folder a FormatError, before
    it is opened; a file above ``limit`` a LimitError, before anything is read.
    """
    what = what or location.name
    last = len(location.parts) - 1
    parent = _open_parent(location, missing, shard)
    try:
        before = _lstat(parent, location, last, missing, what, shard)
        _require(before.st_mode, stat.S_ISREG, location, last, shard)
        try:
            fd = os.open(location.name, _FILE_FLAGS, dir_fd=parent) if parent is not None \
                else os.open(location.path, _FILE_FLAGS)
        except FileNotFoundError:
            raise missing(f"{what} is missing", path=location.path, shard=shard) from None
        except PermissionError as exc:
            raise _with_path(exc, location.path) from None
    finally:
        if parent is not None:
            os.close(parent)
    try:
        st = os.fstat(fd)
        _require(st.st_mode, stat.S_ISREG, location, last, shard)
        if (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
            raise FormatError(f"{what} was replaced while being opened", path=location.path, shard=shard)
        if st.st_size > limit:
            raise LimitError(f"{what} is {st.st_size} bytes, above the limit of {limit} bytes (not read)",
                             path=location.path, shard=shard)
    except BaseException:
        os.close(fd)
        raise
    return RegularFile(fd, st, location)


def read_regular(location: Location | RemoteLocation, *, limit: int, what: str | None = None,
                 missing: type[AtlasError] = MissingShardError, shard: str | None = None) -> bytes:
    """The bytes of a dataset file that must be a regular file of at most ``limit`` bytes (see open_regular);
    a file behind a URL is read whole after the size the store reports is checked (``remote``)."""
    if isinstance(location, RemoteLocation):
        return location.read(limit=limit, what=what, missing=missing, shard=shard)
    with open_regular(location, limit=limit, what=what, missing=missing, shard=shard) as handle:
        return handle.read()


def require_folder(location: Location | RemoteLocation, *, what: str = "shard folder",
                   missing: type[AtlasError] = MissingShardError, shard: str | None = None) -> None:
    """Check that a folder inside a dataset exists and is a real folder (not a symlink to one); an object
    store has no folders (its files are checked when they are read)."""
    if isinstance(location, RemoteLocation):
        return
    last = len(location.parts) - 1
    parent = _open_parent(location, missing, shard)
    try:
        st = _lstat(parent, location, last, missing, what, shard)
    finally:
        if parent is not None:
            os.close(parent)
    _require(st.st_mode, stat.S_ISDIR, location, last, shard)


def lstat_entry(location: Location) -> os.stat_result | None:
    """The entry's own status (a symlink is not followed), None when it is absent; a folder on the way
    that is a link or not a folder raises FormatError."""
    try:
        parent = _open_parent(location, MissingShardError, None)
    except MissingShardError:
        return None
    try:
        return _lstat(parent, location, len(location.parts) - 1, MissingShardError, location.name, None)
    except MissingShardError:
        return None
    finally:
        if parent is not None:
            os.close(parent)


def _require(mode: int, test: Callable[[int], bool], location: Location, k: int, shard: str | None) -> None:
    """Component ``k`` of ``location`` must pass ``test`` (S_ISREG: a file, S_ISDIR: a folder on the way)."""
    if not test(mode):
        rule = "dataset files must be regular files" if test is stat.S_ISREG else "shard folders must be real folders"
        link = " (links are not followed inside a dataset)" if stat.S_ISLNK(mode) else ""
        path = location.prefix(k)
        raise FormatError(f"{path.name} is {kind(mode)}; {rule}{link}", path=path, shard=shard)


def _lstat(parent: int | None, location: Location, k: int, missing: type[AtlasError], what: str,
           shard: str | None) -> os.stat_result:
    """The status of component ``k`` of ``location`` (in folder ``parent`` when walking by descriptor)."""
    parts = location.parts
    try:
        if parent is not None:
            return os.stat(parts[k], dir_fd=parent, follow_symlinks=False)
        return os.lstat(location.prefix(k))
    except FileNotFoundError:
        name = what if k == len(parts) - 1 else parts[k]
        raise missing(f"{name} is missing", path=location.prefix(k), shard=shard) from None
    except PermissionError as exc:
        raise _with_path(exc, location.prefix(k)) from None


def _with_path(exc: PermissionError, path: Path) -> PermissionError:
    """The same error naming the whole path (an open relative to a folder descriptor names only the last part)."""
    return PermissionError(exc.errno, exc.strerror, str(path))


def _open_parent(location: Location, missing: type[AtlasError], shard: str | None) -> int | None:
    """A descriptor of the folder holding the last component, reached without following any symlink
    below the root (None where folders cannot be walked by descriptor: components are lstat-ed by path)."""
    parts = location.parts
    if not parts:
        raise ValueError("a location inside a dataset needs a relative path")
    if not _BY_DESCRIPTOR:
        for k in range(len(parts) - 1):
            _require(_lstat(None, location, k, missing, parts[k], shard).st_mode, stat.S_ISDIR, location, k, shard)
        return None
    try:
        fd = os.open(location.root, os.O_RDONLY | _FLAG["O_DIRECTORY"] | _FLAG["O_CLOEXEC"])
    except FileNotFoundError:
        raise missing("the dataset folder is missing", path=location.root, shard=shard) from None
    try:
        for k in range(len(parts) - 1):
            _require(_lstat(fd, location, k, missing, parts[k], shard).st_mode, stat.S_ISDIR, location, k, shard)
            try:
                child = os.open(parts[k], _DIR_FLAGS, dir_fd=fd)
            except PermissionError as exc:
                raise _with_path(exc, location.prefix(k)) from None
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


__all__ = ["Location", "RegularFile", "kind", "lstat_entry", "open_regular", "read_regular", "require_folder"]
