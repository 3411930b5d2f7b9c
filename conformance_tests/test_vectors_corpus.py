"""The golden corpus is self-consistent: every vector listed in the README, every manifest true."""

from __future__ import annotations

import hashlib
import json

import make_vectors
import pytest

from atlas_format.testing.equality import strict_equal
from atlas_format.testing.vectors import decode_example, encode_example, iter_vectors

VECTORS = list(iter_vectors(make_vectors.VECTORS))


def test_corpora_are_present():
    corpora = {v.folder.parent.name for v in VECTORS}
    assert {"seed-v1", "v2", "invalid", "warnings"} <= corpora
    assert sum(v.folder.parent.name == "v2" for v in VECTORS) == len(make_vectors.specs())


def test_readme_lists_every_vector_with_its_verdict():
    readme = (make_vectors.VECTORS / "README.md").read_text("utf-8")
    for vector in VECTORS:
        assert make_vectors.readme_row(vector) in readme, (
            f"{vector.name} missing from vectors/README.md: run `python conformance_tests/make_vectors.py`")


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: f"{v.folder.parent.name}/{v.name}")
def test_manifest_matches_files(vector):
    manifest = json.loads((vector.folder / "manifest.json").read_text())
    listed = {e["path"] for e in manifest["files"]}
    for entry in manifest["files"]:
        data = (vector.folder / entry["path"]).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (entry["size"], entry["sha256"]), entry["path"]
    on_disk = {p.relative_to(vector.folder).as_posix() for p in (vector.folder / "dataset").rglob("*")
               if p.is_file()}
    assert on_disk <= listed


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: f"{v.folder.parent.name}/{v.name}")
def test_case_json_is_complete(vector):
    assert vector.case["verdict"] in ("valid", "invalid")
    assert vector.case["format_version"] in (1, 2)
    assert isinstance(vector.case["findings"], list)
    if vector.valid:  # a valid vector lists findings only when derived by a defect (its warnings)
        assert vector.examples() is not None
        assert not vector.findings or vector.case["source"]
    else:
        assert vector.findings and (vector.case["source"] or vector.malicious)
        assert vector.examples() is not None, "invalid vectors name expected examples (their source's)"


def test_tagged_json_round_trips_expected_examples():
    for vector in VECTORS:
        if vector.valid:
            for example in vector.examples():
                assert strict_equal(example, decode_example(json.loads(json.dumps(encode_example(example)))))
