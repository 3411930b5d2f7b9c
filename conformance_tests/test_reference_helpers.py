"""Helpers of the reference reader/writer tests (type-exact comparison, resealing checksums); no tests here."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np

from atlas_format.checksum import XXH3_64
from atlas_format.index_v2 import INDEX_ENTRY_DTYPE, IndexHeader, build_index
from atlas_format.metadata import dump_checksummed_json, parse_json


def same(a: Any, b: Any) -> bool:
    """Type-exact equality: 1 vs 1.0 vs True differ, the sign of -0.0 matters, dict key order matters."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray):  # by bytes: nan equals nan, -0.0 differs from 0.0
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    return a == b


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under root, by relative path (to prove a folder did not change)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def read_index(folder: Path) -> tuple[dict[str, Any], Any]:
    """(header fields as ``build_index`` takes them, a writable copy of the entries) of a shard's index.bin."""
    raw = (folder / "index.bin").read_bytes()
    header = dict(IndexHeader.parse(raw[:64]))
    header.pop("_io", None)
    header.pop("magic", None)
    return header, np.frombuffer(raw, dtype=INDEX_ENTRY_DTYPE, offset=64).copy()


def reseal(root: Path) -> None:
    """Recompute every checksum of a v2 dataset after a test edited its bytes on purpose."""
    root_doc = parse_json((root / "meta.json").read_bytes())
    for entry in root_doc["shards"]:
        folder = root / entry["name"]
        doc = parse_json((folder / "meta.json").read_bytes())
        header, entries = read_index(folder)
        data = (folder / "data.bin").read_bytes()
        for e in entries:
            e["checksum"] = XXH3_64.of(data[int(e["offset"]):int(e["offset"]) + int(e["stored_size"])])
        index = build_index(header, entries)
        (folder / "index.bin").write_bytes(index)
        doc["index"]["checksum"] = XXH3_64.text(int.from_bytes(index[56:64], "little"))
        meta = dump_checksummed_json(doc)
        (folder / "meta.json").write_bytes(meta)
        entry["meta_checksum"] = meta[len(b'{\n  "checksum": "'):meta.index(b'",\n')].decode()
    (root / "meta.json").write_bytes(dump_checksummed_json(root_doc))


def rewrite_meta(path: Path, **changes: Any) -> None:
    """Change members of a v2 meta.json and rewrite it with a valid checksum."""
    doc = parse_json(path.read_bytes())
    doc.update(changes)
    path.write_bytes(dump_checksummed_json(doc))


def replace_block(root: Path, b: int, stored: bytes, raw_size: int) -> None:
    """Put ``stored`` in place of block ``b`` of shard 000000 (sizes, offsets and checksums rewritten)."""
    folder = root / "000000"
    header, entries = read_index(folder)
    data = (folder / "data.bin").read_bytes()
    blocks = [data[int(e["offset"]):int(e["offset"]) + int(e["stored_size"])] for e in entries]
    blocks[b] = stored
    entries[b]["raw_size"] = raw_size
    offset = 0
    for e, block in zip(entries, blocks, strict=True):
        e["offset"], e["stored_size"] = offset, len(block)
        offset += len(block)
    header["data_size"] = offset
    (folder / "data.bin").write_bytes(b"".join(blocks))
    (folder / "index.bin").write_bytes(build_index(header, entries))
    rewrite_meta(folder / "meta.json", data_size=offset, max_block_raw_size=int(entries["raw_size"].max()))
    root_doc = parse_json((root / "meta.json").read_bytes())
    root_doc["shards"][0]["data_size"] = offset
    root_doc["max_block_raw_size"] = int(entries["raw_size"].max())
    (root / "meta.json").write_bytes(dump_checksummed_json(root_doc))
    reseal(root)
