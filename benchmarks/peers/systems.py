"""Adapters and the measurement worker of the peer benchmark (run by run.py, one process per measurement).

    <venv>/bin/python benchmarks/peers/systems.py '<json task>'

prints one JSON line (the result) last. Every adapter imports its package lazily, so this
file runs in any of the venvs made by setup.sh (torch is in all of them; torch_atlas_ds
only in the "atlas" venv). The workloads arrive as a pickle written by run.py (the same
deterministic generators as benchmarks/bench_reference.py), so every system writes the
very same examples.
"""

from __future__ import annotations

import json
import os
import pickle
import resource
import sys
import time
import types
from pathlib import Path
from typing import Any

BATCH = 256
TIME_CAP = float(os.environ.get("PEERS_TIME_CAP", "15"))  # seconds: sequential/iteration stop after this


def rss_mb(field: str = "VmRSS") -> float:
    """Current (VmRSS) or peak (VmHWM) resident memory of this process, MB. VmHWM, unlike ru_maxrss, is not
    inherited across exec from the orchestrator that forked this process."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def dir_size(*roots: str) -> int:
    total = 0
    for root in roots:
        p = Path(root)
        if p.is_file():
            total += p.stat().st_size
        elif p.is_dir():
            total += sum(q.stat().st_size for q in p.rglob("*") if q.is_file())
    return total


# ------------------------------------------------------------------ adapters --------------------


class Adapter:
    """One system. ``open`` returns a reader with get(i), get_many(list), iterate()."""

    name = "?"
    batched_call = "loop of ds[i]"
    caching = ""

    def __init__(self, params: dict[str, Any], workload: str) -> None:
        self.params = params
        self.workload = workload

    def prepare(self) -> None:
        """Import the package (timed apart from open and write)."""

    def write(self, examples: list[Any], path: str) -> None:
        raise NotImplementedError

    def open(self, path: str) -> Any:
        raise NotImplementedError

    def get(self, r: Any, i: int) -> Any:
        return r[i]

    def get_many(self, r: Any, idx: list[int]) -> list[Any]:
        return [r[i] for i in idx]

    def iterate(self, r: Any) -> Any:
        return iter(r)

    def extra_dirs(self, path: str) -> list[str]:
        """Folders a reader may fill beside the data (counted in 'bytes after reading')."""
        return []

    def loader_dataset(self, path: str, n: int) -> Any:
        """A map-style torch Dataset for the DataLoader epoch (opened lazily in each worker)."""
        return MapWrapper(self, path, n)

    def versions(self) -> dict[str, str]:
        return {}


class MapWrapper:
    """Map-style torch Dataset over an adapter; each process opens its own reader on first use."""

    def __init__(self, adapter: Adapter, path: str, n: int) -> None:
        # n comes from the task: opening a reader in the parent before fork breaks some peers (Lance's runtime)
        self.adapter, self.path = adapter, path
        self._pid, self._r = -1, None
        self._len = n

    def _reader(self) -> Any:
        if self._pid != os.getpid():
            self._r, self._pid = self.adapter.open(self.path), os.getpid()
        return self._r

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, i: int) -> Any:
        return self.adapter.get(self._reader(), i)

    def __getitems__(self, idx: list[int]) -> list[Any]:
        return self.adapter.get_many(self._reader(), list(idx))

    def __getstate__(self) -> dict[str, Any]:
        return {"adapter": self.adapter, "path": self.path, "_pid": -1, "_r": None, "_len": self._len}


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


class Atlas(Adapter):
    name = "torch_atlas_ds"
    batched_call = "ds.__getitems__"
    caching = ("in-process LRU of 16 decoded blocks per dataset (v1 reader: same, plus the last block per shard); "
               "data.bin and index memory-mapped")

    def prepare(self) -> None:
        from torch_atlas_ds import AtlasDataset, AtlasDatasetWriter  # noqa: F401 - imports torch

    def _kwargs(self) -> dict[str, Any]:
        from torch_atlas_ds import Codec, CompressionStrategy

        p = self.params
        kw: dict[str, Any] = {"format_version": p["version"]}
        if p["codec"] == "zstd":
            kw["compression_strategy"] = CompressionStrategy.SHARED_DICTIONARY_COMPRESSION
        elif p["codec"] == "lz4":
            kw["codec"] = Codec.LZ4
        else:
            kw["compression_strategy"] = CompressionStrategy.NO_COMPRESSION
        if p.get("framing"):
            kw["framing"] = p["framing"]
        return kw

    def write(self, examples: list[Any], path: str) -> None:
        from torch_atlas_ds import AtlasDatasetWriter

        with AtlasDatasetWriter(path, max(len(examples) // 5, 1), self.params["block"], **self._kwargs()) as w:
            for ex in examples:
                w.add_example(ex)

    def open(self, path: str) -> Any:
        from torch_atlas_ds import AtlasDataset

        return AtlasDataset(path)

    def get_many(self, r: Any, idx: list[int]) -> list[Any]:
        return r.__getitems__(idx)

    def loader_dataset(self, path: str, n: int) -> Any:
        return self.open(path)

    def versions(self) -> dict[str, str]:
        return {"torch-atlas-ds": _version("torch-atlas-ds")}


class HF(Adapter):
    name = "HuggingFace datasets"
    batched_call = "ds.__getitems__ (one ds[list] then rows)"
    caching = "Arrow files memory-mapped (save_to_disk/load_from_disk); no decoded-row cache"

    def prepare(self) -> None:
        import datasets  # noqa: F401

    def write(self, examples: list[Any], path: str) -> None:
        import datasets

        if self.workload == "image":
            feats = datasets.Features({"image": datasets.Array3D(shape=(3, 32, 32), dtype="uint8"),
                                       "label": datasets.Value("int64")})
            ds = datasets.Dataset.from_generator(lambda: iter(examples), features=feats,
                                                 cache_dir=path + ".gen-cache")
        else:
            ds = datasets.Dataset.from_list(examples)
        ds.save_to_disk(path)

    def extra_dirs(self, path: str) -> list[str]:
        return [path + ".gen-cache"]

    def open(self, path: str) -> Any:
        import datasets

        ds = datasets.load_from_disk(path)
        return ds.with_format("numpy") if self.workload == "image" else ds

    def get_many(self, r: Any, idx: list[int]) -> list[Any]:
        return r.__getitems__(idx)

    def versions(self) -> dict[str, str]:
        return {"datasets": _version("datasets"), "pyarrow": _version("pyarrow")}


def _fake_torchvision() -> None:
    """MDS imports torchvision (VisionDataset, to_tensor) at import time; the reachable torchvision wheels are
    CUDA builds that fail against CPU torch, so a stand-in with those two names is registered first."""
    if "torchvision" in sys.modules:
        return
    import importlib.machinery

    def module(name: str) -> types.ModuleType:
        m = types.ModuleType(name)
        m.__spec__ = importlib.machinery.ModuleSpec(name, None)
        m.__path__ = []  # type: ignore[attr-defined]
        sys.modules[name] = m
        return m

    tv, tvd, tvt, tvf = (module(n) for n in ("torchvision", "torchvision.datasets", "torchvision.transforms",
                                              "torchvision.transforms.functional"))

    class VisionDataset:  # streaming.vision subclasses it; never used here
        pass

    def to_tensor(x: Any) -> Any:
        raise NotImplementedError("torchvision stand-in")

    tvd.VisionDataset = VisionDataset  # type: ignore[attr-defined]
    tvf.to_tensor = to_tensor  # type: ignore[attr-defined]
    tv.datasets, tv.transforms, tvt.functional = tvd, tvt, tvf  # type: ignore[attr-defined]
    tv.__version__ = "0.0+stand-in"  # type: ignore[attr-defined]


class MDS(Adapter):
    name = "MosaicML Streaming (MDS)"
    caching = ("no compression: reads the shard files in place; with compression it decompresses whole "
               "shards to disk beside the data")

    def columns(self) -> dict[str, str]:
        if self.workload == "image":
            return {"image": "ndarray:uint8:3,32,32", "label": "int"}
        return {"text": "str", "id": "int", "label": "int"}

    def prepare(self) -> None:
        _fake_torchvision()
        import streaming  # noqa: F401

    def write(self, examples: list[Any], path: str) -> None:
        _fake_torchvision()
        from streaming import MDSWriter

        with MDSWriter(out=path, columns=self.columns(), compression=None) as w:
            for ex in examples:
                w.write(ex)

    def open(self, path: str) -> Any:
        _fake_torchvision()
        from streaming import StreamingDataset
        from streaming.base.util import clean_stale_shared_memory

        clean_stale_shared_memory()
        return StreamingDataset(local=path, remote=None, shuffle=False, batch_size=BATCH)

    def iterate(self, r: Any) -> Any:
        return iter(r)

    def loader_dataset(self, path: str, n: int) -> Any:
        # one StreamingDataset per worker collides on MDS's shared memory: open it here, workers inherit it
        w = MapWrapper(self, path, n)
        w._r, w._pid = self.open(path), -2
        w._reader = lambda: w._r  # type: ignore[method-assign]
        return w

    def native_loader(self, path: str, seed: int) -> Any:
        """MDS's recommended shuffled loader: StreamingDataset(shuffle=True) as an IterableDataset."""
        from streaming import StreamingDataset
        from streaming.base.util import clean_stale_shared_memory
        from torch.utils.data import DataLoader

        clean_stale_shared_memory()
        ds = StreamingDataset(local=path, remote=None, shuffle=True, shuffle_seed=seed, batch_size=BATCH)
        return DataLoader(ds, batch_size=BATCH, num_workers=2)

    def versions(self) -> dict[str, str]:
        return {"mosaicml-streaming": _version("mosaicml-streaming")}


class LitData(Adapter):
    name = "litdata"
    caching = "reads local chunks in place (input_dir is a local folder); chunk-level cache in the reader"

    def prepare(self) -> None:
        import litdata  # noqa: F401
        from litdata.streaming.writer import BinaryWriter  # noqa: F401

    def write(self, examples: list[Any], path: str) -> None:
        from litdata.streaming.writer import BinaryWriter

        # compression="zstd" writes flat dicts of int and str that litdata 0.2.76 cannot read back: none here
        w = BinaryWriter(path, chunk_bytes="64MB", compression=None)
        for i, ex in enumerate(examples):
            w[i] = ex
        w.done()
        w.merge()

    def open(self, path: str) -> Any:
        from litdata import StreamingDataset

        return StreamingDataset(input_dir=path)

    def extra_dirs(self, path: str) -> list[str]:
        return [str(Path.home() / ".lightning" / "chunks")]

    def native_loader(self, path: str, seed: int) -> Any:
        """litdata's recommended shuffled loader: StreamingDataset(shuffle=True) + StreamingDataLoader."""
        from litdata import StreamingDataLoader, StreamingDataset

        ds = StreamingDataset(input_dir=path, shuffle=True, seed=seed)
        return StreamingDataLoader(ds, batch_size=BATCH, num_workers=2)

    def versions(self) -> dict[str, str]:
        return {"litdata": _version("litdata")}


class Lance(Adapter):
    name = "Lance"
    caching = "pylance defaults (metadata and index caches); no decoded-row cache"

    def __init__(self, params: dict[str, Any], workload: str) -> None:
        super().__init__(params, workload)
        self.batched_call = "ds.take(list)"

    def prepare(self) -> None:
        import lance  # noqa: F401
        import pyarrow  # noqa: F401

    def write(self, examples: list[Any], path: str) -> None:
        import lance
        import pyarrow as pa

        if self.workload == "image":
            import numpy as np

            flat = np.stack([ex["image"] for ex in examples]).reshape(len(examples), -1)
            images = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1), pa.uint8()), 3 * 32 * 32)
            table = pa.table({"image": images, "label": pa.array([ex["label"] for ex in examples], pa.int64())})
        else:
            table = pa.Table.from_pylist(examples)
        lance.write_dataset(table, path)

    def open(self, path: str) -> Any:
        import lance

        return lance.dataset(path)

    def _rows(self, table: Any) -> list[dict[str, Any]]:
        if self.workload == "image":
            import numpy as np

            col = table.column("image").combine_chunks()
            imgs = col.values.to_numpy(zero_copy_only=False).reshape(-1, 3, 32, 32)
            labels = table.column("label").to_pylist()
            return [{"image": np.array(imgs[k]), "label": labels[k]} for k in range(len(labels))]
        return table.to_pylist()

    def get(self, r: Any, i: int) -> Any:
        return self._rows(r.take([i]))[0]

    def get_many(self, r: Any, idx: list[int]) -> list[Any]:
        return self._rows(r.take(idx))

    def iterate(self, r: Any) -> Any:
        import pyarrow as pa

        for batch in r.to_batches():
            yield from self._rows(pa.Table.from_batches([batch]))

    def versions(self) -> dict[str, str]:
        return {"pylance": _version("pylance"), "pyarrow": _version("pyarrow")}


class ArrayRecord(Adapter):
    name = "ArrayRecord"
    batched_call = "ArrayRecordDataSource.__getitems__"
    caching = "none in the data source (each read is a pread of the record's group); pickled examples"

    def prepare(self) -> None:
        from array_record.python.array_record_data_source import ArrayRecordDataSource  # noqa: F401
        from array_record.python.array_record_module import ArrayRecordWriter  # noqa: F401

    def write(self, examples: list[Any], path: str) -> None:
        from array_record.python.array_record_module import ArrayRecordWriter

        os.makedirs(path, exist_ok=True)
        w = ArrayRecordWriter(os.path.join(path, "data.array_record"), self.params.get("options", "group_size:1"))
        dumps = pickle.dumps
        for ex in examples:
            w.write(dumps(ex, protocol=5))
        w.close()

    def open(self, path: str) -> Any:
        from array_record.python.array_record_data_source import ArrayRecordDataSource

        return ArrayRecordDataSource([os.path.join(path, "data.array_record")])

    def get(self, r: Any, i: int) -> Any:
        return pickle.loads(r[i])

    def get_many(self, r: Any, idx: list[int]) -> list[Any]:
        loads = pickle.loads
        return [loads(b) for b in r.__getitems__(idx)]

    def iterate(self, r: Any) -> Any:
        from array_record.python.array_record_module import ArrayRecordReader

        reader = ArrayRecordReader(os.path.join(self._path, "data.array_record"), "readahead_buffer_size:16777216")
        n = reader.num_records()
        loads = pickle.loads
        step = 4096
        for start in range(0, n, step):
            for b in reader.read(start, min(start + step, n)):
                yield loads(b)
        reader.close()

    def versions(self) -> dict[str, str]:
        return {"array-record": _version("array-record")}


class Memory(Adapter):
    """Reference, not a format: the examples as a Python list in memory (what any reader's output costs
    to move through a DataLoader: worker start, collate, IPC). Its epoch is the ceiling of every system's epoch."""

    name = "in-memory list (reference)"
    batched_call = "list comprehension"
    caching = "everything in memory"

    def write(self, examples: list[Any], path: str) -> None:
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, "examples.pkl"), "wb") as f:
            pickle.dump(examples, f, protocol=5)

    def open(self, path: str) -> Any:
        with open(os.path.join(path, "examples.pkl"), "rb") as f:
            return pickle.load(f)

    def get_many(self, r: Any, idx: list[int]) -> list[Any]:
        return [r[i] for i in idx]

    def loader_dataset(self, path: str, n: int) -> Any:
        w = MapWrapper(self, path, n)
        w._r = self.open(path)
        w._reader = lambda: w._r  # type: ignore[method-assign]
        return w


ADAPTERS = {"memory": Memory, "atlas": Atlas, "hf": HF, "mds": MDS, "litdata": LitData, "lance": Lance,
            "arrayrecord": ArrayRecord}


# ------------------------------------------------------------------ tasks -----------------------


def _loader_epoch(adapter: Adapter, path: str, n: int, sampler_kind: str, seed: int = 0) -> tuple[int, float, bool]:
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    if sampler_kind == "native":
        loader: Any = adapter.native_loader(path, seed)  # type: ignore[attr-defined]
        return _drain(loader)
    ds = adapter.loader_dataset(path, n)
    if sampler_kind == "block":
        from torch_atlas_ds import BlockShuffleSampler

        sampler: Any = BlockShuffleSampler(ds, seed=seed)
    else:
        sampler = RandomSampler(range(len(ds)), generator=torch.Generator().manual_seed(seed))
    loader = DataLoader(ds, batch_size=BATCH, sampler=sampler, num_workers=2, persistent_workers=False)
    return _drain(loader)


def _drain(loader: Any) -> tuple[int, float, bool]:
    """(examples, seconds, capped): one epoch, stopped after 3x the time cap (rate over what was read)."""
    start = time.perf_counter()
    count = 0
    capped = False
    for batch in loader:
        count += len(next(iter(batch.values()))) if isinstance(batch, dict) else len(batch)
        if time.perf_counter() - start > 3 * TIME_CAP:
            capped = True
            break
    return count, time.perf_counter() - start, capped


def _best_us(fn: Any, items: list[Any], repeat: int = 5) -> float:
    """Best-of-``repeat`` mean microseconds of fn(item) over items."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for it in items:
            fn(it)
        best = min(best, (time.perf_counter() - start) / len(items))
    return best * 1e6


def physical_limits(layouts: dict[str, str]) -> dict[str, float]:
    """Per block of this project's own datasets (first shard): the cost of each step a reader cannot avoid.

    layouts: {"none": v2 none path, "lz4": v2 lz4 path, "zstd": v2 zstd shared-dict path, "v1": v1 path}.
    read_*: os.pread of the stored block from data.bin (page cache warm); zstd/lz4: decompress;
    unpickle_block: pickle.loads of the v1 block (the pickled list); unpickle_one: one example's pickle.
    """
    import lz4.frame

    from torch_atlas_ds import AtlasDataset

    res: dict[str, float] = {}
    for name, path in layouts.items():
        shard = AtlasDataset(path, verify_checksums=False).shards[0]
        maps = shard._open()
        fd = os.open(os.path.join(shard.path, "data.bin"), os.O_RDONLY)
        try:
            if name == "v1":
                offs = [int(x) for x in maps.index]
                spans = list(zip(offs[:-1], [b - a for a, b in zip(offs[:-1], offs[1:], strict=True)], strict=True))
            else:
                spans = list(zip(maps.offsets, maps.stored, strict=True))
            res[f"read_{name}_us"] = _best_us(lambda sp, fd=fd: os.pread(fd, sp[1], sp[0]), spans)
            res[f"stored_{name}_bytes"] = sum(n for _, n in spans) / len(spans)
            blocks = [os.pread(fd, n, o) for o, n in spans]
        finally:
            os.close(fd)
        if name == "zstd":
            dctx = shard._new_dctx()
            res["zstd_us"] = _best_us(dctx.decompress, blocks)
        elif name == "lz4":
            res["lz4_us"] = _best_us(lz4.frame.decompress, blocks)
        elif name == "v1":
            dctx = shard._new_dctx()
            raws = [dctx.decompress(b) for b in blocks]
            res["v1_zstd_us"] = _best_us(dctx.decompress, blocks)
            res["raw_block_bytes"] = sum(map(len, raws)) / len(raws)
            res["unpickle_block_us"] = _best_us(pickle.loads, raws)
        elif name == "none":
            table_ex = []
            for blk in blocks:
                count = int.from_bytes(blk[0:4], "little")
                offs = [int.from_bytes(blk[4 + 4 * k:8 + 4 * k], "little") for k in range(count + 1)]
                base = 8 + 4 * count
                table_ex += [blk[base + a:base + b] for a, b in zip(offs[:-1], offs[1:], strict=True)]
            res["unpickle_one_us"] = _best_us(pickle.loads, table_ex)
            res["example_bytes"] = sum(map(len, table_ex)) / len(table_ex)
            # a read of one example's own bytes (offset table lookup + pread of those bytes)
            fd = os.open(os.path.join(shard.path, "data.bin"), os.O_RDONLY)
            try:
                n_ex = int(res["example_bytes"])
                offs2 = [o for o, _ in spans]
                res["read_one_us"] = _best_us(lambda o, fd=fd, n_ex=n_ex: os.pread(fd, n_ex, o), offs2)
            finally:
                os.close(fd)
    one = res["unpickle_one_us"]
    res["limit_lz4_us"] = res["read_lz4_us"] + res["lz4_us"] + one
    res["limit_zstd_us"] = res["read_zstd_us"] + res["zstd_us"] + one
    res["limit_none_us"] = res["read_one_us"] + one
    res["limit_v1_us"] = res["read_v1_us"] + res["v1_zstd_us"] + res["unpickle_block_us"]
    return res


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    adapter = ADAPTERS[task["adapter"]](task.get("params", {}), task["workload"])
    path = task["path"]
    kind = task["task"]
    out: dict[str, Any] = {}
    start = time.perf_counter()
    adapter.prepare()
    out["import_s"] = time.perf_counter() - start
    out["rss_start_mb"] = rss_mb()
    if kind == "versions":
        out["versions"] = adapter.versions()
        return out
    if kind == "write":
        with open(task["examples"], "rb") as f:
            examples = pickle.load(f)
        out["rss_start_mb"] = rss_mb()
        start = time.perf_counter()
        adapter.write(examples, path)
        out["seconds"] = time.perf_counter() - start
        out["value"] = len(examples) / out["seconds"]
        out["bytes"] = dir_size(path)
        return out
    if kind == "limits":
        out["limits"] = physical_limits(task["layouts"])
        return out
    if kind.startswith("loader"):
        count, secs, capped = _loader_epoch(adapter, path, int(task["n"]), task["sampler"])
        out.update(count=count, seconds=secs, value=count / secs, capped=capped)
        return out
    start = time.perf_counter()
    r = adapter.open(path)
    out["open_s"] = time.perf_counter() - start
    if isinstance(adapter, ArrayRecord):
        adapter._path = path
    n = int(task["n"])
    if kind == "open":
        start = time.perf_counter()
        adapter.get(r, 0)
        out["first_read_s"] = time.perf_counter() - start
        return out
    if kind == "random":
        idx = task["indices"]
        get = adapter.get
        start = time.perf_counter()
        for i in idx:
            get(r, i)
        secs = time.perf_counter() - start
        out.update(count=len(idx), seconds=secs, value=len(idx) / secs)
    elif kind == "batched":
        idx = task["indices"]
        start = time.perf_counter()
        count = 0
        for k in range(0, len(idx), BATCH):
            got = adapter.get_many(r, idx[k:k + BATCH])
            count += len(got)
        secs = time.perf_counter() - start
        if count != len(idx):
            raise RuntimeError(f"batched read returned {count} of {len(idx)}")
        out.update(count=count, seconds=secs, value=count / secs)
    elif kind == "seq":
        get = adapter.get
        start = time.perf_counter()
        count = 0
        for i in range(n):
            get(r, i)
            count += 1
            if count % 1024 == 0 and time.perf_counter() - start > TIME_CAP:
                break
        secs = time.perf_counter() - start
        out.update(count=count, seconds=secs, value=count / secs, capped=count < n)
    elif kind == "iter":
        start = time.perf_counter()
        count = 0
        for _ in adapter.iterate(r):
            count += 1
            if count % 1024 == 0 and time.perf_counter() - start > TIME_CAP:
                break
        secs = time.perf_counter() - start
        if count < n and secs <= TIME_CAP:
            raise RuntimeError(f"iteration returned {count} examples, expected {n}")
        out.update(count=count, seconds=secs, value=count / secs, capped=count < n)
    else:
        raise ValueError(kind)
    return out


def main() -> None:
    task = json.loads(sys.argv[1])
    if task.get("indices_file"):
        with open(task["indices_file"]) as f:
            task["indices"] = json.load(f)
    try:
        out = run_task(task)
        out["ok"] = True
    except Exception as exc:  # noqa: BLE001 - reported to the orchestrator
        import traceback

        out = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]}
    self_max = rss_mb("VmHWM")
    # DataLoader workers are forked by this process (not exec'd): their ru_maxrss is their own peak
    child_max = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    out["peak_rss_mb"] = self_max
    out["peak_rss_children_mb"] = child_max
    sys.stdout.flush()
    print("\n@@RESULT@@" + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
