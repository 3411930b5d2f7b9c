"""Fuzzing: mutated datasets never make the validator raise or hit an internal error, and in
version 2 every change to checksummed bytes is reported as an error (DETECT-1).

Longer runs: HYPOTHESIS_PROFILE=nightly python -m pytest conformance_tests/test_validator_fuzz.py
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
from conftest import SEED_V1
from hypothesis import given
from hypothesis import strategies as st
from validator_vectors import examples, write_v2

from atlas_validator import validate

V1_SEEDS = ["03-s2-shared-dict", "04-s3-own-dicts-7-block-boundary", "01-s0-multishard",
            "10-shard-smaller-than-block-s1"]


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> dict[str, Path]:
    from torch_atlas_ds import AtlasDatasetWriter

    base = tmp_path_factory.mktemp("fuzz-bases")
    out: dict[str, Path] = {}
    out["v2-shared"] = write_v2(base / "v2-shared", examples(72), dictionary="shared", shard_size=32, block_size=4)
    out["v2-shard"] = write_v2(base / "v2-shard", examples(72), dictionary="shard", shard_size=32, block_size=4)
    out["v2-lz4"] = write_v2(base / "v2-lz4", examples(30), codec="lz4", shard_size=12, block_size=4)
    out["v2-none"] = write_v2(base / "v2-none", examples(30), codec="none", shard_size=12, block_size=4)
    out["v2-example-shard"] = write_v2(base / "v2-example-shard", examples(72), dictionary="shard", shard_size=32,
                                       block_size=4, framing="example")
    out["v2-example-lz4"] = write_v2(base / "v2-example-lz4", examples(30), codec="lz4", shard_size=12,
                                     block_size=4, framing="example")
    ref = base / "v2-reference"
    with AtlasDatasetWriter(ref, shard_size=20, block_size=4, compression_strategy=2) as writer:
        for ex in examples(50):
            writer.add_example(ex)
    out["v2-reference"] = ref
    for name in V1_SEEDS:
        out[f"v1-{name}"] = SEED_V1 / name / "dataset"
    for path in out.values():
        assert validate(path).ok
    return out


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


MUTATIONS = ["flip", "truncate", "delete", "append", "swap", "duplicate", "json"]


def _mutate(root: Path, data: st.DataObject) -> bool:
    """Apply one mutation; False when it left every byte unchanged."""
    files = _files(root)
    kind = data.draw(st.sampled_from(MUTATIONS), label="mutation")
    target = data.draw(st.sampled_from(files), label="file")
    content = target.read_bytes()
    if kind == "flip":
        if not content:
            return False
        at = data.draw(st.integers(0, len(content) - 1), label="offset")
        mask = data.draw(st.integers(1, 255), label="mask")
        changed = bytearray(content)
        changed[at] ^= mask
        target.write_bytes(bytes(changed))
    elif kind == "truncate":
        if not content:
            return False
        target.write_bytes(content[:data.draw(st.integers(0, len(content) - 1), label="length")])
    elif kind == "delete":
        target.unlink()
    elif kind == "append":
        target.write_bytes(content + data.draw(st.binary(min_size=1, max_size=16), label="tail"))
    elif kind in ("swap", "duplicate"):
        same_name = [f for f in files if f.name == target.name and f != target]
        other = data.draw(st.sampled_from(same_name or files), label="other")
        other_content = other.read_bytes()
        if other_content == content:
            return False
        target.write_bytes(other_content)
        if kind == "swap":
            other.write_bytes(content)
    elif kind == "json":
        metas = [f for f in files if f.name == "meta.json"]
        target = data.draw(st.sampled_from(metas), label="meta")
        doc = json.loads(target.read_bytes())
        key = data.draw(st.sampled_from(sorted(doc)), label="key")
        value = data.draw(st.one_of(st.none(), st.booleans(), st.integers(-3, 1 << 40), st.text(max_size=8),
                                    st.lists(st.integers(0, 100), max_size=3)), label="value")
        if doc[key] == value and type(doc[key]) is type(value):
            return False
        doc[key] = value
        target.write_text(json.dumps(doc, indent=2))
    return True


def _check(bases: dict[str, Path], name: str, data: st.DataObject, *, quick: bool = False) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ds"
        shutil.copytree(bases[name], root)
        changed = _mutate(root, data)
        report = validate(root, quick=quick)  # must not raise
        internal = [f.to_dict() for f in report.findings if f.id == "ATL990"]
        assert not internal, internal
        json.loads(report.to_json())
        if name.startswith("v2") and changed:
            assert report.errors, "a change to checksummed version 2 bytes went unreported"


@given(data=st.data())
def test_fuzz_v2_mutations_are_detected(bases, data):
    name = data.draw(st.sampled_from(["v2-shared", "v2-shard", "v2-lz4", "v2-none", "v2-reference", "v2-example-shard",
                                      "v2-example-lz4"]), label="base")
    _check(bases, name, data)


@given(data=st.data())
def test_fuzz_v1_mutations_never_crash(bases, data):
    name = data.draw(st.sampled_from([f"v1-{n}" for n in V1_SEEDS]), label="base")
    _check(bases, name, data)


@given(data=st.data())
def test_fuzz_quick_mode_never_crashes(bases, data):
    name = data.draw(st.sampled_from(sorted(bases)), label="base")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ds"
        shutil.copytree(bases[name], root)
        _mutate(root, data)
        report = validate(root, quick=True)
        assert not [f for f in report.findings if f.id == "ATL990"]


@given(blob=st.binary(max_size=300))
def test_fuzz_scanner_never_raises(blob):
    from atlas_validator.pickle_scan import scan_pickle

    result = scan_pickle(b"\x80\x05" + blob)
    assert result.end is None or result.end <= len(blob) + 2
