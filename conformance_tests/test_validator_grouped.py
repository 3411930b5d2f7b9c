"""The validator on framing grouped (V2-FRAME-6..9): valid datasets of the independent test writer pass clean,
and every rule that makes a random read return what an in-order read returns is checked, by finding id."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import grouped_vectors as gv
import pytest
import zstandard
from validator_vectors import OsSystem, examples, write_v2

from atlas_format import grouped
from atlas_format.constants import Limits
from atlas_validator import validate

S0 = "000000"


def _grouped(tmp: Path, n: int = 40, **kw: Any) -> Path:
    kw.setdefault("shard_size", 16)
    kw.setdefault("codec", "zstd")
    return write_v2(tmp / "ds", examples(n), framing="grouped", **kw)


def _errors(report: Any) -> list[dict[str, Any]]:
    return [f.to_dict() for f in report.findings if f.severity != "info"]


@pytest.mark.parametrize("codec,dictionary", [("none", "none"), ("zstd", "none"), ("zstd", "shared"),
                                              ("zstd", "shard"), ("lz4", "none")])
@pytest.mark.parametrize("block_size", [1, 8, 32, 33, 40, 64, 70, 100])
def test_a_valid_grouped_dataset_validates_clean(tmp_path, codec, dictionary, block_size):
    shard_size = 8 * block_size if dictionary != "none" else 3 * block_size + 5
    root = _grouped(tmp_path, n=2 * shard_size + 3, codec=codec, dictionary=dictionary, block_size=block_size,
                    shard_size=shard_size)
    report = validate(root)
    assert report.ok and not _errors(report), _errors(report)
    assert not report.ids(), report.ids()
    if dictionary != "none":
        assert f'"dictionary": "{dictionary}"'.encode() in (root / S0 / "meta.json").read_bytes()


@pytest.mark.parametrize("name", sorted(gv.CRAFTED))
def test_every_crafted_defect_is_caught_by_its_id(tmp_path, name):
    finding_id = gv.CRAFTED[name][0]
    options = gv.crafted_options(name)
    options.setdefault("shard_size", 16)
    root = write_v2(tmp_path / "ds", examples(40 if options["block_size"] < 33 else 150), **options)
    report = validate(root)
    assert finding_id in report.ids(), _errors(report)
    assert not report.ok and "ATL990" not in report.ids()
    found = next(f for f in report.findings if f.id == finding_id)
    assert found.path and found.message and found.shard == S0


def test_a_slice_reading_another_groups_memo_names_both_readings_and_the_example(tmp_path):
    root = write_v2(tmp_path / "ds", examples(40), **gv.crafted_options("slice-reads-another-groups-memo"),
                    shard_size=16)
    (found,) = [f for f in validate(root).findings if f.id == "ATL422"]
    assert "two readings" in found.message and "group 1" in found.message
    assert (found.block, found.position, found.example) == (0, 1, 1)


def test_a_memo_entry_read_in_its_own_group_is_one_reading(tmp_path):
    """Groups of 2 (16 examples): example 1 reads the dict example 0 PUT; both reads give it twice."""
    hook = gv.CRAFTED["slice-reads-another-groups-memo"][2]["slices_hook"]
    root = _grouped(tmp_path, block_size=16, slices_hook=hook)
    report = validate(root)
    assert report.ok and not report.ids(), _errors(report)


def test_a_group_offset_between_examples_but_in_the_wrong_place_is_caught(tmp_path):
    """Groups of 2: offset 1 moved back to the end of example 0 (an opcode boundary, one example too few)."""
    lengths: list[int] = []

    def slices(k: int, b: int, preamble: bytes, sl: list[bytes]) -> list[bytes]:
        if (k, b) == (0, 0):
            lengths[:] = [len(s) for s in sl]
        return sl

    def frames(k: int, b: int, f: list[bytes]) -> list[bytes]:
        if (k, b) != (0, 0):
            return f
        return [gv.with_offsets(f[0], 16, lambda o: [o[0], lengths[0], *o[2:]])]

    root = _grouped(tmp_path, block_size=16, slices_hook=slices, raw_hook=frames)
    found = [f for f in validate(root).findings if f.id == "ATL420"]
    assert found and "expected its 2 examples" in found[0].message, found


def test_the_shards_preamble_must_match_the_blocks(tmp_path):
    for block_size, name in ((8, "one frame"), (70, "frames of 32")):
        def hook(k: int, b: int, f: list[bytes]) -> list[bytes]:
            return [f[0].replace(b"text", b"texu", 1), *f[1:]] if (k, b) == (0, 0) else f
        root = _grouped(tmp_path / name, n=150, block_size=block_size, shard_size=140, raw_hook=hook)
        report = validate(root)
        assert "ATL419" in report.ids(), (name, _errors(report))


def test_a_list_fallback_block_is_accepted_and_counted(tmp_path):
    for block_size in (8, 70):
        root = _grouped(tmp_path / str(block_size), n=300, block_size=block_size, shard_size=150,
                        fallback=lambda k, b: b in (0, 1))
        report = validate(root)
        assert report.ok, _errors(report)
        notes = [f for f in report.findings if f.id == "ATL423"]
        assert [(f.shard, f.data) for f in notes] == [(S0, {"fallback_blocks": 2}), ("000001", {"fallback_blocks": 2})]
        assert notes[0].severity == "info"


def test_a_fallback_with_a_wrong_count_is_checked_as_framing_list(tmp_path):
    def hook(k: int, b: int, f: list[bytes]) -> list[bytes]:
        return [f[0].replace(b"e.", b"0e.")] if (k, b) == (0, 0) else f  # POP: the last example dropped
    root = _grouped(tmp_path, n=40, block_size=8, fallback=lambda k, b: b == 0, raw_hook=hook)
    assert "ATL411" in validate(root).ids()


def test_index_flags_bit_2_is_framing_grouped(tmp_path):
    def two_bits(k: int, header: dict[str, Any], entries: list[Any]) -> None:
        header["flags"] = 0x06
    report = validate(_grouped(tmp_path / "two", index_hook=two_bits))
    found = next(f for f in report.findings if f.id == "ATL307")
    assert "bit 1 'list', bit 2 'grouped'" in found.message

    def list_bit(k: int, header: dict[str, Any], entries: list[Any]) -> None:
        header["flags"] = 0x02
    assert "ATL307" in validate(_grouped(tmp_path / "list", index_hook=list_bit)).ids()


@pytest.mark.parametrize("change,finding_id", [
    (lambda d: d.pop("pickle_preamble"), "ATL203"),
    (lambda d: d.update(pickle_preamble="gAM"), "ATL216"),  # no padding
    (lambda d: d.update(pickle_preamble="gAN="), "ATL216"),  # trailing bits: not canonical
    (lambda d: d.update(pickle_preamble=grouped.preamble_to_json(b"\x80\x03]q\x00.")), "ATL216"),
    (lambda d: d.update(pickle_preamble=grouped.preamble_to_json(b"\x80\x04]q\x000](")), "ATL216"),
    (lambda d: d.update(pickle_preamble=grouped.preamble_to_json(b"\x80\x03]q\x00]q\x000](")), "ATL216"),
    (lambda d: d.update(pickle_preamble=grouped.preamble_to_json(b"\x80\x03]q\x00q\x000](")), "ATL216"),
    (lambda d: d.update(pickle_preamble=grouped.preamble_to_json(b"\x80\x03]q\x00\x940](")), "ATL216"),
    (lambda d: d.update(pickle_preamble=grouped.preamble_to_json(b"\x80\x03cos\nsystem\nq\x000](")), "ATL601"),
])
def test_the_preamble_member_is_checked(tmp_path, change, finding_id):
    root = _grouped(tmp_path, shard_meta_hook=lambda k, d: change(d) if k == 0 else None)
    report = validate(root)
    assert finding_id in report.ids(), _errors(report)
    assert any(f.id == finding_id and f.path == f"{S0}/meta.json" for f in report.findings)


def test_a_preamble_above_the_limit_is_refused(tmp_path):
    report = validate(_grouped(tmp_path), limits=Limits(max_preamble_size=16))
    assert any(f.id == "ATL900" and "max_preamble_size" in f.message for f in report.findings)


def test_a_preamble_on_another_framing_is_a_schema_error(tmp_path):
    root = write_v2(tmp_path / "ds", examples(8), framing="list",
                    shard_meta_hook=lambda k, d: d.update(pickle_preamble="gAM="))
    assert "ATL203" in validate(root).ids()


def test_a_policy_finding_in_a_slice_names_the_example(tmp_path):
    for block_size, block, k in ((8, 1, 5), (70, 0, 40)):
        def hook(s: int, b: int, preamble: bytes, sl: list[bytes], block: int = block, k: int = k) -> list[bytes]:
            if (s, b) == (0, block):
                sl = list(sl)
                sl[k] = gv.slice_after(preamble, OsSystem("true"))
            return sl
        root = _grouped(tmp_path / str(block_size), n=150, block_size=block_size, shard_size=140, slices_hook=hook)
        found = [f for f in validate(root).findings if f.id == "ATL601"]
        assert found, block_size
        assert (found[0].block, found[0].position, found[0].example) == (block, k, block * block_size + k)
        assert found[0].index == block * block_size + k


def test_frames_that_declare_more_than_raw_size_are_refused_before_decoding(tmp_path, monkeypatch):
    from atlas_format import codecs
    from atlas_validator import grouped_checks

    big = codecs.codec_info("zstd", magicless=True).compressor(3, None)(b"x" * 100_000)
    decoded: list[int] = []
    real = grouped_checks.decode_frame
    monkeypatch.setattr(grouped_checks, "decode_frame", lambda info, data, size, *a, **kw: decoded.append(size) or real(
        info, data, size, *a, **kw))
    root = _grouped(tmp_path, n=150, block_size=70, shard_size=140,
                    frame_hook=lambda k, b, j, f: big if (k, b, j) == (0, 0, 1) else f)
    report = validate(root)
    assert any(f.id == "ATL403" and "refused before decoding" in f.message for f in report.findings), _errors(report)
    assert decoded and 100_000 not in decoded


def test_a_magicless_frame_with_a_dictionary_id_is_caught(tmp_path):
    samples = [bytes(f"{i} lorem ipsum dolor {i * 7}", "ascii") * 3 for i in range(300)]
    dictionary = zstandard.train_dictionary(1024, samples)
    cctx = zstandard.ZstdCompressor(dict_data=dictionary, write_content_size=True)
    seen: list[bytes] = []
    root = _grouped(tmp_path, block_size=8,
                    raw_hook=lambda k, b, f: (seen.extend(f) if (k, b) == (0, 0) else None) or f,
                    frame_hook=lambda k, b, j, f: cctx.compress(seen[0])[4:] if (k, b) == (0, 0) else f)
    found = [f for f in validate(root).findings if f.id == "ATL417"]
    assert found and "dictionary id" in found[0].message


@pytest.mark.parametrize("block_size", [8, 70])
def test_random_damage_to_decoded_frames_never_crashes(tmp_path, block_size):
    rng = random.Random(block_size)
    for trial in range(25):
        def hook(k: int, b: int, f: list[bytes]) -> list[bytes]:
            if (k, b) != (0, 0):
                return f
            j = rng.randrange(len(f))
            frame = bytearray(f[j])
            for _ in range(rng.randint(1, 3)):
                frame[rng.randrange(len(frame))] = rng.randrange(256)
            return [*f[:j], bytes(frame), *f[j + 1:]]
        root = _grouped(tmp_path / str(trial), n=150, codec="none", block_size=block_size, shard_size=140,
                        raw_hook=hook)
        report = validate(root)
        assert "ATL990" not in report.ids(), [f.to_dict() for f in report.findings if f.id == "ATL990"]


def test_a_slice_that_changes_a_preamble_object_is_two_readings(tmp_path):
    """V2-FRAME-6: examples share one list, which the preamble memoizes; example 1's slice APPENDs to it. An
    in-order read then shows the appended item in every example of the block, a random read only in its own."""
    shared = ["a", "b"]
    items = [{"i": i, "tags": shared} for i in range(16)]
    _, memo = gv.preamble_of(items)
    index = memo[id(shared)][0]

    hook = gv.replace_slice(1, lambda preamble, slices: gv.get_op(index) + b"K\x05a")  # BINGET, BININT1 5, APPEND

    root = write_v2(tmp_path / "ds", items, framing="grouped", codec="zstd", block_size=8, shard_size=16,
                    slices_hook=hook)
    (found,) = [f for f in validate(root).findings if f.id == "ATL422"]
    assert "APPEND changes" in found.message and "preamble" in found.message
    assert (found.block, found.position) == (0, 1)
    clean = write_v2(tmp_path / "clean", items, framing="grouped", codec="zstd", block_size=8, shard_size=16)
    assert validate(clean).ok


def test_a_slice_reading_a_memo_entry_of_an_earlier_group_of_its_frame_is_two_readings(tmp_path):
    """Blocks of 70: example 40 (frame 1, group 1) reads the memo index example 32 (frame 1, group 0) PUT. A frame
    used to be the part; now a random read unpickles P and the group of 8, which lacks that entry."""
    hook = gv.replace_slice(40, lambda preamble, slices: gv.get_op(gv.memo_count(preamble)))

    root = _grouped(tmp_path, n=150, block_size=70, shard_size=140, slices_hook=hook)
    found = [f for f in validate(root).findings if f.id == "ATL422"]
    assert found, _errors(validate(root))
    assert "frame 1 group 1" in found[0].message and (found[0].block, found[0].position) == (0, 40)


def test_a_memo_entry_read_in_its_own_group_of_a_frame_is_one_reading(tmp_path):
    """Blocks of 70: example 41 reads the memo index example 40 PUT, both in frame 1's group 1."""
    hook = gv.replace_slice(41, lambda preamble, slices: gv.get_op(gv.memo_count(preamble)))

    root = _grouped(tmp_path, n=150, block_size=70, shard_size=140, slices_hook=hook)
    report = validate(root)
    assert report.ok and not report.ids(), _errors(report)


@pytest.mark.parametrize("change,finding_id,words", [
    (lambda o: [[0, *o[0][1:]], *o[1:]], "ATL416", "greater than 0"),
    (lambda o: [[o[0][1], o[0][0], o[0][2]], *o[1:]], "ATL416", "increase strictly"),
    (lambda o: [o[0], [*o[1][:2], 1 << 15], *o[2:]], "ATL416", "not before the end"),
    (lambda o: [[o[0][0] - 1, *o[0][1:]], *o[1:]], "ATL420", "frame 0 group 0"),
])
def test_the_head_group_offsets_are_checked(tmp_path, change, finding_id, words):
    root = _grouped(tmp_path, n=150, block_size=70, shard_size=140,
                    head_hook=lambda k, b, o: change(o) if (k, b) == (0, 0) else o)
    report = validate(root)
    found = [f for f in report.findings if f.id == finding_id]
    assert found and words in found[0].message, _errors(report)
    assert "ATL990" not in report.ids() and found[0].block == 0


def test_a_block_of_more_than_64_kib_has_4_byte_group_offsets(tmp_path):
    import numpy as np

    from atlas_format.index_v2 import INDEX_ENTRY_DTYPE

    items = [{"id": i, "blob": bytes([i % 251]) * 2000} for i in range(80)]
    root = write_v2(tmp_path / "ds", items, framing="grouped", codec="none", block_size=40, shard_size=80)
    entries = np.frombuffer((root / S0 / "index.bin").read_bytes(), dtype=INDEX_ENTRY_DTYPE, offset=64)
    raw, stored = int(entries["raw_size"][0]), int(entries["stored_size"][0])
    assert raw >= 1 << 16 and stored - raw == grouped.head_size(40, raw) == 4 + 4 * 3
    report = validate(root)
    assert report.ok and not report.ids(), _errors(report)


def test_codec_none_stored_size_is_raw_size_plus_the_head(tmp_path):
    def index(k: int, header: dict[str, Any], entries: list[Any]) -> None:
        if k == 0:
            offset, stored, raw, checksum = entries[0]
            entries[0] = (offset, stored, raw + 2, checksum)
    report = validate(_grouped(tmp_path / "bad", n=150, codec="none", block_size=70, shard_size=140,
                               index_hook=index))
    found = [f for f in report.findings if f.id == "ATL310"]
    assert found and "bytes of head" in found[0].message, _errors(report)


def test_a_list_fallback_with_a_nonzero_group_offset_is_caught(tmp_path):
    def head(k: int, b: int, stored: bytes) -> bytes:
        if (k, b) != (0, 0):
            return stored
        at = grouped.frame_table_size(70)
        return stored[:at] + b"\x01" + stored[at + 1:]
    root = _grouped(tmp_path, n=150, block_size=70, shard_size=140, fallback=lambda k, b: b == 0, stored_hook=head)
    found = [f for f in validate(root).findings if f.id == "ATL416"]
    assert found and "group offset" in found[0].message


def _sized(count: int, size: int) -> list[dict[str, Any]]:
    """Examples whose slices take about ``size`` bytes."""
    rng = random.Random(size)
    return [{"payload": bytes(rng.getrandbits(8) for _ in range(size)), "label": i} for i in range(count)]


@pytest.mark.parametrize("group", [4, 2, 1])
@pytest.mark.parametrize("block_size", [8, 20, 33, 70])
@pytest.mark.parametrize("codec", ["zstd", "none"])
def test_a_grouped_dataset_of_smaller_groups_validates_clean_and_reads_the_random_way(tmp_path, group, block_size,
                                                                                       codec):
    import mini_reader

    items = examples(150)
    root = write_v2(tmp_path / "ds", items, framing="grouped", codec=codec, block_size=block_size, shard_size=100,
                    group=group)
    assert (root / S0 / "index.bin").read_bytes()[17] == 0x04 | grouped.group_flags(group)
    report = validate(root)
    assert report.ok and not report.ids(), _errors(report)
    assert list(mini_reader.open_dataset(root)) == items  # mini_reader reads each example by its group


@pytest.mark.parametrize("size", [600, 1100, 3000])
def test_the_reference_writers_group_sizes_validate_clean(tmp_path, size):
    from torch_atlas_ds import AtlasDatasetWriter

    with AtlasDatasetWriter(tmp_path / "ds", 100, 64) as writer:
        for example in _sized(150, size):
            writer.add_example(example)
    assert (tmp_path / "ds" / S0 / "index.bin").read_bytes()[17] != 0x04  # not groups of 8
    report = validate(tmp_path / "ds")
    assert report.ok and not report.ids(), _errors(report)


@pytest.mark.parametrize("group,flags,meta,words", [
    (1, 0x04, None, "groups of 8), meta.json group_size is 1"),
    (8, 0x04 | 0x18, None, "groups of 1), meta.json group_size is 8 (absent)"),
    (2, 0x04 | 0x08, None, "groups of 4), meta.json group_size is 2"),
    (8, 0x02 | 0x08, "list", "which only framing grouped has; the framing bits say 'list'"),
])
def test_group_size_bits_that_disagree_with_meta_json_are_atl307(tmp_path, group, flags, meta, words):
    def hook(k: int, header: dict[str, Any], entries: list[Any]) -> None:
        header["flags"] = flags

    if meta == "list":
        root = write_v2(tmp_path / "ds", examples(40), framing="list", block_size=8, shard_size=16, index_hook=hook)
    else:
        root = _grouped(tmp_path, group=group, block_size=8, index_hook=hook)
    report = validate(root)
    found = [f for f in report.findings if f.id == "ATL307"]
    assert found and words in found[0].message and found[0].offset == 17, _errors(report)
    assert not report.ok and "ATL990" not in report.ids()


def test_groups_of_1_make_a_memo_read_across_examples_two_readings(tmp_path):
    """Blocks of 70 in groups of 1: example 41 reads the memo index example 40 PUT. In groups of 8 that is one
    group (one reading); in groups of 1 a random read of 41 lacks the entry (ATL422)."""
    hook = gv.replace_slice(41, lambda preamble, slices: gv.get_op(gv.memo_count(preamble)))
    root = _grouped(tmp_path, n=150, block_size=70, shard_size=140, slices_hook=hook, group=1)
    found = [f for f in validate(root).findings if f.id == "ATL422"]
    assert found and (found[0].block, found[0].position) == (0, 41), _errors(validate(root))


def test_a_head_offset_of_groups_of_1_out_of_order_is_caught(tmp_path):
    root = _grouped(tmp_path, n=150, block_size=70, shard_size=140, group=1,
                    head_hook=lambda k, b, o: [[o[0][1], o[0][0], *o[0][2:]], *o[1:]] if (k, b) == (0, 0) else o)
    report = validate(root)
    found = [f for f in report.findings if f.id == "ATL416"]
    assert found and "increase strictly" in found[0].message and len(found[0].message) < 600, _errors(report)
