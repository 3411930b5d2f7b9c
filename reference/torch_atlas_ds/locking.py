"""Writer locks: one writer per dataset target at a time, refused at the start, never stale.

Why ``flock``: the kernel drops the lock when its holder dies (SIGKILL included), so a dead
writer never blocks the next one and a lock can be tested without trusting a pid. The file
also records the holder (pid, host, process start time) so a refusal names who holds it, and
so that on a file system without ``flock`` a pid check decides instead, which a recycled pid
does not fool (the start time differs). The lock file is removed when released; a writer
acquiring it checks that the file it locked is still the one at the path.

Lock files are named under the temporary prefix (spec V2-WRITE-0, V2-APPEND-0): readers never
look at them and validators report one left by a dead writer as a leftover.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import stat
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import DatasetLockedError, FormatError

#: Seconds a writer keeps trying when the lock is held but its record names no live writer: a probe
#: (``lock_holder``) holds it for microseconds, a new holder between locking and writing its record.
LOCK_WAIT = 1.0
#: Errors of a file system without working ``flock`` (some network file systems): the pid record decides.
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
_RECORD_LIMIT = 4096


@dataclass(frozen=True)
class Holder:
    """Who holds (or last held) a lock, as its file records it."""

    pid: int | None
    host: str | None = None
    start: int | None = None  # the process start time (Linux: clock ticks after boot), against pid reuse
    role: str | None = None
    since: str | None = None

    def describe(self) -> str:
        """'pid 123 on host h (append since 2026-...)', with the parts known."""
        text = f"pid {self.pid}" if self.pid is not None else "an unknown process"
        if self.host:
            text += f" on host {self.host}"
        extra = " ".join(x for x in (self.role, f"since {self.since}" if self.since else None) if x)
        return f"{text} ({extra})" if extra else text


def _proc_stat(pid: int) -> list[bytes] | None:
    """The fields of /proc/<pid>/stat after the command name (Linux; None elsewhere or if it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    try:  # the command name may contain spaces and parentheses: fields follow the last ')'
        return raw[raw.rindex(b")") + 2:].split()
    except ValueError:
        return None


def process_start(pid: int) -> int | None:
    """The start time of process ``pid`` (Linux /proc; None elsewhere or if it is gone)."""
    fields = _proc_stat(pid)
    try:
        return int(fields[19]) if fields is not None else None
    except (ValueError, IndexError):
        return None


def holder_alive(holder: Holder) -> bool:
    """Whether the recorded holder may still run. Another host's process cannot be checked: assumed alive."""
    if holder.pid is None:
        return False
    if holder.host is not None and holder.host != socket.gethostname():
        return True
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        pass
    except OSError:
        return False
    fields = _proc_stat(holder.pid)
    if fields is not None and fields[:1] == [b"Z"]:
        return False  # exited, not yet reaped by its parent
    if holder.start is not None:
        now = process_start(holder.pid)
        if now is not None and now != holder.start:
            return False  # the pid was reused by a later process
    return True


def _own_record(role: str) -> bytes:
    pid = os.getpid()
    return json.dumps({"pid": pid, "host": socket.gethostname(), "start": process_start(pid), "role": role,
                       "since": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}).encode()


def _parse_record(raw: bytes) -> Holder | None:
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None

    def field(key: str, kind: type) -> Any:
        value = doc.get(key)
        return value if isinstance(value, kind) and not isinstance(value, bool) else None

    return Holder(field("pid", int), field("host", str), field("start", int), field("role", str),
                  field("since", str))


def _read_fd(fd: int) -> Holder | None:
    try:
        return _parse_record(os.pread(fd, _RECORD_LIMIT, 0))
    except OSError:
        return None


def read_holder(path: str | os.PathLike[str]) -> Holder | None:
    """The holder a lock file records (a live or a dead one), or None if there is no readable record."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return _read_fd(fd) if stat.S_ISREG(os.fstat(fd).st_mode) else None
    finally:
        os.close(fd)


def _open_lock(path: Path, flags: int) -> int:
    """Open a lock file (never through a symlink, never blocking on a FIFO); it must be a regular file."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FormatError("the lock file is a symlink; a writer's lock must be a regular file "
                              "(remove it if no writer runs)", path=path) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise FormatError("the lock file is not a regular file (remove it if no writer runs)", path=path)
    return fd


def lock_holder(path: str | os.PathLike[str]) -> Holder | None:
    """The live writer holding the lock at ``path``, or None if none does (the lock is not taken).

    It tests the lock for a moment (shared), which a writer starting at that instant retries past."""
    path = Path(path)
    try:
        fd = _open_lock(path, os.O_RDONLY)
    except (OSError, FormatError):
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_fd(fd) or Holder(None)
        except OSError as exc:
            if exc.errno not in _NO_FLOCK:
                raise
            holder = _read_fd(fd)
            return holder if holder is not None and holder_alive(holder) else None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class WriterLock:
    """An exclusive, non-blocking lock on a file for one writer's whole run; see the module docstring.

    ``what`` says what the lock protects, for the refusal's message ("the dataset at X")."""

    def __init__(self, path: str | os.PathLike[str], role: str, what: str) -> None:
        self.path = Path(path)
        self.role = role
        self.what = what
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> WriterLock:
        """Take the lock or raise DatasetLockedError naming the lock file and its holder's pid."""
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            fd = _open_lock(self.path, os.O_RDWR | os.O_CREAT)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_fd(fd)
                os.close(fd)
                if (holder is not None and holder_alive(holder)) or time.monotonic() > deadline:
                    self._refuse(holder)
                time.sleep(0.02)
                continue
            except OSError as exc:
                if exc.errno not in _NO_FLOCK:
                    os.close(fd)
                    raise
                holder = _read_fd(fd)  # no flock here: a live recorded holder refuses, a dead one is taken over
                if holder is not None and holder_alive(holder):
                    os.close(fd)
                    self._refuse(holder)
            if not self._same_file(fd):  # released (unlinked) by its holder meanwhile: lock the new file
                os.close(fd)
                continue
            try:
                record = _own_record(self.role)
                os.ftruncate(fd, 0)
                os.pwrite(fd, record, 0)
            except OSError:  # a full disk: the lock is held all the same, only the record is missing
                pass
            self._fd = fd
            return self

    def _same_file(self, fd: int) -> bool:
        try:
            now = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino)

    def _refuse(self, holder: Holder | None) -> None:
        who = holder.describe() if holder is not None else "another process"
        if holder is not None and not holder_alive(holder):
            who += ", no longer running: a process it started (forked) still holds the lock"
        raise DatasetLockedError(f"{self.what} is being written by {who}, which holds this lock; a second writer "
                                 "is refused before writing anything (wait for it to finish)", path=self.path,
                                 holder_pid=None if holder is None else holder.pid,
                                 holder_host=None if holder is None else holder.host)

    def release(self) -> None:
        """Remove the lock file and unlock (idempotent). A writer waiting on the old file locks the new one."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self._same_file(fd):
                os.unlink(self.path)
        except OSError:
            pass
        finally:
            os.close(fd)

    def __reduce__(self) -> Any:
        """Refused: the lock is a descriptor number of this process. A copy in another process (a pickled
        writer shipped to a worker) would close whatever file that process has under the same number."""
        raise TypeError(f"the lock of {self.what} belongs to the process that took it and cannot be pickled "
                        "(a writer is used in the process that opened it)")

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:  # a writer dropped without close/abort: the lock goes with it
        fd, self._fd = getattr(self, "_fd", None), None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
