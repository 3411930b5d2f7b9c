"""Hostile file system shapes never hang or crash the validator, and every problem is reported."""

from __future__ import annotations

import os
import pickle

import pytest
from test_untrusted_files import FILES, IDS, fifo_at, link_elsewhere, link_shard_folder, make_device, write_two_shards
from validator_vectors import examples, write_v1, write_v2

from atlas_validator import validate
from torch_atlas_ds import CompressionStrategy


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("name", ["data.bin", "index.bin", "meta.json", "zstd_dict.bin"])
def test_fifo_instead_of_a_file_is_reported_without_blocking(tmp_path, name):
    root = write_v2(tmp_path / "ds", examples(64), dictionary="shard", shard_size=64)
    target = root / "000000" / name
    if target.exists():
        target.unlink()
    os.mkfifo(target)  # opening it for reading would block forever
    report = validate(root)
    assert "ATL111" in report.ids() and not report.ok


def test_symlink_to_an_endless_device_is_not_read(tmp_path):
    root = write_v1(tmp_path / "ds", examples(20))
    (root / "0" / "data.bin").unlink()
    os.symlink("/dev/zero", root / "0" / "data.bin")
    (root / "meta.json").unlink()
    os.symlink("/dev/urandom", root / "meta.json")
    report = validate(root)
    assert "ATL111" in report.ids() and not report.ok


@pytest.mark.parametrize(("version", "strategy", "rel"), FILES, ids=IDS)
def test_symlinked_file_is_reported_not_followed(tmp_path, version, strategy, rel):
    root = tmp_path / "d"
    write_two_shards(root, version, strategy)
    link_elsewhere(tmp_path, root / rel)  # the same bytes: only the link is wrong (it used to validate clean)
    report = validate(root)
    found = [f for f in report.findings if f.id == "ATL111"]
    assert found and found[0].path == rel and "symlink" in found[0].message and not report.ok


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize(("version", "strategy", "rel"), FILES, ids=IDS)
def test_every_file_as_a_fifo_is_reported_without_blocking(tmp_path, version, strategy, rel):
    root = tmp_path / "d"
    write_two_shards(root, version, strategy)
    with fifo_at(root / rel):
        report = validate(root)
    found = [f for f in report.findings if f.id == "ATL111"]
    assert found and found[0].path == rel and "FIFO" in found[0].message and not report.ok


@pytest.mark.parametrize("version", [1, 2])
def test_symlinked_shard_folder_is_reported(tmp_path, version):
    """Attack a: a version 1 shard folder linked to a hidden folder used to validate VALID (a warning only)."""
    root = tmp_path / "d"
    write_two_shards(root, version, CompressionStrategy.STANDARD_COMPRESSION)
    link = link_shard_folder(tmp_path, root, version)
    report = validate(root)
    found = [f for f in report.findings if f.id == "ATL111"]
    assert found and found[0].path == link.name and not report.ok
    assert "ATL101" not in report.ids()  # the folder is there, as a link: not reported missing too


def test_device_node_is_reported(tmp_path):
    root = tmp_path / "d"
    write_two_shards(root, 2, CompressionStrategy.STANDARD_COMPRESSION)
    make_device(root / "000000" / "data.bin")
    report = validate(root)
    assert "ATL111" in report.ids() and "a character device" in str(report.findings) and not report.ok


def test_the_root_may_be_a_symlink(tmp_path):
    write_two_shards(tmp_path / "real", 2, CompressionStrategy.SHARED_DICTIONARY_COMPRESSION)
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    report = validate(tmp_path / "link")
    assert report.ok and report.ids() == set(), [f.to_dict() for f in report.findings]


def test_every_problem_is_reported_with_its_location(tmp_path):
    def pickle_hook(k, b, j, p):
        if (k, b, j) in ((0, 1, 2), (2, 0, 0)):
            return pickle.dumps(eval, protocol=5)  # a reference to builtins.eval, pickled by name
        return p

    def stored_hook(k, b, s):
        return s + b"\0" if (k, b) == (1, 3) else s

    root = write_v2(tmp_path / "ds", examples(64), shard_size=16, pickle_hook=pickle_hook, stored_hook=stored_hook)
    (root / "000003" / "stray.txt").write_text("x")
    report = validate(root, jobs=2)
    where = sorted((f.id, f.shard, f.block, f.example) for f in report.findings)
    assert ("ATL601", "000000", 1, 6) in where
    assert ("ATL601", "000002", 0, 0) in where
    assert ("ATL404", "000001", 3, None) in where
    assert ("ATL105", "000003", None, None) in where


def test_many_corrupt_blocks_are_capped_per_id(tmp_path):
    root = write_v2(tmp_path / "ds", examples(400), shard_size=400, block_size=2)
    data = root / "000000" / "data.bin"
    data.write_bytes(bytes(len(data.read_bytes())))
    report = validate(root)
    mismatches = [f for f in report.findings if f.id == "ATL506"]
    assert len(mismatches) == 51 and "150 more" in mismatches[-1].message
