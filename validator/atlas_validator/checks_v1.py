"""Version 1 checks (spec section 2): root, each shard, and the cross-shard consistency.

Version 1 has no checksums: what cannot be verified is stated in the report (DETECT-2).
"""

from __future__ import annotations

import math
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
    for pointer, message in metadata.schema_errors(doc, schema):
        sink.add(schema_id, f"{pointer}: {message}", path=shown,
                 clause="V1-META-1" if schema == "v1-root" else "V1-META-2")
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


def check_shard(task: ShardTask, progress: Any = None) -> ShardResult:
    """Every check of one version 1 shard; never raises."""
    return guarded_shard_check(task, progress, _check_shard)


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
        sink.add("ATL104", f"zstd_dict.bin present but the shard's compression_strategy is {strategy}",
                 path=dict_shown, clause="V1-LAYOUT-3")

    # -- index ---------------------------------------------------------------------------
    data_shown = f"{name}/{DATA_FILE}"
    data_present = entry_status(root, data_shown) is not None
    data_len = regular_size(root, data_shown, sink)  # ATL111 when it is not a regular file
    offsets = _check_index(task, sink, blocks, data_len)
    if blocks == 0 or (offsets is not None and len(offsets) == 1):
        if data_present:
            sink.add("ATL104", "data.bin present in a shard without blocks", path=data_shown, clause="V1-LAYOUT-3")
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
    if header.major != 1:
        sink.add("ATL300", f"index.npy is npy format {header.major}.0, version 1 uses 1.0", path=shown, offset=6,
                 clause="V1-INDEX-1")
    start = (10 if header.major == 1 else 12) + header.header_len
    hdict = header.header
    descr = npy._DESCR_ALIASES.get(hdict.get("descr")) if isinstance(hdict.get("descr"), str) else None
    ok = True
    if descr is None:
        sink.add("ATL301", f"index dtype {hdict.get('descr')!r} is not an unsigned little-endian integer",
                 path=shown, offset=10)
        ok = False
    if hdict.get("fortran_order") is not False:
        sink.add("ATL301", f"fortran_order is {hdict.get('fortran_order')!r}, must be False", path=shown, offset=10)
    shape = hdict.get("shape")
    if not (isinstance(shape, tuple) and len(shape) == 1 and is_int(shape[0]) and shape[0] >= 0):
        sink.add("ATL301", f"index shape {shape!r} is not one-dimensional", path=shown, offset=10)
        ok = False
    if not ok or descr is None:
        return None
    count = int(shape[0])
    itemsize = np.dtype(descr).itemsize
    available = len(raw) - start
    if available != count * itemsize:
        sink.add("ATL300", f"index.npy holds {available} array bytes, the header declares {count} x {itemsize}",
                 path=shown, offset=start + min(available, count * itemsize))
        count = min(count, max(available, 0) // itemsize)
    entries = np.frombuffer(raw, dtype=descr, count=count, offset=start)
    usable = True
    if blocks is not None and count != blocks + 1:
        sink.add("ATL303", f"index has {count} entries, expected blocks + 1 = {blocks + 1}", path=shown,
                 offset=start)
        usable = False
    if count == 0:
        return None
    if int(entries[0]) != 0:
        sink.add("ATL304", f"first offset is {int(entries[0])}, must be 0", path=shown, offset=start)
        usable = False
    bad = np.nonzero(entries[1:] <= entries[:-1])[0]
    for b in bad[:10]:
        sink.add("ATL305", f"offset of block {int(b) + 1} ({int(entries[b + 1])}) is not greater than the offset "
                           f"of block {int(b)} ({int(entries[b])})", path=shown, block=int(b),
                 offset=start + (int(b) + 1) * itemsize)
    if len(bad):
        usable = False
    last = int(entries[-1])
    size = data_len if data_len is not None else 0
    if last != size and not (data_len is None and count == 1):
        sink.add("ATL306", f"last offset is {last}, data.bin is {size} bytes", path=shown,
                 offset=start + (count - 1) * itemsize)
        usable = usable and last < size
    expected_descr = npy.v1_index_dtype(last)
    if expected_descr != descr:
        sink.add("ATL302", f"index dtype {descr} is not the narrowest for the last entry {last} ({expected_descr})",
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
            if s is not None and s not in allowed:
                sink.add("ATL206", f"shard compression_strategy {s} is not allowed under root strategy "
                                   f"{root_strategy} (allowed: {sorted(allowed)})", path=f"{r.name}/{META_FILE}",
                         shard=r.name, clause="V1-META-5")
    return sink.close()


def _preview(values: list[Any], n: int = 8) -> str:
    shown = ", ".join(str(v) for v in values[:n])
    return shown + (f", ... ({len(values)} in all)" if len(values) > n else "")
