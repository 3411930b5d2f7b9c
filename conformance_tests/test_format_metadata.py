"""JSON metadata: strict parsing, the JSON Schemas, and the checksummed JSON of version 2."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atlas_format import metadata
from atlas_format.errors import ChecksumError, MetadataError

CK = "xxh3_64:0123456789abcdef"
WRITER = {"library": "torch-atlas-ds", "version": "0.2.0"}


def v2_root() -> dict:
    return {
        "checksum": CK, "version": 2, "format": "atlas", "codec": "zstd", "dictionary": "shared",
        "compression_level": 3, "compression_dict_size": 0.01, "block_size": 8, "shard_size": 64,
        "checksum_algorithm": "xxh3_64", "num_examples": 70, "max_block_raw_size": 900,
        "shards": [{"name": "000000", "num_examples": 64, "num_blocks": 8, "data_size": 3000, "index_size": 256,
                    "meta_checksum": CK, "dictionary": "shared"},
                   {"name": "000001", "num_examples": 6, "num_blocks": 1, "data_size": 300, "index_size": 88,
                    "meta_checksum": CK, "dictionary": "shared"}],
        "shared_dictionary": {"file": "zstd_dict.bin", "size": 1024, "dict_id": 77, "checksum": CK},
        "generation": 1, "writer": WRITER, "user_metadata": {"source": "test", "nested": [1, {"a": None}]},
    }


def v2_shard() -> dict:
    return {
        "checksum": CK, "version": 2, "shard": "000000", "codec": "lz4", "dictionary": "none",
        "compression_level": 0, "block_size": 8, "num_examples": 64, "num_blocks": 8, "data_size": 3000,
        "max_block_raw_size": 900, "dict_id": 0,
        "index": {"file": "index.bin", "size": 256, "checksum": CK}, "dictionary_file": None,
        "checksum_algorithm": "xxh3_64", "writer": WRITER,
    }


def v1_root() -> dict:
    return {"version": 1, "shard_sizes": [40, 40, 20], "compression_strategy": 2}


def v1_shard() -> dict:
    return {"version": 1, "block_size": 8, "stored_examples": 40, "compression_strategy": 2,
            "compression_level": 3, "compression_dict_size": 0.01}


DOCS = {"v1-root": v1_root, "v1-shard": v1_shard, "v2-root": v2_root, "v2-shard": v2_shard}


@pytest.mark.parametrize("name", sorted(DOCS))
def test_schema_accepts_valid_document_and_unknown_members(name):
    doc = DOCS[name]()
    assert metadata.schema_errors(doc, name) == []
    doc["some_future_member"] = {"x": 1}
    errors = metadata.schema_errors(doc, name)
    if name.startswith("v2"):
        assert errors == []  # V2-COMPAT-2: unknown members are allowed
    else:  # V1-META-1/-2: the original unpacks meta.json into a NamedTuple, an unknown key is a TypeError
        assert any("some_future_member" in message for _, message in errors), errors


@pytest.mark.parametrize("name", sorted(DOCS))
def test_schema_rejects_missing_fields(name):
    for key in DOCS[name]():
        doc = DOCS[name]()
        del doc[key]
        errors = metadata.schema_errors(doc, name)
        assert errors and any(key in msg for _, msg in errors), key


@pytest.mark.parametrize("name", sorted(DOCS))
@pytest.mark.parametrize("version", [0, 3, 99, True, "1", "2", 1.5, None])
def test_schema_rejects_unknown_versions(name, version):
    doc = DOCS[name]()
    if version == doc["version"] and type(version) is int:
        return
    doc["version"] = version
    assert metadata.schema_errors(doc, name)


WRONG_TYPES = {
    "v1-root": [("shard_sizes", [1, "2"]), ("shard_sizes", 3), ("compression_strategy", 4),
                ("compression_strategy", "2"), ("shard_sizes", [-1])],
    "v1-shard": [("block_size", 0), ("block_size", 1.5), ("stored_examples", -1), ("compression_dict_size", 1.5),
                 ("compression_level", "3"), ("compression_strategy", True)],
    "v2-root": [("codec", "gzip"), ("dictionary", "both"), ("block_size", 0), ("num_examples", "70"),
                ("shards", {}), ("user_metadata", []), ("checksum_algorithm", "md5"), ("format", "other"),
                ("max_block_raw_size", 2**31), ("generation", 0), ("shared_dictionary", "zstd_dict.bin")],
    "v2-shard": [("shard", "0"), ("shard", "00000a"), ("codec", 1), ("dict_id", -1), ("index", None),
                 ("num_blocks", 1.5), ("writer", {"library": "x"}), ("checksum", "xxh3_64:XYZ")],
}


@pytest.mark.parametrize(("name", "key", "value"), [(n, k, v) for n, cases in WRONG_TYPES.items() for k, v in cases])
def test_schema_rejects_wrong_types(name, key, value):
    doc = DOCS[name]()
    doc[key] = value
    errors = metadata.schema_errors(doc, name)
    assert errors, (key, value)
    with pytest.raises(MetadataError) as info:
        metadata.validate_schema(doc, name, path="some/meta.json")
    assert "some/meta.json" in str(info.value)


def test_schema_rejects_bad_nested_shard_entry():
    doc = v2_root()
    doc["shards"][1]["name"] = "1"
    doc["shards"][0]["num_blocks"] = -2
    pointers = [ptr for ptr, _ in metadata.schema_errors(doc, "v2-root")]
    assert "/shards/0/num_blocks" in pointers and "/shards/1/name" in pointers


def test_parse_json_is_strict():
    with pytest.raises(MetadataError):
        metadata.parse_json(b'{"a": NaN}')
    with pytest.raises(MetadataError):
        metadata.parse_json(b'{"a": 1, "a": 2}')
    with pytest.raises(MetadataError):
        metadata.parse_json(b'{"a": "\xff"}')
    with pytest.raises(MetadataError) as info:
        metadata.parse_json(b'{"a": 1,,}', path="r/meta.json")
    assert info.value.offset == 8 and "r/meta.json" in str(info.value)
    from atlas_format.constants import Limits
    with pytest.raises(MetadataError):
        metadata.parse_json(b"[" + b"0," * 100 + b"0]", limits=Limits(max_metadata_size=50))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)


@given(st.dictionaries(st.text(min_size=1, max_size=10).filter(lambda k: k != "checksum"), json_values,
                       min_size=1, max_size=6))
def test_checksummed_json_round_trips_and_is_plain_json(doc):
    data = metadata.dump_checksummed_json(doc)
    assert data.startswith(metadata.CHECKSUM_PREFIX)
    text = metadata.verify_checksummed_json(data)
    parsed = json.loads(data)
    assert parsed.pop("checksum") == text
    assert parsed == doc


@given(st.data())
def test_checksummed_json_detects_every_byte_flip(data):
    raw = bytearray(metadata.dump_checksummed_json(v2_shard()))
    position = data.draw(st.integers(0, len(raw) - 1))
    bit = data.draw(st.integers(0, 7))
    raw[position] ^= 1 << bit
    with pytest.raises((ChecksumError, MetadataError)):
        metadata.verify_checksummed_json(bytes(raw), path="s/meta.json")


def test_checksummed_json_rejects_missing_checksum_line():
    plain = json.dumps(v2_shard(), indent=2).encode()
    with pytest.raises(MetadataError) as info:
        metadata.verify_checksummed_json(b'{\n  "version": 2\n}', path="x/meta.json")
    assert "x/meta.json" in str(info.value)
    data = metadata.dump_checksummed_json(copy.deepcopy(v2_shard()))
    assert metadata.verify_checksummed_json(data)
    with pytest.raises(ChecksumError):  # a plausible checksum line whose value is wrong
        metadata.verify_checksummed_json(plain)
    with pytest.raises(MetadataError):
        metadata.verify_checksummed_json(b'{\n  "checksum": "xxh3_64:12",\n  "version": 2\n}')
