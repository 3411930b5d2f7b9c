"""torch_atlas_ds version 2: round trips, checksums, limits, errors, atomic writes and append."""

from __future__ import annotations

import inspect
import math
import os
import pickle
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_reference_helpers import reseal, rewrite_meta, same, tree_digest

import torch_atlas_ds
from atlas_format.index_v2 import INDEX_ENTRY_DTYPE
from atlas_format.metadata import parse_json
from torch_atlas_ds import (
    AtlasDataset,
    AtlasDatasetMetadata,
    AtlasDatasetShard,
    AtlasDatasetShardMetadata,
    AtlasDatasetShardWriter,
    AtlasDatasetWriter,
    AtlasError,
    ChecksumError,
    Codec,
    CodecError,
    CompressionStrategy,
    FormatError,
    Framing,
    IncompleteDatasetError,
    LimitError,
    MetadataError,
    MissingShardError,
    VersionError,
)
from torch_atlas_ds import writer as writer_module

# The unsuffixed variants are framing block (the default before 0.3.0, what these tests were written for);
# "default" is the writers' default (grouped with zstd), tested on its own in test_reference_grouped.py too.
VARIANTS = {
    "none": {"compression_strategy": CompressionStrategy.NO_COMPRESSION, "framing": "block"},
    "zstd": {"compression_strategy": CompressionStrategy.STANDARD_COMPRESSION, "framing": "block"},
    "shared": {"compression_strategy": CompressionStrategy.SHARED_DICTIONARY_COMPRESSION, "framing": "block"},
    "shard": {"compression_strategy": CompressionStrategy.DICTIONARY_COMPRESSION, "framing": "block"},
    "default": {},
    "lz4": {"codec": Codec.LZ4, "framing": "block"},
    "lz4-label": {"codec": "lz4", "compression_level": 0, "framing": "block"},
    "shared-grouped": {"compression_strategy": CompressionStrategy.SHARED_DICTIONARY_COMPRESSION,
                       "framing": Framing.GROUPED},
    "shard-grouped": {"compression_strategy": CompressionStrategy.DICTIONARY_COMPRESSION, "framing": "grouped"},
    "none-grouped": {"compression_strategy": CompressionStrategy.NO_COMPRESSION, "framing": "grouped"},
    "lz4-grouped": {"codec": Codec.LZ4, "framing": "grouped"},
    "shared-frames": {"compression_strategy": CompressionStrategy.SHARED_DICTIONARY_COMPRESSION,
                      "framing": Framing.EXAMPLE},
    "shard-frames": {"compression_strategy": CompressionStrategy.DICTIONARY_COMPRESSION, "framing": "example"},
    "zstd-frames": {"compression_strategy": CompressionStrategy.STANDARD_COMPRESSION, "framing": "example"},
    "lz4-frames": {"codec": Codec.LZ4, "framing": Framing.EXAMPLE},
    "shared-list": {"compression_strategy": CompressionStrategy.SHARED_DICTIONARY_COMPRESSION,
                    "framing": Framing.LIST},
    "shard-list": {"compression_strategy": CompressionStrategy.DICTIONARY_COMPRESSION, "framing": "list"},
    "lz4-list": {"codec": Codec.LZ4, "framing": Framing.LIST},
    "none-list": {"compression_strategy": CompressionStrategy.NO_COMPRESSION, "framing": "list"},
}


def example(i: int) -> dict:
    return {"id": i, "text": "word " * (i % 37), "score": i / 7, "flag": i % 3 == 0, "neg": -0.0,
            "arr": np.arange(i % 5, dtype=np.int16)}


def write(root: Path, n: int, shard_size: int = 100, block_size: int = 8, **kw) -> list:
    examples = [example(i) for i in range(n)]
    with AtlasDatasetWriter(root, shard_size, block_size, **kw) as w:
        for ex in examples:
            w.add_example(ex)
    return examples


# -- API surface ---------------------------------------------------------------------


def test_original_api_names_and_signatures():
    for name in ("AtlasDataset", "AtlasDatasetShard", "AtlasDatasetWriter", "AtlasDatasetShardWriter",
                 "CompressionStrategy", "AtlasDatasetMetadata", "AtlasDatasetShardMetadata"):
        assert hasattr(torch_atlas_ds, name)
    assert [m.name for m in CompressionStrategy] == ["NO_COMPRESSION", "STANDARD_COMPRESSION",
                                                     "SHARED_DICTIONARY_COMPRESSION", "DICTIONARY_COMPRESSION"]
    assert AtlasDatasetMetadata._fields == ("version", "shard_sizes", "compression_strategy")
    assert AtlasDatasetShardMetadata._fields == ("version", "block_size", "stored_examples", "compression_strategy",
                                                 "compression_level", "compression_dict_size")
    params = list(inspect.signature(AtlasDatasetWriter).parameters)
    assert params[:6] == ["path", "shard_size", "block_size", "compression_strategy", "compression_level",
                          "compression_dict_size"]
    params = list(inspect.signature(AtlasDatasetShardWriter).parameters)
    assert params[:6] == ["path", "block_size", "compression_strategy", "compression_level", "compression_dict",
                          "compression_dict_size"]
    assert list(inspect.signature(AtlasDataset).parameters)[:2] == ["root", "mmap_index"]
    assert list(inspect.signature(AtlasDatasetShard).parameters)[:3] == ["root", "mmap_index",
                                                                         "compression_dict_bytes"]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("mmap_index", [True, False])
def test_round_trip_every_strategy(tmp_path, variant, mmap_index):
    root = tmp_path / "d"
    examples = write(root, 230, **VARIANTS[variant])
    ds = AtlasDataset(root, mmap_index=mmap_index)
    assert len(ds) == 230 and ds.version == 2
    assert all(same(ds[i], ex) for i, ex in enumerate(examples))
    assert all(same(a, b) for a, b in zip(ds, examples, strict=True))
    assert same(ds[-1], examples[-1]) and same(ds[-230], examples[0])
    for bad in (230, -231, 10**9):
        with pytest.raises(IndexError):
            ds[bad]
    with pytest.raises(TypeError):
        ds[1.0]
    idx = [229, 0, 5, 5, 117, -1, 64]
    assert all(same(g, examples[i]) for g, i in zip(ds.__getitems__(idx), idx, strict=True))
    doc = parse_json((root / "meta.json").read_bytes())
    assert [s["name"] for s in doc["shards"]] == ["000000", "000001", "000002"]
    assert ds.metadata.shard_sizes == [100, 100, 30]
    assert not [p for p in tmp_path.iterdir() if p.name != "d"]


def test_dictionary_modes_and_fallbacks(tmp_path):
    write(tmp_path / "shared", 230, compression_strategy=2)
    doc = parse_json((tmp_path / "shared" / "meta.json").read_bytes())
    assert doc["dictionary"] == "shared" and doc["shared_dictionary"]["dict_id"] > 0
    assert (tmp_path / "shared" / "zstd_dict.bin").is_file()
    # shard 0 has 6 blocks: the whole dataset falls back to no dictionary
    write(tmp_path / "fallback", 80, shard_size=48, compression_strategy=2)
    doc = parse_json((tmp_path / "fallback" / "meta.json").read_bytes())
    assert doc["dictionary"] == "none" and doc["shared_dictionary"] is None
    assert {s["dictionary"] for s in doc["shards"]} == {"none"}
    assert not (tmp_path / "fallback" / "zstd_dict.bin").exists()
    # per-shard dictionaries: the last shard (30 examples, 4 blocks) falls back, the root keeps "shard"
    write(tmp_path / "own", 230, compression_strategy=3)
    doc = parse_json((tmp_path / "own" / "meta.json").read_bytes())
    assert doc["dictionary"] == "shard" and [s["dictionary"] for s in doc["shards"]] == ["shard", "shard", "none"]
    assert (tmp_path / "own" / "000000" / "zstd_dict.bin").is_file()
    assert not (tmp_path / "own" / "000002" / "zstd_dict.bin").exists()
    for name in ("shared", "fallback", "own"):
        assert AtlasDataset(tmp_path / name)[40]["id"] == 40


def test_lz4_keyword_rules(tmp_path):
    write(tmp_path / "a", 20, codec=Codec.LZ4)
    assert parse_json((tmp_path / "a" / "meta.json").read_bytes())["codec"] == "lz4"
    for strategy in (CompressionStrategy.SHARED_DICTIONARY_COMPRESSION, CompressionStrategy.DICTIONARY_COMPRESSION):
        with pytest.raises(ValueError):
            AtlasDatasetWriter(tmp_path / "b", 10, 2, strategy, codec=Codec.LZ4)
    with pytest.raises(ValueError):
        AtlasDatasetWriter(tmp_path / "c", 10, 2, codec="lz4", format_version=1)
    with pytest.raises(ValueError):
        AtlasDatasetWriter(tmp_path / "d", 0, 2)  # shard_size < 1 refused for new v2 datasets
    assert not list(tmp_path.glob(".atlas-tmp-*"))


def test_empty_dataset_and_existing_target(tmp_path):
    with AtlasDatasetWriter(tmp_path / "e", 10, 4):
        pass
    assert len(AtlasDataset(tmp_path / "e")) == 0 and list(AtlasDataset(tmp_path / "e")) == []
    with pytest.raises(FileExistsError):
        AtlasDatasetWriter(tmp_path / "e", 10, 4)
    with pytest.raises(IncompleteDatasetError):
        AtlasDataset(tmp_path)


def test_shard_writer_and_shard_reader_v2(tmp_path):
    with AtlasDatasetShardWriter(tmp_path / "000003", 4) as w:
        for i in range(50):
            w.add_example({"i": i})
    shard = AtlasDatasetShard(tmp_path / "000003")
    assert len(shard) == 50 and shard[49] == {"i": 49} and shard.metadata.compression_strategy == 3
    assert [x["i"] for x in shard] == list(range(50))


def test_user_metadata_and_writer_record(tmp_path):
    write(tmp_path / "d", 5, user_metadata={"source": "unit test", "n": 5})
    ds = AtlasDataset(tmp_path / "d")
    assert ds.v2_metadata["user_metadata"] == {"source": "unit test", "n": 5}
    assert ds.v2_metadata["writer"]["library"] == "torch-atlas-ds" and ds.v2_metadata["generation"] == 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    | st.tuples(inner, inner),
    max_leaves=10,
)


@settings(max_examples=8, deadline=None)
@given(examples=st.lists(json_values, max_size=40), block_size=st.integers(1, 9), shard_size=st.integers(1, 25),
       variant=st.sampled_from(sorted(VARIANTS)))
def test_round_trip_property(examples, block_size, shard_size, variant):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "d"
        with AtlasDatasetWriter(root, shard_size, block_size, **VARIANTS[variant]) as w:
            for ex in examples:
                w.add_example(ex)
        ds = AtlasDataset(root)
        assert len(ds) == len(examples)
        assert all(same(ds[i], ex) for i, ex in enumerate(examples))
        assert all(same(a, b) for a, b in zip(ds, examples, strict=True))


# -- one example without its neighbours -------------------------------------------------


class Bomb:
    """Unpickling it raises: proves a neighbour's pickle is never touched."""

    def __reduce__(self):
        return (_explode, ())


def _explode():
    raise RuntimeError("neighbour was unpickled")


@pytest.mark.parametrize("variant", ["none", "shared", "lz4", "shared-frames", "lz4-frames"])
def test_one_example_is_decoded_without_its_neighbours(tmp_path, variant):
    root = tmp_path / "d"
    with AtlasDatasetWriter(root, 100, 4, **VARIANTS[variant]) as w:
        for i in range(60):
            w.add_example(Bomb() if i % 4 == 1 else {"i": i})
    ds = AtlasDataset(root)
    assert ds[0] == {"i": 0} and ds[2] == {"i": 2} and ds[59] == {"i": 59}
    with pytest.raises(FormatError) as info:
        ds[1]
    assert "neighbour was unpickled" in str(info.value) and info.value.block == 0


def test_codec_none_reads_only_the_example_bytes(tmp_path):
    root = tmp_path / "d"
    with AtlasDatasetWriter(root, 100, 4, CompressionStrategy.NO_COMPRESSION, framing="block") as w:
        for i in range(8):
            w.add_example({"i": i, "pad": "p" * 50})
    data = bytearray((root / "000000" / "data.bin").read_bytes())
    first = data.index(b"p" * 50)  # example 0's pickle; scribble over it
    data[first:first + 50] = b"\x00" * 50
    (root / "000000" / "data.bin").write_bytes(bytes(data))
    ds = AtlasDataset(root, verify_checksums=False)
    assert ds[1] == {"i": 1, "pad": "p" * 50}  # the neighbour's corruption is never read
    with pytest.raises(ChecksumError):
        AtlasDataset(root)[1]


# -- integrity -------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["none", "shared", "lz4", "shared-frames", "lz4-frames", "shared-list",
                                     "none-list"])
def test_flipped_byte_raises_checksum_error_naming_the_place(tmp_path, variant):
    root = tmp_path / "d"
    write(root, 64, shard_size=32, block_size=4, **VARIANTS[variant])
    entries = np.frombuffer((root / "000001" / "index.bin").read_bytes(), dtype=INDEX_ENTRY_DTYPE, offset=64)
    offset = int(entries[2]["offset"])
    data = bytearray((root / "000001" / "data.bin").read_bytes())
    data[offset + int(entries[2]["stored_size"]) // 2] ^= 0x40
    (root / "000001" / "data.bin").write_bytes(bytes(data))
    ds = AtlasDataset(root)
    assert ds[32 + 7]["id"] == 39  # other blocks still read
    with pytest.raises(ChecksumError) as info:
        ds[32 + 9]
    err = info.value
    assert (err.shard, err.block, err.offset) == ("000001", 2, offset)
    assert err.path.endswith(os.path.join("000001", "data.bin"))
    for part in ("data.bin", "shard 000001", "block 2", f"byte offset {offset}"):
        assert part in str(err)


def test_corrupt_metadata_and_index_are_refused_at_open(tmp_path):
    root = tmp_path / "d"
    write(root, 40, shard_size=20, block_size=4)
    meta = root / "000000" / "meta.json"
    original = meta.read_bytes()
    meta.write_bytes(original.replace(b'"num_examples": 20', b'"num_examples": 21'))
    with pytest.raises(ChecksumError):
        AtlasDataset(root)
    meta.write_bytes(original)
    index = root / "000001" / "index.bin"
    raw = bytearray(index.read_bytes())
    raw[70] ^= 1
    index.write_bytes(bytes(raw))
    with pytest.raises(ChecksumError) as info:
        AtlasDataset(root)
    assert "index.bin" in str(info.value) and info.value.shard == "000001"


def test_huge_declared_zstd_frame_is_refused_before_allocating(tmp_path):
    root = tmp_path / "d"
    write(root, 16, block_size=4, compression_strategy=CompressionStrategy.STANDARD_COMPRESSION, framing="block")
    frame = bytes([0x28, 0xB5, 0x2F, 0xFD, 0xE0]) + (1 << 40).to_bytes(8, "little") + b"\x01\x00\x00"
    data = bytearray((root / "000000" / "data.bin").read_bytes())
    data[:len(frame)] = frame
    (root / "000000" / "data.bin").write_bytes(bytes(data))
    reseal(root)  # checksums now match: only the size check stands between the frame and a 1 TiB allocation
    with pytest.raises(LimitError) as info:
        AtlasDataset(root)[0]
    assert info.value.block == 0 and info.value.shard == "000000" and "before allocating" in str(info.value)


def test_versions_and_codecs_are_checked_at_open(tmp_path):
    root = tmp_path / "d"
    write(root, 10, block_size=4, compression_strategy=CompressionStrategy.STANDARD_COMPRESSION)
    rewrite_meta(root / "000000" / "meta.json", codec="brotli")
    reseal_root = parse_json((root / "meta.json").read_bytes())
    assert reseal_root["codec"] == "zstd"
    with pytest.raises(CodecError):
        AtlasDataset(root)
    rewrite_meta(root / "meta.json", codec="brotli")
    with pytest.raises(CodecError):
        AtlasDataset(root)
    for version in (3, True, "2", 0):
        rewrite_meta(root / "meta.json", version=version)
        with pytest.raises(VersionError):
            AtlasDataset(root)


def test_missing_shard_and_header_disagreement(tmp_path):
    root = tmp_path / "d"
    write(root, 40, shard_size=20, block_size=4)
    rewrite_meta(root / "000001" / "meta.json", block_size=5)
    reseal(root)
    with pytest.raises(FormatError) as info:
        AtlasDataset(root)
    assert "num_blocks" in str(info.value) or "block_size" in str(info.value)
    os.rename(root / "000001", tmp_path / "elsewhere")
    with pytest.raises(MissingShardError):
        AtlasDataset(root)


def test_unknown_json_members_are_ignored(tmp_path):
    root = tmp_path / "d"
    write(root, 10, block_size=4)
    rewrite_meta(root / "000000" / "meta.json", future_member={"x": 1})
    reseal(root)
    rewrite_meta(root / "meta.json", another_future_member=[1, 2])
    assert AtlasDataset(root)[9]["id"] == 9


def test_limits_are_configurable(tmp_path):
    root = tmp_path / "d"
    write(root, 10, block_size=4, compression_strategy=CompressionStrategy.STANDARD_COMPRESSION)
    with pytest.raises(LimitError):
        AtlasDataset(root, limits=torch_atlas_ds.Limits(max_block_raw_size=16))


def test_pickled_dataset_is_small_and_holds_no_handles(tmp_path):
    root = tmp_path / "d"
    write(root, 300, shard_size=100)
    ds = AtlasDataset(root)
    ds[5]
    blob = pickle.dumps(ds)
    assert len(blob) < 64_000
    clone = pickle.loads(blob)
    assert clone[299]["id"] == 299 and clone[5]["id"] == 5


# -- atomic writes -------------------------------------------------------------------------


def test_exception_inside_with_publishes_nothing(tmp_path):
    with pytest.raises(RuntimeError, match="boom"), AtlasDatasetWriter(tmp_path / "d", 10, 4) as w:
        for i in range(35):
            w.add_example(i)
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_v1_exception_inside_with_publishes_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt), AtlasDatasetWriter(tmp_path / "d", 10, 4, format_version=1) as w:
        w.add_example(1)
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_unpicklable_example_aborts_the_write(tmp_path):
    with pytest.raises((TypeError, AttributeError, pickle.PicklingError)), \
            AtlasDatasetWriter(tmp_path / "d", 10, 4) as w:
        w.add_example(lambda: 0)
    assert list(tmp_path.iterdir()) == []


def test_folder_is_absent_until_close(tmp_path):
    w = AtlasDatasetWriter(tmp_path / "d", 10, 4)
    for i in range(25):
        w.add_example(i)
    assert not (tmp_path / "d").exists()
    w.close()
    assert list(AtlasDataset(tmp_path / "d")) == list(range(25))
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


# -- append --------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["shared", "shard", "lz4", "none", "shared-frames", "lz4-frames", "shared-list",
                                     "none-list"])
def test_append_adds_shards_and_old_readers_keep_reading(tmp_path, variant):
    root = tmp_path / "d"
    examples = write(root, 130, **VARIANTS[variant])
    old = AtlasDataset(root)
    old_dict = (root / "zstd_dict.bin").read_bytes() if (root / "zstd_dict.bin").exists() else None
    more = [example(1000 + i) for i in range(150)]
    with AtlasDatasetWriter.append(root, user_metadata={"appended": True}) as w:
        for ex in more:
            w.add_example(ex)
    new = AtlasDataset(root)
    assert len(new) == 280 and new.metadata.shard_sizes == [100, 30, 100, 50]
    assert all(same(new[i], ex) for i, ex in enumerate(examples + more))
    assert new.v2_metadata["generation"] == 2 and new.v2_metadata["user_metadata"] == {"appended": True}
    assert new.v2_metadata["codec"] == old.v2_metadata["codec"]
    assert all(s.framing == old.shards[0].framing for s in new.shards)
    if old_dict is not None:
        assert (root / "zstd_dict.bin").read_bytes() == old_dict
    assert len(old) == 130 and all(same(old[i], ex) for i, ex in enumerate(examples))
    assert not list(root.glob(".atlas-tmp-*"))


def test_append_exception_leaves_the_dataset_exactly_as_it_was(tmp_path):
    root = tmp_path / "d"
    examples = write(root, 130)
    before = tree_digest(root)
    old = AtlasDataset(root)
    with pytest.raises(RuntimeError), AtlasDatasetWriter.append(root) as w:
        for i in range(250):
            w.add_example(example(i))
        raise RuntimeError("crash during append")
    assert tree_digest(root) == before and sorted(p.name for p in root.iterdir()) == sorted(
        ["meta.json", "zstd_dict.bin", "000000", "000001"])
    assert all(same(old[i], ex) for i, ex in enumerate(examples))


def test_append_failure_at_the_commit_point_rolls_back(tmp_path, monkeypatch):
    root = tmp_path / "d"
    examples = write(root, 130)
    before = tree_digest(root)
    old = AtlasDataset(root)

    def failing_replace(src, dst):
        raise OSError("disk full at the commit point")

    monkeypatch.setattr(writer_module, "_replace", failing_replace)
    w = AtlasDatasetWriter.append(root)
    for i in range(250):
        w.add_example(example(i))
    with pytest.raises(OSError, match="commit point"):
        w.close()
    assert tree_digest(root) == before
    assert not list(root.glob(".atlas-tmp-*"))
    assert len(old) == 130 and all(same(old[i], ex) for i, ex in enumerate(examples))
    assert len(AtlasDataset(root)) == 130


def test_append_refuses_v1(tmp_path):
    write(tmp_path / "d", 10, format_version=1)
    with pytest.raises(VersionError):
        AtlasDatasetWriter.append(tmp_path / "d")


def test_negative_zero_and_float_types_survive(tmp_path):
    values = [0.0, -0.0, 1, 1.0, True, math.inf, -math.inf, 5e-324, 2**80, "\x00"]
    with AtlasDatasetWriter(tmp_path / "d", 4, 3) as w:
        for v in values:
            w.add_example(v)
    ds = AtlasDataset(tmp_path / "d")
    assert all(same(ds[i], v) for i, v in enumerate(values))


def test_index_header_and_entry_extensions_are_skipped(tmp_path):
    from atlas_format.index_v2 import IndexHeader, compute_index_checksum
    from atlas_format.metadata import dump_checksummed_json

    root = tmp_path / "d"
    examples = write(root, 30, shard_size=100, block_size=4)
    folder = root / "000000"
    raw = (folder / "index.bin").read_bytes()
    header = dict(IndexHeader.parse(raw[:64]))
    for key in ("_io", "magic"):
        header.pop(key, None)
    entries = np.frombuffer(raw, dtype=INDEX_ENTRY_DTYPE, offset=64)
    header.update(header_size=80, entry_size=32, checksum=0)
    body = b"".join(e.tobytes() + b"\xee" * 8 for e in entries)
    draft = IndexHeader.build(header) + b"\xdd" * 16 + body
    header["checksum"] = compute_index_checksum(draft)
    index = IndexHeader.build(header) + b"\xdd" * 16 + body
    (folder / "index.bin").write_bytes(index)
    doc = parse_json((folder / "meta.json").read_bytes())
    doc["index"].update(size=len(index), checksum=f"xxh3_64:{header['checksum']:016x}")
    meta = dump_checksummed_json(doc)
    (folder / "meta.json").write_bytes(meta)
    root_doc = parse_json((root / "meta.json").read_bytes())
    root_doc["shards"][0].update(index_size=len(index),
                                 meta_checksum=meta[len(b'{\n  "checksum": "'):meta.index(b'",\n')].decode())
    (root / "meta.json").write_bytes(dump_checksummed_json(root_doc))
    ds = AtlasDataset(root)
    assert all(same(ds[i], ex) for i, ex in enumerate(examples))


def test_shared_dictionary_is_written_before_the_shards_that_use_it(tmp_path, monkeypatch):
    seen = []
    original = writer_module.write_file

    def spy(path, data):
        seen.append(Path(path).relative_to(Path(path).parents[1] if Path(path).parent.name.isdigit()
                                            else Path(path).parent).as_posix())
        original(path, data)

    monkeypatch.setattr(writer_module, "write_file", spy)
    write(tmp_path / "d", 230, compression_strategy=CompressionStrategy.SHARED_DICTIONARY_COMPRESSION)
    assert seen.index("zstd_dict.bin") < seen.index("000000/index.bin")
    assert seen[-1] == "meta.json"


def test_incomplete_and_interrupted_states(tmp_path):
    root = tmp_path / "d"
    write(root, 30)
    (root / ".atlas-tmp-leftover").mkdir()  # an interrupted append's staging folder is ignored
    (root / "000099").mkdir()  # a folder not listed in root meta.json is ignored
    assert len(AtlasDataset(root)) == 30
    os.unlink(root / "meta.json")
    with pytest.raises(IncompleteDatasetError):
        AtlasDataset(root)


MUTATION_SOURCES = {
    "v2-shared": {}, "v2-shard": {"compression_strategy": 3}, "v2-none": {"compression_strategy": 0},
    "v2-lz4": {"codec": "lz4"}, "v1-shared": {"format_version": 1},
    "v2-shared-frames": {"framing": "example"}, "v2-lz4-frames": {"codec": "lz4", "framing": "example"},
    "v1-shard": {"format_version": 1, "compression_strategy": 3}, "v1-none": {"format_version": 1,
                                                                             "compression_strategy": 0},
}


def test_random_mutations_raise_only_atlas_errors(tmp_path):
    """Flipped, zeroed or truncated bytes anywhere: the reader returns data or raises an AtlasError, nothing else."""
    import random
    import shutil

    from torch_atlas_ds import AtlasError

    sources = {}
    for name, kw in MUTATION_SOURCES.items():
        with AtlasDatasetWriter(tmp_path / name, 60, 4, **kw) as w:
            for i in range(130):
                w.add_example({"i": i, "s": "t" * (i % 20)})
        sources[name] = tmp_path / name
    rng = random.Random(2024)
    for trial in range(140):
        name = rng.choice(sorted(sources))
        dst = tmp_path / f"m{trial}"
        shutil.copytree(sources[name], dst)
        target = rng.choice(sorted(p for p in dst.rglob("*") if p.is_file()))
        data = bytearray(target.read_bytes())
        pos = rng.randrange(len(data))
        kind = rng.choice(["flip", "truncate", "zero"])
        if kind == "flip":
            data[pos] ^= 1 << rng.randrange(8)
        elif kind == "truncate":
            del data[pos:]
        else:
            data[pos:pos + 8] = bytes(len(data[pos:pos + 8]))
        target.write_bytes(bytes(data))
        try:
            ds = AtlasDataset(dst, mmap_index=bool(trial % 2))
            for i in range(len(ds)):
                ds[i]
            ds.__getitems__(list(range(len(ds))))
        except AtlasError:
            pass
        except Exception as exc:  # noqa: BLE001 - the assertion names what escaped
            pytest.fail(f"{kind} at {pos} of {target.relative_to(dst)} in {name}: {type(exc).__name__}: {exc}")
        shutil.rmtree(dst)


def test_corrupt_v1_dictionary_is_a_format_error(tmp_path):
    import shutil

    from conftest import SEED_V1

    root = tmp_path / "d"
    shutil.copytree(SEED_V1 / "03-s2-shared-dict" / "dataset", root)
    data = bytearray((root / "zstd_dict.bin").read_bytes())
    data[8] ^= 1
    (root / "zstd_dict.bin").write_bytes(bytes(data))
    with pytest.raises(FormatError) as info:
        AtlasDataset(root)
    assert "zstd_dict.bin" in str(info.value)


@pytest.mark.parametrize("format_version", [1, 2])
def test_shard_writer_with_a_shared_dictionary(tmp_path, format_version):
    import zstandard

    samples = [pickle.dumps([{"k": i, "v": "shared words " * (i % 9)}] * 4) for i in range(40)]
    dictionary = zstandard.train_dictionary(2048, samples)
    folder = tmp_path / ("7" if format_version == 1 else "000007")
    with AtlasDatasetShardWriter(folder, 4, CompressionStrategy.SHARED_DICTIONARY_COMPRESSION,
                                 compression_dict=dictionary, format_version=format_version) as w:
        for i in range(30):
            w.add_example({"k": i, "v": "shared words " * (i % 9)})
    shard = AtlasDatasetShard(folder, compression_dict_bytes=dictionary.as_bytes())
    assert len(shard) == 30 and shard[-1]["k"] == 29 and shard.metadata.compression_strategy == 2
    with pytest.raises(ValueError):
        AtlasDatasetShardWriter(tmp_path / "x", 4, CompressionStrategy.SHARED_DICTIONARY_COMPRESSION)
    with pytest.raises(FileExistsError):
        AtlasDatasetShardWriter(folder, 4)


def test_writer_arguments_are_validated(tmp_path):
    for bad in ({"block_size": 0}, {"block_size": True}, {"compression_dict_size": 1.5},
                {"format_version": 3}, {"codec": "brotli"}, {"user_metadata": [1]}):
        kw = {"path": tmp_path / "d", "shard_size": 10, "block_size": 4, **bad}
        with pytest.raises((ValueError, TypeError)):
            AtlasDatasetWriter(**kw)
    assert list(tmp_path.iterdir()) == []  # (a missing parent is created: test_writer_recovery.py)


@pytest.mark.parametrize("format_version", [1, 2])
@pytest.mark.parametrize("strategy", [CompressionStrategy.SHARED_DICTIONARY_COMPRESSION,
                                      CompressionStrategy.DICTIONARY_COMPRESSION])
def test_pickled_reader_does_not_carry_dictionaries(tmp_path, format_version, strategy):
    root = tmp_path / "d"
    examples = write(root, 300, shard_size=100, block_size=4, compression_strategy=strategy,
                     compression_dict_size=1.0, format_version=format_version)
    dictionaries = [p.read_bytes() for p in root.rglob("zstd_dict.bin")]
    assert dictionaries
    ds = AtlasDataset(root)
    blob = pickle.dumps(ds)
    assert not any(d[8:200] in blob for d in dictionaries)  # read again by the unpickling process
    clone = pickle.loads(blob)
    assert all(same(clone[i], ex) for i, ex in enumerate(examples))
    shard = AtlasDatasetShard(root / ds.shards[1].path.name)
    assert same(pickle.loads(pickle.dumps(shard))[3], examples[103])


@pytest.mark.parametrize("format_version", [1, 2])
def test_reader_context_manager_and_reopen_after_close(tmp_path, format_version):
    root = tmp_path / "d"
    examples = write(root, 50, shard_size=20, block_size=4, format_version=format_version,
                     compression_strategy=CompressionStrategy.NO_COMPRESSION)
    with AtlasDataset(root) as ds:
        assert same(ds[7], examples[7])
        batch = ds.__getitems__([1, 2, 3, 40])
    assert all(same(b, examples[i]) for b, i in zip(batch, [1, 2, 3, 40], strict=True))
    assert same(ds[49], examples[49])  # closed readers reopen lazily
    ds.close()


@pytest.mark.parametrize("mmap_index", [True, False])
def test_large_shard_index_path_uses_numpy_views(tmp_path, monkeypatch, mmap_index):
    from torch_atlas_ds import shard_v2

    monkeypatch.setattr(shard_v2, "LIST_INDEX_MAX_BLOCKS", 0)
    root = tmp_path / "d"
    examples = write(root, 60, shard_size=30, block_size=4, compression_strategy=CompressionStrategy.NO_COMPRESSION)
    ds = AtlasDataset(root, mmap_index=mmap_index)
    assert isinstance(ds.shards[0]._maps().offsets, np.ndarray)
    assert all(same(ds[i], ex) for i, ex in enumerate(examples))
    assert all(same(a, b) for a, b in zip(ds, examples, strict=True))
    data = bytearray((root / "000001" / "data.bin").read_bytes())
    data[5] ^= 1
    (root / "000001" / "data.bin").write_bytes(bytes(data))
    with pytest.raises(ChecksumError) as info:
        AtlasDataset(root, mmap_index=mmap_index)[30]
    assert info.value.offset == 0 and "xxh3_64:" in str(info.value)
    ds.close()


# -- framing "example" (V2-FRAME) ----------------------------------------------------------


@pytest.mark.parametrize("variant", ["shared", "zstd", "lz4", "shared-list", "lz4-list"])
def test_a_block_read_again_after_its_checksum_decodes_in_one_step_or_fails_located(tmp_path, variant):
    """Blocks whose checksum was verified are decoded in one step when read again (cache of 0 blocks):
    the same examples; a frame whose declared size changed under the mapping still gets the located
    error of the full path, never a wrong answer."""
    import random

    root = tmp_path / "d"
    examples = write(root, 96, shard_size=48, block_size=4, **VARIANTS[variant])
    ds = AtlasDataset(root, block_cache_size=0)
    order = random.Random(5).sample(range(96), 96)
    for _ in range(2):  # the first pass verifies every block, the second decodes them in one step
        assert all(same(ds[i], examples[i]) for i in order)
        assert all(same(a, examples[i]) for a, i in zip(ds.__getitems__(order), order, strict=True))
    _, entries = _stored_blocks(root / "000001")
    offset = int(entries[3]["offset"])
    with open(root / "000001" / "data.bin", "r+b") as f:  # the mapped file changes under the reader
        if variant.startswith("lz4"):
            f.seek(offset + 6)  # the LZ4 frame's 8-byte content size
            f.write((int(entries[3]["raw_size"]) + 1).to_bytes(8, "little"))
        else:
            f.seek(offset + 4)  # zstd frame header descriptor: declare no content size
            f.write(bytes([0x00]))
    with pytest.raises(AtlasError) as info:
        ds[48 + 13]
    assert info.value.block == 3 and info.value.shard == "000001"
    assert same(ds[48 + 17], examples[48 + 17])  # its neighbours still read


def _stored_blocks(folder: Path) -> tuple[bytes, np.ndarray]:
    entries = np.frombuffer((folder / "index.bin").read_bytes(), dtype=INDEX_ENTRY_DTYPE, offset=64)
    return (folder / "data.bin").read_bytes(), entries


@pytest.mark.parametrize("variant", ["shared-frames", "zstd-frames", "lz4-frames"])
def test_example_frames_layout_matches_block_framing(tmp_path, variant):
    """Each stored frame decodes to the same pickle, and raw_size to the same size, as block framing writes."""
    import lz4.frame
    import zstandard

    from atlas_format.block_v2 import parse_block

    kw = VARIANTS[variant]
    block_kw = {**{k: v for k, v in kw.items() if k != "framing"}, "framing": "block"}
    write(tmp_path / "frames", 100, shard_size=100, block_size=8, **kw)
    write(tmp_path / "blocks", 100, shard_size=100, block_size=8, **block_kw)
    f_data, f_entries = _stored_blocks(tmp_path / "frames" / "000000")
    b_ds = AtlasDataset(tmp_path / "blocks")
    b_shard = b_ds.shards[0]
    f_shard = AtlasDataset(tmp_path / "frames").shards[0]
    assert f_shard.framing is Framing.EXAMPLE and b_shard.framing is Framing.BLOCK
    header = (tmp_path / "frames" / "000000" / "index.bin").read_bytes()[17]
    assert header == 0x01 and (tmp_path / "blocks" / "000000" / "index.bin").read_bytes()[17] == 0
    dictionary = (tmp_path / "frames" / "zstd_dict.bin").read_bytes() if kw.get("compression_strategy") == 2 else None
    if kw.get("compression_strategy") == 2:
        same_dict = (tmp_path / "blocks" / "zstd_dict.bin").read_bytes()
        assert (tmp_path / "frames" / "zstd_dict.bin").read_bytes() == same_dict
    dctx = zstandard.ZstdDecompressor(dict_data=zstandard.ZstdCompressionDict(dictionary)) if dictionary else \
        zstandard.ZstdDecompressor()
    for b, entry in enumerate(f_entries):
        stored = f_data[int(entry["offset"]):int(entry["offset"]) + int(entry["stored_size"])]
        table = parse_block(stored)  # the stored block has the decoded block's layout, over frames
        frames = table.examples
        pickles = [dctx.decompress(fr) if kw.get("codec") is None else lz4.frame.decompress(fr) for fr in frames]
        decoded = parse_block(bytes(b_shard.decoded_block(b)))
        assert pickles == list(decoded.examples)
        assert int(entry["raw_size"]) == len(b_shard.decoded_block(b)) == len(f_shard.decoded_block(b))
        assert bytes(f_shard.decoded_block(b)) == bytes(b_shard.decoded_block(b))
    f_meta = parse_json((tmp_path / "frames" / "meta.json").read_bytes())
    b_meta = parse_json((tmp_path / "blocks" / "meta.json").read_bytes())
    assert f_meta["framing"] == "example" and "framing" not in b_meta  # absent means block: byte-stable


def test_example_frames_are_refused_where_they_cannot_apply(tmp_path):
    with pytest.raises(ValueError, match="codec"):
        AtlasDatasetWriter(tmp_path / "a", 10, 4, CompressionStrategy.NO_COMPRESSION, framing="example")
    with pytest.raises(ValueError, match="format_version=2"):
        AtlasDatasetWriter(tmp_path / "b", 10, 4, format_version=1, framing="example")
    with pytest.raises(ValueError, match="framing must be"):
        AtlasDatasetWriter(tmp_path / "c", 10, 4, framing="frame")
    assert not list(tmp_path.iterdir())


def test_framing_disagreements_are_refused_at_open(tmp_path):
    root = tmp_path / "d"
    write(root, 40, shard_size=20, block_size=4, framing="example")
    rewrite_meta(root / "000001" / "meta.json", framing="block")  # index flags still say example
    reseal(root)
    with pytest.raises(MetadataError, match="framing") as meta_info:
        AtlasDataset(root)
    assert meta_info.value.shard == "000001"
    with pytest.raises(FormatError, match="flags") as info:
        AtlasDatasetShard(root / "000001")
    assert info.value.offset == 17 and info.value.path.endswith("index.bin")
    write(tmp_path / "e", 40, shard_size=20, block_size=4, framing="example")
    rewrite_meta(tmp_path / "e" / "meta.json", framing="block")  # root disagrees with its shards
    with pytest.raises(MetadataError, match="framing"):
        AtlasDataset(tmp_path / "e")
    write(tmp_path / "f", 40, shard_size=20, block_size=4, framing="example")
    rewrite_meta(tmp_path / "f" / "000000" / "meta.json", framing="sentence")
    reseal(tmp_path / "f")
    with pytest.raises(AtlasError, match="framing"):
        AtlasDataset(tmp_path / "f")
    write(tmp_path / "g", 40, shard_size=20, block_size=4)
    index = bytearray((tmp_path / "g" / "000000" / "index.bin").read_bytes())
    index[17] = 0x80  # a flag bit this reader does not know
    (tmp_path / "g" / "000000" / "index.bin").write_bytes(bytes(index))
    reseal(tmp_path / "g")
    with pytest.raises(FormatError, match="does not know"):
        AtlasDataset(tmp_path / "g")


def test_example_frame_declaring_a_huge_size_is_refused_before_allocating(tmp_path):
    root = tmp_path / "d"
    with AtlasDatasetWriter(root, 100, 4, CompressionStrategy.STANDARD_COMPRESSION, framing="example") as w:
        for i in range(16):
            w.add_example({"i": i})
    data, entries = _stored_blocks(root / "000000")
    first = 8 + 4 * 4  # block 0 (4 examples): its first frame follows the count and 5 offsets
    assert data[first:first + 4] == bytes([0x28, 0xB5, 0x2F, 0xFD])
    assert data[first + 4] & 0x20 and not data[first + 4] & 0xC3  # single segment, 1-byte content size, no dict id
    patched = bytearray(data)
    patched[first + 5] = 0xFF  # declares 255 bytes, more than the whole block decodes to
    (root / "000000" / "data.bin").write_bytes(bytes(patched))
    reseal(root)
    ds = AtlasDataset(root)
    assert ds[1] == {"i": 1}
    with pytest.raises(LimitError) as info:
        ds[0]
    assert (info.value.block, info.value.position) == (0, 0) and "before allocating" in str(info.value)


def test_example_frames_random_reads_decode_one_frame(tmp_path, monkeypatch):
    """A random read decodes exactly one frame; a batch decodes one frame per requested example."""
    root = tmp_path / "d"
    examples = write(root, 64, shard_size=64, block_size=16, framing="example")
    ds = AtlasDataset(root)
    shard = ds.shards[0]
    calls = []
    original = shard.decode_frame
    monkeypatch.setattr(shard, "decode_frame",
                        lambda frame, b, pos, limit: calls.append((b, pos)) or original(frame, b, pos, limit))
    assert same(ds[17], examples[17]) and calls == [(1, 1)]
    calls.clear()
    got = ds.__getitems__([3, 5, 7, 40])
    assert all(same(g, examples[i]) for g, i in zip(got, [3, 5, 7, 40], strict=True))
    assert sorted(calls) == [(0, 3), (0, 5), (0, 7), (2, 8)]


@pytest.mark.parametrize("variant", ["shared", "none", "shared-frames"])
def test_batched_and_iterated_reads_name_the_example_that_fails(tmp_path, variant):
    root = tmp_path / "d"
    with AtlasDatasetWriter(root, 100, 8, **VARIANTS[variant]) as w:
        for i in range(40):
            w.add_example(Bomb() if i == 21 else {"i": i})
    ds = AtlasDataset(root)
    assert ds.__getitems__([16, 17, 18, 19, 20, 22, 3]) == [{"i": i} for i in (16, 17, 18, 19, 20, 22, 3)]
    with pytest.raises(FormatError) as batch:
        ds.__getitems__([16, 17, 18, 19, 20, 21, 22])
    with pytest.raises(FormatError) as iterated:
        list(ds)
    for err in (batch.value, iterated.value):
        assert (err.block, err.position, err.index) == (2, 5, 21) and "neighbour was unpickled" in str(err)


@pytest.mark.parametrize("variant", ["shared", "lz4", "none"])
def test_in_order_reads_hand_out_fresh_objects_and_fail_only_on_the_bad_example(tmp_path, variant):
    root = tmp_path / "d"
    with AtlasDatasetWriter(root, 100, 8, **VARIANTS[variant]) as w:
        for i in range(24):
            w.add_example(Bomb() if i == 13 else {"i": i})
    ds = AtlasDataset(root)
    first = [ds[i] for i in range(8)]  # block 0 read in order: served from one unpickling pass
    again = [ds[i] for i in range(8)]
    assert first == again == [{"i": i} for i in range(8)]
    assert all(a is not b for a, b in zip(first, again, strict=True))
    first[3]["i"] = -1
    assert ds[3] == {"i": 3}  # a caller mutating what it got never changes what the dataset returns
    assert [ds[i] for i in range(8, 13)] == [{"i": i} for i in range(8, 13)]  # block 1 holds the bomb at 13
    with pytest.raises(FormatError) as info:
        ds[13]
    assert (info.value.block, info.value.position, info.value.index) == (1, 5, 13)
    assert [ds[i] for i in range(14, 24)] == [{"i": i} for i in range(14, 24)]


@pytest.mark.parametrize("variant", ["none", "shared-frames", "lz4-frames"])
def test_batched_reads_of_undecoded_blocks_verify_checksums_and_read_exactly(tmp_path, variant):
    """__getitems__ reads codec none and frame-per-example shards index by index from the map:
    same values as ds[i], any order and repeats, and a corrupt block is still refused."""
    root = tmp_path / "d"
    examples = write(root, 150, shard_size=64, block_size=8, **VARIANTS[variant])
    ds = AtlasDataset(root)
    idx = [149, 0, 63, 64, 64, 5, -1, 100, 7, 6]
    assert all(same(g, examples[i]) for g, i in zip(ds.__getitems__(idx), idx, strict=True))
    entries = np.frombuffer((root / "000001" / "index.bin").read_bytes(), dtype=INDEX_ENTRY_DTYPE, offset=64)
    data = bytearray((root / "000001" / "data.bin").read_bytes())
    data[int(entries[3]["offset"]) + int(entries[3]["stored_size"]) - 1] ^= 0x10
    (root / "000001" / "data.bin").write_bytes(bytes(data))
    ds = AtlasDataset(root)
    assert all(same(g, examples[i]) for g, i in zip(ds.__getitems__([64, 65, 0]), [64, 65, 0], strict=True))
    with pytest.raises(ChecksumError) as info:
        ds.__getitems__([64, 64 + 3 * 8 + 2])
    assert (info.value.shard, info.value.block) == ("000001", 3)


# -- framing "list" (V2-FRAME-5) -----------------------------------------------------------


@pytest.mark.parametrize("variant", ["shared-list", "lz4-list", "none-list"])
def test_list_blocks_hold_version_1s_block_content(tmp_path, variant):
    """The decoded block is one protocol-4 pickle of the block's list: byte for byte what version 1
    stores for the same examples; raw_size is its size; flags bit 1 and meta.json say list."""
    import zstandard

    from atlas_format.constants import V2_LIST_PICKLE_PROTOCOL

    examples = write(tmp_path / "list", 100, shard_size=100, block_size=8, **VARIANTS[variant])
    write(tmp_path / "v1", 100, shard_size=100, block_size=8, format_version=1,
          compression_strategy=CompressionStrategy.SHARED_DICTIONARY_COMPRESSION)
    shard = AtlasDataset(tmp_path / "list").shards[0]
    v1 = AtlasDataset(tmp_path / "v1").shards[0]
    assert shard.framing is Framing.LIST and V2_LIST_PICKLE_PROTOCOL == 4
    assert (tmp_path / "list" / "000000" / "index.bin").read_bytes()[17] == 0x02
    assert parse_json((tmp_path / "list" / "meta.json").read_bytes())["framing"] == "list"
    _, entries = _stored_blocks(tmp_path / "list" / "000000")
    v1.read_block(0)  # maps the version 1 files
    for b, entry in enumerate(entries):
        decoded = bytes(shard.decoded_block(b))
        maps = v1._m
        start, end = int(maps.index[b]), int(maps.index[b + 1])
        v1_block = v1._new_dctx().decompress(bytes(maps.data.read(start, end - start)))
        assert decoded == pickle.dumps(examples[8 * b:8 * b + 8], protocol=4) == v1_block
        assert int(entry["raw_size"]) == len(decoded)
    if variant == "shared-list":  # the same samples and size rule; version 2's fixed fastCover parameters
        v2_dict = zstandard.ZstdCompressionDict((tmp_path / "list" / "zstd_dict.bin").read_bytes())
        v1_dict = (tmp_path / "v1" / "zstd_dict.bin").read_bytes()
        assert len(v2_dict.as_bytes()) == len(v1_dict)
        samples = [pickle.dumps(examples[i:i + 8], protocol=4) for i in range(0, 100, 8)]
        retrained = zstandard.train_dictionary(len(v1_dict), samples, level=3, **writer_module.V2_DICTIONARY_TRAINING)
        assert retrained.as_bytes() == v2_dict.as_bytes()


@pytest.mark.parametrize("variant", ["shared-list", "none-list"])
def test_list_blocks_are_unpickled_once_and_hand_out_fresh_objects(tmp_path, variant, monkeypatch):
    root = tmp_path / "d"
    examples = write(root, 40, shard_size=40, block_size=8, **VARIANTS[variant])
    ds = AtlasDataset(root)
    shard = ds.shards[0]
    calls = []
    original = shard.loads
    monkeypatch.setattr(shard, "loads", lambda data: calls.append(len(data)) or original(data))
    first = [ds[i] for i in range(40)]  # in order: one unpickle per block
    assert len(calls) == 5 and all(same(a, b) for a, b in zip(first, examples, strict=True))
    calls.clear()
    order = [13, 9, 15, 8, 10, 11, 14, 12]  # every example of block 1, any order: one unpickle
    assert all(same(ds[i], examples[i]) for i in order) and len(calls) == 1
    again = ds[3]
    assert again is not first[3] and same(again, examples[3])
    ds[8]  # block 1 unpickled into the memo; the next reads of block 1 are served from it
    nine = ds[9]
    assert ds[9] is not nine and ds[10] is not ds[10]  # served once each, then a fresh unpickle
    again["id"] = -1
    assert ds[3]["id"] == 3  # a caller mutating what it got never changes what the dataset returns
    batch = ds.__getitems__([17, 17, 16, 33, 17])  # repeats within a batch are distinct objects
    assert [x["id"] for x in batch] == [17, 17, 16, 33, 17]
    assert batch[0] is not batch[1] and batch[1] is not batch[4]
    assert [x["id"] for x in ds] == list(range(40))


def test_in_order_reads_of_list_blocks_keep_the_index_rules_across_shards(tmp_path):
    """ds[i] serves in-order reads of a framing-list block from the dataset's own run of it;
    shard boundaries, negative, out-of-range and non-integer indices still go the full way."""
    root = tmp_path / "d"
    examples = write(root, 45, shard_size=20, block_size=8, framing="list", codec="lz4")
    ds = AtlasDataset(root)
    assert [ds[i]["id"] for i in range(45)] == list(range(45))  # runs of 8, 8, 4 per shard
    assert ds._run[:2] == (40, 45)
    assert same(ds[-1], examples[44]) and same(ds[-45], examples[0]) and same(ds[np.int64(41)], examples[41])
    for bad, error in ((45, IndexError), (-46, IndexError), ("1", TypeError), (1.0, TypeError)):
        with pytest.raises(error):
            ds[bad]
    assert [ds[i]["id"] for i in (18, 19, 20, 21)] == [18, 19, 20, 21]  # across shards 0 and 1
    clone = pickle.loads(pickle.dumps(ds))
    assert "_run" not in clone.__dict__ and [clone[i]["id"] for i in (21, 22)] == [21, 22]
    ds.close()
    assert ds._run[:2] == (0, 0) and ds[23]["id"] == 23


def test_list_block_that_is_not_the_right_list_is_refused_with_its_place(tmp_path, monkeypatch):
    class ShortLists:  # the writer's pickle module: full blocks lose their last example, the last is a dict
        @staticmethod
        def dumps(obj, protocol):
            return pickle.dumps(obj[:-1] if len(obj) == 8 else {"not": "a list"}, protocol=protocol)

    monkeypatch.setattr(writer_module, "pickle", ShortLists)
    write(tmp_path / "d", 20, shard_size=20, block_size=8, framing="list", codec="lz4")
    monkeypatch.undo()
    ds = AtlasDataset(tmp_path / "d")
    with pytest.raises(FormatError) as info:
        ds[9]
    assert info.value.block == 1 and "a list of 7, expected a list of 8" in str(info.value)
    with pytest.raises(FormatError) as last:
        list(ds.__getitems__([19]))
    assert last.value.block == 2 and "dict, expected a list of 4" in str(last.value)
    with pytest.raises(FormatError):
        list(ds)


def test_a_bad_example_fails_its_whole_list_block_and_only_it(tmp_path):
    root = tmp_path / "d"
    with AtlasDatasetWriter(root, 100, 8, framing="list") as w:
        for i in range(24):
            w.add_example(Bomb() if i == 13 else {"i": i})
    ds = AtlasDataset(root)
    assert [ds[i] for i in (0, 7, 16, 23)] == [{"i": i} for i in (0, 7, 16, 23)]
    for read in (lambda: ds[9], lambda: ds.__getitems__([2, 10]), lambda: list(ds)):
        with pytest.raises(FormatError) as info:
            read()
        assert info.value.block == 1 and "neighbour was unpickled" in str(info.value)


def test_list_framing_in_safe_mode_refuses_code_running_pickles_with_the_block(tmp_path):
    root = tmp_path / "d"
    with AtlasDatasetWriter(root, 100, 4, framing="list", codec="lz4") as w:
        for i in range(8):
            w.add_example(Bomb() if i == 6 else {"i": i})
    ds = AtlasDataset(root, safe=True)
    assert ds[1] == {"i": 1}
    with pytest.raises(torch_atlas_ds.UnsafePickleError) as info:
        ds[5]
    assert info.value.block == 1 and info.value.name == "_explode"


def test_list_framing_is_refused_in_version_1(tmp_path):
    with pytest.raises(ValueError, match="format_version=2"):
        AtlasDatasetWriter(tmp_path / "a", 10, 4, format_version=1, framing="list")
    with pytest.raises(ValueError, match="'block', 'example' or 'list'"):
        AtlasDatasetWriter(tmp_path / "b", 10, 4, framing="lists")
    assert not list(tmp_path.iterdir())


def test_list_and_example_flag_bits_together_are_refused(tmp_path):
    root = tmp_path / "d"
    write(root, 16, shard_size=16, block_size=4, framing="list")
    index = bytearray((root / "000000" / "index.bin").read_bytes())
    index[17] = 0x03
    (root / "000000" / "index.bin").write_bytes(bytes(index))
    reseal(root)
    with pytest.raises(FormatError, match="flags 0x03") as info:
        AtlasDataset(root)
    assert info.value.offset == 17


IN_PLACE = {"none": {"codec": "none"}, "zstd-example": {"framing": Framing.EXAMPLE},
            "lz4-example": {"codec": "lz4", "framing": Framing.EXAMPLE}}


@pytest.mark.parametrize("options", list(IN_PLACE.values()), ids=list(IN_PLACE))
def test_random_reads_of_blocks_read_where_stored_match_reads_in_order(tmp_path, options):
    """A random read of such a block takes one example without a block object (V2Shard.get); what it
    returns is what reads in order, batches and iteration return, a new object each time."""
    root = tmp_path / "d"
    expected = [{"i": i, "s": "x" * i} for i in range(40)]
    with AtlasDatasetWriter(root, 40, 8, **options) as w:
        for example in expected:
            w.add_example(example)
    order = [37, 5, 22, 13, 30, 1, 38, 9, 13, 14, 39]  # random, repeated, then in order
    ds = AtlasDataset(root)
    got = [ds[i] for i in order]
    assert got == [expected[i] for i in order]
    assert got[3] is not got[8]  # the repeat is a new object
    assert ds.__getitems__(order) == [expected[i] for i in order]
    assert [ds[i] for i in range(40)] == list(AtlasDataset(root)) == expected


def test_a_random_read_of_a_bad_example_where_stored_fails_located(tmp_path):
    """The random read's shortcut hands anything it cannot read to the block path, whose error names
    the example."""
    root = tmp_path / "d"
    with AtlasDatasetWriter(root, 40, 8, codec="none") as w:
        for i in range(40):
            w.add_example({"i": i, "s": "x" * i})
    data = root / "000000" / "data.bin"
    target = pickle.dumps({"i": 13, "s": "x" * 13}, protocol=5)
    raw = data.read_bytes()
    assert raw.count(target) == 1
    data.write_bytes(raw.replace(target, target[:-1] + b"N"))  # STOP becomes NONE: the pickle never ends
    ds = AtlasDataset(root, verify_checksums=False)
    assert ds[30] == {"i": 30, "s": "x" * 30}
    with pytest.raises(FormatError) as info:
        ds[13]
    assert (info.value.index, info.value.block, info.value.position) == (13, 1, 5)
    assert "does not unpickle" in str(info.value)
