"""The reference engine's framing "grouped" (V2-FRAME-6..9), the default of version 2 writers with zstd: round trips
through every read path, list fallbacks, appends, parallel writes, and refusals of crafted shards."""

from __future__ import annotations

import functools
import json
import pickle
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_reference_helpers import read_index, replace_block, reseal, rewrite_meta, same, tree_digest

from atlas_format import grouped
from atlas_format.constants import Limits
from atlas_format.index_v2 import build_index
from atlas_format.metadata import dump_checksummed_json, parse_json
from atlas_format.testing.strategies import examples as example_strategy
from torch_atlas_ds import (
    AtlasDataset,
    AtlasDatasetShard,
    AtlasDatasetShardWriter,
    AtlasDatasetWriter,
    FormatError,
    Framing,
    LimitError,
    MetadataError,
    UnsafePickleError,
)
from torch_atlas_ds.parallel import write_dataset

CODECS = {
    "zstd-shared": {"compression_strategy": 2},
    "zstd-shard": {"compression_strategy": 3},
    "zstd": {"compression_strategy": 1},
    "lz4": {"codec": "lz4"},
    "none": {"compression_strategy": 0},
}


def write(root: Path, examples: list[Any], block_size: int, shard_size: int = 1000, **kw: Any) -> Path:
    """A dataset in framing grouped (the default only with zstd), unless ``kw`` names another."""
    kw.setdefault("framing", "grouped")
    with AtlasDatasetWriter(root, shard_size, block_size, **kw) as w:
        for e in examples:
            w.add_example(e)
    return root


def check_every_read(root: Path, examples: list[Any], seed: int = 0, **open_kw: Any) -> None:
    """Random, in-order, negative, batched and iterated reads all give the examples written."""
    n = len(examples)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    ds = AtlasDataset(root, **open_kw)
    assert len(ds) == n
    for i in order:  # random reads: parts (and whole blocks on a repeat)
        assert same(ds[i], examples[i]), i
    ds = AtlasDataset(root, **open_kw)
    assert all(same(ds[i], examples[i]) for i in range(n))  # in order
    assert all(same(ds[i], examples[i]) for i in range(n))  # again: fresh objects from the parts
    assert all(same(ds[-k], examples[n - k]) for k in range(1, min(n, 40) + 1))
    batch = order[:50] + order[:3]
    assert all(same(g, examples[i]) for g, i in zip(AtlasDataset(root, **open_kw).__getitems__(batch), batch,
                                                    strict=True))
    assert all(same(a, b) for a, b in zip(AtlasDataset(root, **open_kw), examples, strict=True))


SHARED_KEY = "shared-key"


def with_shared(values: list[Any]) -> list[Any]:
    """Examples that share objects by identity (what the preamble memoizes) and hold numpy arrays."""
    dtype = np.dtype("float32")
    return [{"v": v, SHARED_KEY: i, "arr": np.arange(i % 4, dtype=dtype), "cls": float, "t": "tag"}
            for i, v in enumerate(values)]


@settings(max_examples=25, deadline=None)
@given(values=st.lists(example_strategy(numpy=True, large=False, max_leaves=6), min_size=1, max_size=80),
       block_size=st.integers(1, 70), codec=st.sampled_from(sorted(CODECS)), shard_size=st.integers(1, 90))
def test_every_read_path_gives_the_examples_written(values, block_size, codec, shard_size):
    examples = with_shared(values)
    with tempfile.TemporaryDirectory() as tmp:
        root = write(Path(tmp) / "d", examples, block_size, shard_size, **CODECS[codec])
        assert AtlasDataset(root).shards[0].framing is Framing.GROUPED
        check_every_read(root, examples, seed=block_size)


@pytest.mark.parametrize("block_size", [1, 7, 8, 9, 31, 32, 33, 64, 65, 70])
@pytest.mark.parametrize("codec", sorted(CODECS))
def test_block_sizes_around_the_group_and_frame_rules(tmp_path, block_size, codec):
    examples = with_shared([{"text": "word " * (i % 13), "i": i} for i in range(150)])
    root = write(tmp_path / "d", examples, block_size, 100, **CODECS[codec])
    meta = parse_json((root / "000000" / "meta.json").read_bytes())
    assert meta["framing"] == "grouped" and len(grouped.preamble_from_json(meta["pickle_preamble"])) < 4096
    assert (root / "000000" / "index.bin").read_bytes()[17] == 0x04  # flags: bit 2
    check_every_read(root, examples)
    check_every_read(root, examples, safe=True)


def test_random_reads_unpickle_a_part_and_repeated_reads_the_block(tmp_path, monkeypatch):
    examples = [{"i": i} for i in range(64)]
    root = write(tmp_path / "d", examples, 16)
    ds = AtlasDataset(root)
    sizes: list[int] = []
    shard = ds.shards[0]
    loads = shard.loads
    monkeypatch.setattr(shard._framing.site, "loads", lambda data: sizes.append(len(data)) or loads(data))
    assert ds[21] == {"i": 21} and len(sizes) == 1  # one group of 2 examples
    whole = len(shard.decoded_block(1))
    assert sizes[0] < whole
    assert ds[22] == {"i": 22} and sizes[-1] == whole  # read again in a row: one loads of the block
    assert ds[23] == {"i": 23} and len(sizes) == 2  # then list slots
    assert ds[22] == {"i": 22} and len(sizes) == 3 and sizes[-1] < whole  # a slot handed out: a fresh part


def count_loads(ds: AtlasDataset, monkeypatch: Any) -> list[int]:
    """The list that gets, for every unpickling ``ds``'s first shard does from now on, how many examples it built."""
    shard = ds.shards[0]
    got: list[int] = []
    loads = shard.loads

    def counting(data: Any) -> Any:
        out = loads(data)
        got.append(len(out))
        return out

    monkeypatch.setattr(shard._framing.site, "loads", counting)
    return got


@pytest.mark.parametrize("safe", [False, True])
def test_a_random_read_in_a_block_of_64_unpickles_the_preamble_and_one_group_of_8(tmp_path, monkeypatch, safe):
    examples = [{"i": i, "text": "word " * (i % 7)} for i in range(196)]
    root = write(tmp_path / "d", examples, 64)
    for i, count in [(70, 8), (101, 8), (0, 8), (31, 8), (63, 8), (130, 8), (66, 8), (195, 1), (191, 8)]:
        ds = AtlasDataset(root, safe=safe)  # a first read of its block: a part, not the block
        got = count_loads(ds, monkeypatch)
        assert ds[i] == examples[i]
        assert got == [count], (i, got)  # frames 0 and 1, and block 3 of 4 (groups of 1)


def sized(count: int, size: int) -> list[dict[str, Any]]:
    """Examples whose slices take about ``size`` bytes (a payload of random bytes and a label)."""
    rng = np.random.default_rng(size)
    return [{"payload": rng.integers(0, 256, size, dtype=np.uint8).tobytes(), "label": i} for i in range(count)]


@pytest.mark.parametrize("size, group", [(100, 8), (600, 4), (1100, 2), (3000, 1)])
def test_the_writer_chooses_the_group_size_by_example_size_and_states_it(tmp_path, size, group):
    examples = sized(150, size)
    root = write(tmp_path / "d", examples, 64, 100)
    for shard in ("000000", "000001"):
        meta = parse_json((root / shard / "meta.json").read_bytes())
        assert meta.get("group_size") == (None if group == 8 else group)  # absent for 8: earlier shards' bytes
        assert (root / shard / "index.bin").read_bytes()[17] == 0x04 | grouped.group_flags(group)
        assert AtlasDataset(root).shards[int(shard)].group == group


@pytest.mark.parametrize("block_size", [8, 20, 33, 64, 70])
@pytest.mark.parametrize("size", [600, 1100, 3000])
def test_every_read_of_smaller_groups_gives_the_examples_written(tmp_path, block_size, size):
    examples = sized(150, size)
    root = write(tmp_path / "d", examples, block_size, 100)
    check_every_read(root, examples)
    check_every_read(root, examples, safe=True)


@pytest.mark.parametrize("safe", [False, True])
def test_a_random_read_of_groups_of_1_unpickles_one_example(tmp_path, monkeypatch, safe):
    examples = sized(150, 3000)
    root = write(tmp_path / "d", examples, 64)
    for i in (0, 31, 32, 63, 70, 149):
        ds = AtlasDataset(root, safe=safe)
        got = count_loads(ds, monkeypatch)
        assert same(ds[i], examples[i])
        assert got == [1], (i, got)


def _counted_reads(root: Path, monkeypatch: Any, indices: list[int]) -> list[int]:
    """How many examples each unpickling of ``indices`` read one by one built (a part, or the block)."""
    ds = AtlasDataset(root)
    got = count_loads(ds, monkeypatch)
    for i in indices:
        ds[i]
    return got


def test_groups_of_1_unpickle_the_block_after_an_eighth_of_it_was_read_in_a_row(tmp_path, monkeypatch):
    """A repeat of a random read in the same block does not buy 64 large examples; reads in a row that add up to
    8 of them, or a read of the next position, do."""
    root = write(tmp_path / "d", sized(150, 3000), 64)
    scattered = [10, 3, 20, 5, 30, 7, 40, 9, 50, 60]
    assert _counted_reads(root, monkeypatch, scattered) == [1] * 8 + [64]  # the 9th read: the block; the 10th a slot
    assert _counted_reads(root, monkeypatch, [10, 11, 12]) == [1, 64]  # in order from 10: the block at once
    assert _counted_reads(root, monkeypatch, [10, 70, 20]) == [1, 1, 1]  # another block in between: a new row
    small = write(tmp_path / "s", sized(150, 100), 64)  # groups of 8: the second read in a row takes the block
    assert _counted_reads(small, monkeypatch, [10, 30]) == [8, 64]


@pytest.mark.parametrize("change", ["flags say 8", "meta says 2", "bits on list"])
def test_a_group_size_the_index_flags_and_meta_json_disagree_on_is_refused(tmp_path, change):
    framing = "list" if change == "bits on list" else "grouped"
    root = write(tmp_path / "d", sized(40, 3000), 8, framing=framing)
    folder = root / "000000"
    if change == "meta says 2":
        rewrite_meta(folder / "meta.json", group_size=2)
    else:
        header, entries = read_index(folder)
        header["flags"] = 0x04 if change == "flags say 8" else 0x02 | grouped.group_flags(1)
        (folder / "index.bin").write_bytes(build_index(header, entries))
    reseal(root)
    with pytest.raises(FormatError, match=r"flags 0x(04|1c|1a) disagree with meta.json") as err:
        AtlasDataset(root)[3]
    assert err.value.offset == 17


@pytest.mark.parametrize("positions, counts", [
    ([3, 40], [8, 8]),  # two of 64: their groups, not the block
    ([3, 40, 41], [8, 8, 8]),  # three: still their groups (41's group again: a fresh part)
    ([3, 12, 40, 50], [64]),  # four, half the block's worth of groups: the block at once
])
def test_a_batch_unpickles_the_groups_of_a_few_positions_and_the_block_of_many(tmp_path, monkeypatch, positions,
                                                                                 counts):
    examples = [{"i": i} for i in range(64)]
    root = write(tmp_path / "d", examples, 64)
    ds = AtlasDataset(root)
    got = count_loads(ds, monkeypatch)
    batch = ds.__getitems__(positions)
    assert batch == [examples[p] for p in positions]
    assert got == counts
    assert len({id(x) for x in batch}) == len(batch)


def test_fresh_objects_and_shared_identity_inside_an_example(tmp_path):
    inner = [1, 2]
    recursive: list[Any] = ["r"]
    recursive.append(recursive)
    examples = [{"a": inner, "b": inner, "i": i} for i in range(20)] + [recursive]
    root = write(tmp_path / "d", examples, 8)
    ds = AtlasDataset(root)
    for i in (3, 3, 4, 12, 20, 20):
        got = ds[i]
        if i == 20:
            assert got[0] == "r" and got[1] is got
        else:
            assert got["a"] is got["b"] and got["a"] == [1, 2]
    first = [ds[i] for i in range(8)]
    again = [ds[i] for i in range(8)]
    assert all(a is not b for a, b in zip(first, again, strict=True))
    first[0]["a"].append(99)
    assert ds[0]["a"] == [1, 2]


@pytest.mark.parametrize("block_size", [2, 8, 40])
def test_an_object_mutated_between_blocks_is_read_as_each_block_saw_it(tmp_path, block_size):
    """Only immutable objects go to the preamble: a dict the first block shares by identity and the caller
    then changes is pickled again in each block (blocks are pickled when full, as version 1 does; the
    preamble is built from the first block, so no block waits for a later one)."""
    common = {"v": 0}
    root = tmp_path / "d"
    with AtlasDatasetWriter(root, 100, block_size) as w:
        for i in range(80):
            common["v"] = i // block_size
            w.add_example({"c": common, "i": i})
    ds = AtlasDataset(root)
    assert [ds[i]["c"]["v"] for i in (79, 5, 17, 30)] == [i // block_size for i in (79, 5, 17, 30)]
    assert [x["c"]["v"] for x in ds] == [i // block_size for i in range(80)]


class Outer:
    """Its nested class pickles by a dotted qualname: protocol 3 needs builtins.getattr (a list fallback)."""

    class Inner:
        def __init__(self, v: int) -> None:
            self.v = v

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Outer.Inner) and other.v == self.v


@pytest.mark.parametrize("block_size", [8, 40])
@pytest.mark.parametrize("codec", ["zstd-shared", "none", "lz4"])
def test_blocks_protocol_3_cannot_express_fall_back_to_a_list(tmp_path, block_size, codec):
    examples: list[Any] = [{"i": i} for i in range(200)]
    examples[block_size + 3] = {"nested": Outer.Inner(7)}  # block 1 falls back
    examples[3 * block_size + 1] = functools.partial(int, "5")  # names functools.partial: block 3 too
    root = write(tmp_path / "d", examples, block_size, **CODECS[codec])
    shard = AtlasDataset(root).shards[0]
    assert [bytes(shard.decoded_block(b)[:2]) == grouped.FALLBACK_PREFIX for b in range(4)] == [
        False, True, False, True]

    def same_example(got: Any, want: Any) -> bool:
        if isinstance(want, functools.partial):
            return (got.func, got.args) == (want.func, want.args)
        return bool(got == want)

    ds = AtlasDataset(root)
    order = list(range(200))
    random.Random(1).shuffle(order)
    assert all(same_example(ds[i], examples[i]) for i in order)
    assert all(same_example(ds[i], examples[i]) for i in range(200))
    assert all(same_example(a, b) for a, b in zip(AtlasDataset(root), examples, strict=True))
    batch = [block_size + 3, block_size + 4, 0, 3 * block_size + 1]
    assert all(same_example(a, examples[i]) for a, i in zip(AtlasDataset(root).__getitems__(batch), batch,
                                                            strict=True))
    with pytest.raises(UnsafePickleError):  # safe loading refuses the fallback block's getattr
        AtlasDataset(root, safe=True)[block_size + 3]
    assert AtlasDataset(root, safe=True)[0] == {"i": 0}


def test_append_makes_new_shards_with_their_own_preamble(tmp_path):
    first = [{"kind": "a", "i": i} for i in range(30)]
    root = write(tmp_path / "d", first, 8, 20)
    more = [{"other": b"x" * i, "j": i} for i in range(25)]
    with AtlasDatasetWriter.append(root) as w:
        for e in more:
            w.add_example(e)
    doc = parse_json((root / "meta.json").read_bytes())
    assert doc["framing"] == "grouped" and len(doc["shards"]) == 4
    preambles = [parse_json((root / s["name"] / "meta.json").read_bytes())["pickle_preamble"] for s in doc["shards"]]
    assert preambles[2] != preambles[0]
    check_every_read(root, first + more)


def test_parallel_write_is_grouped_and_reads_back(tmp_path):
    examples = with_shared([{"i": i, "s": "w" * (i % 9)} for i in range(300)])
    root = write_dataset(examples, tmp_path / "d", shard_size=70, block_size=40, num_workers=2, progress=False)
    assert parse_json((root / "meta.json").read_bytes())["framing"] == "grouped"
    check_every_read(Path(root), examples)


def test_shard_writer_defaults_to_grouped_and_version_1_is_unchanged(tmp_path):
    with AtlasDatasetShardWriter(tmp_path / "s", 8) as w:
        for i in range(20):
            w.add_example({"i": i})
    shard = AtlasDatasetShard(tmp_path / "s")
    assert [shard[i] for i in range(20)] == [{"i": i} for i in range(20)]
    assert parse_json((tmp_path / "s" / "meta.json").read_bytes())["framing"] == "grouped"
    with AtlasDatasetWriter(tmp_path / "v1", 10, 4, format_version=1) as w:
        w.add_example({"i": 0})
    assert "framing" not in json.loads((tmp_path / "v1" / "0" / "meta.json").read_text())
    with pytest.raises(ValueError, match="format_version=2"):
        AtlasDatasetWriter(tmp_path / "v1b", 10, 4, format_version=1, framing="grouped")


# -- refusals -------------------------------------------------------------------------------


class Payload:
    def __reduce__(self):  # runs a command if unpickled without the policy
        import os

        return (os.system, ("echo grouped-payload-ran",))


@pytest.mark.parametrize("block_size", [8, 40])
def test_safe_loading_refuses_a_malicious_slice_on_every_path(tmp_path, block_size, capfd):
    examples: list[Any] = [{"i": i} for i in range(80)]
    examples[block_size + 5] = Payload()
    root = write(tmp_path / "d", examples, block_size)
    i = block_size + 5
    for read in (lambda ds: ds[i], lambda ds: [ds[k] for k in range(block_size, i + 1)],
                 lambda ds: ds.__getitems__([i, i - 1]), lambda ds: list(ds)):
        with pytest.raises(UnsafePickleError) as info:
            read(AtlasDataset(root, safe=True))
        assert info.value.block == 1
    assert AtlasDataset(root, safe=True)[block_size + 35 if block_size == 40 else block_size + 6] is not None
    assert "grouped-payload-ran" not in capfd.readouterr().out


def _set_preamble(root: Path, text: Any) -> None:
    rewrite_meta(root / "000000" / "meta.json", pickle_preamble=text)
    reseal(root)


def test_a_malicious_preamble_is_refused(tmp_path, capfd):
    root = write(tmp_path / "d", [{"i": i} for i in range(80)], 40)
    evil = b"\x80\x03cos\nsystem\nX\x05\x00\x00\x00echo!\x85R0]("
    _set_preamble(root, grouped.preamble_to_json(evil))
    with pytest.raises(UnsafePickleError):
        AtlasDataset(root, safe=True)[75]  # frame 1 of block 1: the preamble from meta.json
    assert "echo!" not in capfd.readouterr().out


@pytest.mark.parametrize("text", [
    "gAM", "gAN=", 3, grouped.preamble_to_json(b"\x80\x04]q\x000]("), grouped.preamble_to_json(b"\x80\x03]q\x00."),
    grouped.preamble_to_json(b"\x80\x03" + b"N0" * 40_000 + b"0]("),
])
def test_a_preamble_that_is_not_base64_too_large_or_not_a_prefix_is_refused(tmp_path, text):
    root = write(tmp_path / "d", [{"i": i} for i in range(10)], 4)
    doc = parse_json((root / "000000" / "meta.json").read_bytes())
    doc["pickle_preamble"] = text
    (root / "000000" / "meta.json").write_bytes(dump_checksummed_json(doc))
    reseal(root)
    with pytest.raises(MetadataError, match="pickle_preamble") as info:  # by the schema or the reader
        AtlasDataset(root)[0]
    assert "000000" in str(info.value)


def test_a_preamble_above_the_reader_limit_is_refused(tmp_path):
    root = write(tmp_path / "d", [{"i": i, "k": "key"} for i in range(10)], 4)
    with pytest.raises(LimitError, match="pickle_preamble") as info:
        AtlasDataset(root, limits=Limits(max_preamble_size=8))
    assert info.value.shard == "000000"


def _slices(preamble: bytes, examples: list[Any]) -> list[bytes]:
    from torch_atlas_ds.grouped_writer import GroupedEncoder

    enc = GroupedEncoder()
    enc.preamble, enc._memo = preamble, {}
    return enc.slices(examples) or []


@pytest.mark.parametrize("n", [8, 40])
def test_a_part_that_is_not_a_list_of_its_count_is_refused(tmp_path, n):
    examples = [i for i in range(2 * n)]
    root = write(tmp_path / "d", examples, n, compression_strategy=0)
    preamble = grouped.preamble_from_json(parse_json((root / "000000" / "meta.json").read_bytes())["pickle_preamble"])
    slices = [pickle.dumps(i, protocol=3)[2:-1] for i in range(n, 2 * n)]
    slices[1] = slices[1] + slices[2]  # example 1's slice holds two items: its group (frame) one too many
    decoded = grouped.encode_frames(preamble, slices)
    raw_size = sum(map(len, decoded))
    groups_of = grouped.frame_group_offsets(slices) if n > grouped.FRAME_EXAMPLES else None
    replace_block(root, 1, grouped.stored_block(decoded, groups_of, raw_size), raw_size)
    ds = AtlasDataset(root)
    assert ds[0] == 0
    with pytest.raises(FormatError) as info:
        ds[n + 1]
    assert info.value.block == 1 and info.value.shard == "000000" and "expected a list of" in str(info.value)
    assert "data.bin" in str(info.value) and info.value.offset is not None
    with pytest.raises(FormatError, match="holds a list of"):
        list(AtlasDataset(root))


def _block_of_70(tmp_path: Path) -> tuple[Path, list[bytes], list[bytes], list[list[int]], int]:
    """A dataset of two blocks of 70 (uncompressed) and block 1's decoded frames, slices, group offsets and size."""
    examples = [{"i": i, "text": "x" * (i % 5)} for i in range(140)]
    root = write(tmp_path / "d", examples, 70, compression_strategy=0)
    preamble = grouped.preamble_from_json(parse_json((root / "000000" / "meta.json").read_bytes())["pickle_preamble"])
    slices = _slices(preamble, examples[70:])
    decoded = grouped.encode_frames(preamble, slices)
    return root, decoded, slices, grouped.frame_group_offsets(slices), sum(map(len, decoded))


def test_a_block_rebuilt_from_its_head_reads_back(tmp_path):
    root, decoded, _, offsets, raw_size = _block_of_70(tmp_path)
    replace_block(root, 1, grouped.stored_block(decoded, offsets, raw_size), raw_size)
    ds = AtlasDataset(root)
    assert [ds[i]["i"] for i in (139, 75, 108, 70)] == [139, 75, 108, 70]
    assert [x["i"] for x in AtlasDataset(root)] == list(range(140))


@pytest.mark.parametrize("bad", ["not increasing", "zero", "past the frame"])
def test_group_offsets_that_are_not_increasing_or_past_the_frame_are_refused(tmp_path, bad):
    root, decoded, _, offsets, raw_size = _block_of_70(tmp_path)
    frame = 1
    if bad == "not increasing":
        offsets[frame][2] = offsets[frame][1]
    elif bad == "zero":
        offsets[frame][0] = 0
    else:
        offsets[frame][2] = len(decoded[frame])  # the last group would start at or past the frame's end
    replace_block(root, 1, grouped.stored_block(decoded, offsets, raw_size), raw_size)
    with pytest.raises(FormatError, match="group offsets") as info:
        AtlasDataset(root)[70 + 32 * frame + 3]
    assert info.value.shard == "000000" and info.value.block == 1 and "data.bin" in str(info.value)


def test_a_head_larger_than_the_block_is_refused(tmp_path):
    root, decoded, _, offsets, raw_size = _block_of_70(tmp_path)
    stored = grouped.stored_block(decoded, offsets, raw_size)
    replace_block(root, 1, stored[:grouped.head_size(70, raw_size)], raw_size)
    for read in (lambda: AtlasDataset(root)[75], lambda: list(AtlasDataset(root))):
        with pytest.raises(FormatError, match="too short for its head") as info:
            read()
        assert info.value.block == 1 and info.value.shard == "000000"


def test_a_list_fallback_of_more_than_32_examples_has_the_new_head(tmp_path):
    root, _, _, _, _ = _block_of_70(tmp_path)
    data = pickle.dumps([{"i": i, "text": "x" * (i % 5)} for i in range(70, 140)], protocol=4)
    stored = grouped.fallback_block(70, data, len(data))
    head = grouped.head_size(70, len(data))
    assert head == 8 + 2 * 6 and grouped.is_fallback(stored, 70, b"", len(data))
    replace_block(root, 1, stored, len(data))
    ds = AtlasDataset(root)
    assert [ds[i]["i"] for i in (139, 75, 70)] == [139, 75, 70]
    assert [x["i"] for x in AtlasDataset(root)] == list(range(140))
    bad = bytearray(stored)
    bad[8] = 1  # a group offset of a fallback block that is not 0
    replace_block(root, 1, bytes(bad), len(data))
    with pytest.raises(FormatError, match="list fallback") as info:
        AtlasDataset(root)[75]
    assert info.value.block == 1


def test_frame_starts_out_of_order_are_refused(tmp_path):
    root = write(tmp_path / "d", [{"i": i} for i in range(140)], 70, compression_strategy=1)
    data = bytearray((root / "000000" / "data.bin").read_bytes())
    data[0:4] = (1 << 31).to_bytes(4, "little")  # frame 1 starts past the block
    (root / "000000" / "data.bin").write_bytes(bytes(data))
    reseal(root)
    with pytest.raises(FormatError, match="frame starts"):
        AtlasDataset(root)[40]
    with pytest.raises(FormatError, match="frame starts"):
        list(AtlasDataset(root))


def test_index_flags_must_say_grouped(tmp_path):
    root = write(tmp_path / "d", [{"i": i} for i in range(10)], 4)
    index = bytearray((root / "000000" / "index.bin").read_bytes())
    index[17] = 0x02
    (root / "000000" / "index.bin").write_bytes(bytes(index))
    reseal(root)
    with pytest.raises(FormatError, match="flags"):
        AtlasDataset(root)[0]


@pytest.mark.parametrize("codec,framing", [("zstd", Framing.GROUPED), ("lz4", Framing.BLOCK), ("none", Framing.BLOCK)])
def test_the_default_framing_is_grouped_with_zstd_and_block_where_random_reads_are_why_you_chose_the_codec(
        tmp_path, codec, framing):
    """LZ4 and none are chosen for random reads that decode fast or not at all; there grouped's unpickling of a
    group (or a frame of 32) would cost them 0.2-0.8x (README), so their default stays framing block."""
    with AtlasDatasetWriter(tmp_path / "d", 100, 8, codec=codec) as w:
        for i in range(40):
            w.add_example({"i": i})
    assert AtlasDataset(tmp_path / "d").shards[0].framing is framing


_WRITE_IMAGES = """
import sys
import numpy as np
from torch_atlas_ds import AtlasDatasetWriter
rng = np.random.default_rng(5)
garbage = [object() for _ in range(int(sys.argv[2]))]  # moves the addresses of what follows
with AtlasDatasetWriter(sys.argv[1], 100, 40, compression_strategy=2) as writer:
    for i in range(300):
        writer.add_example({"image": rng.integers(0, 32, (3, 16, 16), dtype=np.uint8), "label": i % 10,
                            "box": rng.random(4).astype(np.float32), "name": f"img{i}"})
"""


def test_the_same_examples_written_in_two_processes_give_the_same_bytes(tmp_path):
    """The preamble lists its shared objects in pickling order, not in the order of their addresses."""
    import subprocess
    import sys

    for name, garbage in (("a", "0"), ("b", "12345")):
        done = subprocess.run([sys.executable, "-c", _WRITE_IMAGES, str(tmp_path / name), garbage],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")
