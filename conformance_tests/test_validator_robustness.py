"""Hostile file system shapes never hang or crash the validator, and every problem is reported."""

from __future__ import annotations

import os
import pickle

import pytest
from validator_vectors import examples, write_v1, write_v2

from atlas_validator import validate


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("name", ["data.bin", "index.bin", "meta.json", "zstd_dict.bin"])
def test_fifo_instead_of_a_file_is_reported_without_blocking(tmp_path, name):
    root = write_v2(tmp_path / "ds", examples(64), dictionary="shard", shard_size=64)
    target = root / "000000" / name
    if target.exists():
        target.unlink()
    os.mkfifo(target)  # opening it for reading would block forever
    report = validate(root)
    assert "ATL110" in report.ids() and not report.ok


def test_symlink_to_an_endless_device_is_not_read(tmp_path):
    root = write_v1(tmp_path / "ds", examples(20))
    (root / "0" / "data.bin").unlink()
    os.symlink("/dev/zero", root / "0" / "data.bin")
    (root / "meta.json").unlink()
    os.symlink("/dev/urandom", root / "meta.json")
    report = validate(root)
    assert "ATL110" in report.ids() and not report.ok


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
