"""Plumbing shared by the checks: a finding sink with per-id caps, and safe, bounded file reads.

Every file of a dataset is opened through ``atlas_format.files`` (``read_limited``,
``open_limited``): no symlink inside the root is followed, only regular files are read,
opening never blocks, and a size is compared with its limit before anything is read
(FILE-1..3, GEN-4). Every such problem becomes a finding instead of an exception.
"""

from __future__ import annotations

import os
import stat
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from atlas_format.errors import AtlasError, LimitError, MissingShardError
from atlas_format.files import Location, RegularFile, kind, lstat_entry, open_regular, require_folder

from .findings import Finding, Stats, make

# A corrupt shard can produce one finding per block or example; keep reports readable.
MAX_FINDINGS_PER_ID = 50


@dataclass
class Sink:
    """Collects findings for one unit of work (the root, or one shard), capping repeats per id."""

    shard: str | None = None
    findings: list[Finding] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)
    cap: int = MAX_FINDINGS_PER_ID
    _counts: Counter[str] = field(default_factory=Counter)
    # allow-listed globals seen in this unit's pickles: count and first location
    allowed: Counter[tuple[str, str]] = field(default_factory=Counter)
    allowed_first: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def note_allowed(self, keys: set[tuple[str, str]] | None, **where: Any) -> None:
        """Count the allow-listed globals of one pickle (reported once per dataset as ATL605, ``policy_notes``)."""
        if not keys:
            return
        for key in keys:
            self.allowed[key] += 1
            self.allowed_first.setdefault(key, where)

    def add(self, finding_id: str, message: str, **where: Any) -> None:
        self._counts[finding_id] += 1
        if self._counts[finding_id] > self.cap:
            self.dropped[finding_id] += 1
            return
        where.setdefault("shard", self.shard)
        self.findings.append(make(finding_id, message, **where))

    def from_error(self, finding_id: str, exc: AtlasError, **where: Any) -> None:
        """A finding from an atlas_format error, keeping the location it carries."""
        where.setdefault("path", exc.path)
        if exc.offset is not None:
            where.setdefault("offset", exc.offset)
        self.add(finding_id, exc.message, **where)

    def count(self, finding_id: str) -> int:
        return self._counts[finding_id]

    def allowed_counts(self) -> list[tuple[str, str, int, dict[str, Any]]]:
        """(module, name, pickles, first location) of every allow-listed global this unit's pickles reference."""
        out = []
        for key, n in sorted(self.allowed.items()):
            where = dict(self.allowed_first[key])
            where.setdefault("shard", self.shard)
            out.append((key[0], key[1], n, where))
        return out

    def close(self) -> list[Finding]:
        for finding_id, n in sorted(self.dropped.items()):
            self.findings.append(make(finding_id, f"{n} more findings of this kind not listed", shard=self.shard))
        self.dropped.clear()
        return self.findings


@dataclass
class ShardResult:
    """What a shard check returns to the runner (picklable: it crosses process boundaries)."""

    position: int
    name: str
    findings: list[Finding]
    stats: Stats
    summary: dict[str, Any] = field(default_factory=dict)


def guarded_shard_check(task: Any, progress: Any,
                        check: Callable[[Any, Sink, Stats, dict[str, Any], Any], None]) -> ShardResult:
    """Run one shard's checks; an unexpected exception becomes an ATL990 finding at the shard (never raises)."""
    sink = Sink(shard=task.name)
    stats = Stats(shards=1)
    summary: dict[str, Any] = {}
    try:
        check(task, sink, stats, summary, progress)
    except Exception as exc:  # noqa: BLE001 - the validator must never crash; report where it happened
        sink.add("ATL990", f"internal error: {type(exc).__name__}: {exc}", path=task.name)
    summary["allowed"] = sink.allowed_counts()
    return ShardResult(task.position, task.name, sink.close(), stats, summary)


def rel(root: Path, path: Path) -> str:
    """A path as reported: relative to the dataset root when inside it."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def open_limited(root: Path, shown: str, limit: int, sink: Sink, *, missing_id: str | None = "ATL103",
                 what: str = "file") -> RegularFile | None:
    """Dataset file ``shown`` (a path relative to ``root``) opened as a regular file of at most ``limit``
    bytes, or None with a finding: missing (``missing_id``), not a regular file or behind a link (ATL111),
    too large (ATL900, before reading), unreadable (ATL110)."""
    try:
        return open_regular(Location(root, shown), limit=limit, what=what)
    except MissingShardError:
        if missing_id:
            sink.add(missing_id, f"required {what} {shown} is missing", path=shown)
    except LimitError as exc:
        sink.add("ATL900", exc.message, path=shown, clause="FILE-3, LIM-1")
    except AtlasError as exc:
        sink.add("ATL111", exc.message, path=rel(root, Path(exc.path)) if exc.path else shown)
    except OSError as exc:
        sink.add("ATL110", f"cannot open {what}: {exc.strerror or exc}", path=shown)
    return None


def read_limited(root: Path, shown: str, limit: int, sink: Sink, *, missing_id: str | None = "ATL103",
                 what: str = "file") -> bytes | None:
    """The bytes of dataset file ``shown`` (see open_limited), or None with a finding."""
    handle = open_limited(root, shown, limit, sink, missing_id=missing_id, what=what)
    if handle is None:
        return None
    try:
        with handle:
            return handle.read()
    except OSError as exc:
        sink.add("ATL110", f"cannot read {what}: {exc.strerror or exc}", path=shown)
        return None


def entry_status(root: Path, shown: str) -> os.stat_result | None:
    """The entry's own status (a symlink is not followed), None when it is absent or cannot be reached."""
    try:
        return lstat_entry(Location(root, shown))
    except (AtlasError, OSError):
        return None


def regular_size(root: Path, shown: str, sink: Sink | None = None) -> int | None:
    """Size of a regular file (not a symlink to one), None when absent or something else; with ``sink``,
    something else present there is reported (ATL111)."""
    st = entry_status(root, shown)
    if st is None or stat.S_ISREG(st.st_mode):
        return None if st is None else st.st_size
    if sink is not None:
        sink.add("ATL111", f"{Path(shown).name} is {kind(st.st_mode)}; dataset files must be regular files",
                 path=shown)
    return None


def real_folder(root: Path, shown: str, sink: Sink) -> bool:
    """Whether ``shown`` is a real folder (not a symlink to one); ATL111 when it is something else."""
    try:
        require_folder(Location(root, shown), shard=None)
    except MissingShardError:
        return False
    except AtlasError as exc:
        sink.add("ATL111", exc.message, path=shown)
        return False
    except OSError as exc:
        sink.add("ATL110", f"cannot inspect folder: {exc.strerror or exc}", path=shown)
        return False
    return True


def list_dir(path: Path, sink: Sink, *, shown: str) -> list[os.DirEntry[str]] | None:
    """Entries of a folder, sorted by name, or None with a finding."""
    try:
        with os.scandir(path) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as exc:
        sink.add("ATL110", f"cannot list folder: {exc.strerror or exc}", path=shown)
        return None


def is_int(value: Any) -> TypeGuard[int]:
    """A JSON integer (bool is not an integer, GEN-5)."""
    return isinstance(value, int) and not isinstance(value, bool)


def short_exc(exc: BaseException) -> str:
    text = str(exc).replace("\n", " ")
    return f"{type(exc).__name__}: {text[:300]}"
