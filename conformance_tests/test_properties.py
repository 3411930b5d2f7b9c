"""Property tests across the two implementations: what the reference writes, the validator accepts
and the reader returns exactly; version 1 follows the original's fallback rules; DataLoader workers
return the same multiset. (Round trips in random order are also run by the kit, test_kit_reference.)"""

from __future__ import annotations

import json
import math
import pickle
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from atlas_format.enums import CompressionStrategy
from atlas_format.layout import v1_shard_names, v2_shard_name
from atlas_format.npy import v1_index_dtype
from atlas_format.testing import strategies
from atlas_format.testing.equality import strict_equal
from atlas_validator import validate
from torch_atlas_ds import AtlasDataset, AtlasDatasetWriter, Codec

S = CompressionStrategy
TENSORS = True  # torch tensors in examples: the validator scans their nested legacy torch.save streams


def write(path: Path, examples: list, config: strategies.WriterConfig) -> None:
    kwargs = dict(shard_size=config.shard_size, block_size=config.block_size,
                  compression_level=config.compression_level, format_version=config.format_version)
    if config.codec == Codec.LZ4:
        kwargs["codec"] = Codec.LZ4
    else:
        kwargs["compression_strategy"] = config.compression_strategy
    with AtlasDatasetWriter(path, framing=config.framing, encoding=config.encoding, **kwargs) as writer:
        for example in examples:
            writer.add_example(example)


def error_ids(path: Path) -> list[str]:
    return sorted(f.id for f in validate(path).findings if f.severity == "error")


@settings()
@given(config=strategies.writer_configs(), data=st.data())
def test_written_then_validated_then_read_back(config, data):
    """Valid by the validator, and the reader agrees: every example back, in random order."""
    one = strategies.typed_examples(numpy=True, torch=TENSORS, max_leaves=6) if config.encoding == "typed" \
        else strategies.examples(numpy=True, torch=TENSORS, large=False, max_leaves=6)
    examples = data.draw(st.lists(one, max_size=2 * config.shard_size + 3), label="examples")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ds"
        write(root, examples, config)
        assert error_ids(root) == [], config.label()
        ds = AtlasDataset(root, safe=True)  # the validator accepted every global, so safe loading must too
        assert len(ds) == len(examples)
        for i in data.draw(st.permutations(range(len(examples))), label="order"):
            assert strict_equal(examples[i], ds[i])
            assert strict_equal(examples[i], ds[i - len(examples)])
        for bad in (len(examples), -len(examples) - 1):
            with pytest.raises(IndexError):
                ds[bad]


@settings()
@given(n=st.integers(0, 120), shard_size=st.integers(1, 40), block_size=st.integers(1, 12),
       strategy=st.sampled_from([S.SHARED_DICTIONARY_COMPRESSION, S.DICTIONARY_COMPRESSION, S.STANDARD_COMPRESSION,
                                 S.NO_COMPRESSION]))
def test_v1_output_follows_the_original_fallback_rules(n, shard_size, block_size, strategy):
    """../shared/atlas-v1.md: dictionary fallback below 7 blocks, shared fallback, padding, index dtype."""
    examples = [{"i": i, "text": "abc " * (i % 7)} for i in range(n)]
    config = strategies.WriterConfig(1, strategy, Codec.NONE if strategy == S.NO_COMPRESSION else Codec.ZSTD, 3,
                                     shard_size, block_size)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ds"
        write(root, examples, config)
        sizes = [min(shard_size, n - k) for k in range(0, n, shard_size)] or [0]
        names = v1_shard_names(len(sizes))
        assert sorted(p.name for p in root.iterdir() if p.is_dir()) == names
        blocks = [math.ceil(s / block_size) for s in sizes]
        root_meta = json.loads((root / "meta.json").read_text())
        shard_strategies = [json.loads((root / d / "meta.json").read_text())["compression_strategy"] for d in names]
        if strategy == S.SHARED_DICTIONARY_COMPRESSION:
            expected = 2 if blocks[0] >= 7 else 1
            assert root_meta["compression_strategy"] == expected
            assert shard_strategies == [expected] * len(names)
            assert (root / "zstd_dict.bin").exists() == (expected == 2)
        elif strategy == S.DICTIONARY_COMPRESSION:
            assert root_meta["compression_strategy"] == 3
            assert shard_strategies == [3 if b >= 7 else 1 for b in blocks]
            assert [(root / d / "zstd_dict.bin").exists() for d in names] == [b >= 7 for b in blocks]
        else:
            assert root_meta["compression_strategy"] == int(strategy)
            assert shard_strategies == [int(strategy)] * len(names)
        assert root_meta["shard_sizes"] == sizes
        for d, b in zip(names, blocks, strict=True):
            index = np.load(root / d / "index.npy")
            assert len(index) == b + 1 and index.dtype == np.dtype(v1_index_dtype(int(index[-1])))
            assert (root / d / "data.bin").exists() == (b > 0)
        assert error_ids(root) == []


@pytest.mark.parametrize("version", [1, 2])
def test_more_than_ten_shards_and_empty_datasets(tmp_path, version):
    config = strategies.WriterConfig(version, S.SHARED_DICTIONARY_COMPRESSION, Codec.ZSTD, 3, 1, 1)
    write(tmp_path / "many", list(range(12)), config)
    names = v1_shard_names(12) if version == 1 else [v2_shard_name(i) for i in range(12)]
    assert sorted(p.name for p in (tmp_path / "many").iterdir() if p.is_dir()) == names
    assert list(AtlasDataset(tmp_path / "many")) == list(range(12))
    assert error_ids(tmp_path / "many") == []
    for strategy in S:
        path = tmp_path / f"empty-{int(strategy)}"
        write(path, [], strategies.WriterConfig(version, strategy, Codec.ZSTD, 3, 10, 4))
        assert len(AtlasDataset(path)) == 0 and list(AtlasDataset(path)) == []
        assert error_ids(path) == []


@pytest.mark.parametrize("version,codec", [(1, Codec.ZSTD), (2, Codec.ZSTD), (2, Codec.LZ4)])
def test_dataloader_with_workers_returns_the_same_multiset(tmp_path, version, codec):
    rng = np.random.default_rng(version)
    examples = [{"x": rng.standard_normal(3).astype(np.float32), "y": int(i)} for i in range(203)]
    config = strategies.WriterConfig(version, S.SHARED_DICTIONARY_COMPRESSION if codec == Codec.ZSTD
                                     else S.STANDARD_COMPRESSION, codec, 3, 50, 8)
    write(tmp_path / "ds", examples, config)
    ds = AtlasDataset(tmp_path / "ds")
    loader = torch.utils.data.DataLoader(ds, batch_size=16, shuffle=True, num_workers=2,
                                         generator=torch.Generator().manual_seed(0))
    seen = Counter()
    for batch in loader:
        for x, y in zip(batch["x"], batch["y"], strict=True):
            seen[(int(y), x.numpy().tobytes())] += 1
    assert seen == Counter((e["y"], e["x"].tobytes()) for e in examples)


def test_examples_larger_than_a_block(tmp_path):
    big = [bytes([i]) * (300_000 + i) for i in range(5)]
    for version in (1, 2):
        path = tmp_path / f"v{version}"
        write(path, big, strategies.WriterConfig(version, S.STANDARD_COMPRESSION, Codec.ZSTD, 1, 3, 2))
        assert [AtlasDataset(path)[i] for i in range(5)] == big
        assert error_ids(path) == []
    assert pickle  # pickled sizes above are well beyond a usual 23 KB block
    shutil.rmtree(tmp_path)
