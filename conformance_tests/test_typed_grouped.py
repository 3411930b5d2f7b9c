"""Framing grouped over typed examples (TYPED-7): the writer stores framing list's MessagePack array in frames
of 32 under a head of frame starts and group offsets (a one-frame block's too); the reference reads a whole
block with one decode and a random read with one frame and one group; the validator checks that every frame
boundary and group offset falls between examples, and reports each crafted defect under its id."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_reference_helpers import read_index, replace_block

from atlas_format import grouped, typed
from atlas_format.metadata import parse_json
from atlas_validator import validate
from torch_atlas_ds import AtlasDataset, AtlasDatasetWriter
from torch_atlas_ds.errors import FormatError
from torch_atlas_ds.typed_codec import array_of_encoded, encode


def records(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "text": "word " * (i % 7), "pair": (i, -i), "v": np.arange(i % 4, dtype=np.int16)}
            for i in range(n)]


def write(root: Path, values: list[Any], block_size: int, **kw: Any) -> Path:
    with AtlasDatasetWriter(root, 1000, block_size, encoding="typed", framing="grouped", compression_strategy=0,
                            **kw) as w:
        for v in values:
            w.add_example(v)
    return root


def stored_block(root: Path, b: int) -> tuple[bytes, int]:
    _, entries = read_index(root / "000000")
    data = (root / "000000" / "data.bin").read_bytes()
    e = entries[b]
    return data[int(e["offset"]):int(e["offset"]) + int(e["stored_size"])], int(e["raw_size"])


def same_values(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) if isinstance(b[k], np.ndarray) else a[k] == b[k]
                                        for k in b)


@pytest.mark.parametrize("n, block_size", [(40, 40), (90, 64), (8, 8), (20, 20), (3, 3)])
def test_the_stored_block_is_the_list_array_in_frames_of_32_under_its_head(tmp_path, n, block_size):
    values = records(n)
    root = write(tmp_path / "d", values, block_size)
    shard = parse_json((root / "000000" / "meta.json").read_bytes())
    assert shard["framing"] == "grouped" and grouped.PREAMBLE_MEMBER not in shard
    group = grouped.group_of_meta(shard)
    first = min(n, block_size)
    stored, raw_size = stored_block(root, 0)
    starts, offsets = grouped.read_head(stored, first, raw_size, group, typed=True)
    frames = [stored[a:e] for a, e in zip(starts, (*starts[1:], len(stored)), strict=True)]
    items = [encode(v) for v in values[:first]]
    assert b"".join(frames) == array_of_encoded(items) and len(frames) == grouped.frames(first)
    size = grouped.block_group(first, group)
    for j, frame_offsets in enumerate(offsets):  # each group offset is where its group's first example starts
        in_frame = items[32 * j:32 * j + 32]
        assert list(frame_offsets) == [sum(map(len, in_frame[:q])) for q in range(size, len(in_frame), size)]
    assert frames[0].startswith(typed.array_header(first))


def test_every_read_path_returns_the_examples_and_a_random_read_decodes_its_example_alone(tmp_path):
    values = records(100)
    root = write(tmp_path / "d", values, 64)
    assert all(same_values(a, b) for a, b in zip(AtlasDataset(root), values, strict=True))
    ds = AtlasDataset(root)
    assert all(same_values(ds[i], values[i]) for i in (70, 3, 99, 40, 0, 63))
    assert all(same_values(a, values[i]) for a, i in zip(ds.__getitems__([5, 77, 5, 64]), [5, 77, 5, 64],
                                                          strict=True))
    fresh = AtlasDataset(root)
    shard = fresh.shards[0]
    decoded: list[int] = []
    loads = shard.loads
    shard.loads = lambda data: (decoded.append(len(data)), loads(data))[1]
    shard._reset()  # the framing binds the shard's loads when it is made
    assert same_values(fresh[70], values[70])
    assert grouped.group_of_meta(parse_json((root / "000000" / "meta.json").read_bytes())) > 1
    assert decoded == [len(encode(values[70]))]  # its group split undecoded, the example alone decoded


def _edit_head(root: Path, b: int, n: int, change: Any) -> None:
    """Rewrite block ``b``'s head values (frame starts, then group offsets) with ``change`` (codec none)."""
    stored, raw_size = stored_block(root, b)
    group = grouped.group_of_meta(parse_json((root / "000000" / "meta.json").read_bytes()))
    layout = grouped.head_struct(n, grouped.offset_width(raw_size), group, True)
    values = list(layout.unpack_from(stored))
    change(values)
    replace_block(root, b, layout.pack(*values) + stored[layout.size:], raw_size)


def test_a_group_offset_inside_an_example_is_atl420_and_reading_in_order_is_unchanged(tmp_path):
    values = records(40)
    root = write(tmp_path / "d", values, 40)

    def shift(values: list[int]) -> None:
        values[1] += 1  # frame 0's first group offset (after the one frame start)
    _edit_head(root, 0, 40, shift)
    report = validate(root)
    assert "ATL420" in report.ids() and not report.ok
    assert any("frame 0's group offset 1" in f.message for f in report.findings if f.id == "ATL420")
    assert all(same_values(a, b) for a, b in zip(AtlasDataset(root), values, strict=True))


def test_a_frame_boundary_between_other_examples_is_atl420(tmp_path):
    values = records(40)
    root = write(tmp_path / "d", values, 40)
    last = len(encode(values[31]))
    _edit_head(root, 0, 40, lambda head: head.__setitem__(0, head[0] - last))  # frame 1 starts one example early
    report = validate(root)
    assert "ATL420" in report.ids()
    assert any("frame 0 ends at decoded offset" in f.message for f in report.findings if f.id == "ATL420")


@pytest.mark.parametrize("case", ["header not shortest", "count one less", "frame 0 empty"])
def test_a_broken_array_or_frame_is_reported_and_refused_or_read_whole(tmp_path, case):
    values = records(8)
    root = write(tmp_path / "d", values, 8)  # one frame of 8: the head holds 7 group offsets (groups of 1)
    stored, raw_size = stored_block(root, 0)
    head = grouped.head_size(8, raw_size, grouped.group_of_meta(parse_json(
        (root / "000000" / "meta.json").read_bytes())), typed=True)
    assert stored[head] == 0x98  # fixarray of 8
    if case == "header not shortest":
        replace_block(root, 0, stored[:head] + b"\xdc\x00\x08" + stored[head + 1:], raw_size + 2)
        want = "ATL418"
    elif case == "count one less":
        replace_block(root, 0, stored[:head] + b"\x97" + stored[head + 1:], raw_size)
        want = "ATL411"
    else:
        root = write(tmp_path / "e", records(40), 40)
        stored, raw_size = stored_block(root, 0)
        head = grouped.head_size(40, raw_size, 8, typed=True)
        replace_block(root, 0, head.to_bytes(4, "little") + stored[4:], raw_size)  # frame 1 starts where 0 does
        want = "ATL416"
    assert want in validate(root).ids()
    if case == "header not shortest":  # the array still decodes whole: a validator's finding (random reads differ)
        assert all(same_values(a, b) for a, b in zip(AtlasDataset(root), values, strict=True))
        return
    with pytest.raises(FormatError) as info:
        list(AtlasDataset(root))
    assert info.value.block == 0 and info.value.shard == "000000"


def test_a_bad_example_leaves_the_rest_of_its_group_readable_at_random_and_in_order(tmp_path):
    """A random read of a group of 8 decodes only its example: the group's neighbours of an example whose array
    has an unknown dtype code are read, and that example alone is refused, naming itself."""
    values = records(64)
    root = write(tmp_path / "d", values, 64)
    assert grouped.group_of_meta(parse_json((root / "000000" / "meta.json").read_bytes())) == 8
    stored, raw_size = stored_block(root, 0)
    example = encode(values[10])
    at = stored.index(example) + example.rindex(b"\xc9")  # the ndarray's ext 32 (its data holds no 0xc9)
    assert stored[at + 5] == typed.EXT_NDARRAY
    replace_block(root, 0, stored[:at + 6] + b"\xee" + stored[at + 7:], raw_size)  # its dtype code
    assert "ATL704" in validate(root).ids()
    ds = AtlasDataset(root)
    assert same_values(ds[11], values[11]) and same_values(ds[9], values[9])  # the same group of 8 (8-15)
    with pytest.raises(FormatError, match="unknown dtype code") as info:
        ds[10]
    assert info.value.example == 10 and info.value.block == 0
    in_order = AtlasDataset(root)
    assert all(same_values(in_order[i], values[i]) for i in range(10))
    with pytest.raises(FormatError) as info:
        in_order[10]
    assert info.value.example == 10
    assert all(same_values(in_order[i], values[i]) for i in range(11, 64))
