"""Reading a dataset from a URL (issue 19, part 1): over HTTP with byte ranges and from S3 (moto's server), both
started on 127.0.0.1. Opening fetches the metadata, the dictionary and the indexes only; a random read fetches
its one stored block; a batch fetches its blocks in one merged request; every fetched block is verified by its
checksum (a corrupted remote block names its URL and offset); DataLoader workers (fork and spawn) read through
clients of their own."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch.utils.data
from test_reference_helpers import read_index

from atlas_validator import validate
from torch_atlas_ds import AtlasDataset, AtlasDatasetWriter
from torch_atlas_ds.errors import ChecksumError, FormatError

pytest.importorskip("aiohttp")  # fsspec's http filesystem
remote_servers = pytest.importorskip("remote_servers")

N = 600


def examples() -> list[dict]:
    rng = np.random.default_rng(3)
    return [{"i": i, "text": " ".join(map(str, rng.integers(0, 1000, i % 30))), "v": rng.random(3).astype("<f4")}
            for i in range(N)]


def same(a: dict, b: dict) -> bool:
    return a["i"] == b["i"] and a["text"] == b["text"] and np.array_equal(a["v"], b["v"])


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    for name, kw in (("text", {}), ("typed", {"encoding": "typed"}), ("lz4", {"codec": "lz4"})):
        with AtlasDatasetWriter(folder / name, 250, 16, **kw) as w:
            for e in examples():
                w.add_example(e)
    server = remote_servers.RangeServer(folder)
    yield folder, server
    server.close()


@pytest.mark.parametrize("name", ["text", "typed", "lz4"])
def test_a_dataset_over_http_reads_as_the_local_one(served, name):
    folder, server = served
    local, values = AtlasDataset(folder / name), examples()
    server.reset_counts()
    remote = AtlasDataset(f"{server.url}/{name}")
    opened = sum(p.stat().st_size for p in (folder / name).rglob("*") if p.is_file() and p.name != "data.bin")
    assert server.bytes_sent == opened  # opening: the metadata, the dictionary and the indexes, no block
    assert len(remote) == N
    order = list(range(N))
    np.random.default_rng(0).shuffle(order)
    assert all(same(remote[i], values[i]) for i in order[:100])
    assert all(same(a, b) for a, b in zip(remote, values, strict=True))
    batch = order[:64]
    assert all(same(a, values[i]) for a, i in zip(remote.__getitems__(batch), batch, strict=True))
    assert all(same(a, b) for a, b in zip(remote, local, strict=True))


def test_a_random_read_fetches_one_stored_block_and_a_batch_one_request(served):
    folder, server = served
    remote = AtlasDataset(f"{server.url}/text")
    remote[0]
    _, entries = read_index(folder / "text" / "000001")
    server.reset_counts()
    remote[250 + 5 * 16 + 3]  # shard 1, block 5
    assert (server.requests, server.bytes_sent) == (1, int(entries[5]["stored_size"]))
    server.reset_counts()
    batch = [250 + b * 16 + 1 for b in (9, 2, 7, 3)] + [250 + 2 * 16 + 5]  # 4 blocks, one twice, out of order
    assert [x["i"] for x in remote.__getitems__(batch)] == batch
    assert server.requests == 1  # sorted, de-duplicated, merged: their gaps are under 64 KiB
    assert server.bytes_sent == sum(int(entries[b]["stored_size"]) for b in range(2, 10))


def test_a_corrupted_remote_block_is_reported_with_its_url_and_offset(served, tmp_path):
    folder, server = served
    shutil.copytree(folder / "text", folder / "corrupt")
    try:
        _, entries = read_index(folder / "corrupt" / "000000")
        remote = AtlasDataset(f"{server.url}/corrupt", block_cache_size=0)
        assert remote[3 * 16 + 2]["i"] == 50 and remote[0]["i"] == 0  # block 3 fetched and verified once
        at = int(entries[3]["offset"]) + 5
        data = bytearray((folder / "corrupt" / "000000" / "data.bin").read_bytes())
        data[at] ^= 0x40
        (folder / "corrupt" / "000000" / "data.bin").write_bytes(bytes(data))  # the store now serves other bytes
        for dataset in (remote, AtlasDataset(f"{server.url}/corrupt")):  # fetched again, and fetched first
            with pytest.raises(ChecksumError) as info:
                dataset[3 * 16 + 2]
            message = str(info.value)
            assert f"{server.url}/corrupt/000000/data.bin" in message
            assert f"offset {int(entries[3]['offset'])}" in message and info.value.block == 3
    finally:
        shutil.rmtree(folder / "corrupt")


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_workers_read_over_http_with_clients_of_their_own(served, context):
    folder, server = served
    remote = AtlasDataset(f"{server.url}/text")
    remote[0]  # the parent's client exists before the workers start
    loader = torch.utils.data.DataLoader(remote, batch_size=32, num_workers=2, shuffle=True,
                                         multiprocessing_context=multiprocessing.get_context(context),
                                         collate_fn=remote_servers.ids_of)
    assert sorted(i for batch in loader for i in batch) == list(range(N))


@pytest.fixture(scope="module")
def s3():
    """moto's S3 server on 127.0.0.1, with a bucket (skipped without s3fs and moto)."""
    pytest.importorskip("s3fs")
    pytest.importorskip("moto")
    server = remote_servers.S3Server()
    yield server
    server.close()


def test_a_dataset_in_s3_reads_as_the_local_one_also_in_dataloader_workers(served, s3):
    folder, _ = served
    url = s3.upload(folder / "text", "datasets/text")
    remote = AtlasDataset(url, storage_options=s3.options)
    values = examples()
    assert all(same(a, b) for a, b in zip(remote, values, strict=True))
    assert all(same(remote[i], values[i]) for i in (599, 0, 312, 17))
    loader = torch.utils.data.DataLoader(remote, batch_size=50, num_workers=2, collate_fn=remote_servers.ids_of)
    assert [i for batch in loader for i in batch] == list(range(N))
    with pytest.raises(ValueError, match="storage_options are for a dataset behind a URL"):
        AtlasDataset(folder / "text", storage_options=s3.options)


def test_a_dataset_in_google_cloud_storage_reads_validates_and_reports_a_corrupted_block(served):
    """gs:// through gcsfs, against gcp-storage-emulator on 127.0.0.1: the same reads as from S3, a batch, the
    validator, and a block changed in the store after opening named by its URL and offset."""
    pytest.importorskip("gcsfs")
    pytest.importorskip("gcp_storage_emulator")
    folder, _ = served
    gcs = remote_servers.GcsServer()
    try:
        url = gcs.upload(folder / "text", "datasets/text")
        remote = AtlasDataset(url, storage_options=gcs.options)
        values = examples()
        assert all(same(a, b) for a, b in zip(remote, values, strict=True))
        assert all(same(x, values[i]) for x, i in zip(remote.__getitems__([599, 0, 312, 17, 0]), [599, 0, 312, 17, 0],
                                                      strict=True))
        loader = torch.utils.data.DataLoader(remote, batch_size=100, num_workers=2, collate_fn=remote_servers.ids_of)
        assert [i for batch in loader for i in batch] == list(range(N))
        report = validate(url, storage_options=gcs.options)
        assert report.ok and not {f.id for f in report.findings if f.severity != "info"}

        offset = int(read_index(folder / "text" / "000001")[1][3]["offset"])  # block 3's stored bytes start here
        data = bytearray((folder / "text" / "000001" / "data.bin").read_bytes())
        data[offset + 2] ^= 0xFF
        gcs.fs().pipe_file(f"{gcs.bucket}/datasets/text/000001/data.bin", bytes(data))
        with pytest.raises(ChecksumError) as caught:
            AtlasDataset(url, storage_options=gcs.options)[250 + 3 * 16]
        assert f"{url}/000001/data.bin" in str(caught.value) and f"offset {offset}" in str(caught.value)
        report = validate(url, storage_options=gcs.options)
        bad = [f for f in report.findings if f.severity == "error"]
        assert not report.ok and bad and all(f.path == "000001/data.bin" and f.block == 3 for f in bad), report.ids()
    finally:
        gcs.close()


def test_a_missing_remote_dataset_is_the_projects_error(served):
    _, server = served
    from torch_atlas_ds.errors import IncompleteDatasetError

    with pytest.raises(IncompleteDatasetError, match="missing"):
        AtlasDataset(f"{server.url}/nothing-here")


def test_atlas_validate_validates_a_dataset_over_http_quick_reading_no_block(served):
    folder, server = served
    url = f"{server.url}/text"
    full = validate(url)
    assert full.ok and full.path == url and full.stats.blocks == sum(
        int(read_index(folder / "text" / s)[0]["block_count"]) for s in ("000000", "000001", "000002"))
    server.reset_counts()
    quick = validate(url, quick=True)
    assert quick.ok and quick.level == "quick"
    assert server.bytes_sent == sum(p.stat().st_size for p in (folder / "text").rglob("*")
                                    if p.is_file() and p.name != "data.bin")  # metadata, dictionary, indexes
    done = subprocess.run([sys.executable, "-m", "atlas_validator", url, "--quick", "--no-progress"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_atlas_validate_reports_a_corrupted_remote_block_and_info_reads_a_url(served):
    folder, server = served
    shutil.copytree(folder / "text", folder / "bad")
    try:
        _, entries = read_index(folder / "bad" / "000001")
        data = bytearray((folder / "bad" / "000001" / "data.bin").read_bytes())
        data[int(entries[2]["offset"]) + 3] ^= 0x01
        (folder / "bad" / "000001" / "data.bin").write_bytes(bytes(data))
        report = validate(f"{server.url}/bad")
        assert not report.ok
        bad = [f for f in report.findings if f.severity == "error"]
        assert bad and all(f.path == "000001/data.bin" and f.block == 2 for f in bad), report.ids()
        done = subprocess.run([sys.executable, "-m", "atlas_validator", f"{server.url}/bad", "--no-progress"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 1 and "000001/data.bin" in done.stdout
    finally:
        shutil.rmtree(folder / "bad")
    info = json.loads(subprocess.run([sys.executable, "-m", "torch_atlas_ds.cli", "info", f"{server.url}/text",
                                      "--json"], capture_output=True, text=True, timeout=120, check=True).stdout)
    local = json.loads(subprocess.run([sys.executable, "-m", "torch_atlas_ds.cli", "info", str(folder / "text"),
                                       "--json"], capture_output=True, text=True, timeout=120, check=True).stdout)
    assert {**info, "path": None} == {**local, "path": None} and info["path"] == f"{server.url}/text"


def test_atlas_validate_in_s3_lists_the_store_and_reports_a_stray_file(served, s3):
    folder, _ = served
    try:
        shutil.copytree(folder / "text", folder / "stray")
        (folder / "stray" / "000000" / "notes.txt").write_text("left here")
        url = s3.upload(folder / "stray", "stray")
        report = validate(url, storage_options=s3.options)
        assert {f.id for f in report.findings if f.severity != "info"} == {"ATL105"} and report.ok  # as for a folder
        options = json.dumps(s3.options)
        done = subprocess.run([sys.executable, "-m", "atlas_validator", url, "--quick", "--storage-options", options],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        missing = validate(f"s3://{s3.bucket}/nothing", storage_options=s3.options)
        assert missing.ids() == {"ATL109"} and not missing.ok
    finally:
        shutil.rmtree(folder / "stray", ignore_errors=True)


def test_a_local_cache_keeps_verified_blocks_for_later_runs_within_its_bound(served, tmp_path):
    folder, server = served
    url, values = f"{server.url}/text", examples()
    AtlasDataset(url, local_cache=tmp_path / "cache")  # opening fetches no block
    first = AtlasDataset(url, local_cache=tmp_path / "cache")
    assert all(same(a, b) for a, b in zip(first, values, strict=True))
    server.reset_counts()
    again = AtlasDataset(url, local_cache=tmp_path / "cache")  # a later run: every block from local disk
    order = list(range(N))
    np.random.default_rng(1).shuffle(order)
    assert all(same(again[i], values[i]) for i in order[:200])
    assert all(same(a, values[i]) for a, i in zip(again.__getitems__(order[:40]), order[:40], strict=True))
    assert server.paths and not [p for p in server.paths if p.endswith("/data.bin")]  # no byte of a data.bin
    cached = sorted((tmp_path / "cache").rglob("*-*"))
    victim = cached[0]
    victim.write_bytes(b"\x00" * victim.stat().st_size)  # the local disk fails: the copy is refused, refetched
    fresh = AtlasDataset(url, local_cache=tmp_path / "cache")
    assert all(same(a, b) for a, b in zip(fresh, values, strict=True))
    small = AtlasDataset(url, local_cache=tmp_path / "small", local_cache_bytes=3000)
    assert all(same(small[i], values[i]) for i in order)
    assert sum(p.stat().st_size for p in (tmp_path / "small").rglob("*") if p.is_file()) <= 3000
    with pytest.raises(ValueError, match="local_cache is for a dataset behind a URL"):
        AtlasDataset(folder / "text", local_cache=tmp_path / "cache")


def test_a_server_that_ignores_byte_ranges_is_refused_without_reading_whole_files(served):
    folder, _ = served
    plain = remote_servers.RangeServer(folder, ranges=False)  # answers every GET with the whole file
    try:
        remote = AtlasDataset(f"{plain.url}/text")  # metadata and indexes are read from their start: bounded
        with pytest.raises(FormatError, match="support range requests"):
            remote[N - 1]
    finally:
        plain.close()
