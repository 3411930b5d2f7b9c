"""Version 1 checks (spec section 2): root, each shard, and the cross-shard consistency.

Version 1 has no checksums: what cannot be verified is stated in the report (DETECT-2).
Severities follow what the original reader does (catalog ``v1``): a defect it reads through,
such as bytes after a frame or a stray dictionary, is a warning here.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from atlas_format import metadata, npy
from atlas_format.binary import parse
from atlas_format.codecs import codec_info
from atlas_format.constants import DATA_FILE, DICT_FILE, META_FILE, V1_INDEX_FILE
from atlas_format.enums import Codec
from atlas_format.errors import AtlasError
from atlas_format.zstd_frame import ZstdDictionaryHeader

from .blocks import check_list_pickle, decode_block, make_dctx
from .catalog import entry
from .common import (
    ShardResult,
    Sink,
    entry_status,
    guarded_shard_check,
    is_int,
    open_limited,
    read_limited,
    regular_size,
)
from .findings import Finding, Stats
from .layout import unexpected_in_shard
from .tasks import ShardTask

NOT_VERIFIABLE_V1 = (
    "a byte flip inside an uncompressed block, or inside a compressed block or dictionary that still decodes, "
    "that leaves a valid pickle of the right shape (DETECT-2)",
    "changes to informational metadata (compression_level, compression_dict_size) or to a shard_sizes entry "
    "that agrees with the shard",
    "swapped shards of identical shape and strategy, or swapped blocks of equal size",
)

SHARD_FILES = {META_FILE, DATA_FILE, V1_INDEX_FILE, DICT_FILE}
# The clauses of a version 1 block's shape findings (one pickle of a list, V1-BLOCK-2, V1-BLOCK-4).
V1_LIST_CLAUSES = {"ATL411": "V1-BLOCK-2", "ATL412": "V1-BLOCK-2, PICKLE-4", "ATL414": "V1-BLOCK-4"}


def load_json(root: Path, shown: str, sink: Sink, *, limits: Any, schema: str, schema_id: str) -> Any:
    """Parse a v1 meta.json (``shown``, relative to ``root``) strictly and report every schema violation;
    None when unreadable."""
    raw = read_limited(root, shown, limits.max_metadata_size, sink, what="meta.json")
    if raw is None:
        return None
    try:
        doc = metadata.parse_json(raw, path=shown, limits=limits)
    except AtlasError as exc:
        sink.from_error("ATL200", exc, clause="V1-META-1" if schema == "v1-root" else "V1-META-2")
        return None
    clause = "V1-META-1" if schema == "v1-root" else "V1-META-2"
    if isinstance(doc, dict):
        # The original unpacks the object into a NamedTuple: its keys, exactly, or a TypeError at open.
        declared = metadata.load_schema(schema)
        unknown = sorted(set(doc) - set(declared["properties"]))
        missing = [key for key in declared["required"] if key not in doc]
        parts = [f"{what} {', '.join(map(repr, keys))}" for what, keys in (("unknown", unknown), ("missing", missing))
                 if keys]
        if parts:
            sink.add("ATL215", f"keys are not the original's: {'; '.join(parts)} (the original reader fails with a "
                               "TypeError)", path=shown, clause=clause)
    for pointer, message in metadata.schema_errors(doc, schema):
        if pointer == "/" and isinstance(doc, dict):
            continue  # an object's own violations are its keys, reported above
        sink.add(schema_id, f"{pointer}: {message}", path=shown, clause=clause)
    return doc


def dictionary_id(root: Path, shown: str, sink: Sink, *, limits: Any) -> tuple[bytes, int] | None:
    """(bytes, dict id) of a zstd_dict.bin, or None with a finding (ATL103/ATL111/ATL408/ATL900)."""
    raw = read_limited(root, shown, limits.max_dictionary_size, sink, what="dictionary")
    if raw is None:
        return None
    try:
        header = parse(ZstdDictionaryHeader, raw[:8], path=shown)
    except AtlasError as exc:
        sink.from_error("ATL408", exc)
        return None
    return raw, int(header.dict_id)


def v1_severities(findings: list[Finding]) -> list[Finding]:
    """The findings at their version 1 severity (the checks shared with version 2 report version 2's)."""
    return [replace(f, severity=entry(f.id).severity_for(1)) for f in findings]


def check_shard(task: ShardTask, progress: Any = None) -> ShardResult:
    """Every check of one version 1 shard; never raises."""
    result = guarded_shard_check(task, progress, _check_shard)
    result.findings = v1_severities(result.findings)
    return result


def _check_shard(task: ShardTask, sink: Sink, stats: Stats, summary: dict[str, Any], progress: Any) -> None:
    root = Path(task.root)
    limits = task.limits
    shard_dir = root / task.name
    name = task.name
    unexpected_in_shard(shard_dir, SHARD_FILES, sink, shown=name, clause="V1-LAYOUT-5")
    doc = load_json(root, f"{name}/{META_FILE}", sink, limits=limits, schema="v1-shard",
                    schema_id="ATL203")
    doc = doc if isinstance(doc, dict) else {}
    block_size = doc.get("block_size") if is_int(doc.get("block_size")) and doc["block_size"] >= 1 else None
    stored = doc.get("stored_examples") if is_int(doc.get("stored_examples")) and doc["stored_examples"] >= 0 \
        else None
    strategy = doc.get("compression_strategy") if is_int(doc.get("compression_strategy")) and \
        doc["compression_strategy"] in (0, 1, 2, 3) else None
    summary.update(stored_examples=stored, strategy=strategy, block_size=block_size)
    blocks = math.ceil(stored / block_size) if stored is not None and block_size is not None else None
    if block_size is not None and block_size > limits.max_examples_per_block:
        sink.add("ATL900", f"block_size {block_size} exceeds max_examples_per_block "
                           f"{limits.max_examples_per_block}", path=f"{name}/{META_FILE}")
    if blocks is not None and blocks > limits.max_blocks_per_shard:
        sink.add("ATL900", f"{blocks} blocks exceed max_blocks_per_shard", path=f"{name}/{META_FILE}")
        blocks = None

    # -- dictionary --------------------------------------------------------------------
    dict_shown = f"{name}/{DICT_FILE}"
    own_dict = None
    if strategy == 3:
        own_dict = dictionary_id(root, dict_shown, sink, limits=limits)
    elif entry_status(root, dict_shown) is not None and strategy is not None:
        sink.add("ATL105", f"zstd_dict.bin present but the shard's compression_strategy is {strategy} (no reader "
                           "opens it)", path=dict_shown, clause="V1-LAYOUT-3, V1-LAYOUT-5")

    # -- index ---------------------------------------------------------------------------
    data_shown = f"{name}/{DATA_FILE}"
    data_present = entry_status(root, data_shown) is not None
    data_len = regular_size(root, data_shown, sink)  # ATL111 when it is not a regular file
    offsets = _check_index(task, sink, blocks, data_len)
    if blocks == 0 or (offsets is not None and len(offsets) == 1):
        if data_present:
            sink.add("ATL105", "data.bin present in a shard without blocks (no reader opens it)", path=data_shown,
                     clause="V1-LAYOUT-3, V1-LAYOUT-5")
    elif not data_present:
        sink.add("ATL103", "data.bin is missing", path=data_shown, clause="V1-LAYOUT-3")
    if task.quick or offsets is None or data_len is None or len(offsets) < 2 or strategy is None:
        return

    # -- blocks ----------------------------------------------------------------------------
    dictionary: tuple[bytes, int] | None = None
    if strategy == 3:
        dictionary = own_dict
    elif strategy == 2:
        dictionary = task.expect.get("root_dictionary")
    if strategy in (2, 3) and dictionary is None:
        return  # the missing or broken dictionary is already reported
    info = codec_info(Codec.NONE if strategy == 0 else Codec.ZSTD)
    dctx = None
    if strategy:
        dctx = make_dctx(dictionary[0] if dictionary else None, sink,
                         path=DICT_FILE if strategy == 2 else f"{task.name}/{DICT_FILE}")
        if dctx is None:
            return
    dict_id = dictionary[1] if dictionary else 0
    _check_blocks(task, sink, stats, offsets, data_len, info, dctx, dict_id, block_size, stored, progress)


def _check_index(task: ShardTask, sink: Sink, blocks: int | None, data_len: int | None) -> np.ndarray | None:
    """Parse and check index.npy; the offsets when they are usable for reading blocks."""
    name = task.name
    shown = f"{name}/{V1_INDEX_FILE}"
    raw = read_limited(Path(task.root), shown, task.limits.max_index_size, sink,
                       what="index.npy")
    if raw is None:
        return None
    try:
        header = parse(npy.NpyHeader, raw, path=shown)
    except AtlasError as exc:
        sink.from_error("ATL300", exc, clause="V1-INDEX-1")
        return None
    start = (10 if header.major == 1 else 12) + header.header_len
    hdict = header.header
    # What numpy reads to the same offsets although the writer never writes it (ATL312, a warning).
    unlike_writer = [] if header.major == 1 else [f"npy format {header.major}.0 (the writer writes 1.0)"]
    dtype = npy.readable_dtype(hdict.get("descr"))
    written = npy.written_descr(hdict.get("descr"))
    ok = True
    if dtype is None:
        sink.add("ATL301", f"index dtype {hdict.get('descr')!r} is not an integer type the original reader can use "
                           "as offsets", path=shown, offset=10)
        ok = False
    elif written is None:
        unlike_writer.append(f"dtype {hdict.get('descr')!r} (the writer writes unsigned little-endian)")
    fortran = hdict.get("fortran_order")
    if not isinstance(fortran, bool):
        sink.add("ATL301", f"fortran_order is {fortran!r}, numpy requires True or False", path=shown, offset=10)
        ok = False
    elif fortran:
        unlike_writer.append("fortran_order True (the same order as False for one dimension)")
    shape = hdict.get("shape")
    if not (isinstance(shape, tuple) and len(shape) == 1 and is_int(shape[0]) and shape[0] >= 0):
        sink.add("ATL301", f"index shape {shape!r} is not one-dimensional", path=shown, offset=10)
        ok = False
    if not ok or dtype is None:
        return None
    count = int(shape[0])
    itemsize = dtype.itemsize
    available = len(raw) - start
    if available < count * itemsize:
        sink.add("ATL300", f"index.npy holds {available} array bytes, the header declares {count} x {itemsize}",
                 path=shown, offset=start + max(available, 0))
        count = max(available, 0) // itemsize
    elif available > count * itemsize:
        unlike_writer.append(f"{available - count * itemsize} bytes after the array")
    if unlike_writer:
        sink.add("ATL312", "index.npy is not as the writer writes it, but numpy reads the same offsets: "
                           + "; ".join(unlike_writer), path=shown, offset=6 if header.major != 1 else 10)
    entries = np.frombuffer(raw, dtype=dtype, count=count, offset=start)
    usable = True
    if blocks is not None and count != blocks + 1:
        sink.add("ATL303", f"index has {count} entries, expected blocks + 1 = {blocks + 1}", path=shown,
                 offset=start)
        usable = False
    if count == 0:
        return None
    first = int(entries[0])
    if first < 0:
        sink.add("ATL301", f"first offset is {first}: the original reader cannot seek to it", path=shown,
                 offset=start)
        return None
    if first != 0 and data_len is not None:
        sink.add("ATL313", f"data.bin holds {first} bytes before the first block (no reader reads them)",
                 path=shown, offset=start)
    bad = np.nonzero(entries[1:] <= entries[:-1])[0]
    for b in bad[:10]:
        sink.add("ATL305", f"offset of block {int(b) + 1} ({int(entries[b + 1])}) is not greater than the offset "
                           f"of block {int(b)} ({int(entries[b])})", path=shown, block=int(b),
                 offset=start + (int(b) + 1) * itemsize)
    if len(bad):
        usable = False
    last = int(entries[-1])
    if data_len is None:
        usable = usable and last == 0  # no data.bin: ATL103 unless the shard has no blocks
    elif last > data_len:
        sink.add("ATL306", f"last offset is {last}, data.bin is {data_len} bytes: the last block is cut short",
                 path=shown, offset=start + (count - 1) * itemsize)
        usable = False
    elif last < data_len:
        sink.add("ATL313", f"data.bin holds {data_len - last} bytes after the last block (no reader reads them)",
                 path=f"{name}/{DATA_FILE}", offset=last)
    expected_descr = npy.v1_index_dtype(max(last, 0))
    if written is not None and written != expected_descr:
        sink.add("ATL302", f"index dtype {written} is not the narrowest for the last entry {last} ({expected_descr})",
                 path=shown, offset=10)
    return entries if usable else None


def _check_blocks(task: ShardTask, sink: Sink, stats: Stats, offsets: np.ndarray, data_len: int,
                  info: Any, dctx: Any, dict_id: int, block_size: int | None, stored: int | None,
                  progress: Any) -> None:
    name = task.name
    shown = f"{name}/{DATA_FILE}"
    handle = open_limited(Path(task.root), shown, task.limits.max_data_size, sink, what="data.bin")
    if handle is None:
        return
    with handle:
        mapped = handle.raw_map()
        view: Any = mapped if mapped is not None else b""
        data_len = min(data_len, handle.size)
        try:
            for b, (start, end) in _pairs(offsets):
                if end > data_len:
                    break
                try:
                    _check_block(task, sink, stats, view[start:end], b, start, info, dctx, dict_id, block_size,
                                 stored, shown)
                except Exception as exc:  # noqa: BLE001 - one block's surprise must not hide the others
                    sink.add("ATL990", f"internal error: {type(exc).__name__}: {exc}", path=shown, block=b,
                             offset=start)
                if progress is not None:
                    progress(end - start)
        finally:
            if mapped is not None:
                mapped.close()


def _pairs(offsets: np.ndarray, chunk: int = 1 << 16) -> Any:
    """(block, (start, end)) for every block, converting offsets to Python ints a chunk at a time."""
    for first in range(0, len(offsets) - 1, chunk):
        values = offsets[first:first + chunk + 1].tolist()
        for i in range(len(values) - 1):
            yield first + i, (values[i], values[i + 1])


def _check_block(task: ShardTask, sink: Sink, stats: Stats, data: bytes, b: int, start: int, info: Any, dctx: Any,
                 dict_id: int, block_size: int | None, stored: int | None, shown: str) -> None:
    stats.blocks += 1
    stats.bytes_read += len(data)
    if len(data) > task.limits.max_block_stored_size:
        sink.add("ATL900", f"block is {len(data)} bytes, above max_block_stored_size", path=shown, block=b,
                 offset=start)
        return
    raw = decode_block(info, data, expected_raw=None, dict_id=dict_id, dctx=dctx, limits=task.limits, sink=sink,
                       path=shown, block=b, offset=start)
    if raw is None:
        return
    stats.decoded_bytes += len(raw)
    expected = None
    if block_size is not None and stored is not None:
        expected = min(block_size, stored - b * block_size)
    check_list_pickle(raw, scan_limits=task.scan_limits, sink=sink, path=shown, block=b, offset=start,
                      compressed=info.codec != Codec.NONE, expected=expected, clauses=V1_LIST_CLAUSES,
                      allowed=task.allowed, first=None if block_size is None else b * block_size)


def check_root_dictionary(root: Path, sink: Sink, limits: Any) -> tuple[bytes, int] | None:
    return dictionary_id(root, DICT_FILE, sink, limits=limits)


def cross_shard(doc: dict[str, Any], names: list[str], results: list[ShardResult]) -> list[Finding]:
    """Root <-> shard consistency: shard_sizes (V1-META-3), shapes (V1-META-4), strategies (V1-META-5)."""
    sink = Sink()
    sizes = doc.get("shard_sizes")
    root_strategy = doc.get("compression_strategy")
    stored = [r.summary.get("stored_examples") for r in results]
    if isinstance(sizes, list) and all(is_int(s) for s in sizes):
        if len(sizes) != len(names):
            sink.add("ATL204", f"shard_sizes has {len(sizes)} entries for {len(names)} shard folders",
                     path=META_FILE)
            if len(sizes) > len(names):
                from atlas_format.layout import v1_shard_names

                expected = v1_shard_names(len(sizes))
                missing = [n for n in expected if n not in names]
                if missing:
                    sink.add("ATL101", f"shard_sizes lists {len(sizes)} shards; missing folders: "
                                       f"{', '.join(missing[:10])}", path=META_FILE, clause="V1-META-3")
        for k, (size, count) in enumerate(zip(sizes, stored, strict=False)):
            if count is not None and size != count:
                sink.add("ATL204", f"shard_sizes[{k}] is {size} but shard {names[k]} stores {count} examples",
                         path=META_FILE, shard=names[k])
    known = [c for c in stored if c is not None]
    nonempty = [c for c in known if c > 0]
    if len(nonempty) >= 2 and (len(set(nonempty[:-1])) > 1 or nonempty[-1] > nonempty[0]):
        sink.add("ATL205", f"shards are not all full except the last (sizes {_preview(known)})", path=META_FILE,
                 clause="V1-META-4")
    if is_int(root_strategy) and root_strategy in (0, 1, 2, 3):
        allowed = {0: {0}, 1: {1}, 2: {2}, 3: {3, 1}}[root_strategy]
        for r in results:
            s = r.summary.get("strategy")
            if s == 2 and root_strategy != 2:  # the original hands it no dictionary (atlas.py:180)
                sink.add("ATL103", f"shard compression_strategy 2 needs the root dictionary, which no reader loads "
                                   f"under root strategy {root_strategy}", path=f"{r.name}/{META_FILE}",
                         shard=r.name, clause="V1-META-5, V1-LAYOUT-4")
            elif s is not None and s not in allowed:
                sink.add("ATL206", f"shard compression_strategy {s} is not allowed under root strategy "
                                   f"{root_strategy} (allowed: {sorted(allowed)}; readers decode the shard by its "
                                   "own)", path=f"{r.name}/{META_FILE}", shard=r.name, clause="V1-META-5")
    return v1_severities(sink.close())


def _preview(values: list[Any], n: int = 8) -> str:
    shown = ", ".join(str(v) for v in values[:n])
    return shown + (f", ... ({len(values)} in all)" if len(values) > n else "")
