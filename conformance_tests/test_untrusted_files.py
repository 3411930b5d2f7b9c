"""Dataset files from others are hostile too (FORMAT.md FILE-1..4): readers follow no symlink inside the
root, read only regular files, never block, bound what they read, keep a bounded number of shards open
and a bounded number of decoded bytes in memory. (The validator's side: test_validator_robustness.py.)"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from validator_vectors import write_v1, write_v2

import torch_atlas_ds
from torch_atlas_ds import (
    AtlasDataset,
    AtlasDatasetShard,
    AtlasDatasetWriter,
    CompressionStrategy,
    FormatError,
    LimitError,
    MissingShardError,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PYTHONPATH = os.pathsep.join(str(ROOT / p) for p in ("spec", "reference", "validator", "conformance_tests"))

# (version, strategy, the file replaced): every kind of file a reader opens, of both versions.
FILES = [
    (1, CompressionStrategy.SHARED_DICTIONARY_COMPRESSION, "meta.json"),
    (1, CompressionStrategy.SHARED_DICTIONARY_COMPRESSION, "zstd_dict.bin"),
    (1, CompressionStrategy.SHARED_DICTIONARY_COMPRESSION, "1/meta.json"),
    (1, CompressionStrategy.SHARED_DICTIONARY_COMPRESSION, "1/index.npy"),
    (1, CompressionStrategy.SHARED_DICTIONARY_COMPRESSION, "1/data.bin"),
    (1, CompressionStrategy.DICTIONARY_COMPRESSION, "1/zstd_dict.bin"),
    (2, CompressionStrategy.SHARED_DICTIONARY_COMPRESSION, "meta.json"),
    (2, CompressionStrategy.SHARED_DICTIONARY_COMPRESSION, "zstd_dict.bin"),
    (2, CompressionStrategy.SHARED_DICTIONARY_COMPRESSION, "000001/meta.json"),
    (2, CompressionStrategy.SHARED_DICTIONARY_COMPRESSION, "000001/index.bin"),
    (2, CompressionStrategy.SHARED_DICTIONARY_COMPRESSION, "000001/data.bin"),
    (2, CompressionStrategy.DICTIONARY_COMPRESSION, "000001/zstd_dict.bin"),
]
IDS = [f"v{v}-{s.value}-{rel}" for v, s, rel in FILES]


def write_two_shards(root: Path, version: int, strategy: CompressionStrategy, n: int = 64) -> list[dict[str, int]]:
    """Two shards of 8 blocks (enough for zstd to train a dictionary)."""
    examples = [{"i": i, "text": "lorem ipsum " * (i % 7)} for i in range(n)]
    with AtlasDatasetWriter(root, 32, 4, strategy, format_version=version) as w:
        for ex in examples:
            w.add_example(ex)
    return examples


def _read_all(root: Path) -> list:
    ds = AtlasDataset(root)
    return [ds[i] for i in range(len(ds))]


@contextlib.contextmanager
def fifo_at(path: Path) -> Iterator[None]:
    """Make ``path`` a FIFO for the duration. A helper thread opens its write end whenever a reader is
    blocked opening it, so a reader that wrongly opens a FIFO reads an empty file instead of hanging."""
    path.unlink()
    os.mkfifo(path)
    stop = threading.Event()

    def unblock() -> None:
        while not stop.is_set():
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO while nobody reads
            except OSError:
                stop.wait(0.01)
                continue
            os.close(fd)

    thread = threading.Thread(target=unblock, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def link_elsewhere(tmp_path: Path, target: Path) -> None:
    """Replace ``target`` by a symlink to a byte-identical copy outside the dataset: only the link is wrong."""
    outside = tmp_path / "outside" / target.name
    outside.parent.mkdir(exist_ok=True)
    shutil.copyfile(target, outside)
    target.unlink()
    target.symlink_to(outside)


def link_shard_folder(tmp_path: Path, root: Path, version: int) -> Path:
    """Attack a: shard 1 becomes a link to a hidden folder elsewhere (holding other examples); version 1's
    root meta.json then lists only shard 0, so nothing but the link betrays it. Returns the link."""
    name = "1" if version == 1 else "000001"
    hidden = tmp_path / ".hidden" / name
    hidden.parent.mkdir()
    os.rename(root / name, hidden)
    (root / name).symlink_to(hidden, target_is_directory=True)
    if version == 1:
        (root / "meta.json").write_text('{\n    "version": 1,\n    "shard_sizes": [\n        32\n    ],\n'
                                        '    "compression_strategy": 1\n}')
    return root / name


def make_device(path: Path) -> None:
    """Replace ``path`` by a character device node (/dev/zero's numbers); skips where mknod is refused."""
    path.unlink()
    try:
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 5))
    except (OSError, AttributeError) as exc:
        pytest.skip(f"mknod refused here: {exc}")


# -- readers: symlinks, FIFOs, devices -------------------------------------------------------


@pytest.mark.parametrize(("version", "strategy", "rel"), FILES, ids=IDS)
def test_reader_refuses_a_symlinked_file(tmp_path, version, strategy, rel):
    root = tmp_path / "d"
    write_two_shards(root, version, strategy)
    link_elsewhere(tmp_path, root / rel)
    with pytest.raises(FormatError, match="is a symlink; dataset files must be regular files") as info:
        _read_all(root)
    assert info.value.path == str(root / rel)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize(("version", "strategy", "rel"), FILES, ids=IDS)
def test_reader_refuses_a_fifo_without_blocking(tmp_path, version, strategy, rel):
    root = tmp_path / "d"
    write_two_shards(root, version, strategy)
    with fifo_at(root / rel), pytest.raises(FormatError, match="is a FIFO; dataset files must be regular files") \
            as info:
        _read_all(root)
    assert info.value.path == str(root / rel)


@pytest.mark.parametrize("version", [1, 2])
def test_reader_refuses_a_symlinked_shard_folder(tmp_path, version):
    """Attack a: the reader used to follow the link and serve the hidden shard's examples."""
    root = tmp_path / "d"
    write_two_shards(root, version, CompressionStrategy.STANDARD_COMPRESSION)
    link = link_shard_folder(tmp_path, root, version)
    with pytest.raises(FormatError, match="is a symlink; shard folders must be real folders") as info:
        _read_all(root)
    assert info.value.path == str(link)


def test_the_root_and_a_shard_opened_on_its_own_may_be_symlinks(tmp_path):
    """The path the user names is the user's choice; only what is inside it must be real."""
    real = tmp_path / "real"
    examples = write_two_shards(real, 2, CompressionStrategy.SHARED_DICTIONARY_COMPRESSION)
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    assert _read_all(tmp_path / "link") == examples
    (tmp_path / "shard").symlink_to(real / "000001", target_is_directory=True)
    shard = AtlasDatasetShard(tmp_path / "shard", compression_dict_bytes=(real / "zstd_dict.bin").read_bytes())
    assert [shard[i] for i in range(len(shard))] == examples[32:]


def test_dictionary_linked_to_dev_zero_is_refused_not_read(tmp_path):
    """Attack b: a version 1 zstd_dict.bin linked to /dev/zero was read until MemoryError. Run in a
    process capped at 3 GiB of address space, so a reader that reads it fails fast instead of eating the host."""
    root = tmp_path / "d"
    write_two_shards(root, 1, CompressionStrategy.SHARED_DICTIONARY_COMPRESSION)
    (root / "zstd_dict.bin").unlink()
    (root / "zstd_dict.bin").symlink_to("/dev/zero")
    script = textwrap.dedent(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
        from torch_atlas_ds import AtlasDataset
        try:
            AtlasDataset({str(root)!r})[0]
        except BaseException as exc:
            print(type(exc).__name__, exc)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": PYTHONPATH})
    assert out.stdout.startswith("FormatError") and "is a symlink" in out.stdout, out.stdout + out.stderr


@pytest.mark.skipif(os.geteuid() != 0 if hasattr(os, "geteuid") else True, reason="mknod needs root")
def test_device_node_is_refused_without_being_opened(tmp_path):
    root = tmp_path / "d"
    write_two_shards(root, 2, CompressionStrategy.STANDARD_COMPRESSION)
    make_device(root / "000000" / "data.bin")
    with pytest.raises(FormatError, match="is a character device; dataset files must be regular files"):
        _read_all(root)


def test_file_above_its_limit_is_refused_before_reading(tmp_path):
    """A sparse terabyte meta.json: its size is compared with the limit before a byte is read (the reader used
    to read 128 MiB of it first)."""
    root = tmp_path / "d"
    write_v1(root, list(range(8)), strategy=0)
    meta = root / "0" / "meta.json"
    with open(meta, "r+b") as f:
        f.truncate(1 << 40)
    tracemalloc.start()
    try:
        with pytest.raises(LimitError, match="above the limit of 134217728 bytes") as info:
            AtlasDataset(root)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.path == str(meta) and peak < 16 << 20, peak


@pytest.mark.parametrize(("version", "strategy", "rel"), [FILES[0], FILES[2], FILES[3], FILES[5], FILES[6], FILES[9],
                                                         FILES[11]], ids=[IDS[k] for k in (0, 2, 3, 5, 6, 9, 11)])
def test_info_refuses_a_symlinked_file(tmp_path, version, strategy, rel):
    """``atlas-ds info`` reads metadata, indexes and dictionaries of datasets from others: the same rules."""
    from torch_atlas_ds.cli import dataset_info

    root = tmp_path / "d"
    write_two_shards(root, version, strategy)
    link_elsewhere(tmp_path, root / rel)
    with pytest.raises(FormatError, match="is a symlink; dataset files must be regular files"):
        dataset_info(root)


# -- many shards: a bounded number open -----------------------------------------------------------

_MANY = textwrap.dedent("""
    import os, resource, sys, time
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    from torch_atlas_ds import AtlasDataset

    for root in sys.argv[1:]:
        started = time.perf_counter()
        ds = AtlasDataset(root)
        assert [ds[i] for i in range(len(ds))] == list(range(len(ds)))
        assert list(ds) == list(range(len(ds)))
        assert ds.__getitems__(list(range(len(ds) - 1, 0, -97))) == list(range(len(ds) - 1, 0, -97))
        fds = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else -1
        print(root, len(ds), fds, round(time.perf_counter() - started, 2))
        ds.close()
        del ds
""")


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    """A folder in memory (/dev/shm) when there is one: 30,000 small files write in 1 s there, 8 s on a disk."""
    if not os.access("/dev/shm", os.W_OK):
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(dir="/dev/shm", prefix="atlas-test-") as folder:
        yield Path(folder)


def test_ten_thousand_shards_read_under_256_descriptors(scratch):
    """Attack d: every shard used to keep index and data.bin mapped (a descriptor each: mmap dup()s it), so 600
    shards failed with 'Too many open files' under the common limit of 1024. Version 2 with 10,000 shards of
    one example, version 1 with 1,000 (its reader has the same open-shard LRU; fewer files to write)."""
    v1 = write_v1(scratch / "v1", list(range(1_000)), strategy=0, shard_size=1, block_size=1)
    v2 = write_v2(scratch / "v2", list(range(10_000)), codec="none", shard_size=1, block_size=1)
    out = subprocess.run([sys.executable, "-c", _MANY, str(v1), str(v2)], capture_output=True, text=True,
                         timeout=600, env={**os.environ, "PYTHONPATH": PYTHONPATH})
    assert out.returncode == 0, out.stderr[-3000:]
    counts = []
    for line in filter(None, out.stdout.split("\n")):
        _, count, fds, _seconds = line.split()
        counts.append(int(count))
        assert int(fds) <= 2 * torch_atlas_ds.DEFAULT_MAX_OPEN_SHARDS + 32, line
    assert counts == [1_000, 10_000], out.stdout


@pytest.mark.parametrize("version", [1, 2])
def test_threads_share_a_reader_that_closes_shards(tmp_path, version):
    """More shards than may be open: shards are closed and reopened under concurrent readers."""
    from concurrent.futures import ThreadPoolExecutor

    root = tmp_path / "d"
    with AtlasDatasetWriter(root, 10, 2, format_version=version) as w:
        for i in range(200):
            w.add_example({"i": i})
    ds = AtlasDataset(root, max_open_shards=2, block_cache_size=0)

    def work(seed: int) -> bool:
        import random

        rng = random.Random(seed)
        return all(ds[i] == {"i": i} for i in (rng.randrange(200) for _ in range(600)))

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(work, range(8)))


def test_dataloader_workers_and_copies_keep_their_own_bound(tmp_path):
    """Forked workers inherit a dataset whose shards were opened and closed in the parent, a pickled copy
    (spawn) gets its own: each keeps its own bounded set of open shards."""
    import multiprocessing
    import pickle

    from torch.utils.data import DataLoader

    root = tmp_path / "d"
    with AtlasDatasetWriter(root, 5, 2) as w:
        for i in range(60):
            w.add_example(i)
    ds = AtlasDataset(root, max_open_shards=2)
    assert ds[59] == 59 and sum(shard.is_open for shard in ds.shards) == 2
    copy = pickle.loads(pickle.dumps(ds))
    assert [copy[i] for i in range(60)] == list(range(60)) and sum(s.is_open for s in copy.shards) == 2
    if "fork" in multiprocessing.get_all_start_methods():
        loader = DataLoader(ds, batch_size=7, shuffle=True, num_workers=2, multiprocessing_context="fork")
        assert sorted(int(x) for batch in loader for x in batch) == list(range(60))


def test_open_shards_stay_bounded_and_reopen(tmp_path):
    root = tmp_path / "d"
    with AtlasDatasetWriter(root, 4, 2) as w:
        for i in range(40):
            w.add_example(i)
    ds = AtlasDataset(root, max_open_shards=3)
    for _ in range(2):
        assert [ds[i] for i in range(40)] == list(range(40))
        assert [ds[i] for i in reversed(range(40))] == list(reversed(range(40)))
        assert sum(shard.is_open for shard in ds.shards) <= 3
    with pytest.raises(ValueError, match="max_open_shards"):
        AtlasDataset(root, max_open_shards=0)


# -- decoded bytes in memory: bounded by settings, not by the file ---------------------------------


def _resident_after_reading(ds: AtlasDataset, indices: list[int]) -> int:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in indices:
            ds[i]
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("version", [1, 2])
def test_decoded_blocks_kept_are_bounded_in_bytes(tmp_path, version):
    """Attack e: 48 blocks of 8 MiB of zeros take a few KB on disk; the cache used to keep 16 of them
    (128 MiB) and each shard its last block besides, whatever their size."""
    mib = 1 << 20
    root = tmp_path / "d"
    with AtlasDatasetWriter(root, 8, 1, CompressionStrategy.STANDARD_COMPRESSION, format_version=version) as w:
        for _ in range(48):
            w.add_example(bytes(8 * mib))
    assert sum(f.stat().st_size for f in root.rglob("data.bin")) < 48 * 4096
    kept = _resident_after_reading(AtlasDataset(root), list(range(48)))
    assert kept <= torch_atlas_ds.DEFAULT_BLOCK_CACHE_BYTES + 2 * 8 * mib, kept / mib
    kept = _resident_after_reading(AtlasDataset(root, block_cache_bytes=4 * mib), list(range(48)))
    assert kept <= 2 * 8 * mib + mib, kept / mib  # a block above the budget is not cached


def test_block_cache_bounds_count_and_bytes():
    from torch_atlas_ds.block_cache import BlockCache, CachedBlock

    def block(b: int, nbytes: int) -> CachedBlock:
        return CachedBlock("a", b, 0, 1, f"data {b}", nbytes)

    cache = BlockCache(3, max_bytes=100)
    a0 = cache.keep(block(0, 60))
    cache.keep(block(1, 30))
    assert cache.get(("a", 0)) is a0  # now the most recent
    c = cache.keep(block(2, 30))  # 120 bytes: the least recently used (1) goes
    assert cache.get(("a", 1)) is None and cache.nbytes == 90 and len(cache) == 2
    big = cache.keep(block(3, 101))  # bigger than the whole budget: never cached, but the block in hand
    assert cache.get(("a", 3)) is None and cache.nbytes == 90 and cache.last is big
    cache.keep(block(4, 1))
    cache.keep(block(5, 1))  # the count bound (3) still holds
    assert len(cache) == 3 and cache.get(("a", 0)) is None
    again = cache.keep(block(4, 5))  # replacing an entry counts its new size only
    assert cache.nbytes == 30 + 1 + 5 and cache.get(("a", 4)) is again and cache.get(("a", 2)) is c
    cache.clear()
    assert cache.nbytes == 0 and len(cache) == 0 and cache.last.b == -1
    with pytest.raises(ValueError):
        BlockCache(1, max_bytes=-1)


def test_missing_files_are_still_missing_shard_errors(tmp_path):
    root = tmp_path / "d"
    write_two_shards(root, 2, CompressionStrategy.STANDARD_COMPRESSION)
    (root / "000001" / "data.bin").unlink()
    with pytest.raises(MissingShardError) as info:
        AtlasDataset(root)
    assert info.value.path == str(root / "000001" / "data.bin")
