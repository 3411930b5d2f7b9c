"""Version 1 verdicts follow the original reader (issue 16): what it cannot open is an error,
what it reads correctly at most a warning, and the reference reader reads it too.

Every catalog id is classified (``CatalogEntry.v1``) and its version 1 severity is on the
right side of the line. Each case below mutates a seed-v1 dataset (written by the original)
one way; ``ORIGINAL`` says what the original 0.1.0 does with it, read off its ``atlas.py``
(line numbers given) and confirmed by running it on the same mutation.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zstandard
from conftest import SEED_V1
from test_reference_helpers import same
from validator_vectors import copy_seed, edit_json

from atlas_format import npy
from atlas_format.testing.vectors import VECTORS_ROOT, iter_vectors
from atlas_validator import validate
from atlas_validator.catalog import (
    BY_DESIGN,
    CANNOT_OPEN,
    CATALOG,
    ERROR,
    READS,
    V1_SEVERITIES,
    V2_ONLY,
    WARNING,
    WRONG_DATA,
    CatalogEntry,
    markdown,
    v1_rule_violations,
)
from torch_atlas_ds import AtlasDataset

NONE, PLAIN, SHARED = "01-s0-multishard", "02-s1-multishard", "03-s2-shared-dict"


# -- the catalog ----------------------------------------------------------------------------


def test_every_finding_is_classified_on_the_right_side_of_the_line():
    assert v1_rule_violations(list(CATALOG.values())) == []
    for e in CATALOG.values():
        assert e.v1 in V1_SEVERITIES and e.why.strip(), e.id


@pytest.mark.parametrize("verdict,severity", [(READS, ERROR), (CANNOT_OPEN, WARNING), (BY_DESIGN, WARNING),
                                              ("reads mostly", ERROR)])
def test_the_rule_refuses_an_entry_on_the_wrong_side(verdict, severity):
    bad = CatalogEntry("ATL999", severity, "a finding", "GEN-4", verdict, "because")
    assert v1_rule_violations([bad]), (verdict, severity)


def test_a_version_1_severity_overrides_only_version_1():
    entry = CatalogEntry("ATL999", ERROR, "a finding", "GEN-4", READS, "because", v1_severity=WARNING)
    assert (entry.severity_for(1), entry.severity_for(2), entry.severity_for(None)) == (WARNING, ERROR, ERROR)
    assert v1_rule_violations([entry]) == []
    assert v1_rule_violations([CatalogEntry("ATL999", ERROR, "a finding", "GEN-4", READS, " ")])


def test_findings_md_states_every_verdict():
    rows = {line.split(" | ")[0].lstrip("| "): line for line in markdown().splitlines() if line.startswith("| ATL")}
    assert set(rows) == set(CATALOG)
    for finding_id, line in rows.items():
        assert f"**{CATALOG[finding_id].v1}**: " in line, line


# -- the golden vectors of version 1 ----------------------------------------------------------

V1_VECTORS = [v for v in iter_vectors(VECTORS_ROOT) if v.case["format_version"] == 1]


@pytest.mark.parametrize("vector", V1_VECTORS, ids=lambda v: f"{v.folder.parent.name}/{v.name}")
def test_version_1_vectors_get_version_1_severities(vector):
    report = validate(vector.dataset)
    for f in report.findings:
        entry = CATALOG[f.id]
        assert entry.v1 != V2_ONLY, f
        assert f.severity == entry.severity_for(1), f
    found = {f.id for f in report.findings}
    assert set(vector.findings) <= found, (vector.findings, found)
    if vector.valid:
        assert report.ok and all(CATALOG[i].severity_for(1) != ERROR for i in vector.findings)
    else:
        assert not report.ok


# -- the four cases of issue 16 and their neighbours, against the original ----------------------


def _save(path: Path, array: np.ndarray, version: tuple[int, int] = (1, 0)) -> None:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, version=version)
    path.write_bytes(buf.getvalue())


def _indexes(root: Path) -> list[Path]:
    return sorted(root.glob("*/index.npy"))


def _retype(descr: str) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        for path in _indexes(root):
            _save(path, np.load(path).astype(descr))
    return mutate


def _npy_2(root: Path) -> None:
    for path in _indexes(root):
        _save(path, np.load(path), version=(2, 0))


def _fortran(root: Path) -> None:
    """fortran_order True in the header of a 1-D index (np.save never writes it; numpy reads it)."""
    for path in _indexes(root):
        offsets = np.load(path)
        header = npy.NpyHeader.build({"major": 1, "header": {"descr": offsets.dtype.str, "fortran_order": True,
                                                               "shape": offsets.shape}})
        path.write_bytes(header + offsets.tobytes())


def _index_tail(root: Path) -> None:
    for path in _indexes(root):
        path.write_bytes(path.read_bytes() + b"\0" * 8)


def _rewrite_blocks(shard: Path, change: Callable[[list[bytes]], list[bytes]], *, prefix: bytes = b"") -> None:
    offsets = [int(x) for x in np.load(shard / "index.npy")]
    data = (shard / "data.bin").read_bytes()
    blocks = change([data[a:b] for a, b in zip(offsets, offsets[1:], strict=False)])
    new = [len(prefix)]
    for block in blocks:
        new.append(new[-1] + len(block))
    (shard / "data.bin").write_bytes(prefix + b"".join(blocks))
    _save(shard / "index.npy", np.array(new, dtype=npy.v1_index_dtype(new[-1])))


def _after_first_block(extra: bytes) -> Callable[[Path], None]:
    return lambda root: _rewrite_blocks(root / "1", lambda blocks: [blocks[0] + extra, *blocks[1:]])


def _rename(root: Path, names: dict[str, str]) -> None:
    for old, new in names.items():
        (root / old).rename(root / new)


def _shard_strategy(shard: str, strategy: int) -> Callable[[Path], None]:
    return lambda root: edit_json(root / shard / "meta.json", lambda d: d.update(compression_strategy=strategy))


def _recompress_none(shard: Path) -> None:
    """A strategy-1 shard rewritten uncompressed (strategy 0) under a strategy-1 root."""
    dctx = zstandard.ZstdDecompressor()
    _rewrite_blocks(shard, lambda blocks: [dctx.decompress(b) for b in blocks])
    edit_json(shard / "meta.json", lambda d: d.update(compression_strategy=0))


# (case, seed vector, mutation, what the original does (evidence), expected finding id)
CASES: list[tuple[str, str, Callable[[Path], None], str, str]] = [
    # (a) every sub-folder is a shard (atlas.py:284, :291): FileNotFoundError for its meta.json
    ("a-extra-subfolder", NONE, lambda r: (r / "notes").mkdir(), CANNOT_OPEN, "ATL112"),
    ("a-leftover-folder", NONE, lambda r: (r / ".atlas-tmp-x").mkdir(), CANNOT_OPEN, "ATL112"),
    # (b) meta.json is unpacked into a NamedTuple (atlas.py:160, :279): TypeError
    ("b-shard-unknown-key", NONE, lambda r: edit_json(r / "1" / "meta.json", lambda d: d.update(note=1)),
     CANNOT_OPEN, "ATL215"),
    ("b-root-unknown-key", NONE, lambda r: edit_json(r / "meta.json", lambda d: d.update(note=1)),
     CANNOT_OPEN, "ATL215"),
    # (c) np.load (atlas.py:173) reads these; seek()/read() take any integer (:225-229)
    ("b-shard-missing-key", NONE, lambda r: edit_json(r / "1" / "meta.json", lambda d: d.pop("compression_level")),
     CANNOT_OPEN, "ATL215"),
    # values outside the schema the original reads, refused on purpose (V1-META-1, V1-READ-3)
    ("root-strategy-7", NONE, lambda r: edit_json(r / "meta.json", lambda d: d.update(compression_strategy=7)),
     BY_DESIGN, "ATL202"),
    ("informational-key-of-another-type", NONE,
     lambda r: edit_json(r / "1" / "meta.json", lambda d: d.update(compression_level="high")), BY_DESIGN, "ATL203"),
    ("c-big-endian-index", SHARED, _retype(">u2"), READS, "ATL312"),
    ("c-signed-index", SHARED, _retype("<i8"), READS, "ATL312"),
    ("c-big-endian-signed-index", PLAIN, _retype(">i4"), READS, "ATL312"),
    ("c-npy-2.0", SHARED, _npy_2, READS, "ATL312"),
    ("c-fortran-order", SHARED, _fortran, READS, "ATL312"),
    ("c-bytes-after-index", SHARED, _index_tail, READS, "ATL312"),
    ("c-float-index", SHARED, _retype("<f8"), CANNOT_OPEN, "ATL301"),  # seek(float64): TypeError
    # (d) the root dictionary is read only under strategy 2 (atlas.py:288), a shard's only under 3 (:176)
    ("d-stray-root-dictionary", PLAIN,
     lambda r: shutil.copy(SEED_V1 / SHARED / "dataset" / "zstd_dict.bin", r / "zstd_dict.bin"), READS, "ATL105"),
    ("d-stray-shard-dictionary", PLAIN,
     lambda r: shutil.copy(SEED_V1 / SHARED / "dataset" / "zstd_dict.bin", r / "0" / "zstd_dict.bin"),
     READS, "ATL105"),
    # neighbours: what the original reads through
    ("bytes-after-frame", SHARED, _after_first_block(b"\0\0\0junk"), READS, "ATL404"),  # zstd: first frame only
    ("bytes-after-stop", NONE, lambda r: _rewrite_blocks(r / "0", lambda b: [b[0] + b"junk", *b[1:]]),
     READS, "ATL414"),  # pickle stops at STOP
    ("bytes-after-last-block", SHARED, lambda r: open(r / "1" / "data.bin", "ab").write(b"xyz"), READS, "ATL313"),
    ("bytes-before-first-block", SHARED, lambda r: _rewrite_blocks(r / "1", list, prefix=b"junk"), READS, "ATL313"),
    ("shard-sizes-disagree", NONE, lambda r: edit_json(r / "meta.json", lambda d: d.update(shard_sizes=[40, 40, 21])),
     READS, "ATL204"),  # never read (atlas.py:301)
    ("over-padded-names", NONE, lambda r: _rename(r, {"0": "00", "1": "01", "2": "02"}), READS, "ATL113"),
    ("strategy-0-shard-under-root-1", PLAIN, lambda r: _recompress_none(r / "2"), READS, "ATL206"),
    # neighbours: what it cannot open or reads wrongly
    ("strategy-2-shard-under-root-1", PLAIN, _shard_strategy("2", 2), CANNOT_OPEN, "ATL103"),  # no dict (:180)
    ("last-block-cut-short", SHARED, lambda r: (r / "1" / "data.bin").write_bytes(
        (r / "1" / "data.bin").read_bytes()[:-5]), CANNOT_OPEN, "ATL306"),
    ("names-out-of-text-order", NONE, lambda r: _rename(r, {"2": "02"}), WRONG_DATA, "ATL102"),  # 0, 02, 1
]


@pytest.mark.parametrize("case,seed,mutate,original,finding_id", CASES, ids=[c[0] for c in CASES])
def test_verdict_matches_the_original(tmp_path, case, seed, mutate, original, finding_id):
    root = copy_seed(SEED_V1 / seed / "dataset", tmp_path / "ds")
    mutate(root)
    report = validate(root)
    found = [f for f in report.findings if f.id == finding_id]
    assert found, [f.to_dict() for f in report.findings]
    assert CATALOG[finding_id].v1 == original
    if original == READS:
        assert report.ok, [f.to_dict() for f in report.errors]
        assert all(f.severity != ERROR for f in found)
        expected = json.loads((SEED_V1 / seed / "expected.json").read_text())["examples"]
        ds = AtlasDataset(root)  # the reference reads what the original reads
        assert len(ds) == len(expected)
        assert all(same(ds[i], e) for i, e in enumerate(expected)), case
    else:
        assert not report.ok and all(f.severity == ERROR for f in found)
