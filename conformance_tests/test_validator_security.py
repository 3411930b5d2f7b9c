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
from atlas_validator.pickle_scan import scan_pickle


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
    assert "posix.system" in names or "os.system" in names  # the first rule the block's pickle breaks
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
    for protocol in range(2, 6):
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


def test_scanner_allows_policy_globals():
    import collections
    import datetime
    import decimal
    import fractions
    import pathlib
    import uuid

    values = [collections.OrderedDict(a=1), datetime.date(2020, 1, 1), decimal.Decimal("1.5"), {1, 2}, frozenset([3]),
              complex(1, 2), bytearray(b"xy"), fractions.Fraction(3, 7), uuid.UUID(int=5), range(3), slice(1, None),
              ..., pathlib.PurePosixPath("a/b"), collections.defaultdict(list, a=[1]), collections.deque([1], 4)]
    result = scan_pickle(pickle.dumps(values, protocol=4), shape=True)
    assert not result.issues and result.top_count == len(values)
    # protocol 2 spells builtins as __builtin__: resolved as the unpickler does (fix_imports)
    result = scan_pickle(pickle.dumps([{1, 2}, frozenset([3])], protocol=2), shape=True)
    assert not result.issues and result.top_count == 2


@pytest.mark.parametrize("data", [b"", b"\x80", b"\x80\x05", b"\x80\x05]", b"\xff", b"\x80\x05K", b"a.", b"0.",
                                  b"\x80\x05(((((", b"\x80\x05h\x05.", b"\x80\x05\x93."])
def test_scanner_reports_malformed_pickles(data):
    result = scan_pickle(data)
    assert result.issues and result.end is None


def test_scanner_limits():
    from atlas_format.pickle_values import PickleLimits

    nested = pickle.dumps([[[[1]]]], protocol=4)
    assert [i.id for i in scan_pickle(nested, limits=PickleLimits(max_depth=3)).issues] == ["ATL902"]
    assert not scan_pickle(nested, limits=PickleLimits(max_depth=4)).issues
    many = pickle.dumps([str(i) for i in range(100)], protocol=4)
    assert [i.id for i in scan_pickle(many, limits=PickleLimits(max_items=99)).issues] == ["ATL902"]
    assert not scan_pickle(many, limits=PickleLimits(max_items=100)).issues
    shared = [1, 2, 3]
    dag = pickle.dumps([shared] * 10, protocol=4)  # 10 references to one list: 10 + 30 items
    assert [i.id for i in scan_pickle(dag, limits=PickleLimits(max_items=39)).issues] == ["ATL902"]
    assert not scan_pickle(dag, limits=PickleLimits(max_items=40)).issues
    assert [i.id for i in scan_pickle(pickle.dumps(2 ** 100, protocol=4),
                                      limits=PickleLimits(max_int_bytes=8)).issues] == ["ATL902"]


def _load_from_bytes_pickle(blob: bytes) -> bytes:
    # [torch.storage._load_from_bytes(blob)] as plain pickle writes a tensor storage
    head = b"\x80\x04]\x8c\x0dtorch.storage\x94\x8c\x10_load_from_bytes\x94\x93"
    return head + b"B" + len(blob).to_bytes(4, "little") + blob + b"\x85Ra."


def test_a_zip_archive_is_not_the_stream_of_load_from_bytes():
    """Plain pickle stores storages as legacy torch streams (PICKLE-12); a torch.save zip archive is refused."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02N.")
    result = scan_pickle(_load_from_bytes_pickle(buf.getvalue()))
    assert [i.id for i in result.issues] == ["ATL604"]


_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.tuples(children, children)
    | st.dictionaries(st.text(max_size=5), children, max_size=4) | st.frozensets(st.integers(), max_size=3),
    max_leaves=20,
)


@given(items=st.lists(_values, max_size=12), protocol=st.integers(2, 5))
def test_scanner_counts_any_list_of_plain_values(items, protocol):
    shared = ["shared"]  # the same object twice: memo GET inside the list
    value = items + [shared, shared]
    result = scan_pickle(pickle.dumps(value, protocol=protocol), shape=True)
    assert result.top_is_list and result.top_count == len(value)
    assert result.end is not None and not result.issues


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
    assert "ATL605" in report.ids()  # the policy's torch globals are noted


def test_legacy_torch_stream_defects():
    torch = pytest.importorskip("torch")
    pickled = pickle.dumps(torch.arange(6, dtype=torch.float32), protocol=3)  # no FRAME to keep in step
    blob = _legacy_blob(pickled)

    def ids(new_blob: bytes) -> list[str]:
        return [i.id for i in scan_pickle(_replace_blob(pickled, blob, new_blob)).issues]

    assert ids(blob[:-3]) == ["ATL604"]  # storage bytes missing
    assert ids(blob + b"\0") == ["ATL604"]  # bytes after the storages
    assert ids(blob[:100]) == ["ATL604"]  # a pickle cut short
    evil = blob.replace(b"ctorch\nFloatStorage\n", b"cposix\nsystem\n")
    assert ids(evil) == ["ATL604"] and "posix.system" in scan_pickle(
        _replace_blob(pickled, blob, evil)).issues[0].message
    count = (6).to_bytes(8, "little")
    assert count in blob
    assert "ATL604" in ids(blob.replace(count, (5).to_bytes(8, "little"))[:-4])  # count differs from numel


def test_out_of_band_buffers_cannot_be_loaded_from_a_dataset():
    data = pickle.dumps(pickle.PickleBuffer(b"abc"), protocol=5, buffer_callback=lambda b: False)
    assert "ATL606" in {i.id for i in scan_pickle(data).issues}
    assert not scan_pickle(pickle.dumps(pickle.PickleBuffer(b"abc"), protocol=5)).issues  # in-band: fine


def test_in_place_scan_stops_at_the_slice_end():
    """Examples are scanned in place in their decoded block: nothing at or after the slice's end is read."""
    first, second = pickle.dumps({"a": b"x" * 600}, protocol=5), pickle.dumps([1, 2], protocol=5)
    block = first[:-1] + second  # the first example's STOP is missing: its slice ends before the second
    result = scan_pickle(block, start=0, stop=len(first) - 1)
    assert [i.id for i in result.issues] == ["ATL413"] and result.end is None
    clean = scan_pickle(first + second, start=len(first), stop=len(first) + len(second))
    assert not clean.issues and clean.end == len(first) + len(second)
    long_string = b"\x80\x05X" + (10).to_bytes(4, "little") + b"abc"  # claims 10 bytes, the slice holds 3
    assert [i.id for i in scan_pickle(long_string + b"defghijkl.", stop=len(long_string)).issues] == ["ATL413"]
