"""Safe loading: allow-listed globals load (numpy, torch), code-running pickles are refused unrun."""

from __future__ import annotations

import dataclasses
import os
import subprocess

import numpy as np
import pytest
import torch

from torch_atlas_ds import AtlasDataset, AtlasDatasetWriter, CompressionStrategy, UnsafePickleError


class SystemPayload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class EvalPayload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


class SubprocessPayload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (subprocess.call, (["touch", str(self.marker)],))


@dataclasses.dataclass
class Point:
    x: int
    y: int


def _write(root, examples, **kw):
    with AtlasDatasetWriter(root, 100, 4, **kw) as w:
        for ex in examples:
            w.add_example(ex)


@pytest.mark.parametrize("payload", [SystemPayload, EvalPayload, SubprocessPayload])
@pytest.mark.parametrize("format_version", [1, 2])
def test_malicious_pickle_is_refused_without_running(tmp_path, payload, format_version):
    marker = tmp_path / "pwned"
    root = tmp_path / "d"
    _write(root, [{"ok": 1}] * 5 + [payload(marker)] + [{"ok": 2}], format_version=format_version)
    ds = AtlasDataset(root, safe=True)
    assert ds[0] == {"ok": 1}
    with pytest.raises(UnsafePickleError) as info:
        ds[5]
    err = info.value
    assert not marker.exists()
    assert err.module in ("os", "posix", "builtins", "subprocess") and err.name in ("system", "eval", "call")
    assert f"{err.module}.{err.name}" in str(err)
    assert err.block == 1 and err.shard is not None and "data.bin" in str(err)
    if format_version == 2:
        assert (err.position, err.index) == (1, 5) and ds[6] == {"ok": 2}  # v2: only that example is refused
    # The unsafe default reader does run it (this is why safe=True exists).
    AtlasDataset(root)[5]
    assert marker.exists()


@pytest.mark.parametrize("format_version", [1, 2])
def test_safe_mode_loads_numpy_and_torch(tmp_path, format_version):
    arrays = [(np.arange(12) % 3).astype(dt).reshape(3, 4) for dt in (np.uint8, np.int32, np.int64, np.float16,
                                                               np.float32, np.float64, np.bool_, np.complex64)]
    tensors = [torch.arange(6, dtype=torch.float32).reshape(2, 3), torch.tensor([1, 2, 3], dtype=torch.int64),
               torch.zeros(2, 2, dtype=torch.bfloat16), torch.ones(3, dtype=torch.bool)]
    examples = [{"a": a, "label": i} for i, a in enumerate(arrays)] + [{"t": t} for t in tensors]
    examples += [np.float64(2.5), np.int32(7), bytearray(b"xyz"), {1, 2}, frozenset({3}), complex(1, 2)]
    root = tmp_path / "d"
    _write(root, examples, format_version=format_version,
           compression_strategy=CompressionStrategy.STANDARD_COMPRESSION)
    ds = AtlasDataset(root, safe=True)
    for i, a in enumerate(arrays):
        got = ds[i]["a"]
        assert got.dtype == a.dtype and np.array_equal(got, a)
    for j, t in enumerate(tensors):
        got = ds[len(arrays) + j]["t"]
        assert got.dtype == t.dtype and torch.equal(got, t)
    tail = [ds[i] for i in range(len(arrays) + len(tensors), len(examples))]
    assert tail == examples[len(arrays) + len(tensors):]


def test_allowed_globals_extend_the_allow_list(tmp_path):
    root = tmp_path / "d"
    _write(root, [Point(1, 2)])
    with pytest.raises(UnsafePickleError) as info:
        AtlasDataset(root, safe=True)[0]
    assert info.value.name == "Point"
    ds = AtlasDataset(root, safe=True, allowed_globals=[(Point.__module__, "Point")])
    assert ds[0] == Point(1, 2)


class HugeBytearray:
    def __reduce__(self):
        return (bytearray, (10**12,))


def test_bytearray_from_an_integer_is_refused():
    import pickle

    from torch_atlas_ds.safe_pickle import make_loads

    data = pickle.dumps(HugeBytearray(), protocol=4)  # a 1 TB allocation if the call went through
    with pytest.raises(UnsafePickleError):
        make_loads(True)(data)
    assert make_loads(True)(pickle.dumps(bytearray(b"ok"), protocol=4)) == bytearray(b"ok")


def test_persistent_ids_are_refused():
    import io
    import pickle

    from torch_atlas_ds.safe_pickle import make_loads

    class P(pickle.Pickler):
        def persistent_id(self, obj):
            return "x" if obj == "secret" else None

    buf = io.BytesIO()
    P(buf, protocol=5).dump(["secret"])
    with pytest.raises(UnsafePickleError):
        make_loads(True)(buf.getvalue())


def test_safe_dataset_pickles_into_workers(tmp_path):
    import pickle

    root = tmp_path / "d"
    _write(root, [np.arange(3)] * 3)
    clone = pickle.loads(pickle.dumps(AtlasDataset(root, safe=True, allowed_globals=[("m", "n")])))
    assert np.array_equal(clone[2], np.arange(3)) and clone.safe


def test_pickle_limits_are_a_setting_of_safe_loading(tmp_path):
    """pickle_limits lowers PICKLE-11's limits for one dataset, also in its copies for DataLoader workers."""
    import pickle

    from atlas_format import PickleLimits
    from torch_atlas_ds import LimitError

    root = tmp_path / "d"
    _write(root, [[[1]], [2], "flat"], framing="block")  # per-example pickles: a list block adds a level
    ds = AtlasDataset(root, safe=True, pickle_limits=PickleLimits(max_depth=1))
    for copy in (ds, pickle.loads(pickle.dumps(ds))):
        assert copy[1] == [2] and copy[2] == "flat"
        with pytest.raises(LimitError) as info:
            copy[0]
        assert info.value.rule == "depth" and info.value.position == 0 and "data.bin" in str(info.value)
    assert AtlasDataset(root, safe=True)[0] == [[1]]
