"""atlas-ds as a new user meets it (issue 16): info never counts leftovers of an interrupted write and
reports them; a missing shard is named, not a raw OSError; --version; --allow MODULE:NAME for the
commands that load safely, and the refusal's hint that points to it."""

from __future__ import annotations

import importlib.metadata
import ipaddress
import json
import os
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
from test_cli import INFO_SCHEMA, atlas_ds

import torch_atlas_ds
import torch_atlas_ds.convert
from torch_atlas_ds import AtlasDataset, AtlasDatasetWriter


def _write(root, version=2, n=35):
    with AtlasDatasetWriter(root, 10, 4, format_version=version) as writer:
        for i in range(n):
            writer.add_example({"i": i, "text": "word " * i})
    return root


def _info(path):
    done = atlas_ds("info", path, "--json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    jsonschema.validate(info, INFO_SCHEMA)
    return info


# -- info and leftovers ------------------------------------------------------------------------------------


def test_info_v2_excludes_leftovers_from_the_size_and_reports_them(tmp_path):
    root = _write(tmp_path / "ds")
    clean = _info(root)
    assert clean["leftovers"] == []
    assert "leftovers          none" in atlas_ds("info", root).stdout
    (root / ".atlas-tmp-3f2a").mkdir()
    (root / ".atlas-tmp-3f2a" / "data.bin").write_bytes(b"\0" * 5000)
    (root / ".atlas-tmp-9c1d.json").write_text("{}")
    shutil.copytree(root / "000003", root / "000004")  # shards moved in, meta.json never replaced
    unlisted = sum(p.stat().st_size for p in (root / "000004").iterdir())
    info = _info(root)
    assert info["bytes_on_disk"] == clean["bytes_on_disk"]
    assert info["num_shards"] == 4 and info["num_examples"] == 35
    assert info["leftovers"] == [
        {"name": ".atlas-tmp-3f2a", "kind": "append", "bytes": 5000, "writer_alive": False},
        {"name": ".atlas-tmp-9c1d.json", "kind": "append", "bytes": 2, "writer_alive": False},
        {"name": "000004", "kind": "shard", "bytes": unlisted, "writer_alive": False}]
    text = atlas_ds("info", root).stdout
    line = next(row for row in text.splitlines() if row.startswith("leftovers"))
    assert line.startswith("leftovers          3 ") and ".atlas-tmp-3f2a" in line and "000004" in line
    assert f"atlas-ds gc {root}" in line
    assert f"({clean['bytes_on_disk']:,} bytes)" in text


def test_info_v1_excludes_leftovers_and_counts_every_shard_folder(tmp_path):
    root = _write(tmp_path / "ds", version=1)
    clean = _info(root)
    assert clean["leftovers"] == [] and clean["bytes_on_disk"] == sum(
        p.stat().st_size for p in root.rglob("*") if p.is_file())
    (root / ".atlas-tmp-x").mkdir()
    (root / ".atlas-tmp-x" / "meta.json").write_bytes(b"{" * 300)
    info = _info(root)
    assert info["bytes_on_disk"] == clean["bytes_on_disk"]
    assert info["leftovers"] == [{"name": ".atlas-tmp-x", "kind": "append", "bytes": 300, "writer_alive": False}]


@pytest.mark.parametrize("version,removed,named", [
    (2, "000001", "shard folder listed in root meta.json is missing"),
    (2, "000000/index.bin", "index.bin is missing"),
    (2, "000002/data.bin", "data.bin is missing"),
    (2, "000003/meta.json", "meta.json is missing"),
    (1, "1/index.npy", "index.npy is missing"),
    (1, "2/meta.json", "meta.json is missing"),
])
def test_info_names_a_missing_shard_or_shard_file(tmp_path, version, removed, named):
    root = _write(tmp_path / "ds", version=version)
    target = root / removed
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    for args in (("info", root), ("info", root, "--json")):
        done = atlas_ds(*args)
        assert done.returncode == 1 and done.stdout == ""
        assert done.stderr.count("\n") == 1 and "Errno" not in done.stderr, done.stderr
        shard = removed.split("/")[0]
        assert f"shard {shard}" in done.stderr and named in done.stderr, done.stderr


# -- --version ---------------------------------------------------------------------------------------------


def test_version_prints_the_package_and_format_versions():
    done = atlas_ds("--version")
    assert done.returncode == 0 and done.stderr == ""
    try:
        expected = importlib.metadata.version("torch-atlas-ds")
    except importlib.metadata.PackageNotFoundError:
        expected = torch_atlas_ds.__version__
    assert done.stdout.count("\n") == 1
    assert f"torch-atlas-ds) {expected}:" in done.stdout and "versions 1, 2" in done.stdout


def test_version_falls_back_to_the_module_version_when_not_installed(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    monkeypatch.setattr(torch_atlas_ds, "__version__", "9.8.7-test")
    done = atlas_ds("--version")
    assert done.returncode == 0 and "9.8.7-test" in done.stdout


# -- --allow -----------------------------------------------------------------------------------------------

ALLOW = ("--allow", "ipaddress:IPv4Address")


@pytest.fixture
def addresses(tmp_path):
    """A dataset whose examples need a global outside the pickle policy (ipaddress.IPv4Address)."""
    root = tmp_path / "addresses"
    with AtlasDatasetWriter(root, 10, 4) as writer:
        for i in range(12):
            writer.add_example({"i": i, "addr": ipaddress.IPv4Address(i)})
    return root


def test_show_refusal_hint_names_allowed_globals_and_the_allow_flag(addresses):
    done = atlas_ds("show", addresses, "3")
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert "allowed_globals=[('ipaddress', 'IPv4Address')] in Python" in done.stderr
    assert "--allow ipaddress:IPv4Address on the command line" in done.stderr


def test_show_and_head_load_with_allow(addresses):
    done = atlas_ds("show", addresses, "3", "-1", *ALLOW)
    assert done.returncode == 0, done.stderr
    assert "IPv4Address('0.0.0.3')" in done.stdout and "IPv4Address('0.0.0.11')" in done.stdout
    head = atlas_ds("head", addresses, "-n", "2", "--allow", "collections:OrderedDict", *ALLOW)
    assert head.returncode == 0 and "IPv4Address('0.0.0.1')" in head.stdout
    refused = atlas_ds("head", addresses, "-n", "2")
    assert refused.returncode == 1 and "--allow ipaddress:IPv4Address" in refused.stderr


def test_convert_reads_its_source_with_allow(tmp_path, addresses):
    refused = atlas_ds("convert", addresses, tmp_path / "out", "--no-progress")
    assert refused.returncode == 1 and "--allow ipaddress:IPv4Address" in refused.stderr
    assert not (tmp_path / "out").exists()
    # --no-validate: the standalone validator refuses the global (ATL600) unless it is given --allow too
    done = atlas_ds("convert", addresses, tmp_path / "out", "--codec", "lz4", "--no-validate", "--no-progress",
                    *ALLOW)
    assert done.returncode == 0, done.stderr
    assert list(AtlasDataset(tmp_path / "out")) == list(AtlasDataset(addresses))


def test_convert_validates_its_result_with_the_same_allow_list(tmp_path, addresses, monkeypatch):
    """The converted dataset holds the globals the source was read with: the validator is told to admit them
    (atlas-validate --allow MODULE:NAME). Its run is recorded here, not made."""
    commands = []

    def validator(command, **kwargs):
        commands.append(command)
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(torch_atlas_ds.convert.subprocess, "run", validator)
    done = atlas_ds("convert", addresses, tmp_path / "out", "--no-progress", *ALLOW, "--allow", "decimal:Decimal")
    assert done.returncode == 0, done.stderr
    assert len(commands) == 1 and commands[0][1:3] == ["-m", "atlas_validator"]
    assert commands[0][3:-1] == ["--format", "json", "--allow", "ipaddress:IPv4Address", "--allow", "decimal:Decimal"]
    assert Path(commands[0][-1]).name.startswith(".atlas-tmp-out-")  # the writer's result, before publishing
    assert list(AtlasDataset(tmp_path / "out")) == list(AtlasDataset(addresses))


@pytest.mark.parametrize("value", ["ipaddress", "ipaddress:", ":IPv4Address", "a:b:c", "my pkg:X", "1mod:X",
                                   "mod.:X", "mod:X;rm"])
@pytest.mark.parametrize("command", [["show", "{p}", "0"], ["head", "{p}"], ["convert", "{p}", "{t}/out"]])
def test_allow_with_a_bad_value_exits_2_naming_it(tmp_path, addresses, command, value):
    argv = [a.replace("{p}", str(addresses)).replace("{t}", str(tmp_path)) for a in command]
    done = atlas_ds(*argv, "--allow", value)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and repr(value) in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()


def test_allow_with_trust_is_refused(addresses):
    done = atlas_ds("show", addresses, "0", "--trust", *ALLOW)
    assert done.returncode == 2 and "--trust" in done.stderr and done.stderr.count("\n") == 1


def test_info_marks_a_running_appenders_files_and_does_not_count_them(tmp_path):
    root = _write(tmp_path / "ds")
    clean = _info(root)
    with AtlasDatasetWriter.append(root) as writer:
        for i in range(40):
            writer.add_example({"late": i})
        running = _info(root)
        assert running["bytes_on_disk"] == clean["bytes_on_disk"]
        assert running["leftovers"] and all(x["writer_alive"] for x in running["leftovers"])
        assert "its writer is still running" in atlas_ds("info", root).stdout
    assert _info(root)["leftovers"] == []


@pytest.mark.parametrize("arguments", [["--quick", "{p}"], ["{p}", "--quick"], ["--jobs", "2", "--quick", "{p}"]])
def test_atlas_ds_validate_takes_options_before_or_after_the_path(tmp_path, arguments):
    root = _write(tmp_path / "ds")
    done = atlas_ds("validate", *[a.format(p=root) for a in arguments])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "VALID (version 2, quick)" in done.stdout


def _truncate(path, size):
    os.truncate(path, size)


def _overwrite_start(path, data):
    with open(path, "r+b") as f:
        f.write(data)


@pytest.mark.parametrize("version,damaged,damage", [
    (2, "000001/index.bin", lambda p: _truncate(p, 70)),
    (2, "000001/index.bin", lambda p: _overwrite_start(p, b"NOTANIDX")),
    (1, "1/index.npy", lambda p: p.write_bytes(b"garbage")),
    (1, "1/index.npy", lambda p: _truncate(p, 100)),
    (1, "1/data.bin", lambda p: _overwrite_start(p, b"XXXX")),
])
def test_info_reads_indexes_as_the_reader_does_and_names_a_damaged_file(tmp_path, version, damaged, damage):
    root = _write(tmp_path / "ds", version=version)
    damage(root / damaged)
    done = atlas_ds("info", root)
    assert done.returncode == 1 and not done.stdout
    assert done.stderr.startswith("atlas-ds: error: ") and done.stderr.count("\n") == 1, done.stderr
    assert str(root / damaged) in done.stderr and "Traceback" not in done.stderr
