"""The validator on version 2 datasets of framing "example" (spec V2-FRAME-1..4): one codec frame per example.

Datasets come from the independent test writer (``write_v2(..., framing="example")``), never from
torch_atlas_ds. Each test breaks one rule of V2-FRAME (or one rule that example frames share with
block frames) with every checksum correct, and checks the finding, its location (shard, block,
example, byte offset of the frame in data.bin) and that the validator never raised.
"""

from __future__ import annotations

import json
import pickle
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import lz4.frame
import numpy as np
import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st
from validator_vectors import OsSystem, examples, flip, resign, resign_shard, write_v2

from atlas_format.block_v2 import encode_block, table_size
from atlas_format.constants import V2_INDEX_HEADER_SIZE, Limits
from atlas_format.enums import INDEX_FLAG_EXAMPLE_FRAMES
from atlas_format.index_v2 import INDEX_ENTRY_DTYPE, IndexHeader
from atlas_format.zstd_frame import ZstdFrameHeader, frame_header_fields
from atlas_validator import validate

S0, S1 = "000000", "000001"
N, SHARD_SIZE, BLOCK_SIZE = 40, 16, 4  # shards of 16, 16, 8 examples; blocks of 4


def framed(tmp: Path, name: str = "ds", **kw: Any) -> Path:
    kw.setdefault("shard_size", SHARD_SIZE)
    kw.setdefault("block_size", BLOCK_SIZE)
    return write_v2(tmp / name, examples(kw.pop("n", N)), framing="example", **kw)


def ids(report: Any) -> set[str]:
    return set(report.ids())


def only(report: Any, finding_id: str) -> list[Any]:
    found = [f for f in report.findings if f.id == finding_id]
    assert found, [f.to_dict() for f in report.findings]
    return found


def no_internal_error(report: Any) -> None:
    assert "ATL990" not in ids(report), [f.to_dict() for f in report.findings if f.id == "ATL990"]


def entry(root: Path, shard: str, block: int) -> tuple[int, int, int]:
    """(offset, stored_size, raw_size) of a block, from its index entry."""
    index = (root / shard / "index.bin").read_bytes()
    row = np.frombuffer(index, dtype=INDEX_ENTRY_DTYPE, offset=V2_INDEX_HEADER_SIZE)[block]
    return int(row["offset"]), int(row["stored_size"]), int(row["raw_size"])


def frame_offset(root: Path, shard: str, block: int, position: int) -> int:
    """Offset in data.bin of one example's frame: the block's offset + its table + the frame's offset."""
    offset, stored, _raw = entry(root, shard, block)
    data = (root / shard / "data.bin").read_bytes()[offset:offset + stored]
    (n,) = struct.unpack_from("<I", data, 0)
    offsets = struct.unpack_from(f"<{n + 1}I", data, 4)
    return offset + table_size(n) + offsets[position]


def frame_hook_at(at: tuple[int, int, int], change: Any) -> Any:
    def hook(k: int, b: int, j: int, frame: bytes) -> bytes:
        return change(frame) if (k, b, j) == at else frame
    return hook


def _zstd_raw(frame: bytes, dictionary: bytes | None = None) -> bytes:
    dctx = zstandard.ZstdDecompressor(dict_data=zstandard.ZstdCompressionDict(dictionary) if dictionary else None)
    return dctx.decompress(frame)


# -- valid datasets ----------------------------------------------------------------------------


CONFIGS = [("zstd", "none"), ("zstd", "shared"), ("zstd", "shard"), ("lz4", "none")]


@pytest.mark.parametrize("codec,dictionary", CONFIGS, ids=[f"{c}-{d}" for c, d in CONFIGS])
def test_example_framed_dataset_is_clean(tmp_path, codec, dictionary):
    kw: dict[str, Any] = {"n": 72, "shard_size": 32} if dictionary != "none" else {}
    root = framed(tmp_path, codec=codec, dictionary=dictionary, **kw)
    shard_doc = json.loads((root / S0 / "meta.json").read_bytes())
    assert shard_doc["framing"] == "example" and shard_doc["dictionary"] == dictionary  # the dictionary is used
    assert json.loads((root / "meta.json").read_bytes())["framing"] == "example"
    assert IndexHeader.parse((root / S0 / "index.bin").read_bytes()).flags == INDEX_FLAG_EXAMPLE_FRAMES
    for jobs in (1, 2):
        report = validate(root, jobs=jobs)
        assert report.ok and report.findings == [], [f.to_dict() for f in report.findings]
    blocks = [(s["name"], b) for s in json.loads((root / "meta.json").read_bytes())["shards"]
              for b in range(s["num_blocks"])]
    assert report.stats.blocks == len(blocks)
    # raw_size counts the table and every decoded example: exactly what was decoded
    assert report.stats.decoded_bytes == sum(entry(root, s, b)[2] for s, b in blocks)
    assert validate(root, quick=True).ok


def test_dictionary_frames_carry_the_dictionary_id(tmp_path):
    root = framed(tmp_path, dictionary="shard", n=64, shard_size=32)
    dict_id = json.loads((root / S0 / "meta.json").read_bytes())["dict_id"]
    offset, stored, _raw = entry(root, S0, 2)
    data = (root / S0 / "data.bin").read_bytes()[offset:offset + stored]
    first = frame_offset(root, S0, 2, 0) - offset
    assert dict_id and zstandard.get_frame_parameters(data[first:]).dict_id == dict_id


def test_explicit_block_framing_is_the_default(tmp_path):
    """framing "block" written explicitly in both meta.json means the same as absent."""
    root = write_v2(tmp_path / "ds", examples(N), shard_meta_hook=lambda k, d: d.update(framing="block"),
                    root_meta_hook=lambda d: d.update(framing="block"))
    report = validate(root)
    assert report.ok and report.findings == [], [f.to_dict() for f in report.findings]


# -- metadata and index (V2-FRAME-1, V2-INDEX-2) ----------------------------------------------


def test_meta_example_but_index_flags_zero(tmp_path):
    root = framed(tmp_path, index_hook=lambda k, header, entries: header.update(flags=0) if k == 1 else None)
    report = validate(root)
    [finding] = only(report, "ATL307")
    assert (finding.shard, finding.path, finding.offset) == (S1, f"{S1}/index.bin", 17)
    assert "framing" in finding.message and "ATL309" not in ids(report)
    no_internal_error(report)


def test_meta_block_but_index_flags_example(tmp_path):
    root = write_v2(tmp_path / "ds", examples(N),
                    index_hook=lambda k, header, entries: header.update(flags=INDEX_FLAG_EXAMPLE_FRAMES))
    report = validate(root)
    assert {f.shard for f in only(report, "ATL307")} == {S0, S1, "000002"}
    assert "absent" in only(report, "ATL307")[0].message
    assert "ATL309" not in ids(report) and not report.ok


def test_undefined_flag_bit_is_atl309_not_a_framing_disagreement(tmp_path):
    root = framed(tmp_path, index_hook=lambda k, header, entries: header.update(flags=0x81) if k == 0 else None)
    report = validate(root)
    [finding] = only(report, "ATL309")
    assert finding.offset == 17 and "0x80" in finding.message
    assert "ATL307" not in ids(report)
    assert ids(report) == {"ATL309"}  # the blocks were still checked, as example frames, and are clean


def test_shard_framing_differs_from_root(tmp_path):
    root = framed(tmp_path, root_meta_hook=lambda d: d.pop("framing"))
    report = validate(root)
    found = only(report, "ATL206")
    assert {f.shard for f in found} == {S0, S1, "000002"}
    assert all("framing" in f.message and "V2-FRAME-1" in f.clause for f in found)
    assert ids(report) == {"ATL206"}


def test_one_shard_with_block_framing(tmp_path):
    """Shard 000001 rewritten as block-framed (consistent in itself): only the root disagreement remains."""
    root = framed(tmp_path)
    block = write_v2(tmp_path / "block", examples(N))
    shutil.rmtree(root / S1)
    shutil.copytree(block / S1, root / S1)
    resign_shard(root, S1, lambda d: None)

    def fix(doc: dict[str, Any]) -> None:
        doc["shards"][1]["index_size"] = (root / S1 / "index.bin").stat().st_size
        doc["shards"][1]["data_size"] = (root / S1 / "data.bin").stat().st_size
    resign(root / "meta.json", fix)
    report = validate(root)
    [finding] = only(report, "ATL206")
    assert finding.shard == S1 and ids(report) <= {"ATL206", "ATL209"}


@pytest.mark.parametrize("where", ["root", "shard"])
def test_framing_example_with_codec_none(tmp_path, where):
    root = framed(tmp_path, codec="none")
    if where == "shard":  # root says block (no frame needed); the shards still say example
        resign(root / "meta.json", lambda d: d.pop("framing"))
    report = validate(root)
    found = only(report, "ATL214")
    paths = {f.path for f in found}
    assert ("meta.json" in paths) == (where == "root")
    assert {f"{s}/meta.json" for s in (S0, S1, "000002")} <= paths
    assert all(f.clause == "V2-FRAME-1" for f in found)
    assert ids(report) <= {"ATL214", "ATL206"}  # the blocks (pickles back to back) are otherwise fine
    no_internal_error(report)


def test_unknown_framing_is_a_schema_error(tmp_path):
    root = framed(tmp_path, root_meta_hook=lambda d: d.update(framing="row"))
    report = validate(root)
    assert "ATL202" in ids(report)
    no_internal_error(report)


# -- the stored frame table (V2-FRAME-2) -------------------------------------------------------


def _stored_edit(edit: Any) -> Any:
    def hook(k: int, b: int, stored: bytes) -> bytes:
        return edit(bytearray(stored)) if (k, b) == (0, 1) else stored
    return hook


def _set_u32(at: int, value: int) -> Any:
    def edit(data: bytearray) -> bytes:
        struct.pack_into("<I", data, at, value)
        return bytes(data)
    return edit


def _swap_frames(data: bytearray) -> bytes:
    # offsets[1] and offsets[2] swapped: not increasing
    a, b = struct.unpack_from("<2I", data, 8)
    struct.pack_into("<2I", data, 8, b, a)
    return bytes(data)


TABLE_DEFECTS = {
    "offsets0-not-zero": (_set_u32(4, 1), "ATL410"),
    "not-increasing": (_swap_frames, "ATL410"),
    "bytes-after-last-frame": (lambda d: bytes(d) + b"\0\0\0", "ATL410"),
    "last-frame-cut": (lambda d: bytes(d[:-1]), "ATL410"),
    "too-short": (lambda d: bytes(d[:6]), "ATL410"),
    "count-too-large-for-the-block": (_set_u32(0, 1000), "ATL410"),
    "count-above-the-limit": (_set_u32(0, (1 << 24) + 1), "ATL900"),
}


@pytest.mark.parametrize("defect", sorted(TABLE_DEFECTS))
def test_bad_frame_table(tmp_path, defect):
    edit, finding_id = TABLE_DEFECTS[defect]
    root = framed(tmp_path, stored_hook=_stored_edit(edit))
    report = validate(root)
    found = only(report, finding_id)
    offset = entry(root, S0, 1)[0]
    assert all((f.shard, f.block, f.offset, f.path) == (S0, 1, offset, f"{S0}/data.bin") for f in found)
    if finding_id == "ATL410":
        assert all("frame table" in f.message and "V2-FRAME-2" in f.clause for f in found)
    assert not report.ok
    no_internal_error(report)


def test_frame_table_counts_the_wrong_number_of_examples(tmp_path):
    def drop_last(k: int, b: int, stored: bytes) -> bytes:
        if (k, b) != (0, 1):
            return stored
        (n,) = struct.unpack_from("<I", stored, 0)
        offsets = struct.unpack_from(f"<{n + 1}I", stored, 4)
        payload = stored[table_size(n):]
        return encode_block([payload[offsets[j]:offsets[j + 1]] for j in range(n - 1)])
    root = framed(tmp_path, stored_hook=drop_last)
    report = validate(root)
    [finding] = only(report, "ATL411")
    assert (finding.shard, finding.block) == (S0, 1) and "3 frames, expected 4" in finding.message
    assert "ATL403" in ids(report)  # raw_size still counts 4 examples
    no_internal_error(report)


# -- each frame (V2-FRAME-2, V2-FRAME-3, V2-CODEC-1's frame rules) -----------------------------


def _declare_one_more(frame: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=3).compress(_zstd_raw(frame) + b".")


def test_frame_declares_a_wrong_size(tmp_path):
    marker = tmp_path / "PWNED"
    root = framed(tmp_path, frame_hook=frame_hook_at((0, 1, 2), _declare_one_more),
                  pickle_hook=lambda k, b, j, p: pickle.dumps(OsSystem(f"touch {marker}"), protocol=5)
                  if (k, b, j) == (0, 1, 0) else p)
    report = validate(root)
    [finding] = only(report, "ATL403")
    assert (finding.shard, finding.block, finding.offset) == (S0, 1, entry(root, S0, 1)[0])
    assert "V2-FRAME-3" in finding.clause
    # frames that fit the budget are still decoded and scanned: the malicious example is flagged
    [danger] = only(report, "ATL601")
    assert (danger.block, danger.example, danger.offset) == (1, 4, frame_offset(root, S0, 1, 0))
    assert not marker.exists()
    no_internal_error(report)


def test_wrong_raw_size_in_the_index(tmp_path):
    def hook(k, header, entries):
        if k == 0:
            entries[2] = entries[2][:2] + (entries[2][2] - 1,) + entries[2][3:]
    report = validate(framed(tmp_path, index_hook=hook))
    [finding] = only(report, "ATL403")
    assert finding.block == 2 and "raw_size" in finding.message


def _bomb(frame: bytes) -> bytes:
    return ZstdFrameHeader.build(frame_header_fields(1 << 40, None)) + b"\x01\x00\x00"


def test_frame_declaring_a_terabyte_is_refused_before_decoding(tmp_path):
    root = framed(tmp_path, frame_hook=frame_hook_at((1, 0, 3), _bomb))
    report = validate(root)
    [finding] = only(report, "ATL901")
    assert (finding.shard, finding.block, finding.example, finding.offset) == (S1, 0, 3,
                                                                              frame_offset(root, S1, 0, 3))
    no_internal_error(report)


def test_frame_within_limit_but_above_raw_size_is_not_decoded(tmp_path, monkeypatch):
    """A frame declaring more than raw_size leaves is never handed to the decoder (only ATL403)."""
    big = zstandard.ZstdCompressor().compress(b"x" * 100_000)
    root = framed(tmp_path, frame_hook=frame_hook_at((0, 0, 0), lambda f: big))
    from atlas_validator import checks_v2

    decoded: list[int] = []
    real = checks_v2.decode_frame

    def spy(info, data, declared, *args, **kwargs):
        decoded.append(declared)
        return real(info, data, declared, *args, **kwargs)

    monkeypatch.setattr(checks_v2, "decode_frame", spy)
    report = validate(root, jobs=1)
    assert "ATL403" in ids(report) and 100_000 not in decoded
    assert max(decoded) < 1000


def test_frames_are_bounded_by_the_limit(tmp_path):
    report = validate(framed(tmp_path), limits=Limits(max_block_raw_size=200))
    assert "ATL900" in ids(report) and "ATL901" in ids(report)
    no_internal_error(report)


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_frame_without_content_size(tmp_path, codec):
    def strip(frame: bytes) -> bytes:
        if codec == "zstd":
            return zstandard.ZstdCompressor(write_content_size=False).compress(_zstd_raw(frame))
        return lz4.frame.compress(lz4.frame.decompress(frame), store_size=False)
    root = framed(tmp_path, codec=codec, frame_hook=frame_hook_at((0, 2, 1), strip))
    report = validate(root)
    [finding] = only(report, "ATL401")
    assert (finding.block, finding.example, finding.offset) == (2, 9, frame_offset(root, S0, 2, 1))
    no_internal_error(report)


def _dictionary_of(root: Path) -> bytes:
    return (root / S0 / "zstd_dict.bin").read_bytes()


def test_frame_with_a_wrong_dictionary_id(tmp_path):
    root = framed(tmp_path, dictionary="shard", n=64, shard_size=32,
                  frame_hook=frame_hook_at((0, 3, 2), lambda f: f))  # unchanged first, to learn the dictionary
    dictionary = _dictionary_of(root)
    shutil.rmtree(root)

    def no_dictionary(frame: bytes) -> bytes:
        return zstandard.ZstdCompressor(level=3).compress(_zstd_raw(frame, dictionary))
    root = framed(tmp_path, dictionary="shard", n=64, shard_size=32, frame_hook=frame_hook_at((0, 3, 2),
                                                                                               no_dictionary))
    assert _dictionary_of(root) == dictionary  # deterministic training
    report = validate(root)
    [finding] = only(report, "ATL407")
    assert (finding.shard, finding.block, finding.example, finding.offset) == (S0, 3, 14,
                                                                              frame_offset(root, S0, 3, 2))
    assert "no dictionary id" not in finding.message and "carries dictionary id 0" in finding.message
    no_internal_error(report)


def test_frame_with_a_dictionary_where_none_is_used(tmp_path):
    dictionary = zstandard.train_dictionary(2048, [pickle.dumps(e, protocol=5) for e in examples(200)]).as_bytes()

    def with_dictionary(frame: bytes) -> bytes:
        cctx = zstandard.ZstdCompressor(dict_data=zstandard.ZstdCompressionDict(dictionary))
        return cctx.compress(_zstd_raw(frame))
    report = validate(framed(tmp_path, frame_hook=frame_hook_at((0, 0, 0), with_dictionary)))
    [finding] = only(report, "ATL407")
    assert finding.example == 0 and "expected no dictionary id" in finding.message


CORRUPTIONS = {
    "truncated": lambda f: f[:-3],
    "garbage": lambda f: b"garbage!" * 4,
    "header-only": lambda f: f[:6],
    "other-codec": lambda f: (lz4.frame.compress(b"x" * 50, store_size=True) if f[:4] == b"\x28\xb5\x2f\xfd"
                              else zstandard.ZstdCompressor().compress(b"x" * 50)),
}


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_corrupt_frame(tmp_path, codec, corruption):
    root = framed(tmp_path, codec=codec, frame_hook=frame_hook_at((1, 2, 3), CORRUPTIONS[corruption]))
    report = validate(root)
    assert not report.ok
    assert ids(report) == {"ATL400"}, [f.to_dict() for f in report.findings]
    [finding] = only(report, "ATL400")
    assert finding.example == 2 * 4 + 3 and "position 3" in finding.message
    start = frame_offset(root, S1, 2, 3)  # the frame, or the byte of its header that does not parse
    assert start <= finding.offset < start + 32
    no_internal_error(report)


def test_corrupt_zstd_frame_is_atl400(tmp_path):
    root = framed(tmp_path, frame_hook=frame_hook_at((1, 2, 3), lambda f: f[:-3]))
    [finding] = only(validate(root), "ATL400")
    assert (finding.shard, finding.block, finding.example) == (S1, 2, 11)


def test_bytes_after_a_frame(tmp_path):
    root = framed(tmp_path, frame_hook=frame_hook_at((0, 1, 1), lambda f: f + b"\0\0"))
    report = validate(root)
    [finding] = only(report, "ATL404")
    assert finding.example == 5 and finding.offset == frame_offset(root, S0, 1, 2) - 2  # at the two extra bytes
    assert "ATL403" not in ids(report) and ids(report) == {"ATL404"}


def test_frame_with_content_checksum_is_a_warning(tmp_path):
    def checksum(frame: bytes) -> bytes:
        return zstandard.ZstdCompressor(write_checksum=True).compress(_zstd_raw(frame))
    report = validate(framed(tmp_path, frame_hook=frame_hook_at((0, 0, 1), checksum)))
    [finding] = only(report, "ATL406")
    assert finding.example == 1 and report.ok and not validate(report.path, strict=True).ok


def test_frame_decoding_to_another_size_than_declared(tmp_path):
    """An lz4 frame whose header declares one byte more than its blocks hold: refused (V2-FRAME-3)."""
    def lie(frame: bytes) -> bytes:
        raw = lz4.frame.decompress(frame)
        fixed = lz4.frame.compress(raw, store_size=True, content_checksum=False)
        other = lz4.frame.compress(raw + b".", store_size=True, content_checksum=False)
        # take the header (size field) of `other`, the blocks of `fixed`: same header length
        return other[:15] + fixed[15:]
    root = framed(tmp_path, codec="lz4", frame_hook=frame_hook_at((0, 1, 0), lie))
    report = validate(root)
    assert "ATL400" in ids(report) and "ATL403" in ids(report)
    assert {f.example for f in only(report, "ATL400")} == {4}
    no_internal_error(report)


def test_checksum_covers_the_frame_table(tmp_path):
    root = framed(tmp_path)
    flip(root / S1 / "data.bin", entry(root, S1, 2)[0] + 5)  # inside the table of block 2
    [finding] = only(validate(root), "ATL506")
    assert (finding.shard, finding.block) == (S1, 2)


# -- the pickles inside the frames (V2-BLOCK-4, PICKLE) ----------------------------------------


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_malicious_pickle_inside_a_frame_is_flagged_and_not_run(tmp_path, codec):
    marker = tmp_path / "PWNED"

    def hook(k, b, j, p):
        return pickle.dumps(OsSystem(f"touch {marker}"), protocol=5) if (k, b, j) == (1, 2, 3) else p
    root = framed(tmp_path, codec=codec, pickle_hook=hook)
    report = validate(root, jobs=2)
    [finding] = only(report, "ATL601")
    assert (finding.shard, finding.block, finding.example) == (S1, 2, 11)
    assert finding.offset == frame_offset(root, S1, 2, 3) and "position 3" in finding.message
    assert not marker.exists()
    out = subprocess.run([sys.executable, "-m", "atlas_validator", "--jobs", "2", str(root)], capture_output=True,
                         text=True)
    assert out.returncode == 1 and "ATL601" in out.stdout
    assert not marker.exists()


@pytest.mark.parametrize("edit,finding_id", [
    (lambda p: p[:-1], "ATL413"),
    (lambda p: p + b".", "ATL414"),
    (lambda p: pickle.dumps(pickle.loads(p), protocol=4), "ATL415"),
    (lambda p: pickle.dumps(__import__("collections").OrderedDict(a=1), protocol=5), "ATL605"),
], ids=["truncated", "after-stop", "protocol-4", "allow-listed"])
def test_pickle_findings_inside_frames(tmp_path, edit, finding_id):
    root = framed(tmp_path, pickle_hook=lambda k, b, j, p: edit(p) if (k, b, j) == (0, 2, 1) else p)
    report = validate(root)
    [finding] = only(report, finding_id)
    assert (finding.shard, finding.block, finding.example) == (S0, 2, 9)
    assert finding.offset == frame_offset(root, S0, 2, 1)
    no_internal_error(report)


def test_every_example_is_scanned(tmp_path):
    """One malicious example in every frame position of a block: each is reported at its example."""
    marker = tmp_path / "PWNED"

    def hook(k, b, j, p):
        return pickle.dumps(OsSystem(f"touch {marker}"), protocol=5) if (k, b) == (0, 3) else p
    report = validate(framed(tmp_path, pickle_hook=hook))
    assert sorted(f.example for f in only(report, "ATL601")) == [12, 13, 14, 15]
    assert not marker.exists()


# -- never raises ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_bases(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("framing-fuzz")
    return {"zstd-shard": framed(base, "zstd-shard", dictionary="shard", n=64, shard_size=32),
            "lz4": framed(base, "lz4", codec="lz4")}


@given(data=st.data())
def test_fuzz_sealed_frame_mutations_never_crash(fuzz_bases, data):
    """Bytes of one stored block changed and every checksum recomputed: reported, never an internal error."""
    name = data.draw(st.sampled_from(sorted(fuzz_bases)), label="base")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ds"
        shutil.copytree(fuzz_bases[name], root)
        offset, stored, _raw = entry(root, S0, 1)
        block = bytearray((root / S0 / "data.bin").read_bytes()[offset:offset + stored])
        at = data.draw(st.integers(0, len(block) - 1), label="offset")
        block[at] ^= data.draw(st.integers(1, 255), label="mask")
        shutil.rmtree(root)
        kw: dict[str, Any] = {"dictionary": "shard", "n": 64, "shard_size": 32} if name == "zstd-shard" \
            else {"codec": "lz4"}
        root = framed(Path(tmp), **kw, stored_hook=lambda k, b, s: bytes(block) if (k, b) == (0, 1) else s)
        report = validate(root)
        no_internal_error(report)
        json.loads(report.to_json())
