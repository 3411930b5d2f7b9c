"""Leftovers of interrupted writes and appends: find them, say whose they are, remove a dead writer's.

A killed writer leaves what spec V2-STATE-1 calls normal states: its temporary folder beside
the target (``<parent>/.atlas-tmp-<name>-<random>``), an appender's staging entries inside the
root (``.atlas-tmp-*``), shard folders the root meta.json does not list (killed between moving
its shards in and the commit), and its lock file. They are never read, but they take space and,
unremoved, an orphan shard folder would collide with the next append's shard of the same number.

A leftover is removed only under the lock that its writer held (V2-WRITE-0, V2-APPEND-0): holding
it proves that writer dead, and no other writer can start meanwhile. A live writer's files are
never touched; they are listed as alive.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from atlas_format.constants import APPEND_LOCK_FILE, DEFAULT_LIMITS, META_FILE, TEMP_PREFIX, WRITE_LOCK_SUFFIX
from atlas_format.files import Location
from atlas_format.layout import TEMP_SIBLING, V2_SHARD_NAME, is_temp_sibling, write_lock_name

from .errors import AtlasError, DatasetLockedError
from .locking import Holder, WriterLock, lock_holder, read_holder

#: What a leftover is: a write's temporary folder beside its target, an appender's staging entry inside
#: the root, a shard folder the root meta.json does not list, or a dead writer's lock file.
KINDS = ("write", "append", "shard", "lock")


@dataclass(frozen=True)
class Leftover:
    """One leftover entry: its path, kind (KINDS), bytes it takes, and the writer it belongs to."""

    path: Path
    kind: str
    size: int
    writer_pid: int | None
    writer_alive: bool


@dataclass
class Cleanup:
    """What ``remove_leftovers`` removed (or, with dry_run, would remove) and what it kept (live writers')."""

    removed: list[Leftover] = field(default_factory=list)
    kept: list[Leftover] = field(default_factory=list)

    @property
    def bytes_freed(self) -> int:
        return sum(x.size for x in self.removed)


def entry_size(path: Path) -> int:
    """Bytes of the regular files at or under ``path`` (symlinks are not followed, unreadable parts count 0;
    iterative, so a deeply nested leftover cannot exhaust the stack)."""
    total = 0
    stack = [os.fspath(path)]
    while stack:
        current = stack.pop()
        try:
            st = os.lstat(current)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            total += st.st_size
        elif stat.S_ISDIR(st.st_mode):
            try:
                with os.scandir(current) as entries:
                    stack.extend(entry.path for entry in entries)
            except OSError:
                pass
    return total


def _names(folder: Path) -> list[str]:
    try:
        return sorted(os.listdir(folder))
    except OSError:
        return []


def _is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _listed_shards(root: Path) -> set[str] | None:
    """The shard names a version 2 root meta.json lists, or None if it is not one that verifies (then no
    folder can be called an orphan)."""
    from .shard_files import read_v2_meta

    try:
        doc, _ = read_v2_meta(Location(root, META_FILE), "v2-root", DEFAULT_LIMITS)
    except (AtlasError, OSError):
        return None
    return {s["name"] for s in doc["shards"]}


def _sibling_entries(target: Path) -> list[tuple[Path, str]]:
    """The temporary folders of writes to ``target`` beside it."""
    return [(target.parent / n, "write") for n in _names(target.parent) if is_temp_sibling(n, target.name)]


def _live_write_inside(root: Path, name: str) -> bool:
    """Whether ``name`` in ``root`` belongs to a new write still running into ``root`` (a shard folder being
    written there by AtlasDatasetShardWriter): its temporary folder or its lock, held."""
    match = TEMP_SIBLING.match(name)
    if match is not None:
        return lock_holder(root / write_lock_name(match["name"])) is not None
    return name.endswith(WRITE_LOCK_SUFFIX) and lock_holder(root / name) is not None


def _root_entries(root: Path, listed: set[str] | None = None) -> list[tuple[Path, str]]:
    """An appender's leftovers inside ``root``: ``.atlas-tmp-*`` entries (but the append lock and a running
    write's files) and shard folders root meta.json does not list (``listed``: its shard names, when the
    caller has read it already)."""
    names = _names(root)
    found = [(root / n, "append") for n in names
             if n.startswith(TEMP_PREFIX) and n != APPEND_LOCK_FILE and not _live_write_inside(root, n)]
    if listed is None and META_FILE in names:
        listed = _listed_shards(root)
    if listed is not None:
        found += [(root / n, "shard") for n in names
                  if V2_SHARD_NAME.match(n) and n not in listed and _is_real_dir(root / n)]
    return found


def _groups(path: Path) -> list[tuple[Path, str, Callable[[], list[tuple[Path, str]]]]]:
    """(lock file, what it protects, its entries) for the writes to ``path`` and, if it is a folder, its appends."""
    groups: list[tuple[Path, str, Callable[[], list[tuple[Path, str]]]]] = [
        (path.parent / write_lock_name(path.name), f"the write to {path}", lambda: _sibling_entries(path))]
    if _is_real_dir(path):
        groups.append((path / APPEND_LOCK_FILE, f"the dataset at {path}", lambda: _root_entries(path)))
    return groups


def _describe(entries: list[tuple[Path, str]], lock: Path, live: Holder | None) -> list[Leftover]:
    recorded = live if live is not None else read_holder(lock)
    pid = recorded.pid if recorded is not None else None
    found = [Leftover(p, kind, entry_size(p), pid, live is not None) for p, kind in entries]
    if live is None and os.path.lexists(lock):  # a dead writer's lock file is a leftover too
        found.append(Leftover(lock, "lock", entry_size(lock), pid, False))
    return found


def list_leftovers(path: str | os.PathLike[str]) -> list[Leftover]:
    """Every leftover of writes to ``path`` and, if ``path`` is a dataset folder, of appends to it.

    Removes nothing. ``writer_alive`` is True for the files of a writer still running (not leftovers
    yet: never remove them). Works without torch (for ``atlas-ds info``)."""
    path = Path(path)
    found: list[Leftover] = []
    for lock, _, entries in _groups(path):
        found += _describe(entries(), lock, lock_holder(lock))
    return found


def _remove(path: Path) -> None:
    """Remove a file, a symlink (not its target) or a folder tree."""
    if _is_real_dir(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def clear_root(root: Path, listed: set[str]) -> list[Leftover]:
    """Remove the appenders' leftovers inside ``root`` whose verified root meta.json lists the shards
    ``listed``; the caller holds the root's append lock."""
    removed = []
    for p, kind in _root_entries(root, listed):
        size = entry_size(p)
        _remove(p)
        removed.append(Leftover(p, kind, size, None, False))
    return removed


def clear_siblings(target: Path) -> list[Leftover]:
    """Remove the temporary folders of earlier writes to ``target``; the caller holds the write lock."""
    removed = []
    for p, kind in _sibling_entries(target):
        size = entry_size(p)
        _remove(p)
        removed.append(Leftover(p, kind, size, None, False))
    return removed


def remove_leftovers(path: str | os.PathLike[str], *, dry_run: bool = False) -> Cleanup:
    """Remove the leftovers of dead writers to ``path`` (see ``list_leftovers``); a live writer's are kept.

    Each group is removed while holding the lock its writer held, so a writer that starts meanwhile is
    refused rather than losing its files. ``dry_run`` removes nothing and reports what would go."""
    path = Path(path)
    result = Cleanup()
    for lock, what, entries in _groups(path):
        live = lock_holder(lock)
        described = _describe(entries(), lock, live)
        if not described:  # nothing there: no lock to take (the folder may not even be writable)
            continue
        if live is not None or dry_run:
            (result.kept if live is not None else result.removed).extend(described)
            continue
        stale = [x for x in described if x.kind == "lock"]
        guard = WriterLock(lock, "gc", what)
        try:
            guard.acquire()
        except DatasetLockedError:  # a writer started since the look above: its files stay
            result.kept.extend(x for x in described if x.kind != "lock")
            continue
        try:
            pid = stale[0].writer_pid if stale else None
            for p, kind in entries():  # listed again under the lock: exactly the dead writers' entries
                size = entry_size(p)
                _remove(p)
                result.removed.append(Leftover(p, kind, size, pid, False))
        finally:
            guard.release()  # removes the lock file: the dead writer's, now ours
        result.removed.extend(stale)
    return result


def human_size(n: int) -> str:
    """A size as ``atlas-ds`` prints it (1024-based)."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def unfinished_write(path: str | os.PathLike[str]) -> str | None:
    """Why there is no dataset at ``path`` if a write to it never finished (or still runs), else None.

    The reader raises IncompleteDatasetError with this text (spec V2-STATE-1): it names the leftovers and
    how to remove them."""
    path = Path(path)
    lock = path.parent / write_lock_name(path.name)
    live = lock_holder(lock)
    found = [x for x in _describe(_sibling_entries(path), lock, live) if x.kind == "write"]
    if not found:
        return None
    names = ", ".join(f"{x.path} ({human_size(x.size)})" for x in found[:3]) + (", ..." if len(found) > 3 else "")
    if live is not None:
        return (f"no dataset yet: a write to it is still running ({live.describe()}); it appears when that write "
                f"finishes. Its temporary folder: {names}")
    pid = found[0].writer_pid
    who = f"writer pid {pid} is not running" if pid is not None else "its writer is not running"
    return (f"no dataset: a write to it never finished ({who}) and left {names}. Remove the leftovers with "
            f"`atlas-ds gc {path}`, then write the dataset again")
