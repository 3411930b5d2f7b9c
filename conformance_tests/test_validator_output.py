"""Output people can read: one numbering of examples in the reader's errors and the validator's findings,
allow-listed globals noted once per dataset, --min-severity, --allow, and JSON that keeps everything."""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import pickle
import pickletools
import random
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from atlas_format.errors import AtlasError, format_example, format_location
from atlas_format.list_items import list_item_at
from atlas_validator import policy_notes, validate
from atlas_validator.cli import main as validate_main
from atlas_validator.cli import render_human
from atlas_validator.pickle_scan import scan_pickle
from torch_atlas_ds import AtlasDataset, AtlasDatasetWriter, Framing, UnsafePickleError
from torch_atlas_ds.cli import main as atlas_ds_main
from torch_atlas_ds.safe_pickle import SafeUnpickler

PACKAGE = Path(__file__).resolve().parents[1] / "validator" / "atlas_validator"
REPORT_SCHEMA = json.loads((PACKAGE / "report.schema.json").read_text())
SHARD_SIZE, BLOCK_SIZE, COUNT = 10, 4, 30
NAMESPACE = ("argparse", "Namespace")  # a global outside the pickle policy that pickles by NEWOBJ and BUILD


def write(root: Path, bad: set[int] = frozenset(), *, format_version: int = 2, arrays: bool = False,
          **options: object) -> Path:
    """COUNT examples in shards of 10 and blocks of 4; those in ``bad`` are a Namespace (outside the policy)."""
    with AtlasDatasetWriter(root, SHARD_SIZE, BLOCK_SIZE, format_version=format_version, **options) as w:
        for i in range(COUNT):
            if i in bad:
                w.add_example(argparse.Namespace(i=i))
            else:
                w.add_example({"i": i, "a": np.arange(3)} if arrays else {"i": i})
    return root


def run(main, *args: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def shard_name(root: Path, k: int) -> str:
    return sorted(p.name for p in root.iterdir() if p.is_dir())[k]


# -- one numbering of examples -----------------------------------------------------------------------------


LAYOUTS = {
    "v2-block": {}, "v2-example-frames": {"framing": Framing.EXAMPLE}, "v2-list": {"framing": Framing.LIST},
    "v2-none": {"codec": "none"}, "v1-zstd": {"format_version": 1},
    "v1-none": {"format_version": 1, "compression_strategy": 0},
}


@pytest.mark.parametrize("bad", [17, 20, 29])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_reader_error_and_validator_finding_name_the_same_example(tmp_path, layout, bad):
    root = write(tmp_path / "d", {bad}, **LAYOUTS[layout])
    shard, block, position = shard_name(root, bad // SHARD_SIZE), bad % SHARD_SIZE // BLOCK_SIZE, \
        bad % SHARD_SIZE % BLOCK_SIZE
    named = format_example(bad, shard, block, position)
    assert named == f"example {bad} (shard {shard}, block {block}, position {position})"

    ds = AtlasDataset(root, safe=True)
    errors = []
    for read in (lambda: ds[bad], lambda: ds[bad - COUNT], lambda: ds.__getitems__([0, bad, 3]), lambda: list(ds)):
        with pytest.raises(UnsafePickleError) as info:
            read()
        errors.append(info.value)
    for err in errors:
        assert (err.index, err.shard, err.block, err.position) == (bad, shard, block, position), str(err)
        assert err.example == bad % SHARD_SIZE  # the number within the shard, as the validator's JSON has it
        assert named in str(err) and "argparse.Namespace" in str(err)

    report = validate(root, jobs=1)
    [finding] = [f for f in report.findings if f.id == "ATL600"]
    assert (finding.index, finding.shard, finding.block, finding.position, finding.example) == \
        (bad, shard, block, position, bad % SHARD_SIZE)
    line = next(x for x in render_human(report).splitlines() if "ATL600" in x)
    assert named in line
    [as_json] = [f for f in json.loads(report.to_json())["findings"] if f["id"] == "ATL600"]
    assert (as_json["index"], as_json["shard"], as_json["block"], as_json["position"]) == \
        (bad, shard, block, position)


def test_the_same_numbering_with_shards_checked_in_parallel(tmp_path):
    root = write(tmp_path / "d", {13, 25})
    report = validate(root, jobs=2)
    got = sorted((f.index, f.block, f.position) for f in report.findings if f.id == "ATL600")
    assert got == [(13, 0, 3), (25, 1, 1)]


def test_no_index_after_a_shard_that_cannot_be_counted(tmp_path):
    """A missing shard (ATL101) leaves the examples after it without an index, never a wrong one."""
    root = write(tmp_path / "d", {25})
    import shutil

    shutil.rmtree(root / shard_name(root, 1))
    report = validate(root, jobs=1)
    assert "ATL101" in report.ids()
    [finding] = [f for f in report.findings if f.id == "ATL600"]
    assert finding.index is None and (finding.block, finding.position, finding.example) == (1, 1, 5)
    assert "example (shard" in finding.location()


def test_location_text_is_defined_once():
    assert format_location("d/data.bin", "000001", 2, 9, 40, index=19, position=1) == \
        "d/data.bin, example 19 (shard 000001, block 2, position 1), byte offset 40"
    assert format_location("d/data.bin", "000001", 2, None, 40) == "d/data.bin, shard 000001, block 2, byte offset 40"
    assert format_location(None, "7", 0, 3, None) == "shard 7, block 0, example 3 of the shard"
    assert format_example(None, "7", 0, 3) == "example (shard 7, block 0, position 3)"


def _marked_items() -> list[object]:
    """Items of many shapes (TUPLE2, MARK...TUPLE, dicts, NEWOBJ + BUILD, sets, nested lists, long bytes), each
    holding a unique marker string."""
    items: list[object] = []
    for k in range(2100):  # more than two APPENDS batches of 1000
        marker = f"m{k:05d}"
        shape = k % 7
        items.append((marker, k) if shape == 0 else
                     (marker, k, k, k, k) if shape == 1 else
                     {"m": marker, "v": [k, (k,)]} if shape == 2 else
                     argparse.Namespace(m=marker) if shape == 3 else
                     {marker, k} if shape == 4 else
                     [[marker], b"x" * 300] if shape == 5 else marker)
    return items


@pytest.mark.parametrize("protocol", range(6))
def test_list_item_at_finds_the_item_of_any_byte(protocol):
    items = _marked_items()
    data = pickle.dumps(items, protocol=protocol)
    for k in [*range(0, len(items), 97), *range(995, 1005), 1999, 2000, len(items) - 1]:  # batch edges too
        at = data.find(f"m{k:05d}".encode())
        assert at > 0 and list_item_at(data, at) == k, (protocol, k)
    first_op = next(pos for op, _arg, pos in pickletools.genops(data) if op.name not in ("PROTO", "FRAME"))
    assert list_item_at(data, first_op) is None  # the list's own opcode (EMPTY_LIST / MARK) is no item
    assert list_item_at(data, len(data) - 1) is None  # STOP
    assert list_item_at(data, -1) is None and list_item_at(data, len(data) + 5) is None


def test_list_item_at_is_total_on_malformed_input():
    data = pickle.dumps([{"a": 1}, (2, 3)] * 10, protocol=5)
    for cut in range(len(data)):
        for offset in (0, cut // 2, max(cut - 1, 0)):
            result = list_item_at(data[:cut], offset)
            assert result is None or 0 <= result < 20
    rnd = random.Random(16)
    bases = [pickle.dumps([{"a": i, "b": (i, "x" * i), "c": [1.5, None, True]} for i in range(30)], protocol=p)
             for p in range(6)]
    for _ in range(3000):  # byte flips anywhere: an answer in range or None, never an exception
        mutated = bytearray(rnd.choice(bases))
        for _ in range(rnd.randint(1, 4)):
            mutated[rnd.randrange(len(mutated))] = rnd.randrange(256)
        result = list_item_at(bytes(mutated), rnd.randrange(len(mutated)))
        assert result is None or 0 <= result < len(mutated)
    assert list_item_at(b"\x80\x05\xff\xff", 3) is None
    assert list_item_at(pickle.dumps({"not": "a list"}, protocol=5), 5) is None


# -- allow-listed globals once per dataset -----------------------------------------------------------------


@pytest.mark.parametrize("options", [{}, {"framing": Framing.BLOCK}, {"framing": Framing.LIST}, {"format_version": 1}],
                         ids=["v2-grouped", "v2-block", "v2-list", "v1"])
def test_policy_globals_are_noted_once_per_dataset_with_counts(tmp_path, options):
    root = write(tmp_path / "d", arrays=True, **options)
    report = validate(root, jobs=2)
    notes = [f for f in report.findings if f.id == "ATL605"]
    globals_ = [n.data["global"] for n in notes]
    assert len(globals_) == len(set(globals_)) >= 2  # one note per global (numpy's), not per shard
    per_pickle = options.get("framing") is Framing.BLOCK  # else one pickle per block (the default grouped too)
    for note in notes:
        data = note.data
        assert data["shards"] == 3 and data["shards_not_listed"] == 0 and not data["trusted"]
        assert data["pickles"] == sum(data["per_shard"].values()) == (COUNT if per_pickle else 9)
        assert list(data["per_shard"]) == [shard_name(root, k) for k in range(3)]
        assert note.shard == shard_name(root, 0) and f"in 3 shards reference {data['global'].replace(':', '.')}" \
            in note.message
    lines = [x for x in render_human(report).splitlines() if "ATL605" in x]
    assert len(lines) == len(notes)


def test_per_shard_counts_are_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(policy_notes, "MAX_SHARDS_LISTED", 2)
    root = write(tmp_path / "d", arrays=True)
    [note, *_] = [f for f in validate(root, jobs=1).findings if f.id == "ATL605"]
    assert len(note.data["per_shard"]) == 2 and note.data["shards_not_listed"] == 1 and note.data["shards"] == 3


# -- --min-severity and JSON --------------------------------------------------------------------------------


@pytest.fixture()
def noisy(tmp_path) -> Path:
    """A valid dataset with a warning (an unexpected file, ATL105) and notes (ATL605)."""
    root = write(tmp_path / "d", arrays=True)
    (root / "README.txt").write_text("hello")
    return root


def test_min_severity_filters_the_human_output_not_the_verdict(noisy):
    code, everything, _ = run(validate_main, noisy, "--jobs", "1")
    assert code == 0 and "INFO    ATL605" in everything and "WARNING ATL105" in everything
    assert "not shown" not in everything  # the default shows every finding
    code, warnings, _ = run(validate_main, noisy, "--jobs", "1", "--min-severity", "warning")
    notes = everything.count("INFO    ")
    assert code == 0 and "INFO" not in warnings and "WARNING ATL105" in warnings
    assert f"0 errors, 1 warnings, {notes} notes" in warnings  # the counts count every finding
    assert f"{notes} findings below warning not shown" in warnings
    code, errors, _ = run(validate_main, noisy, "--jobs", "1", "--min-severity", "error", "--strict")
    assert code == 1 and "WARNING" not in errors and "INVALID" in errors  # --strict still fails on the warning
    as_notes = run(validate_main, noisy, "--jobs", "1", "--min-severity", "note")[1]
    assert as_notes.splitlines()[:-1] == everything.splitlines()[:-1]  # (the last line is the throughput)
    code, _, err = run(validate_main, noisy, "--min-severity", "loud")
    assert code == 2 and "loud" in err
    with pytest.raises(ValueError, match="'loud'"):
        validate(noisy, jobs=1).shown("loud")


def test_json_keeps_every_finding_and_counts_what_it_filters(noisy):
    code, out, _ = run(validate_main, noisy, "--jobs", "1", "--format", "json")
    doc = json.loads(out)
    jsonschema.validate(doc, REPORT_SCHEMA)
    [report] = doc["reports"]
    assert code == 0 and report["min_severity"] == "info" and report["not_shown"] == 0
    assert len(report["findings"]) == sum(report["counts"].values())
    assert all({"index", "position", "data"} <= set(f) for f in report["findings"])
    code, out, _ = run(validate_main, noisy, "--jobs", "1", "--format", "json", "--min-severity", "warning")
    doc = json.loads(out)
    jsonschema.validate(doc, REPORT_SCHEMA)
    [filtered] = doc["reports"]
    assert filtered["counts"] == report["counts"] and filtered["min_severity"] == "warning"
    assert [f["id"] for f in filtered["findings"]] == ["ATL105"]
    assert filtered["not_shown"] == report["counts"]["info"] > 0


# -- --allow ---------------------------------------------------------------------------------------------


def test_allow_mirrors_the_readers_allowed_globals(tmp_path):
    root = write(tmp_path / "d", {4, 17})
    code, out, _ = run(validate_main, root, "--jobs", "1")
    assert code == 1 and out.count("ATL600") == 2
    code, out, _ = run(validate_main, root, "--jobs", "1", "--allow", "argparse:Namespace", "--format", "json")
    [report] = json.loads(out)["reports"]
    assert code == 0 and report["ok"] and report["safe_load"] and report["allowed_globals"] == ["argparse:Namespace"]
    [note] = [f for f in report["findings"] if f["data"] and f["data"]["global"] == "argparse:Namespace"]
    assert note["data"]["trusted"] and note["data"]["pickles"] == 2 and "trusted with --allow" in note["message"]
    # the first location: the block (a grouped block is one pickle); per-example pickles give the example
    assert (note["index"], note["shard"], note["block"]) == (None, shard_name(root, 0), 1)
    blocks = write(tmp_path / "b", {4, 17}, framing=Framing.BLOCK)
    code, out, _ = run(validate_main, blocks, "--jobs", "1", "--allow", "argparse:Namespace", "--format", "json")
    [note] = [f for f in json.loads(out)["reports"][0]["findings"] if f["data"]["global"] == "argparse:Namespace"]
    assert code == 0 and note["index"] == 4
    ds = AtlasDataset(root, safe=True, allowed_globals=[NAMESPACE])  # what the validator now passes, loads
    assert ds[17] == argparse.Namespace(i=17) and ds[4] == argparse.Namespace(i=4)
    code, out, _ = run(validate_main, root, "--jobs", "1", "--allow", "argparse:Namespace", "--allow", "x.y:Z.w")
    assert code == 0 and "trusted with --allow: argparse:Namespace, x.y:Z.w" in out


def test_allow_admits_only_the_named_global(tmp_path):
    root = write(tmp_path / "d", {4})
    for other in ("argparse:ArgumentParser", "argparse.Namespace:x", "Argparse:Namespace"):
        report = validate(root, jobs=1, allowed_globals=[tuple(other.split(":"))])
        assert "ATL600" in report.ids(), other


@pytest.mark.parametrize("value", ["argparse", "a:b:c", ":Namespace", "argparse:", "1pkg:Box", "a..b:C", "a:b c"])
def test_a_bad_allow_value_exits_2_naming_it(tmp_path, value):
    root = write(tmp_path / "d")
    code, out, err = run(validate_main, root, "--allow", value)
    assert code == 2 and out == "" and repr(value) in err and "MODULE:NAME" in err


def test_atlas_ds_validate_passes_allow_and_min_severity(tmp_path):
    root = write(tmp_path / "d", {17}, arrays=True)
    code, out, _ = run(atlas_ds_main, "validate", root, "--jobs", "1")
    assert code == 1 and format_example(17, shard_name(root, 1), 1, 3) in out
    code, out, _ = run(atlas_ds_main, "validate", root, "--jobs", "1", "--allow", "argparse:Namespace",
                       "--min-severity", "warning")
    assert code == 0 and "VALID" in out and "INFO" not in out and "not shown" in out
    code, _, err = run(atlas_ds_main, "validate", root, "--allow", "nonsense")
    assert code == 2 and "'nonsense'" in err


_NEW_NAMESPACE = b"cargparse\nNamespace\n)\x81"  # GLOBAL argparse.Namespace, EMPTY_TUPLE, NEWOBJ
TRUSTED_CASES = {
    "instance": (pickle.dumps(argparse.Namespace(a=1, b=[1, 2]), protocol=5), True),
    "class-and-nested-instances": (pickle.dumps([argparse.Namespace, argparse.Namespace(n=argparse.Namespace())],
                                                protocol=2), True),
    "class-as-dict-key": (pickle.dumps({argparse.Namespace: 1}, protocol=4), True),
    "inside-a-policy-container": (pickle.dumps(collections.OrderedDict(x=argparse.Namespace(y=2)), protocol=5),
                                  True),
    "protocol-0": (pickle.dumps(argparse.Namespace(a=1), protocol=0), None),
    "argument-of-a-policy-call": (b"\x80\x05cfractions\nFraction\n" + _NEW_NAMESPACE + b"\x85R.", False),
    "append-on-a-trusted-object": (b"\x80\x05" + _NEW_NAMESPACE + b"K\x01a.", False),
    "another-global-of-the-module": (pickle.dumps(argparse.ArgumentParser, protocol=5), False),
}


@pytest.mark.parametrize("case", list(TRUSTED_CASES))
def test_the_scanner_admits_trusted_globals_as_safe_loading_does(case):
    """The validator's --allow and the reader's allowed_globals decide alike (None: whatever both say)."""
    data, expected = TRUSTED_CASES[case]
    trusted = frozenset({NAMESPACE})
    try:
        SafeUnpickler(trusted).loads(data)
        loaded = True
    except AtlasError:
        loaded = False
    result = scan_pickle(data, allowed=trusted)
    clean = not result.issues and result.end == len(data)
    assert loaded == clean, (case, result.issues)
    assert expected is None or loaded == expected, case
    if clean:
        assert (NAMESPACE in (result.allowed or set())) == (b"Namespace" in data)
    assert scan_pickle(data).issues, case  # without --allow every case is refused (each names argparse)
