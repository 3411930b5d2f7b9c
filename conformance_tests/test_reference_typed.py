"""Typed datasets (spec 3.12, TYPED-1, TYPED-7): the reference writes ``encoding="typed"`` with every framing and
codec, reads them back exactly on every read path without unpickling, keeps the encoding when
appending and in parallel writes, and refuses what it cannot write or read with errors naming the example;
the validator passes what the reference writes and reports what is broken."""

from __future__ import annotations

import pickle
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_reference_helpers import read_index, tree_digest
from typed_trees import TREES, same
from validator_vectors import examples as text_examples
from validator_vectors import write_v2

from atlas_format import grouped, typed
from atlas_format.enums import INDEX_FLAG_TYPED
from atlas_format.metadata import parse_json
from atlas_validator import validate
from torch_atlas_ds import AtlasDataset, AtlasDatasetWriter, Framing
from torch_atlas_ds.errors import FormatError
from torch_atlas_ds.parallel import write_dataset

CODECS = {"zstd": {}, "zstd-none-dict": {"compression_strategy": 1}, "lz4": {"codec": "lz4"},
          "none": {"compression_strategy": 0}}
FRAMINGS = ["grouped", "block", "example", "list"]


def write(root: Path, values: list[Any], block_size: int, shard_size: int = 1000, **kw: Any) -> Path:
    with AtlasDatasetWriter(root, shard_size, block_size, encoding="typed", **kw) as w:
        for v in values:
            w.add_example(v)
    return root


def check_every_read(root: Path, values: list[Any]) -> None:
    n = len(values)
    order = list(range(n))
    random.Random(n).shuffle(order)
    ds = AtlasDataset(root)
    assert all(same(ds[i], values[i]) for i in order)
    assert all(same(ds[i], values[i]) for i in range(n))
    assert all(same(a, b) for a, b in zip(AtlasDataset(root), values, strict=True))
    batch = order[:40] + order[:2]
    assert all(same(a, values[i]) for a, i in zip(AtlasDataset(root).__getitems__(batch), batch, strict=True))
    worker = pickle.loads(pickle.dumps(AtlasDataset(root)))  # what a DataLoader worker gets
    assert all(same(worker[i], values[i]) for i in order[:20])


@settings(max_examples=25, deadline=None)
@given(values=st.lists(TREES, min_size=1, max_size=60), block_size=st.integers(1, 40),
       codec=st.sampled_from(sorted(CODECS)), framing=st.sampled_from(FRAMINGS), shard_size=st.integers(1, 70))
def test_random_trees_round_trip_through_every_codec_and_framing(values, block_size, codec, framing, shard_size):
    if framing == "example" and codec == "none":
        framing = "block"  # codec none has no frames
    with tempfile.TemporaryDirectory() as tmp:
        root = write(Path(tmp) / "d", values, block_size, shard_size, framing=framing, **CODECS[codec])
        check_every_read(root, values)
        report = validate(root)
        assert report.ok and not [f for f in report.findings if f.severity != "info"], report.ids()


def images(n: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    return [{"image": rng.integers(0, 256, (3, 8, 8), dtype=np.uint8), "label": i,
             "box": (rng.random(4).astype(np.float32), "xyxy"), "t": torch.arange(4, dtype=torch.bfloat16) + i}
            for i in range(n)]


def test_typed_datasets_record_their_encoding_and_default_to_grouped_framing(tmp_path):
    root = write(tmp_path / "d", images(30), 8, 16)
    doc = parse_json((root / "meta.json").read_bytes())
    shard = parse_json((root / "000000" / "meta.json").read_bytes())
    assert doc["encoding"] == shard["encoding"] == "typed" and doc["framing"] == shard["framing"] == "grouped"
    assert grouped.PREAMBLE_MEMBER not in shard and "group_size" not in shard  # 300-byte examples: groups of 8
    header, _ = read_index(root / "000000")
    assert header["flags"] == INDEX_FLAG_TYPED | 0x04
    assert AtlasDataset(root).shards[0].encoding == "typed"
    for codec in ({"codec": "lz4"}, {"compression_strategy": 0}):  # no zstd: framing block, as for pickles
        other = write(tmp_path / f"o{len(codec)}{list(codec)[0]}", images(10), 8, 16, **codec)
        assert "framing" not in parse_json((other / "meta.json").read_bytes())
    pickled = write_v2(tmp_path / "p", text_examples(10))
    assert "encoding" not in parse_json((pickled / "meta.json").read_bytes())  # pickle: absent, bytes unchanged


def test_reading_a_typed_dataset_never_unpickles(tmp_path):
    values = images(40)
    root = write(tmp_path / "d", values, 8, 16, framing="list")
    script = (  # pickle's entry points and the safe loader refuse, patched before any dataset is opened
        "import pickle, sys\n"
        "from torch_atlas_ds import AtlasDataset, safe_pickle\n"
        "def refuse(*a, **k):\n    raise AssertionError('pickle was called')\n"
        "pickle.loads = pickle.load = pickle.Unpickler = safe_pickle.SafeUnpickler.loads = refuse\n"
        "for safe in (False, True):\n"
        "    ds = AtlasDataset(sys.argv[1], safe=safe)\n"
        "    print(sum(int(x['label']) for x in ds), ds[17]['box'][1], float(ds[5]['t'][0]))\n")
    done = subprocess.run([sys.executable, "-c", script, str(root)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(sum(range(40))), "xyxy", "5.0"] * 2


def test_an_unencodable_value_names_the_example_and_its_path_and_publishes_nothing(tmp_path):
    import datetime

    writer = AtlasDatasetWriter(tmp_path / "d", 100, 8, encoding="typed")
    for i in range(5):
        writer.add_example({"i": i})
    with pytest.raises(TypeError, match=r"^example 5: \['meta'\]\['when'\]: datetime.datetime is not encodable$"):
        writer.add_example({"meta": {"when": datetime.datetime(2020, 1, 1)}})
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("kw, words", [
    ({"format_version": 1}, "encoding='typed' needs format_version=2"),
])
def test_what_typed_cannot_be_is_refused_before_writing(tmp_path, kw, words):
    with pytest.raises(ValueError, match=words):
        AtlasDatasetWriter(tmp_path / "d", 100, 8, encoding="typed", **kw)
    with pytest.raises(ValueError, match="encoding must be 'pickle' or 'typed'"):
        AtlasDatasetWriter(tmp_path / "e", 100, 8, encoding="json")


def test_append_keeps_the_encoding(tmp_path):
    root = write(tmp_path / "d", images(20), 8, 16)
    with AtlasDatasetWriter.append(root) as w:
        for v in images(25)[20:]:
            w.add_example(v)
    shard = parse_json((root / "000002" / "meta.json").read_bytes())
    assert shard["encoding"] == "typed"
    check_every_read(root, images(25))
    with pytest.raises(TypeError, match=r"^example 25: \['x'\]: set is not encodable"):
        with AtlasDatasetWriter.append(root) as w:
            w.add_example({"x": {1}})


def test_a_parallel_write_equals_the_sequential_one(tmp_path):
    values = images(70)
    one = write(tmp_path / "one", values, 8, 20)
    two = write_dataset(values, tmp_path / "two", shard_size=20, block_size=8, encoding="typed", num_workers=2,
                        progress=False)
    assert tree_digest(one) == tree_digest(two)


@pytest.mark.parametrize("defect, finding, words", [
    ("wrong shape", "ATL704", "takes 6 bytes"),
    ("truncated payload", "ATL700", "truncated"),
])
def test_a_sealed_dataset_with_a_bad_array_fails_validation_and_reading_names_the_example(tmp_path, defect,
                                                                                          finding, words):
    good = typed_bytes = None

    def hook(k: int, b: int, j: int, p: bytes) -> bytes:
        nonlocal good, typed_bytes
        if (k, b, j) != (0, 1, 2):
            return p
        from atlas_format.typed import ARRAY_HEAD, shape_struct
        payload = ARRAY_HEAD.pack(6, 2, 0, 0) + shape_struct(2).pack(2, 3) + bytes(6)
        if defect == "wrong shape":
            payload = ARRAY_HEAD.pack(6, 2, 0, 0) + shape_struct(2).pack(2, 3) + bytes(5)
            return b"\x81\xa1a\xc9" + len(payload).to_bytes(4, "big") + b"\x01" + payload
        whole = b"\x81\xa1a\xc9" + len(payload).to_bytes(4, "big") + b"\x01" + payload
        return whole[:-3]

    root = write_v2(tmp_path / "d", text_examples(40), encoding="typed", codec="zstd", block_size=8, shard_size=40,
                    pickle_hook=hook)
    report = validate(root)
    found = [f for f in report.findings if f.id == finding]
    assert not report.ok and found and words in found[0].message and found[0].example == 10, report.ids()
    cli = subprocess.run([sys.executable, "-m", "atlas_validator", str(root)], capture_output=True, text=True)
    assert cli.returncode == 1 and finding in cli.stdout
    with pytest.raises(FormatError) as info:
        AtlasDataset(root)[10]
    assert info.value.index == 10 and "000000" in str(info.value)
    assert AtlasDataset(root)[11] == text_examples(40)[11]  # the others still read


def test_a_typed_bit_or_member_the_other_does_not_have_is_refused(tmp_path):
    root = write_v2(tmp_path / "d", text_examples(20), encoding="typed", shard_size=20,
                    index_hook=lambda k, header, entries: header.update(flags=0))
    with pytest.raises(FormatError, match="disagree with meta.json"):
        AtlasDataset(root)[0]
    assert "ATL307" in validate(root).ids()
    flipped = write_v2(tmp_path / "e", text_examples(20), encoding="typed", shard_size=20,
                       root_meta_hook=lambda doc: doc.pop("encoding"))
    with pytest.raises(Exception, match="encoding"):
        AtlasDataset(flipped)[0]
    assert "ATL206" in validate(flipped).ids()


def test_the_default_framing_and_the_choice_table_of_typed_examples():
    assert typed.encoding_flags("typed") == INDEX_FLAG_TYPED and typed.encoding_flags("pickle") == 0
    assert Framing.from_index_flags(INDEX_FLAG_TYPED | 0x02) is Framing.LIST


def test_every_typed_golden_vector_reads_exactly_where_pickle_raises():
    script = (  # pickle's entry points and the safe loader refuse before any vector is opened
        "import pickle, sys\n"
        "from torch_atlas_ds import AtlasDataset, safe_pickle\n"
        "from atlas_format.testing.vectors import iter_vectors\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from typed_trees import same\n"
        "def refuse(*a, **k):\n    raise AssertionError('pickle was called')\n"
        "pickle.loads = pickle.load = pickle.Unpickler = safe_pickle.SafeUnpickler.loads = refuse\n"
        "read = []\n"
        "for vector in iter_vectors():\n"
        "    if 'typed' not in vector.name or vector.case['verdict'] != 'valid':\n        continue\n"
        "    ds, expected = AtlasDataset(vector.dataset), vector.examples()\n"
        "    assert len(ds) == len(expected) and all(same(ds[i], e) for i, e in enumerate(expected)), vector.name\n"
        "    assert all(same(a, e) for a, e in zip(ds, expected, strict=True)), vector.name\n"
        "    read.append(vector.name)\n"
        "print(' '.join(sorted(read)))\n")
    done = subprocess.run([sys.executable, "-c", script, str(Path(__file__).parent)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["28-typed-block", "29-typed-list-none-appended", "30-typed-grouped-shared-dict",
                                   "31-typed-grouped-images-none"]
