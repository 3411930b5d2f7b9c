"""atlas_format's declarations parse every structure of the seed-v1 corpus."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import zstandard

from atlas_format import metadata, npy
from atlas_format.binary import parse
from atlas_format.layout import v1_shard_names
from atlas_format.zstd_frame import ZstdDictionary, ZstdFrameHeader


def test_manifest_matches_copied_corpus(seed_v1):
    root, expected = seed_v1
    folder = root.parent
    manifest = json.loads((folder / "manifest.json").read_text())
    for entry in manifest["files"]:
        data = (folder / entry["path"]).read_bytes()
        assert len(data) == entry["size"]
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["path"]


def test_index_npy_parses_and_rebuilds_byte_identically(seed_v1):
    root, expected = seed_v1
    for shard in expected["layout"]["shards"]:
        raw = (root / shard["dir"] / "index.npy").read_bytes()
        parsed = parse(npy.NpyIndexFile, raw, path=root / shard["dir"] / "index.npy")
        assert list(parsed.entries) == [int(x) for x in np.load(root / shard["dir"] / "index.npy")]
        assert len(parsed.entries) == shard["blocks"] + 1
        assert npy.numpy_descr(npy.v1_index_dtype(parsed.entries[-1])) == parsed.header.header["descr"]
        assert np.dtype(parsed.header.header["descr"]).name == shard["index_dtype"]
        assert npy.build_v1_index(list(parsed.entries)) == raw
        assert npy.NpyIndexFile.build(parsed) == raw


def test_folder_names_follow_padding_rule(seed_v1):
    root, expected = seed_v1
    assert expected["layout"]["shard_dirs"] == v1_shard_names(len(expected["layout"]["shards"]))


def _dictionary_for(root, shard):
    if shard["compression_strategy"] == 3:
        return (root / shard["dir"] / "zstd_dict.bin").read_bytes()
    if shard["compression_strategy"] == 2:
        return (root / "zstd_dict.bin").read_bytes()
    return None


def test_zstd_frames_and_dictionaries_parse(seed_v1):
    root, expected = seed_v1
    for shard in expected["layout"]["shards"]:
        if shard["compression_strategy"] == 0 or shard["blocks"] == 0:
            continue
        dictionary = _dictionary_for(root, shard)
        dict_id = parse(ZstdDictionary, dictionary).dict_id if dictionary else None
        if dictionary:
            assert dict_id == zstandard.ZstdCompressionDict(dictionary).dict_id()
        dctx = zstandard.ZstdDecompressor(
            dict_data=zstandard.ZstdCompressionDict(dictionary) if dictionary else None)
        offsets = np.load(root / shard["dir"] / "index.npy")
        data = (root / shard["dir"] / "data.bin").read_bytes()
        for b in range(len(offsets) - 1):
            frame = data[offsets[b]:offsets[b + 1]]
            header = parse(ZstdFrameHeader, frame)
            assert header.dict_id == dict_id
            assert header.descriptor.content_checksum is False
            raw = dctx.decompress(frame)
            assert header.content_size == len(raw)
            assert ZstdFrameHeader.build(header) == frame[:len(ZstdFrameHeader.build(header))]


def test_metadata_matches_schemas_and_rebuilds(seed_v1):
    root, expected = seed_v1
    doc = json.loads((root / "meta.json").read_bytes())
    metadata.validate_schema(doc, "v1-root")
    assert metadata.dump_v1_json(doc) == (root / "meta.json").read_bytes()
    for shard in expected["layout"]["shards"]:
        raw = (root / shard["dir"] / "meta.json").read_bytes()
        doc = metadata.parse_json(raw)
        metadata.validate_schema(doc, "v1-shard")
        assert metadata.dump_v1_json(doc) == raw
