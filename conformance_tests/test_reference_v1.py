"""torch_atlas_ds reads every seed-v1 vector exactly and writes each one byte for byte."""

from __future__ import annotations

import hashlib
import json

import pytest
import zstandard
from test_reference_helpers import same

from torch_atlas_ds import (
    AtlasDataset,
    AtlasDatasetShard,
    AtlasDatasetShardWriter,
    AtlasDatasetWriter,
    CompressionStrategy,
    LimitError,
)


@pytest.mark.parametrize("mmap_index", [True, False])
def test_reads_seed_vector_exactly(seed_v1, mmap_index):
    root, expected = seed_v1
    ds = AtlasDataset(root, mmap_index=mmap_index)
    examples = expected["examples"]
    assert len(ds) == len(examples) == expected["num_examples"]
    for i, want in enumerate(examples):
        assert same(ds[i], want), i
    assert all(same(a, b) for a, b in zip(ds, examples, strict=True))
    if examples:
        assert same(ds[-1], examples[-1])
        assert same(ds[-len(ds)], examples[0])
    with pytest.raises(IndexError):
        ds[len(ds)]
    with pytest.raises(IndexError):
        ds[-len(ds) - 1]
    assert ds.metadata.version == 1
    assert ds.metadata.shard_sizes == expected["layout"]["root_meta"]["shard_sizes"]
    assert ds.metadata.compression_strategy == expected["layout"]["root_meta"]["compression_strategy"]


def test_batched_reads_match(seed_v1):
    root, expected = seed_v1
    ds = AtlasDataset(root)
    n = len(ds)
    if n == 0:
        return
    idx = [(7 * k) % n for k in range(min(n, 40))] + [-1]
    got = ds.__getitems__(idx)
    assert all(same(g, expected["examples"][i]) for g, i in zip(got, idx, strict=True))


def test_writes_seed_vector_byte_identically(seed_v1, tmp_path):
    root, expected = seed_v1
    w = expected["writer"]
    out = tmp_path / "out"
    with AtlasDatasetWriter(out, w["shard_size"], w["block_size"], w["compression_strategy"],
                            w["compression_level"], w["compression_dict_size"], format_version=1) as writer:
        for example in expected["examples"]:
            writer.add_example(example)
    manifest = json.loads((root.parent / "manifest.json").read_text())
    want = {e["path"][len("dataset/"):]: e["sha256"] for e in manifest["files"] if e["path"].startswith("dataset/")}
    got = {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
           for p in out.rglob("*") if p.is_file()}
    assert got == want
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folder left


def test_shard_class_reads_v1_shards(tmp_path):
    root = tmp_path / "d"
    with AtlasDatasetWriter(root, 64, 4, CompressionStrategy.SHARED_DICTIONARY_COMPRESSION,
                            format_version=1) as w:
        for i in range(100):
            w.add_example({"i": i, "s": "abc" * (i % 7)})
    shard = AtlasDatasetShard(root / "1", mmap_index=False,
                              compression_dict_bytes=(root / "zstd_dict.bin").read_bytes())
    assert len(shard) == 36 and shard[0]["i"] == 64 and shard[-1]["i"] == 99
    assert shard.metadata.compression_strategy == 2 and shard.metadata.stored_examples == 36
    assert AtlasDatasetShard(root / "1")[3]["i"] == 67  # the parent's dictionary is found by default


def test_v1_shard_writer_alone(tmp_path):
    with AtlasDatasetShardWriter(tmp_path / "s", 4, CompressionStrategy.DICTIONARY_COMPRESSION,
                                 format_version=1) as w:
        for i in range(40):
            w.add_example(i)
    assert (tmp_path / "s" / "zstd_dict.bin").is_file()
    assert list(AtlasDatasetShard(tmp_path / "s")) == list(range(40))


def test_v1_huge_declared_frame_is_refused_before_allocating(tmp_path):
    root = tmp_path / "d"
    with AtlasDatasetWriter(root, 100, 4, CompressionStrategy.STANDARD_COMPRESSION, format_version=1) as w:
        for i in range(8):
            w.add_example({"i": i})
    # A frame declaring 1 TiB of content (8-byte frame content size, single segment).
    frame = bytes([0x28, 0xB5, 0x2F, 0xFD, 0xE0]) + (1 << 40).to_bytes(8, "little") + b"\x01\x00\x00"
    data = bytearray((root / "0" / "data.bin").read_bytes())
    data[:len(frame)] = frame
    (root / "0" / "data.bin").write_bytes(bytes(data))
    assert zstandard.frame_content_size(frame) == 1 << 40
    with pytest.raises(LimitError) as info:
        AtlasDataset(root)[0]
    assert info.value.block == 0 and info.value.offset == 0 and "data.bin" in str(info.value)


def test_v1_reads_a_subset_of_shards_like_the_original(tmp_path):
    import shutil

    from conftest import SEED_V1

    root = tmp_path / "d"
    shutil.copytree(SEED_V1 / "13-eleven-shards-s2" / "dataset", root)
    shutil.rmtree(root / "00")  # multi-node: this node holds shards 01..10 only
    expected = json.loads((SEED_V1 / "13-eleven-shards-s2" / "expected.json").read_text())["examples"]
    ds = AtlasDataset(root)
    assert len(ds) == len(expected) - 16
    assert all(same(ds[i], want) for i, want in enumerate(expected[16:]))


def test_v1_refuses_unknown_strategy_and_bad_version(tmp_path):
    import shutil

    from conftest import SEED_V1

    from torch_atlas_ds import CodecError, VersionError

    root = tmp_path / "d"
    shutil.copytree(SEED_V1 / "02-s1-multishard" / "dataset", root)
    meta = root / "1" / "meta.json"
    doc = json.loads(meta.read_text())
    meta.write_text(json.dumps({**doc, "compression_strategy": 7}))
    with pytest.raises(CodecError):
        AtlasDataset(root)
    meta.write_text(json.dumps({**doc, "version": True}))
    with pytest.raises(VersionError):
        AtlasDataset(root)
