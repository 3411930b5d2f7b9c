"""Malicious pickles are flagged and never run; the opcode scanner's stack machine and nested torch archives."""

from __future__ import annotations

import io
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from validator_vectors import BuiltinsEval, OsSystem, examples, write_v1, write_v2

from atlas_validator import validate
from atlas_validator.pickle_scan import ScanLimits, scan_pickle


def _malicious_v1(tmp_path: Path, marker: Path, marker2: Path, strategy: int) -> Path:
    def hook(k, b, p):
        if (k, b) == (0, 1):
            items = pickle.loads(p)
            items[1] = OsSystem(f"touch {marker}")
            items[2] = BuiltinsEval(f"__import__('os').system('touch {marker2}')")
            return pickle.dumps(items, protocol=4)
        return p
    return write_v1(tmp_path / f"v1-{strategy}", examples(40), strategy=strategy, block_hook=hook)


@pytest.mark.parametrize("strategy", [0, 1])
def test_malicious_v1_block_is_flagged_and_not_run(tmp_path, strategy):
    marker, marker2 = tmp_path / "PWNED", tmp_path / "PWNED2"
    root = _malicious_v1(tmp_path, marker, marker2, strategy)
    report = validate(root)
    dangerous = [f for f in report.findings if f.id == "ATL601"]
    names = " ".join(f.message for f in dangerous)
    assert "posix.system" in names or "os.system" in names
    assert "builtins.eval" in names
    assert all(f.shard == "0" and f.block == 1 and f.path == "0/data.bin" for f in dangerous)
    assert not report.ok
    # the CLI, as a user would run it, in a fresh process
    out = subprocess.run([sys.executable, "-m", "atlas_validator", "--jobs", "2", str(root)], capture_output=True,
                         text=True)
    assert out.returncode == 1 and "ATL601" in out.stdout
    assert not marker.exists() and not marker2.exists()


def test_malicious_v2_example_is_flagged_and_not_run(tmp_path):
    marker = tmp_path / "PWNED"

    def hook(k, b, j, p):
        return pickle.dumps(OsSystem(f"touch {marker}"), protocol=5) if (k, b, j) == (1, 2, 3) else p

    root = write_v2(tmp_path / "ds", examples(40), shard_size=16, pickle_hook=hook)
    report = validate(root, jobs=2)
    [finding] = [f for f in report.findings if f.id == "ATL601"]
    assert (finding.shard, finding.block, finding.example) == ("000001", 2, 11)
    assert not marker.exists()


def test_scanner_counts_list_items_through_memo_and_appends():
    value = ["a", "b", "a", {"x": 1}, [1, 2], "a"]
    for protocol in range(0, 6):
        result = scan_pickle(pickle.dumps(value, protocol=protocol), shape=True)
        assert result.top_is_list and result.top_count == 6, protocol
        assert not result.issues
    big = list(range(2500))  # APPENDS batches of 1000
    assert scan_pickle(pickle.dumps(big, protocol=4), shape=True).top_count == 2500
    assert not scan_pickle(pickle.dumps({"a": [1]}, protocol=4), shape=True).top_is_list


def test_scanner_resolves_stack_global_from_memo():
    class Evil:
        def __reduce__(self):
            import os
            return (os.system, ("true",))

    data = pickle.dumps([Evil(), Evil()], protocol=4)
    issues = scan_pickle(data).issues
    assert [i.id for i in issues] == ["ATL601"]  # reported once per pickle, resolved from SHORT_BINUNICODE pushes
    # module and name fetched back from the memo with BINGET
    crafted = (b"\x80\x04\x8c\x02os\x940\x8c\x06system\x940h\x00h\x01\x93\x8c\x04true\x85R.")
    assert [i.id for i in scan_pickle(crafted).issues] == ["ATL601"]


def test_scanner_allows_allow_listed_globals():
    import collections
    import datetime
    import decimal

    data = pickle.dumps([collections.OrderedDict(a=1), datetime.date(2020, 1, 1), decimal.Decimal("1.5"),
                         {1, 2}, frozenset([3]), complex(1, 2), bytearray(b"xy")], protocol=4)
    result = scan_pickle(data, shape=True)
    assert not result.issues and result.top_count == 7
    # protocol 2 spells builtins as __builtin__: resolved as the unpickler does (fix_imports)
    result = scan_pickle(pickle.dumps([{1, 2}, frozenset([3])], protocol=2), shape=True)
    assert not result.issues and result.top_count == 2


@pytest.mark.parametrize("data", [b"", b"\x80", b"\x80\x05", b"\x80\x05]", b"\xff", b"\x80\x05K", b"a.", b"0.",
                                  b"\x80\x05(((((", b"\x80\x05h\x05.", b"\x80\x05\x93."])
def test_scanner_reports_malformed_pickles(data):
    result = scan_pickle(data)
    assert result.issues and result.end is None


def test_scanner_limits():
    deep = b"\x80\x05" + b"(" * 50 + b"."
    assert [i.id for i in scan_pickle(deep, limits=ScanLimits(max_stack=10)).issues] == ["ATL902"]
    memo = pickle.dumps([str(i) for i in range(100)], protocol=4)
    assert "ATL902" in {i.id for i in scan_pickle(memo, limits=ScanLimits(max_memo=10)).issues}


def _torch_like_archive(inner: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("archive/data.pkl", inner)
        archive.writestr("archive/data/0", b"\0" * 16)
        archive.writestr("archive/version", b"3\n")
    return buf.getvalue()


def _load_from_bytes_pickle(blob: bytes) -> bytes:
    # [torch.storage._load_from_bytes(blob)] as plain pickle writes a tensor storage
    head = b"\x80\x04]\x8c\x0dtorch.storage\x94\x8c\x10_load_from_bytes\x94\x93"
    return head + b"B" + len(blob).to_bytes(4, "little") + blob + b"\x85Ra."


def test_nested_torch_archive_is_scanned():
    # torch.save's inner pickle: a rebuild call with a persistent id for the storage (normal inside the archive)
    inner = (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nq\x00((X\x07\x00\x00\x00storageq\x01ctorch\n"
             b"FloatStorage\nq\x02X\x01\x00\x00\x000q\x03X\x03\x00\x00\x00cpuq\x04K\x04tq\x05QK\x00K\x04\x85K"
             b"\x01\x85\x89ccollections\nOrderedDict\nq\x06)Rq\x07tq\x08Rq\x09.")
    result = scan_pickle(_load_from_bytes_pickle(_torch_like_archive(inner)), shape=True)
    assert result.top_count == 1
    ids = [i.id for i in result.issues]
    assert ids == []  # persistent ids are how torch archives name storages; the rest is allow-listed
    evil = pickle.dumps(OsSystem("true"), protocol=2)
    result = scan_pickle(_load_from_bytes_pickle(_torch_like_archive(evil)))
    assert [i.id for i in result.issues] == ["ATL601"] and "archive/data.pkl" in result.issues[0].message


def test_nested_archive_bounds():
    huge = _torch_like_archive(b"\x80\x02N.")
    result = scan_pickle(_load_from_bytes_pickle(huge), limits=ScanLimits(max_archive_size=8))
    assert [i.id for i in result.issues] == ["ATL604"]


_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.tuples(children, children)
    | st.dictionaries(st.text(max_size=5), children, max_size=4) | st.frozensets(st.integers(), max_size=3),
    max_leaves=20,
)


@given(items=st.lists(_values, max_size=12), protocol=st.integers(0, 5))
def test_scanner_counts_any_list_of_plain_values(items, protocol):
    shared = ["shared"]  # the same object twice: memo GET inside the list
    value = items + [shared, shared]
    result = scan_pickle(pickle.dumps(value, protocol=protocol), shape=True)
    assert result.top_is_list and result.top_count == len(value)
    assert result.end is not None and not [i for i in result.issues if i.id != "ATL600"]


def _legacy_blob(pickled: bytes) -> bytes:
    import pickletools

    return next(arg for op, arg, _ in pickletools.genops(pickled) if op.name in ("BINBYTES", "BINBYTES8",
                                                                                "SHORT_BINBYTES"))


def _replace_blob(pickled: bytes, old: bytes, new: bytes) -> bytes:
    head = b"B" + len(old).to_bytes(4, "little") + old
    assert head in pickled
    return pickled.replace(head, b"B" + len(new).to_bytes(4, "little") + new)


def test_pickled_tensors_scan_clean_and_validate(tmp_path):
    torch = pytest.importorskip("torch")
    values = [torch.arange(6, dtype=torch.float32), torch.zeros(3, 4, dtype=torch.int64), torch.arange(10)[2:5],
              {"a": torch.randn(2, 2), "b": torch.ones(3, dtype=torch.bool)}, torch.tensor([])]
    for value in values:
        result = scan_pickle(pickle.dumps(value, protocol=5))
        assert result.end is not None and not result.issues, result.issues
    items = [{"x": torch.full((4,), float(i)), "y": i} for i in range(40)]
    root = write_v2(tmp_path / "ds", items, shard_size=16)
    report = validate(root)
    assert report.ok and not report.errors and not report.warnings, [f.to_dict() for f in report.findings]
    assert "ATL605" in report.ids()  # the allow-listed torch globals are noted, with the substitute


def test_legacy_torch_stream_defects():
    torch = pytest.importorskip("torch")
    pickled = pickle.dumps(torch.arange(6, dtype=torch.float32), protocol=5)
    blob = _legacy_blob(pickled)

    def ids(new_blob: bytes) -> list[str]:
        return [i.id for i in scan_pickle(_replace_blob(pickled, blob, new_blob)).issues]

    assert ids(blob[:-3]) == ["ATL604"]  # storage bytes missing
    assert ids(blob + b"\0") == ["ATL604"]  # bytes after the storages
    assert ids(blob[:100]) and set(ids(blob[:100])) <= {"ATL413", "ATL604"}  # a pickle cut short
    evil = blob.replace(b"ctorch\nFloatStorage\n", b"cposix\nsystem\n")
    assert "ATL601" in ids(evil)
    count = (6).to_bytes(8, "little")
    assert count in blob
    assert "ATL604" in ids(blob.replace(count, (5).to_bytes(8, "little"))[:-4])  # count differs from numel


def test_out_of_band_buffers_cannot_be_loaded_from_a_dataset():
    data = pickle.dumps(pickle.PickleBuffer(b"abc"), protocol=5, buffer_callback=lambda b: False)
    assert "ATL413" in {i.id for i in scan_pickle(data).issues}
    assert not scan_pickle(pickle.dumps(pickle.PickleBuffer(b"abc"), protocol=5)).issues  # in-band: fine


def _comparable(result):
    return (sorted((i.id, i.offset) for i in result.issues), result.end, result.protocol)


_mutation = st.tuples(st.integers(0, 10_000), st.integers(0, 255), st.sampled_from(["flip", "cut", "insert"]))


@given(value=_values | st.lists(_values, max_size=8), protocol=st.integers(0, 5),
       mutations=st.lists(_mutation, max_size=3), evil=st.booleans())
def test_fast_path_agrees_with_the_full_scan(value, protocol, mutations, evil):
    """The plain-data fast path may only ever say "clean" where the full scan finds nothing."""
    data = bytearray(pickle.dumps([value, OsSystem("true")] if evil else value, protocol=protocol))
    for at, byte, kind in mutations:
        at %= len(data) + 1
        if kind == "flip" and at < len(data):
            data[at] = byte
        elif kind == "cut":
            del data[at:]
        else:
            data[at:at] = bytes([byte])
    data = bytes(data)
    fast = scan_pickle(data)
    full = scan_pickle(data, fast=False)
    assert _comparable(fast) == _comparable(full)
    fast_list = scan_pickle(data, shape=True)  # the version 1 fast path also counts the list's items
    full_list = scan_pickle(data, shape=True, fast=False)
    assert _comparable(fast_list) == _comparable(full_list)
    assert (fast_list.top_is_list, fast_list.top_count) == (full_list.top_is_list, full_list.top_count)


@given(values=st.lists(_values, min_size=1, max_size=6), protocol=st.integers(0, 5),
       mutations=st.lists(_mutation, max_size=3), evil_at=st.integers(-1, 5))
def test_block_fast_path_agrees_with_scanning_each_slice(values, protocol, mutations, evil_at):
    from atlas_validator.pickle_scan import NEEDS_FULL_SCAN, plain_examples

    pickles = [pickle.dumps(OsSystem("true") if i == evil_at else v, protocol=protocol) for i, v in enumerate(values)]
    payload = bytearray(b"".join(pickles))
    for at, byte, kind in mutations:  # may move bytes across example boundaries: slices stay where they were
        at %= len(payload)
        if kind == "flip":
            payload[at] = byte
        elif kind == "cut":
            del payload[at]
            payload.append(0)
        else:
            payload.insert(at, byte)
            payload.pop()
    payload = b"\x00" * 7 + bytes(payload)  # examples need not start at 0
    bounds, pos = [], 7
    for p in pickles:
        bounds.append((pos, pos + len(p)))
        pos += len(p)
    for (start, end), protocol_found in zip(bounds, plain_examples(payload, bounds), strict=True):
        if protocol_found == NEEDS_FULL_SCAN:
            continue
        full = scan_pickle(payload[start:end], shape=True)
        assert not full.issues and full.end == end - start and full.protocol == protocol_found
