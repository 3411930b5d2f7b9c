"""The validator on version 2 datasets of framing "list" (spec V2-FRAME-1, V2-FRAME-5, V2-INDEX-2).

With framing "list" each decoded block is one pickle of the list of its n examples (version 1's
block content) inside the version 2 container. Datasets come from the independent test writer
(``write_v2(..., framing="list")``), never from torch_atlas_ds. Each test breaks one rule with every
checksum correct (unless the checksum is the point), and checks the finding, its location (shard,
block, byte offset in data.bin) and that the validator never raised (no ATL990).
"""

from __future__ import annotations

import json
import math
import pickle
import shutil
import subprocess
import sys
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import lz4.frame
import numpy as np
import pytest
import zstandard
from hypothesis import assume, given
from hypothesis import strategies as st
from validator_vectors import LIST_PROTOCOL, BuiltinsEval, OsSystem, examples, flip, resign, resign_shard, write_v2

from atlas_format.constants import V2_INDEX_HEADER_SIZE, Limits
from atlas_format.enums import INDEX_FLAG_EXAMPLE_FRAMES, INDEX_FLAG_LIST_BLOCKS
from atlas_format.index_v2 import INDEX_ENTRY_DTYPE, IndexHeader
from atlas_validator import validate

S0, S1, S2 = "000000", "000001", "000002"
N, SHARD_SIZE, BLOCK_SIZE = 42, 16, 4  # shards of 16, 16, 10 examples; blocks of 4 (the last of S2 holds 2)
BOTH_BITS = INDEX_FLAG_EXAMPLE_FRAMES | INDEX_FLAG_LIST_BLOCKS


def listed(tmp: Path, name: str = "ds", items: list[Any] | None = None, **kw: Any) -> Path:
    kw.setdefault("shard_size", SHARD_SIZE)
    kw.setdefault("block_size", BLOCK_SIZE)
    n = kw.pop("n", N)
    return write_v2(tmp / name, examples(n) if items is None else items, framing="list", **kw)


def ids(report: Any) -> set[str]:
    return set(report.ids())


def only(report: Any, finding_id: str) -> list[Any]:
    found = [f for f in report.findings if f.id == finding_id]
    assert found, [f.to_dict() for f in report.findings]
    return found


def errors(report: Any) -> list[dict[str, Any]]:
    return [f.to_dict() for f in report.findings if f.severity == "error"]


def no_internal_error(report: Any) -> None:
    assert "ATL990" not in ids(report), [f.to_dict() for f in report.findings if f.id == "ATL990"]


def entry(root: Path, shard: str, block: int) -> tuple[int, int, int]:
    """(offset, stored_size, raw_size) of a block, from its index entry."""
    index = (root / shard / "index.bin").read_bytes()
    row = np.frombuffer(index, dtype=INDEX_ENTRY_DTYPE, offset=V2_INDEX_HEADER_SIZE)[block]
    return int(row["offset"]), int(row["stored_size"]), int(row["raw_size"])


def at_block(shard: str, block: int, change: Any) -> Any:
    """A list_hook (or raw_hook) that changes one block's value (or decoded bytes) only."""
    def hook(k: int, b: int, value: Any) -> Any:
        return change(value) if (f"{k:06d}", b) == (shard, block) else value
    return hook


def located(finding: Any, root: Path, shard: str, block: int) -> None:
    """The finding is in data.bin at the block's offset (a compressed block: the decoded offset is in the message)."""
    assert (finding.shard, finding.block, finding.path, finding.offset) == (
        shard, block, f"{shard}/data.bin", entry(root, shard, block)[0]), finding.to_dict()


def flags_of(root: Path, shard: str = S0) -> int:
    return int(IndexHeader.parse((root / shard / "index.bin").read_bytes()).flags)


def decoded(root: Path, shard: str, block: int, codec: str, dictionary: bytes | None = None) -> bytes:
    offset, stored, _raw = entry(root, shard, block)
    data = (root / shard / "data.bin").read_bytes()[offset:offset + stored]
    if codec == "zstd":
        dict_data = zstandard.ZstdCompressionDict(dictionary) if dictionary else None
        return zstandard.ZstdDecompressor(dict_data=dict_data).decompress(data)
    return lz4.frame.decompress(data) if codec == "lz4" else data


# -- valid datasets ----------------------------------------------------------------------------


CONFIGS = [("zstd", "none"), ("zstd", "shared"), ("zstd", "shard"), ("lz4", "none"), ("none", "none")]


@pytest.mark.parametrize("codec,dictionary", CONFIGS, ids=[f"{c}-{d}" for c, d in CONFIGS])
def test_list_framed_dataset_is_clean(tmp_path, codec, dictionary):
    kw: dict[str, Any] = {"n": 74, "shard_size": 32} if dictionary != "none" else {}
    root = listed(tmp_path, codec=codec, dictionary=dictionary, **kw)
    shard_doc = json.loads((root / S0 / "meta.json").read_bytes())
    assert shard_doc["framing"] == "list" and shard_doc["dictionary"] == dictionary  # the dictionary is used
    assert json.loads((root / "meta.json").read_bytes())["framing"] == "list"
    assert flags_of(root) == INDEX_FLAG_LIST_BLOCKS
    # the writer is what V2-FRAME-5 says: the decoded block is one pickle of the list of the block's examples
    dictionary_bytes = None
    if dictionary != "none":
        dictionary_bytes = (root / ("zstd_dict.bin" if dictionary == "shared" else f"{S0}/zstd_dict.bin")).read_bytes()
    raw = decoded(root, S0, 1, codec, dictionary_bytes)
    assert len(raw) == entry(root, S0, 1)[2] and pickle.loads(raw) == examples(74 if kw else N)[4:8]
    for jobs in (1, 2):
        report = validate(root, jobs=jobs)
        assert report.ok and report.findings == [], [f.to_dict() for f in report.findings]
    blocks = [(s["name"], b) for s in json.loads((root / "meta.json").read_bytes())["shards"]
              for b in range(s["num_blocks"])]
    assert report.stats.blocks == len(blocks)
    assert report.stats.decoded_bytes == sum(entry(root, s, b)[2] for s, b in blocks)
    quick = validate(root, quick=True, jobs=2)
    assert quick.ok and quick.findings == [] and quick.stats.blocks == 0


def test_list_framing_with_codec_none_is_allowed(tmp_path):
    """Unlike framing 'example' (ATL214), framing 'list' is allowed with codec none (V2-FRAME-5)."""
    report = validate(listed(tmp_path, codec="none"))
    assert "ATL214" not in ids(report) and report.ok


def test_shared_objects_and_long_lists_are_counted(tmp_path):
    """A block of 2500 examples (APPENDS batches of 1000) and one example object repeated (memo gets)."""
    shared = {"text": "the same object", "v": [1, 2, 3]}
    items: list[Any] = [shared] * 3000 + list(range(2000))
    root = listed(tmp_path, items=items, block_size=2500, shard_size=5000)
    report = validate(root)
    assert report.ok and report.findings == [], [f.to_dict() for f in report.findings]
    # one example fewer in the (memo-heavy) first block is still counted exactly
    root = listed(tmp_path, "fewer", items=items, block_size=2500, shard_size=5000,
                  list_hook=at_block(S0, 0, lambda v: v[:-1]))
    [finding] = only(validate(root), "ATL411")
    assert "2499 examples, expected 2500" in finding.message
    located(finding, root, S0, 0)


def test_numpy_examples_are_noted_not_errors(tmp_path):
    items = [{"x": np.arange(i, i + 6, dtype=np.float32).reshape(2, 3), "y": i} for i in range(20)]
    report = validate(listed(tmp_path, items=items))
    assert report.ok and not errors(report)
    assert "ATL605" in ids(report)  # numpy's reconstructors are allow-listed (info)


# -- metadata and index (V2-FRAME-1, V2-INDEX-2) ----------------------------------------------


def _flags(flags: int, shard: int | None = None) -> Any:
    def hook(k: int, header: dict[str, Any], entries: list[Any]) -> None:
        if shard is None or k == shard:
            header.update(flags=flags)
    return hook


@pytest.mark.parametrize("flags", [0, INDEX_FLAG_EXAMPLE_FRAMES], ids=["flags-0", "flags-example"])
def test_meta_list_but_index_flags_disagree(tmp_path, flags):
    root = listed(tmp_path, index_hook=_flags(flags, shard=1))
    report = validate(root)
    [finding] = only(report, "ATL307")
    assert (finding.shard, finding.path, finding.offset, finding.block) == (S1, f"{S1}/index.bin", 17, None)
    assert "'list'" in finding.message and "V2-FRAME-1" in finding.clause
    assert "ATL309" not in ids(report) and not report.ok
    # the index of that shard is not used to read blocks: no block finding follows from the disagreement
    assert ids(report) == {"ATL307"}
    no_internal_error(report)


def test_meta_block_but_index_flags_list(tmp_path):
    root = write_v2(tmp_path / "ds", examples(N), shard_size=SHARD_SIZE, index_hook=_flags(INDEX_FLAG_LIST_BLOCKS))
    report = validate(root)
    found = only(report, "ATL307")
    assert {f.shard for f in found} == {S0, S1, S2} and all(f.offset == 17 for f in found)
    assert all("absent" in f.message and "'list'" in f.message for f in found)
    assert ids(report) == {"ATL307"} and not report.ok


def test_meta_example_but_index_flags_list(tmp_path):
    root = write_v2(tmp_path / "ds", examples(N), shard_size=SHARD_SIZE, framing="example",
                    index_hook=_flags(INDEX_FLAG_LIST_BLOCKS, shard=2))
    report = validate(root)
    [finding] = only(report, "ATL307")
    assert finding.shard == S2 and "'example'" in finding.message and "'list'" in finding.message
    assert ids(report) == {"ATL307"}


@pytest.mark.parametrize("framing", ["list", "example", "block"])
def test_both_framing_bits_set(tmp_path, framing):
    root = write_v2(tmp_path / "ds", examples(N), shard_size=SHARD_SIZE, framing=framing,
                    index_hook=_flags(BOTH_BITS, shard=0))
    report = validate(root)
    [finding] = only(report, "ATL307")
    assert (finding.shard, finding.path, finding.offset) == (S0, f"{S0}/index.bin", 17)
    assert "both framing bits" in finding.message and "V2-FRAME-1" in finding.clause
    assert "ATL309" not in ids(report)  # both bits are defined; together they are invalid
    assert ids(report) == {"ATL307"} and not report.ok
    # --quick reads the index too
    assert ids(validate(root, quick=True)) == {"ATL307"}


def test_undefined_flag_bit_is_atl309_and_blocks_are_still_checked_as_lists(tmp_path):
    root = listed(tmp_path, index_hook=_flags(INDEX_FLAG_LIST_BLOCKS | 0x80, shard=0),
                  list_hook=at_block(S0, 2, lambda v: v[:2]))
    report = validate(root)
    [finding] = only(report, "ATL309")
    assert finding.offset == 17 and "0x80" in finding.message
    assert "ATL307" not in ids(report)
    [count] = only(report, "ATL411")  # block 2 of S0 was read as a list of 2 examples
    located(count, root, S0, 2)
    assert ids(report) == {"ATL309", "ATL411"}


def test_shard_framing_differs_from_root(tmp_path):
    root = listed(tmp_path, root_meta_hook=lambda d: d.pop("framing"))
    report = validate(root)
    found = only(report, "ATL206")
    assert {f.shard for f in found} == {S0, S1, S2}
    assert all("framing" in f.message and "'list'" in f.message and "V2-FRAME-1" in f.clause for f in found)
    assert ids(report) == {"ATL206"}


def test_one_shard_with_block_framing(tmp_path):
    """Shard 000001 rewritten as block-framed (consistent in itself): only the root disagreement remains."""
    root = listed(tmp_path)
    block = write_v2(tmp_path / "block", examples(N), shard_size=SHARD_SIZE)
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


def test_meta_says_list_but_blocks_hold_example_tables(tmp_path):
    """A block-framed shard relabelled 'list' (meta.json and flags, checksums resealed): its blocks do not
    scan as list pickles."""
    root = write_v2(tmp_path / "ds", examples(N), shard_size=SHARD_SIZE, index_hook=_flags(INDEX_FLAG_LIST_BLOCKS))
    for shard in (S0, S1, S2):
        resign_shard(root, shard, lambda d: d.update(framing="list"))
    resign(root / "meta.json", lambda d: d.update(framing="list"))
    report = validate(root)
    assert not report.ok and "ATL307" not in ids(report)
    found = [f for f in report.findings if f.id in ("ATL412", "ATL413")]
    assert {(f.shard, f.block) for f in found} == {(s, b) for s in (S0, S1, S2) for b in range(4 if s != S2 else 3)}
    no_internal_error(report)


# -- the list pickle of each block (V2-FRAME-5) -----------------------------------------------


@pytest.mark.parametrize("codec", ["zstd", "lz4", "none"])
@pytest.mark.parametrize("change,count", [(lambda v: v[:-1], 3), (lambda v: v + v[:1], 5), (lambda v: [], 0)],
                         ids=["one-fewer", "one-more", "empty"])
def test_wrong_number_of_examples(tmp_path, codec, change, count):
    root = listed(tmp_path, codec=codec, list_hook=at_block(S1, 2, change))
    report = validate(root)
    [finding] = only(report, "ATL411")
    located(finding, root, S1, 2)
    assert f"holds {count} examples, expected 4" in finding.message and "V2-FRAME-5" in finding.clause
    assert ids(report) == {"ATL411"}
    no_internal_error(report)


def test_last_block_of_a_shard_holds_the_remainder(tmp_path):
    """S2 holds 10 examples: its last block must hold 2, not block_size."""
    assert validate(listed(tmp_path)).ok
    root = listed(tmp_path, "more", list_hook=at_block(S2, 2, lambda v: v + examples(2, seed=9)))
    [finding] = only(validate(root), "ATL411")
    located(finding, root, S2, 2)
    assert "holds 4 examples, expected 2" in finding.message


@pytest.mark.parametrize("codec", ["zstd", "none"])
@pytest.mark.parametrize("value", [tuple, lambda v: dict(enumerate(v)), lambda v: v[0], lambda v: None],
                         ids=["tuple", "dict", "one-example", "none"])
def test_block_pickle_is_not_a_list(tmp_path, codec, value):
    root = listed(tmp_path, codec=codec, list_hook=at_block(S0, 3, value))
    report = validate(root)
    [finding] = only(report, "ATL412")
    located(finding, root, S0, 3)
    assert "V2-FRAME-5" in finding.clause and "ATL411" not in ids(report)
    no_internal_error(report)


@pytest.mark.parametrize("codec", ["zstd", "lz4", "none"])
@pytest.mark.parametrize("extra", [b".", b"\x00\x00\x00", pickle.dumps([1], protocol=4)],
                         ids=["stop", "zeros", "second-pickle"])
def test_bytes_after_stop(tmp_path, codec, extra):
    """raw_size counts the extra bytes (the writer records the decoded block's size): only ATL414."""
    root = listed(tmp_path, codec=codec, raw_hook=at_block(S1, 1, lambda raw: raw + extra))
    report = validate(root)
    [finding] = only(report, "ATL414")
    offset, _stored, raw_size = entry(root, S1, 1)
    stop = raw_size - len(extra)  # where the list pickle ends
    assert (finding.shard, finding.block, finding.path) == (S1, 1, f"{S1}/data.bin")
    if codec == "none":  # the extra bytes are at their own offset in data.bin
        assert finding.offset == offset + stop
    else:
        assert finding.offset == offset and f"decoded offset {stop}" in finding.message
    assert f"{len(extra)} bytes follow" in finding.message and "V2-FRAME-5" in finding.clause
    assert ids(report) == {"ATL414"}
    no_internal_error(report)


@pytest.mark.parametrize("codec", ["zstd", "none"])
def test_truncated_block_pickle(tmp_path, codec):
    root = listed(tmp_path, codec=codec, raw_hook=at_block(S0, 0, lambda raw: raw[:-1]))
    report = validate(root)
    [finding] = only(report, "ATL413")
    assert (finding.shard, finding.block) == (S0, 0) and not report.ok
    no_internal_error(report)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_protocol_other_than_the_writers_is_a_warning(tmp_path, protocol):
    root = listed(tmp_path, protocol=protocol)
    report = validate(root)
    if protocol == LIST_PROTOCOL:
        assert report.findings == []
        return
    found = only(report, "ATL415")
    assert {(f.shard, f.block) for f in found} == {(s, b) for s in (S0, S1, S2) for b in range(4 if s != S2 else 3)}
    assert all(f"writers must use {LIST_PROTOCOL}" in f.message and "V2-FRAME-5" in f.clause for f in found)
    assert report.ok and not errors(report) and not validate(root, strict=True).ok


def test_protocol_0_is_outside_the_pickle_policy(tmp_path):
    """Protocol 0 and 1 text opcodes are refused by the pickle policy (PICKLE-2): an error, not a warning."""
    report = validate(listed(tmp_path, protocol=0))
    assert not report.ok and "ATL606" in report.ids() and "PICKLE-2" in only(report, "ATL606")[0].clause


@pytest.mark.parametrize("codec", ["zstd", "lz4", "none"])
def test_malicious_example_inside_the_list_is_flagged_and_not_run(tmp_path, codec):
    marker = tmp_path / "PWNED"
    root = listed(tmp_path, codec=codec, list_hook=at_block(S1, 2, lambda v: v[:1] + [OsSystem(f"touch {marker}")]
                                                            + v[2:]))
    report = validate(root, jobs=2)
    [finding] = only(report, "ATL601")
    assert (finding.shard, finding.block, finding.path) == (S1, 2, f"{S1}/data.bin")
    assert "system" in finding.message
    offset = entry(root, S1, 2)[0]
    if codec == "none":  # located at the opcode that names the global, inside the stored pickle
        assert finding.offset > offset
        assert (root / S1 / "data.bin").read_bytes()[finding.offset] in b"\x93c"  # STACK_GLOBAL or GLOBAL
    else:
        assert finding.offset == offset and "decoded offset" in finding.message
    assert "ATL411" not in ids(report)  # still 4 examples
    assert not marker.exists()
    out = subprocess.run([sys.executable, "-m", "atlas_validator", "--jobs", "2", str(root)], capture_output=True,
                         text=True)
    assert out.returncode == 1 and "ATL601" in out.stdout
    assert not marker.exists()
    no_internal_error(report)


def test_eval_and_allow_listed_globals_inside_lists(tmp_path):
    def hook(k: int, b: int, v: list[Any]) -> list[Any]:
        if (k, b) == (0, 1):
            return [BuiltinsEval("1+1")] + v[1:]
        if (k, b) == (1, 0):
            return [OrderedDict(a=1)] + v[1:]
        return v
    report = validate(listed(tmp_path, list_hook=hook))
    [danger] = only(report, "ATL601")
    assert (danger.shard, danger.block) == (S0, 1) and "eval" in danger.message
    [note] = only(report, "ATL605")
    assert (note.shard, note.block, note.severity) == (S1, 0, "info")
    assert {f.id for f in report.findings} == {"ATL601", "ATL605"}


def test_every_block_is_scanned(tmp_path):
    marker = tmp_path / "PWNED"
    root = listed(tmp_path, list_hook=lambda k, b, v: v[:-1] + [OsSystem(f"touch {marker}")])
    report = validate(root)
    found = only(report, "ATL601")
    assert {(f.shard, f.block) for f in found} == {(s, b) for s in (S0, S1, S2) for b in range(4 if s != S2 else 3)}
    assert not marker.exists()


# -- sizes, checksums, codecs (V2-INDEX-4, V2-CHK-2, V2-CODEC-3) ------------------------------


def _raw_size(shard: int, block: int, delta: int) -> Any:
    def hook(k: int, header: dict[str, Any], entries: list[Any]) -> None:
        if k == shard:
            entries[block] = entries[block][:2] + (entries[block][2] + delta,) + entries[block][3:]
    return hook


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
@pytest.mark.parametrize("delta", [-1, 1])
def test_raw_size_mismatch(tmp_path, codec, delta):
    raw = entry(listed(tmp_path, "good", codec=codec), S0, 2)[2]
    root = listed(tmp_path, codec=codec, index_hook=_raw_size(0, 2, delta))
    report = validate(root)
    [finding] = only(report, "ATL403")
    located(finding, root, S0, 2)
    assert f"index says {raw + delta}" in finding.message
    assert "ATL411" not in ids(report)  # the block is not decoded against a wrong size
    no_internal_error(report)


def test_raw_size_mismatch_with_codec_none(tmp_path):
    root = listed(tmp_path, codec="none", index_hook=_raw_size(1, 3, -1))
    report = validate(root)
    found = [f for f in only(report, "ATL310") if f.block == 3]
    assert found and all((f.shard, f.path, f.offset) == (S1, f"{S1}/index.bin", V2_INDEX_HEADER_SIZE + 3 * 24 + 12)
                         for f in found)
    no_internal_error(report)


@pytest.mark.parametrize("codec", ["zstd", "none"])
def test_block_checksum_mismatch(tmp_path, codec):
    root = listed(tmp_path, codec=codec)
    offset = entry(root, S1, 2)[0]
    flip(root / S1 / "data.bin", offset + 7)
    report = validate(root)
    [finding] = only(report, "ATL506")
    located(finding, root, S1, 2)
    assert ids(report) == {"ATL506"}  # a block whose checksum fails is not decoded


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_corrupt_frame_with_a_correct_checksum(tmp_path, codec):
    root = listed(tmp_path, codec=codec, stored_hook=lambda k, b, s: s[:-3] if (k, b) == (2, 1) else s)
    report = validate(root)
    found = only(report, "ATL400")
    assert all((f.shard, f.block) == (S2, 1) for f in found)
    no_internal_error(report)


def test_frame_bound_by_the_limit(tmp_path):
    report = validate(listed(tmp_path), limits=Limits(max_block_raw_size=200))
    assert "ATL900" in ids(report) and "ATL901" in ids(report)
    no_internal_error(report)


def test_jobs_do_not_change_the_findings(tmp_path):
    marker = tmp_path / "PWNED"

    def hook(k: int, b: int, v: list[Any]) -> Any:
        return {(0, 1): v[:-1], (1, 2): tuple(v), (2, 0): v[:1] + [OsSystem(f"touch {marker}")] + v[2:]}.get((k, b), v)
    root = listed(tmp_path, list_hook=hook)
    one, two = validate(root, jobs=1), validate(root, jobs=2)
    assert [f.to_dict() for f in one.findings] == [f.to_dict() for f in two.findings]
    assert {(f.id, f.shard, f.block) for f in one.findings} == {("ATL411", S0, 1), ("ATL412", S1, 2),
                                                                ("ATL601", S2, 0)}
    assert validate(root, quick=True, jobs=2).ok  # --quick reads no block
    assert not marker.exists()


# -- properties --------------------------------------------------------------------------------


_leaves = (st.none() | st.booleans() | st.integers(-(1 << 70), 1 << 70) | st.floats(allow_nan=False)
           | st.text(max_size=30) | st.binary(max_size=40))
_values = st.recursive(_leaves, lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
                       | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


def _write_or_skip(root: Path, items: list[Any], **kw: Any) -> Path:
    try:
        return write_v2(root, items, framing="list", **kw)
    except zstandard.ZstdError:  # a dictionary cannot be trained on these few bytes: not a dataset to test
        assume(False)
        raise


@given(items=st.lists(_values, max_size=60), codec=st.sampled_from(["zstd", "lz4", "none"]),
       dictionary=st.sampled_from(["none", "shared", "shard"]), block_size=st.integers(1, 9),
       shard_blocks=st.integers(1, 4), protocol=st.sampled_from([None, 3, 4, 5]))
def test_property_valid_list_datasets_have_no_errors(items, codec, dictionary, block_size, shard_blocks, protocol):
    """Random plain data (protocol 3 and up: protocol 2 pickles bytes through a global, see the allow-list)."""
    dictionary = dictionary if codec == "zstd" else "none"
    with tempfile.TemporaryDirectory() as tmp:
        root = _write_or_skip(Path(tmp) / "ds", items, codec=codec, dictionary=dictionary, block_size=block_size,
                              shard_size=block_size * shard_blocks, protocol=protocol)
        report = validate(root)
        assert not errors(report), errors(report)
        assert ids(report) <= {"ATL415"} and ("ATL415" in ids(report)) == (
            protocol not in (None, LIST_PROTOCOL) and bool(items))
        shard_sizes = [min(len(items) - s, block_size * shard_blocks)
                       for s in range(0, len(items), block_size * shard_blocks)]
        assert report.stats.blocks == sum(math.ceil(n / block_size) for n in shard_sizes)


@given(items=st.lists(_values, min_size=1, max_size=40), block_size=st.integers(1, 6), data=st.data())
def test_property_one_broken_block_is_found(items, block_size, data):
    """One block of a random dataset loses an example or gains a malicious one: reported at that block."""
    blocks = math.ceil(len(items) / block_size)
    target = data.draw(st.integers(0, blocks - 1), label="block")
    malicious = data.draw(st.booleans(), label="malicious")
    codec = data.draw(st.sampled_from(["zstd", "lz4", "none"]), label="codec")

    def hook(k: int, b: int, v: list[Any]) -> list[Any]:
        if b != target:
            return v
        return v[:-1] + [OsSystem("true")] if malicious else v[:-1]
    with tempfile.TemporaryDirectory() as tmp:
        root = write_v2(Path(tmp) / "ds", items, codec=codec, block_size=block_size, shard_size=len(items),
                        framing="list", list_hook=hook)
        report = validate(root)
        expected = "ATL601" if malicious else "ATL411"
        assert {(f.id, f.block) for f in report.findings if f.severity == "error"} == {(expected, target)}
        no_internal_error(report)


@pytest.fixture(scope="module")
def fuzz_bases(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("list-fuzz")
    return {"zstd-shard": listed(base, "zstd-shard", dictionary="shard", n=64, shard_size=32),
            "none": listed(base, "none", codec="none")}


@given(data=st.data())
def test_fuzz_sealed_block_mutations_never_crash(fuzz_bases, data):
    """Bytes of one stored block changed and every checksum recomputed: reported, never an internal error."""
    name = data.draw(st.sampled_from(sorted(fuzz_bases)), label="base")
    with tempfile.TemporaryDirectory() as tmp:
        offset, stored, _raw = entry(fuzz_bases[name], S0, 1)
        block = bytearray((fuzz_bases[name] / S0 / "data.bin").read_bytes()[offset:offset + stored])
        at = data.draw(st.integers(0, len(block) - 1), label="offset")
        block[at] ^= data.draw(st.integers(1, 255), label="mask")
        kw: dict[str, Any] = {"dictionary": "shard", "n": 64, "shard_size": 32} if name == "zstd-shard" \
            else {"codec": "none"}
        root = listed(Path(tmp), **kw, stored_hook=lambda k, b, s: bytes(block) if (k, b) == (0, 1) else s)
        report = validate(root)
        no_internal_error(report)
        json.loads(report.to_json())

