"""Small shared helpers: durable file writes, fork detection, file identity, dictionaries' places."""

from __future__ import annotations

import os
import threading
import weakref
from pathlib import Path
from typing import Any

from atlas_format.constants import DICT_FILE
from atlas_format.files import Location
from atlas_format.remote import RemoteLocation

# Bumped in every child after fork, so lazily opened handles know to reopen.
_FORK_GENERATION = [0]
# Objects whose ``_lock`` a forked child replaces: a lock another thread held at fork time stays held forever.
_LOCK_OWNERS: weakref.WeakSet[Any] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    _FORK_GENERATION[0] += 1
    for owner in list(_LOCK_OWNERS):
        owner._lock = threading.Lock()


def fork_safe_lock(owner: Any) -> threading.Lock:
    """A new lock for ``owner._lock``, replaced by a fresh one in a forked child."""
    _LOCK_OWNERS.add(owner)
    return threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def fork_generation() -> int:
    """A number that changes in a child process after fork (cheaper than os.getpid on every read)."""
    return _FORK_GENERATION[0]


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory so that entries created or renamed in it survive a crash."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def write_file(path: str | os.PathLike[str], data: bytes | bytearray | memoryview) -> None:
    """Write a whole file and fsync it (the caller fsyncs the folder). On failure (a full disk) the file is
    closed without writing its buffer again; the caller removes it."""
    f = open(path, "wb")  # noqa: SIM115 - closed below, without a second flush on failure
    try:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    except BaseException:
        try:
            f.raw.close()  # a closed raw file: close() below does not flush again
            f.close()
        except OSError:
            pass  # the first failure is the one to report
        raise
    f.close()


def publish_folder(tmp: Path, target: Path) -> None:
    """Publish a fully written (and fsynced) temporary folder as ``target``: one atomic rename.

    Refuses an existing target, like the original writer's mkdir; the parent is fsynced so
    the rename survives a crash.
    """
    if os.path.lexists(target):
        raise FileExistsError(f"[Errno 17] File exists: '{target}'")
    os.rename(tmp, target)
    fsync_dir(target.parent)


def file_identity(status: os.stat_result) -> tuple[int, int, int, int]:
    """(device, inode, size, mtime) of a file: a file checked in this process and unchanged since keeps
    its checks (a reopened index is not parsed again, verified blocks stay verified)."""
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns


def shared_dictionary(folder: Location | RemoteLocation) -> Location | RemoteLocation:
    """Where a shard folder's dataset keeps the shared zstd_dict.bin: the dataset root for a shard of a
    dataset, the parent folder for a shard folder opened on its own (then it is the user's path)."""
    if isinstance(folder, RemoteLocation):
        return RemoteLocation(folder.root, DICT_FILE)
    return Location(folder.root, DICT_FILE) if folder.rel else Location(folder.root.parent, DICT_FILE)


def zstd_decompressor(dictionary: bytes | None, path: Any, shard: Any = None, *, magicless: bool = False,
                      max_window: int = 0) -> Any:
    """A reusable zstd decompressor (``magicless``: for framing grouped's frames, V2-CODEC-4); a dictionary
    zstd cannot load is a FormatError naming its file."""
    import zstandard

    from atlas_format.codecs import zstd_decompressor as decompressor

    from .errors import FormatError

    try:
        return decompressor(dictionary, magicless=magicless, max_window=max_window)
    except zstandard.ZstdError as exc:
        raise FormatError(f"not a usable zstd dictionary: {exc}", path=path, shard=shard) from None
