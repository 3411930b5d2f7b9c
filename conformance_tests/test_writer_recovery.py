"""Writers that recover (issue 16): killed writes and appends, a full disk, concurrent writers, leftovers.

Killed writers run in a subprocess that SIGKILLs itself at a chosen point of the protocol (a hook
patched into the writer module there, never in the library), so each state of spec V2-STATE-1 is
produced for real: the kernel drops the dead writer's lock, its files stay.
"""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_reference_helpers import same, tree_digest

from atlas_format.constants import APPEND_LOCK_FILE
from atlas_format.layout import is_temp_sibling, write_lock_name
from atlas_validator import validate
from torch_atlas_ds import (
    AtlasDataset,
    AtlasDatasetShard,
    AtlasDatasetShardWriter,
    AtlasDatasetWriter,
    AtlasError,
    DatasetLockedError,
    IncompleteDatasetError,
    write_dataset,
)
from torch_atlas_ds import _util as util_module
from torch_atlas_ds import writer as writer_module
from torch_atlas_ds.cli import main as atlas_ds
from torch_atlas_ds.leftovers import list_leftovers, remove_leftovers, unfinished_write
from torch_atlas_ds.locking import Holder, WriterLock, holder_alive, lock_holder, process_start


def example(i: int) -> dict:
    return {"id": i, "text": f"example {i} " + "words " * (i % 23), "blob": bytes([i % 251]) * (i % 300)}


def write(root: Path, n: int, shard_size: int = 50, block_size: int = 8, **kw) -> list:
    examples = [example(i) for i in range(n)]
    with AtlasDatasetWriter(root, shard_size, block_size, **kw) as w:
        for ex in examples:
            w.add_example(ex)
    return examples


def temp_entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".atlas-tmp-"))


# -- a writer in another process, killed (or held) at a chosen point ---------------------

CHILD = r"""
import os, signal, sys, time
from pathlib import Path
from torch_atlas_ds import AtlasDatasetWriter
from torch_atlas_ds import writer as W

op, path, point, action, marker = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4], Path(sys.argv[5])

def act(*args, **kwargs):
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    marker.write_text(str(os.getpid()))
    time.sleep(60)

if point == "commit":      # append: shards moved into root, root meta.json not yet replaced
    W._replace = act
elif point == "publish":   # write: every file written, the temporary folder not yet renamed
    W.publish_folder = act
w = AtlasDatasetWriter.append(path) if op == "append" else AtlasDatasetWriter(path, 50, 8)
for i in range(120):
    if point == "midway" and i == 70:
        act()
    w.add_example({"id": 1000 + i, "text": "appended " * (i % 11)})
w.close()
"""


RANDOM_KILL = r"""
import os, signal, sys
from pathlib import Path
from torch_atlas_ds import AtlasDatasetWriter

op, path, at = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
calls = [0]

def counted(real):
    def call(*args, **kwargs):
        calls[0] += 1
        if calls[0] == at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    return call

os.fsync, os.rename, os.replace = counted(os.fsync), counted(os.rename), counted(os.replace)
w = AtlasDatasetWriter.append(path) if op == "append" else AtlasDatasetWriter(path, 50, 8)
for i in range(120):
    w.add_example({"id": 1000 + i, "text": "appended " * (i % 11)})
w.close()
print(calls[0])
"""


def child(op: str, path: Path, point: str, action: str, marker: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, op, str(path), point, action, str(marker)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def killed(op: str, path: Path, point: str, tmp_path: Path) -> None:
    proc = child(op, path, point, "kill", tmp_path / "marker")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err.decode()


class Held:
    """A live writer in another process, stopped at ``point`` until the test ends (then killed)."""

    def __init__(self, op: str, path: Path, point: str, tmp_path: Path) -> None:
        marker = tmp_path / f"ready-{time.monotonic_ns()}"
        self.proc = child(op, path, point, "hold", marker)
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert self.proc.poll() is None, self.proc.communicate()[1].decode()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        self.pid = self.proc.pid

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=30)

    def __enter__(self) -> Held:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


# -- an append killed between moving its shards in and the commit ---------------------------


def test_append_after_a_killed_append_commit_step_succeeds(tmp_path):
    root = tmp_path / "d"
    examples = write(root, 130)  # shards 000000..000002
    killed("append", root, "commit", tmp_path)
    orphans = sorted(p.name for p in root.iterdir() if p.name.isdigit())
    assert orphans == ["000000", "000001", "000002", "000003", "000004", "000005"]  # 3 orphans moved in
    assert len(AtlasDataset(root)) == 130  # V2-STATE-1: complete dataset of the listed shards
    found = {(x.path.name, x.kind, x.writer_alive) for x in list_leftovers(root)}
    assert {("000003", "shard", False), ("000004", "shard", False), ("000005", "shard", False)} <= found
    assert any(kind == "lock" for _, kind, _ in found)  # the dead appender's lock file
    more = [example(5000 + i) for i in range(60)]
    with AtlasDatasetWriter.append(root) as w:  # used to fail with FileExistsError on 000003
        for ex in more:
            w.add_example(ex)
        assert sorted(x.path.name for x in w.recovered if x.kind == "shard") == ["000003", "000004", "000005"]
    ds = AtlasDataset(root)
    assert len(ds) == 190 and ds.metadata.shard_sizes == [50, 50, 30, 50, 10]
    assert all(same(ds[i], ex) for i, ex in enumerate(examples + more))
    assert temp_entries(root) == [] and list_leftovers(root) == []
    report = validate(root)
    assert report.ok and not report.errors and not report.warnings


@pytest.mark.parametrize("point", ["midway", "commit"])
def test_gc_removes_a_dead_appenders_leftovers_and_keeps_the_dataset(tmp_path, point):
    root = tmp_path / "d"
    write(root, 130)
    before = tree_digest(root)
    killed("append", root, point, tmp_path)
    assert temp_entries(root)  # its staging folder (and lock) stayed
    dry = remove_leftovers(root, dry_run=True)
    assert dry.removed and dry.bytes_freed > 0 and temp_entries(root)  # a dry run removes nothing
    done = remove_leftovers(root)
    assert {x.path for x in done.removed} == {x.path for x in dry.removed} and not done.kept
    assert done.bytes_freed == dry.bytes_freed
    assert tree_digest(root) == before and temp_entries(root) == []


def _kill_at(op: str, path: Path, at: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", RANDOM_KILL, op, str(path), str(at)], capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("op", ["write", "append"])
def test_sigkill_at_random_protocol_steps_then_recovery(tmp_path, op):
    """Killed at a random fsync or rename (every step of V2-WRITE/V2-APPEND has one): the dataset is the
    old one or the new one, never partial; the next append or write succeeds; gc leaves nothing."""
    steps = int(_kill_at(op, _fresh(tmp_path / "probe", op), 0).stdout)
    rng = random.Random(1616 if op == "write" else 6161)
    for n, at in enumerate(sorted(rng.sample(range(1, steps + 1), min(6, steps)))):
        target = _fresh(tmp_path / f"k{n}", op)
        assert _kill_at(op, target, at).returncode == -signal.SIGKILL
        if op == "append":
            assert len(AtlasDataset(target)) in (130, 250), at
            with AtlasDatasetWriter.append(target) as w:
                w.add_example(example(1))
            assert len(AtlasDataset(target)) in (131, 251) and temp_entries(target) == []
        else:
            try:
                assert len(AtlasDataset(target)) == 120, at  # killed after the publishing rename
            except IncompleteDatasetError as exc:
                assert "atlas-ds gc" in str(exc)
                assert remove_leftovers(target).removed
            remove_leftovers(target)
        assert [n for n in os.listdir(target.parent) if n.startswith(".atlas-tmp-")] == [], at
        assert list_leftovers(target) == []


def _fresh(target: Path, op: str) -> Path:
    if op == "append":
        write(target, 130)
    return target


# -- a killed new write ----------------------------------------------------------------------


@pytest.mark.parametrize("point", ["midway", "publish"])
def test_a_killed_write_is_incomplete_on_open_and_gc_removes_it(tmp_path, point):
    target = tmp_path / "data" / "train"  # the parent is created by the writer
    killed("write", target, point, tmp_path)
    left = [n for n in os.listdir(target.parent) if is_temp_sibling(n, "train")]
    assert len(left) == 1 and not target.exists()
    with pytest.raises(IncompleteDatasetError) as err:
        AtlasDataset(target)
    text = str(err.value)
    assert left[0] in text and f"atlas-ds gc {target}" in text and "not running" in text
    with pytest.raises(IncompleteDatasetError):
        AtlasDatasetShard(target)
    report = validate(target)
    assert [f.id for f in report.findings] == ["ATL100"] and left[0] in report.findings[0].message
    assert atlas_ds(["gc", str(target)]) == 0
    assert os.listdir(target.parent) == []  # the temporary folder and the dead writer's lock file
    with pytest.raises(FileNotFoundError):
        AtlasDataset(target)


def test_a_new_write_removes_a_dead_writes_temporary_folder(tmp_path):
    target = tmp_path / "d"
    killed("write", target, "midway", tmp_path)
    assert [n for n in os.listdir(tmp_path) if is_temp_sibling(n, "d")]
    with AtlasDatasetWriter(target, 50, 8) as w:
        w.add_example(example(0))
        assert [x.kind for x in w.recovered] == ["write"]
    assert os.listdir(tmp_path) == ["d"]


def test_leftovers_of_foo_are_not_those_of_foo_bar(tmp_path):
    (tmp_path / ".atlas-tmp-foo-bar-0123456789ab").mkdir()
    (tmp_path / ".atlas-tmp-foo-0123456789ab").mkdir()
    assert [x.path.name for x in list_leftovers(tmp_path / "foo")] == [".atlas-tmp-foo-0123456789ab"]
    assert [x.path.name for x in list_leftovers(tmp_path / "foo-bar")] == [".atlas-tmp-foo-bar-0123456789ab"]
    assert unfinished_write(tmp_path / "foo-ba") is None
    remove_leftovers(tmp_path / "foo")
    assert os.listdir(tmp_path) == [".atlas-tmp-foo-bar-0123456789ab"]


# -- live writers: locked, never cleaned ---------------------------------------------------


def test_a_second_concurrent_append_is_refused_before_it_writes(tmp_path):
    root = tmp_path / "d"
    write(root, 60)
    with Held("append", root, "midway", tmp_path) as holder:
        entries = sorted(os.listdir(root))
        digest = tree_digest(root)
        with pytest.raises(DatasetLockedError) as err:
            AtlasDatasetWriter.append(root)
        assert err.value.holder_pid == holder.pid and err.value.path == str(root / APPEND_LOCK_FILE)
        assert f"pid {holder.pid}" in str(err.value) and APPEND_LOCK_FILE in str(err.value)
        assert isinstance(err.value, AtlasError)
        assert sorted(os.listdir(root)) == entries and tree_digest(root) == digest  # nothing written
        kept = remove_leftovers(root)  # a live appender's files are never removed
        assert not kept.removed and kept.kept and all(x.writer_alive and x.writer_pid == holder.pid
                                                      for x in kept.kept)
        assert sorted(os.listdir(root)) == entries
    with AtlasDatasetWriter.append(root) as w:  # its writer died: the lock is taken over, leftovers removed
        w.add_example(example(1))
    assert len(AtlasDataset(root)) == 61 and temp_entries(root) == []


def test_a_second_append_in_the_same_process_is_refused_and_the_lock_goes_with_the_first(tmp_path):
    root = tmp_path / "d"
    write(root, 10)
    first = AtlasDatasetWriter.append(root)
    with pytest.raises(DatasetLockedError, match=f"pid {os.getpid()}"):
        AtlasDatasetWriter.append(root)
    first.add_example(example(3))
    first.close()
    assert not (root / APPEND_LOCK_FILE).exists()
    second = AtlasDatasetWriter.append(root)
    second.abort()  # abort releases too
    with AtlasDatasetWriter.append(root) as w:
        w.add_example(example(4))
    assert len(AtlasDataset(root)) == 12


def test_a_writer_and_its_lock_refuse_to_be_pickled_and_keep_writing(tmp_path):
    """A lock is a descriptor number of this process: a pickled copy released in another process would close
    that process's file of the same number. Pickling a writer (for a worker) is a TypeError naming the write."""
    import pickle

    w = AtlasDatasetWriter(tmp_path / "d", 10, 4)
    with pytest.raises(TypeError, match="the write to .*d belongs to the process that took it"):
        pickle.dumps(w)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(w._lock)
    w.add_example(example(1))
    w.close()
    assert AtlasDataset(tmp_path / "d")[0] == example(1)


def test_a_live_writes_files_are_kept_and_a_second_write_is_refused(tmp_path):
    target = tmp_path / "d"
    with Held("write", target, "midway", tmp_path) as holder:
        with pytest.raises(DatasetLockedError) as err:
            AtlasDatasetWriter(target, 10, 4)
        assert err.value.holder_pid == holder.pid and err.value.path == str(tmp_path / write_lock_name("d"))
        with pytest.raises(IncompleteDatasetError, match=f"still running .*pid {holder.pid}"):
            AtlasDataset(target)
        found = list_leftovers(target)
        assert [(x.kind, x.writer_alive, x.writer_pid) for x in found] == [("write", True, holder.pid)]
        assert atlas_ds(["gc", str(target)]) == 0
        assert list_leftovers(target) == found
    assert [x.kind for x in remove_leftovers(target).removed] == ["write", "lock"]
    assert [n for n in os.listdir(tmp_path) if not n.startswith("ready-")] == []


def test_an_append_keeps_a_running_shard_writers_files_inside_the_root(tmp_path):
    root = tmp_path / "d"
    write(root, 10)
    (root / ".atlas-tmp-dead-0123456789ab").mkdir()  # a dead write's folder inside the root: removed
    shard = AtlasDatasetShardWriter(root / "extra", 4)  # a live write into the root: its files stay
    shard.add_example(1)
    live = sorted(n for n in os.listdir(root) if n.startswith(".atlas-tmp-extra"))
    assert len(live) == 2  # its temporary folder and its lock
    with AtlasDatasetWriter.append(root) as w:
        w.add_example(example(1))
    assert sorted(n for n in os.listdir(root) if n.startswith(".atlas-tmp-")) == live
    shard.close()
    assert temp_entries(root) == [] and AtlasDatasetShard(root / "extra")[0] == 1


def test_a_stale_lock_of_a_dead_pid_is_taken_over(tmp_path):
    root = tmp_path / "d"
    write(root, 10)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    record = {"pid": dead.pid, "host": socket.gethostname(), "start": None, "role": "append"}
    (root / APPEND_LOCK_FILE).write_text(json.dumps(record))
    assert lock_holder(root / APPEND_LOCK_FILE) is None
    with AtlasDatasetWriter.append(root) as w:
        w.add_example(example(1))
    assert not (root / APPEND_LOCK_FILE).exists() and len(AtlasDataset(root)) == 11


def test_without_flock_the_recorded_pid_decides(tmp_path, monkeypatch):
    """On a file system without flock, a live recorded holder refuses and a dead or recycled one is taken
    over (the process start time tells a recycled pid)."""
    import fcntl

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    lock = tmp_path / "x.lock"
    me = {"pid": os.getpid(), "host": socket.gethostname(), "start": process_start(os.getpid())}
    lock.write_text(json.dumps(me))
    with pytest.raises(DatasetLockedError, match=f"pid {os.getpid()}"):
        WriterLock(lock, "append", "the test dataset").acquire()
    lock.write_text(json.dumps({**me, "start": (me["start"] or 0) + 12345}))  # our pid, another process's start
    assert not holder_alive(Holder(os.getpid(), socket.gethostname(), (me["start"] or 0) + 12345))
    taken = WriterLock(lock, "append", "the test dataset").acquire()
    assert json.loads(lock.read_text())["start"] == me["start"]
    taken.release()
    assert not lock.exists()
    assert holder_alive(Holder(1, "another-host.example"))  # another host's process cannot be checked


def test_a_symlinked_lock_file_is_refused_not_followed(tmp_path):
    root = tmp_path / "d"
    write(root, 10)
    outside = tmp_path / "outside"
    outside.write_text("keep")
    (root / APPEND_LOCK_FILE).symlink_to(outside)
    with pytest.raises(AtlasError, match="symlink"):
        AtlasDatasetWriter.append(root)
    assert outside.read_text() == "keep"


# -- a full disk -------------------------------------------------------------------------


class _Disk:
    """Free bytes shared by every file the writer opens; below zero, every write fails with ENOSPC."""

    def __init__(self, free: int) -> None:
        self.free = free
        self.written = 0
        self.refused = 0  # writes that failed with ENOSPC: a writer that never retries a failed buffer makes one


class _FullRaw(io.RawIOBase):
    """A raw file on a disk of ``disk.free`` bytes: a short write, then ENOSPC, as a real full disk."""

    def __init__(self, path: str, disk: _Disk) -> None:
        self._raw = io.FileIO(path, "wb")
        self._disk = disk

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._raw.fileno()

    def write(self, b) -> int:
        n = min(len(b), self._disk.free)
        if n == 0 and len(b):
            self._disk.refused += 1
            raise OSError(errno.ENOSPC, "No space left on device")
        self._disk.free -= n
        self._disk.written += n
        return self._raw.write(bytes(memoryview(b)[:n]))

    def close(self) -> None:
        self._raw.close()
        super().close()


def _full_disk(monkeypatch, free: int, fail_fsync_at: int | None = None) -> _Disk:
    disk = _Disk(free)

    def fake_open(path, mode="r", *args, **kwargs):
        if "w" in mode and "b" in mode:
            return io.BufferedWriter(_FullRaw(os.fspath(path), disk), 8192)
        return builtins.open(path, mode, *args, **kwargs)

    real_fsync = os.fsync
    calls = [0]

    def fake_fsync(fd):
        calls[0] += 1
        if fail_fsync_at is not None and calls[0] >= fail_fsync_at:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(writer_module, "open", fake_open, raising=False)
    monkeypatch.setattr(util_module, "open", fake_open, raising=False)
    monkeypatch.setattr(os, "fsync", fake_fsync)
    return disk


BIG = [{"id": i, "noise": random.Random(i).randbytes(3000)} for i in range(120)]


def _write_big(target: Path, **kw) -> None:
    with AtlasDatasetWriter(target, 50, 8, **kw) as w:
        for ex in BIG:
            w.add_example(ex)


@pytest.mark.parametrize("kw", [{}, {"codec": "none"}, {"format_version": 1}, {"framing": "list"}])
def test_a_full_disk_during_a_write_leaves_nothing_behind(tmp_path, monkeypatch, kw):
    with monkeypatch.context() as m:
        total = _full_disk(m, 1 << 40)
        _write_big(tmp_path / "probe", **kw)
    rng = random.Random(16)
    points = [0, 1, 100, total.written - 1] + [rng.randrange(total.written) for _ in range(8)]
    for n, free in enumerate(points):
        target = tmp_path / f"t{n}"
        with monkeypatch.context() as m:
            _full_disk(m, free, fail_fsync_at=rng.choice([None, None, rng.randrange(1, 12)]))
            with pytest.raises(OSError) as err:
                _write_big(target, **kw)
        assert err.value.errno == errno.ENOSPC
        assert not target.exists(), free
        assert [n for n in os.listdir(tmp_path) if n.startswith(".atlas-tmp-")] == [], free


def test_a_full_disk_during_an_append_leaves_the_dataset_unchanged(tmp_path, monkeypatch):
    root = tmp_path / "d"
    write(root, 130)
    before = tree_digest(root)
    old = AtlasDataset(root)
    rng = random.Random(61)
    for free in [0, 10, 5000] + [rng.randrange(400_000) for _ in range(8)]:
        with monkeypatch.context() as m:
            _full_disk(m, free, fail_fsync_at=rng.choice([None, rng.randrange(1, 10)]))
            with pytest.raises(OSError) as err, AtlasDatasetWriter.append(root) as w:
                for ex in BIG:
                    w.add_example(ex)
        assert err.value.errno == errno.ENOSPC
        assert tree_digest(root) == before and temp_entries(root) == [], free
    assert len(old) == 130 and len(AtlasDataset(root)) == 130


def test_an_abort_never_writes_a_failed_buffer_again(tmp_path, monkeypatch):
    """The old abort closed the data file, which flushed the buffer to the full disk again, failed, and
    skipped removing the temporary folder."""
    with monkeypatch.context() as m:
        disk = _full_disk(m, 20_000)
        with pytest.raises(OSError):
            _write_big(tmp_path / "d", codec="none")
        assert disk.free == 0 and disk.written == 20_000
        assert disk.refused == 1  # the abort closed the file without flushing its buffer again
    assert os.listdir(tmp_path) == []


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True)
    return done.returncode == 0


def test_a_real_full_disk_leaves_nothing_behind(tmp_path):
    """A 256 KB tmpfs really fills (ENOSPC from the kernel); needs root and mount, else skipped (the
    injected failures above cover the same paths everywhere)."""
    small = tmp_path / "small"
    if not _mount_tmpfs(small, "256k"):
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        with pytest.raises(OSError) as err:
            _write_big(small / "d", codec="none")
        assert err.value.errno == errno.ENOSPC and os.listdir(small) == []
        root = small / "d"
        write(root, 60, codec="none")
        before = tree_digest(root)
        with pytest.raises(OSError) as err, AtlasDatasetWriter.append(root) as w:
            for ex in BIG:
                w.add_example(ex)
        assert err.value.errno == errno.ENOSPC
        assert tree_digest(root) == before and temp_entries(root) == [] and os.listdir(small) == ["d"]
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


# -- new users: missing parents --------------------------------------------------------------


def test_writers_create_missing_parent_folders(tmp_path):
    write(tmp_path / "a" / "b" / "train", 5)
    assert len(AtlasDataset(tmp_path / "a" / "b" / "train")) == 5
    with AtlasDatasetShardWriter(tmp_path / "s" / "000000", 4) as w:
        w.add_example(1)
    assert AtlasDatasetShard(tmp_path / "s" / "000000")[0] == 1
    write_dataset(range(7), tmp_path / "p" / "q", shard_size=3, block_size=2, num_workers=1, progress=False)
    assert list(AtlasDataset(tmp_path / "p" / "q")) == list(range(7))
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is not a folder"):
        AtlasDatasetWriter(tmp_path / "file" / "d", 10, 4)
    assert atlas_ds(["convert", str(tmp_path / "p" / "q"), str(tmp_path / "new" / "deep" / "r")]) == 0
    assert list(AtlasDataset(tmp_path / "new" / "deep" / "r")) == list(range(7))


# -- the gc command ----------------------------------------------------------------------------


def test_gc_command(tmp_path, capsys):
    root = tmp_path / "d"
    write(root, 60)
    (root / ".atlas-tmp-0123456789ab").mkdir()
    (root / ".atlas-tmp-0123456789ab" / "data.bin").write_bytes(b"x" * 5000)
    assert atlas_ds(["gc", str(root), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would remove" in out and "5000 bytes" in out and (root / ".atlas-tmp-0123456789ab").exists()
    assert atlas_ds(["gc", str(root)]) == 0
    out = capsys.readouterr().out
    assert "removed" in out and "freed" in out and "5000 bytes" in out and temp_entries(root) == []
    assert atlas_ds(["gc", str(root)]) == 0 and "nothing to remove" in capsys.readouterr().out
    assert atlas_ds(["gc", str(tmp_path / "missing")]) == 2
    assert "no such path" in capsys.readouterr().err
    (tmp_path / "f").write_text("x")
    assert atlas_ds(["gc", str(tmp_path / "f")]) == 2


def test_a_conversion_that_fails_validation_publishes_and_leaves_nothing(tmp_path, monkeypatch):
    from torch_atlas_ds import convert as convert_module
    from torch_atlas_ds.convert import ValidationFailedError

    write(tmp_path / "src", 30)
    seen = []

    def failing(folder, allowed_globals=()):
        seen.append(sorted(os.listdir(folder)))
        assert os.path.basename(folder).startswith(".atlas-tmp-dst-")  # the writer's own temporary folder
        raise ValidationFailedError("planted failure", path=folder)

    monkeypatch.setattr(convert_module, "validate_with_standalone_validator", failing)
    with pytest.raises(ValidationFailedError):
        convert_module.convert(tmp_path / "src", tmp_path / "out" / "dst", shard_size=10, block_size=4)
    assert "meta.json" in seen[0]  # validated complete, before publishing
    assert os.listdir(tmp_path / "out") == []  # no dataset, no temporary folder, no lock


def test_a_zombie_or_reused_pid_is_not_a_live_holder(tmp_path):
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while Path(f"/proc/{zombie.pid}/stat").exists() and b") Z " not in Path(f"/proc/{zombie.pid}/stat").read_bytes():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    if not Path(f"/proc/{zombie.pid}").exists():
        pytest.skip("no /proc here")
    assert not holder_alive(Holder(zombie.pid, socket.gethostname()))  # exited, not reaped yet
    zombie.wait()
    me = process_start(os.getpid())
    assert holder_alive(Holder(os.getpid(), socket.gethostname(), me))
    if me is not None:
        assert not holder_alive(Holder(os.getpid(), socket.gethostname(), me + 1))


def test_a_lock_kept_by_a_forked_child_of_a_dead_writer_is_refused_with_why(tmp_path):
    lock = tmp_path / "x.lock"
    code = ("import os, sys, time\nfrom torch_atlas_ds.locking import WriterLock\n"
            "held = WriterLock(sys.argv[1], 'append', 'x').acquire()\npid = os.fork()\n"
            "if pid == 0:\n    os.close(1)\n    os.close(2)\n    time.sleep(30)\n    os._exit(0)\n"
            "print(pid, flush=True)\nos._exit(0)\n")
    done = subprocess.run([sys.executable, "-c", code, str(lock)], capture_output=True, text=True, timeout=60)
    grandchild = int(done.stdout)
    try:
        with pytest.raises(DatasetLockedError, match="no longer running.*forked"):
            WriterLock(lock, "append", "the test dataset").acquire()
    finally:
        os.kill(grandchild, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while lock_holder(lock) is not None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    WriterLock(lock, "append", "the test dataset").acquire().release()
    assert not lock.exists()
