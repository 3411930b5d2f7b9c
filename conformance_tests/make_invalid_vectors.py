#!/usr/bin/env python
"""Generate the invalid corpus (``vectors/invalid/``) and the warnings corpus (``vectors/warnings/``):
one defect per case, with expected findings.

A warnings case is valid: its defect is one the original reader reads through (version 1),
so a validator reports it as a warning and readers return the source's examples.

Each case copies a valid vector (``source``), applies one defect and states the finding
ids a validator must report. Some defects are "sealed": the checksums are recomputed
afterwards, as a deliberate attacker would, so the defect itself must be caught (an
unknown version, a malicious pickle, a zip-bomb frame) rather than a checksum.

Malicious cases carry ``"malicious": true`` in case.json: their pickles run a harmless
command (``touch atlas-pwned-<case>``) when unpickled without an allow-list. Readers that
are not safe must not be pointed at them.

    python conformance_tests/make_invalid_vectors.py     (then make_vectors.py rewrites the README)
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attacks
import grouped_vectors
import make_vectors
import numpy as np

from atlas_format import grouped, index_v2, metadata, npy, zstd_frame
from atlas_format.checksum import XXH3_64
from atlas_format.constants import V2_INDEX_HEADER_SIZE
from atlas_format.enums import INDEX_FLAG_GROUP_SHIFT, INDEX_FLAG_TYPED

VECTORS = make_vectors.VECTORS


class Payload:
    """Pickles to a call of ``function(*args)``: the shape of a malicious example."""

    def __init__(self, function: Callable[..., Any], *args: Any) -> None:
        self.function, self.args = function, args

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.function, self.args)


# -- mutation helpers -----------------------------------------------------------------


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0x5A
    path.write_bytes(bytes(data))


def edit_json(path: Path, change: Callable[[dict[str, Any]], None], *, v2_checksum: bool) -> None:
    doc = json.loads(path.read_bytes())
    change(doc)
    path.write_bytes(metadata.dump_checksummed_json(doc) if v2_checksum else metadata.dump_v1_json(doc))


def seal_v2(root: Path) -> None:
    """Recompute every v2 checksum and size that binds the files together (an attacker's re-seal)."""
    root_doc = json.loads((root / "meta.json").read_bytes())
    for entry in root_doc["shards"]:
        shard = root / entry["name"]
        index = bytearray((shard / "index.bin").read_bytes())
        header = index_v2.IndexHeader.parse(index)
        entries = np.frombuffer(bytes(index), dtype=index_v2.INDEX_ENTRY_DTYPE, offset=V2_INDEX_HEADER_SIZE).copy()
        data = (shard / "data.bin").read_bytes()
        for row in entries:
            row["checksum"] = XXH3_64.of(data[int(row["offset"]):int(row["offset"]) + int(row["stored_size"])])
        fields = {k: v for k, v in header.items() if not k.startswith("_") and k != "magic"}
        built = index_v2.build_index(fields, entries)
        (shard / "index.bin").write_bytes(built)
        shard_doc = json.loads((shard / "meta.json").read_bytes())
        shard_doc["index"]["checksum"] = XXH3_64.text(index_v2.IndexHeader.parse(built).checksum)
        shard_doc["index"]["size"] = len(built)
        raw = metadata.dump_checksummed_json(shard_doc)
        (shard / "meta.json").write_bytes(raw)
        entry["meta_checksum"] = metadata.split_checksummed_json(raw)[0]
        entry["index_size"] = len(built)
    (root / "meta.json").write_bytes(metadata.dump_checksummed_json(root_doc))


def v2_block(root: Path, shard: str, block: int) -> tuple[int, int]:
    """(offset, stored_size) of a v2 block, from its index entry."""
    index = (root / shard / "index.bin").read_bytes()
    row = np.frombuffer(index, dtype=index_v2.INDEX_ENTRY_DTYPE, offset=V2_INDEX_HEADER_SIZE)[block]
    return int(row["offset"]), int(row["stored_size"])


def v1_offsets(root: Path, shard: str) -> list[int]:
    return [int(x) for x in np.load(root / shard / "index.npy")]


def write_v1_blocks(root: Path, shard: str, blocks: list[bytes]) -> None:
    (root / shard / "data.bin").write_bytes(b"".join(blocks))
    offsets = [0]
    for block in blocks:
        offsets.append(offsets[-1] + len(block))
    (root / shard / "index.npy").write_bytes(npy.build_v1_index(offsets))


def v1_blocks(root: Path, shard: str) -> list[bytes]:
    data = (root / shard / "data.bin").read_bytes()
    offsets = v1_offsets(root, shard)
    return [data[a:b] for a, b in zip(offsets, offsets[1:], strict=False)]


# -- the cases -------------------------------------------------------------------------

Case = tuple[str, str, str, list[str], Callable[[Path], None], bool]
V2_SHARED = "v2/03-zstd-shared-dict"
V2_NONE = "v2/01-none-multishard"
V2_ZSTD = "v2/02-zstd-multishard"
V2_LZ4 = "v2/05-lz4"
V2_FRAMES_SHARED = "v2/17-example-frames-shared-dict"
V2_FRAMES_LZ4 = "v2/18-example-frames-lz4"
V2_LIST_NONE = "v2/20-list-none-appended"
V2_GROUPS_OF_1 = "v2/26-grouped-groups-of-1"
V2_TYPED_LIST = "v2/29-typed-list-none-appended"
V2_TYPED_GROUPED = "v2/31-typed-grouped-images-none"
V1_NONE = "seed-v1/01-s0-multishard"
V1_SHARED = "seed-v1/03-s2-shared-dict"
V1_OWN = "seed-v1/04-s3-own-dicts-7-block-boundary"


def _swap(a: Path, b: Path) -> None:
    tmp = a.with_name(a.name + ".swap")
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)


MALICIOUS_INDEX = 3


def _malicious_v2(root: Path, name: str, function: Callable[..., Any], *args: Any) -> None:
    """Rewrite the dataset with one malicious example (a complete, checksummed dataset)."""
    from torch_atlas_ds import AtlasDatasetWriter

    shutil.rmtree(root)
    with AtlasDatasetWriter(root, shard_size=8, block_size=4, compression_strategy=0) as writer:
        for i in range(6):
            writer.add_example(Payload(function, *args) if i == MALICIOUS_INDEX else {"id": i})


def _attack_v2(root: Path, attack: attacks.Attack) -> None:
    """Rewrite the dataset with one raw attack pickle as example 3 (attacks.py): complete and checksummed."""
    import validator_vectors

    payload = attack.build()
    shutil.rmtree(root)

    def hook(shard: int, block: int, position: int, pickled: bytes) -> bytes:
        return payload if shard == 0 and block * 4 + position == MALICIOUS_INDEX else pickled

    validator_vectors.write_v2(root, [{"id": i} for i in range(6)], codec="zstd", shard_size=8, block_size=4,
                               pickle_hook=hook)


def _malicious_v1(root: Path, function: Callable[..., Any], *args: Any) -> None:
    from torch_atlas_ds import AtlasDatasetWriter

    shutil.rmtree(root)
    with AtlasDatasetWriter(root, shard_size=8, block_size=4, compression_strategy=1, format_version=1) as writer:
        for i in range(6):
            writer.add_example(Payload(function, *args) if i == MALICIOUS_INDEX else {"id": i})


def _zip_bomb(root: Path) -> None:
    offset, size = v2_block(root, "000000", 0)
    header = zstd_frame.ZstdFrameHeader.build(zstd_frame.frame_header_fields(1 << 40, None))
    bomb = (header + b"\x01\x00\x00" + b"\x00" * size)[:size]
    data = bytearray((root / "000000" / "data.bin").read_bytes())
    data[offset:offset + size] = bomb
    (root / "000000" / "data.bin").write_bytes(bytes(data))
    seal_v2(root)


def _frame_table(root: Path, shard: str, block: int) -> tuple[int, list[int]]:
    """(offset in data.bin of the payload, frame offsets) of a block of framing example (V2-FRAME-2)."""
    offset, _size = v2_block(root, shard, block)
    data = (root / shard / "data.bin").read_bytes()
    n = int.from_bytes(data[offset:offset + 4], "little")
    offsets = [int.from_bytes(data[offset + 4 + 4 * i:offset + 8 + 4 * i], "little") for i in range(n + 1)]
    return offset + 8 + 4 * n, offsets


def _frame_offsets_not_increasing(root: Path) -> None:
    offset, _size = v2_block(root, "000000", 1)
    data = bytearray((root / "000000" / "data.bin").read_bytes())
    data[offset + 8:offset + 12] = data[offset + 12:offset + 16]  # offsets[1] = offsets[2]
    (root / "000000" / "data.bin").write_bytes(bytes(data))
    seal_v2(root)


def _frame_bomb(root: Path) -> None:
    """Frame 2 of block 0 replaced in place by a frame (with the right dictionary id) declaring 1 TiB."""
    payload, offsets = _frame_table(root, "000000", 0)
    size = offsets[3] - offsets[2]
    dict_id = json.loads((root / "000000" / "meta.json").read_bytes())["dict_id"]
    header = zstd_frame.ZstdFrameHeader.build(zstd_frame.frame_header_fields(1 << 40, dict_id))
    data = bytearray((root / "000000" / "data.bin").read_bytes())
    data[payload + offsets[2]:payload + offsets[3]] = (header + b"\x01\x00\x00" + b"\x00" * size)[:size]
    (root / "000000" / "data.bin").write_bytes(bytes(data))
    seal_v2(root)


def _index_flags_cleared(root: Path) -> None:
    """Shard 000001's index flags cleared (framing block) while its meta.json keeps its framing."""
    index = bytearray((root / "000001" / "index.bin").read_bytes())
    index[17] = 0
    (root / "000001" / "index.bin").write_bytes(bytes(index))
    seal_v2(root)


def _group_size_bits_cleared(root: Path) -> None:
    """Shard 000001's index flags keep framing grouped's bit but say groups of 8 (bits 3-4 cleared)."""
    index = bytearray((root / "000001" / "index.bin").read_bytes())
    index[17] &= ~INDEX_FLAG_GROUP_SHIFT
    (root / "000001" / "index.bin").write_bytes(bytes(index))
    seal_v2(root)


def _typed_bit_cleared(root: Path) -> None:
    """Shard 000001's index flags keep framing list's bit but clear the typed bit (5) while its meta.json says
    typed: a reader that trusted the flags would unpickle MessagePack."""
    index = bytearray((root / "000001" / "index.bin").read_bytes())
    index[17] &= ~INDEX_FLAG_TYPED
    (root / "000001" / "index.bin").write_bytes(bytes(index))
    seal_v2(root)


def _typed_unknown_dtype(block: bytes) -> bytes:
    """The first ``"array"`` extension of a typed block with dtype code 99 (outside TYPED-4's table)."""
    at = block.index(b"\xa5array\xc9") + 6 + 6  # the ext 32 header (0xc9, u32 size, i8 type), then ArrayHeader
    return block[:at] + bytes([99]) + block[at + 1:]


def _typed_depth_bomb(root: Path) -> None:
    """Block 1 of shard 000000 (typed list, codec none) with its last example replaced by arrays nested 100,000
    deep (TYPED-5 allows 64): 100 KB that a recursive decoder would follow into the C stack."""
    from atlas_format.testing.vectors import decode_example
    from torch_atlas_ds.typed_codec import array_of_encoded, encode

    expected = json.loads((VECTORS / V2_TYPED_LIST / "expected.json").read_text("utf-8"))
    examples = [decode_example(e) for e in expected["examples"]]
    block_size = json.loads((VECTORS / V2_TYPED_LIST / "case.json").read_text("utf-8"))["writer"]["block_size"]
    items = [encode(e) for e in examples[block_size:2 * block_size]]

    def bomb(block: bytes) -> bytes:
        assert block == array_of_encoded(items), "block 1 is not the encoding of its expected examples"
        return array_of_encoded([*items[:-1], b"\x91" * 100_000 + b"\xc0"])
    _v2_list_block_rewritten(root, "000000", 1, bomb)


def _typed_shape_plus_one(block: bytes) -> bytes:
    """The first ``"array"`` extension of a typed block (fixstr key, then ext 32 of type 1) with its shape's
    first entry one larger, every length unchanged."""
    at = block.index(b"\xa5array\xc9") + 6  # the ext 32 header: 0xc9, u32 size, i8 type
    assert block[at + 5] == 1, "not an ndarray extension"
    shape_at = at + 6 + 4  # the payload's ArrayHeader: dtype, ndim, pad, reserved, then the shape
    first = int.from_bytes(block[shape_at:shape_at + 8], "little")
    return block[:shape_at] + (first + 1).to_bytes(8, "little") + block[shape_at + 8:]


def _typed_grouped_count_one_less(root: Path) -> None:
    """Block 1 of shard 000000 (typed, framing grouped, codec none): its array header counts one example less
    than the block holds; sizes unchanged, checksums resealed."""
    folder = root / "000000"
    index = (folder / "index.bin").read_bytes()
    header = index_v2.IndexHeader.parse(index)
    entry = np.frombuffer(index, dtype=index_v2.INDEX_ENTRY_DTYPE, offset=V2_INDEX_HEADER_SIZE)[1]
    n, raw_size = header.block_size, int(entry["raw_size"])
    at = int(entry["offset"]) + grouped.head_size(n, raw_size, grouped.group_of_flags(header.flags), typed=True)
    data = bytearray((folder / "data.bin").read_bytes())
    assert data[at] == 0x90 | n, "not the fixarray header of the block's array"
    data[at] -= 1
    (folder / "data.bin").write_bytes(bytes(data))
    seal_v2(root)


def _v2_list_block_rewritten(root: Path, shard: str, block: int, transform: Callable[[bytes], bytes]) -> None:
    """Replace one block of a codec-none shard and re-lay data.bin, its index entries and sizes (then sealed)."""
    folder = root / shard
    index = (folder / "index.bin").read_bytes()
    header = index_v2.IndexHeader.parse(index)
    entries = np.frombuffer(index, dtype=index_v2.INDEX_ENTRY_DTYPE, offset=V2_INDEX_HEADER_SIZE).copy()
    data = (folder / "data.bin").read_bytes()
    blocks = [data[int(e["offset"]):int(e["offset"]) + int(e["stored_size"])] for e in entries]
    blocks[block] = transform(blocks[block])
    offset = 0
    for row, raw in zip(entries, blocks, strict=True):
        row["offset"], row["stored_size"], row["raw_size"] = offset, len(raw), len(raw)
        offset += len(raw)
    (folder / "data.bin").write_bytes(b"".join(blocks))
    fields = {k: v for k, v in header.items() if not k.startswith("_") and k != "magic"}
    fields["data_size"] = offset
    (folder / "index.bin").write_bytes(index_v2.build_index(fields, entries))
    edit_json(folder / "meta.json", lambda d: d.update(data_size=offset, max_block_raw_size=max(map(len, blocks))),
              v2_checksum=True)
    root_doc = json.loads((root / "meta.json").read_bytes())
    for entry in root_doc["shards"]:
        if entry["name"] == shard:
            entry["data_size"] = offset
    root_doc["max_block_raw_size"] = max(root_doc["max_block_raw_size"], *map(len, blocks))
    (root / "meta.json").write_bytes(metadata.dump_checksummed_json(root_doc))
    seal_v2(root)


def _v1_not_a_list(root: Path) -> None:
    blocks = v1_blocks(root, "0")
    examples = pickle.loads(blocks[0])
    blocks[0] = pickle.dumps({"not": "a list", "n": len(examples)}, protocol=4)
    write_v1_blocks(root, "0", blocks)


def _v1_wrong_count(root: Path) -> None:
    blocks = v1_blocks(root, "0")
    blocks[1] = pickle.dumps(pickle.loads(blocks[1])[:-1], protocol=4)
    write_v1_blocks(root, "0", blocks)


def _v1_offsets_not_monotonic(root: Path) -> None:
    offsets = v1_offsets(root, "0")
    offsets[2], offsets[3] = offsets[3], offsets[2]
    (root / "0" / "index.npy").write_bytes(npy.build_v1_index(offsets))


def _v1_wrong_dictionary(root: Path) -> None:
    other = VECTORS / V1_OWN / "dataset" / "0" / "zstd_dict.bin"
    shutil.copyfile(other, root / "zstd_dict.bin")


def _v1_big_endian_indexes(root: Path) -> None:
    """Every index.npy rewritten big-endian (same offsets, same width), as np.save writes such an array."""
    for path in sorted(root.glob("*/index.npy")):
        offsets = np.load(path)
        big = offsets.astype(offsets.dtype.newbyteorder(">"))
        with open(path, "wb") as handle:
            np.save(handle, big)


def _v1_extra_subfolder(root: Path) -> None:
    (root / "notes").mkdir()
    (root / "notes" / "README.txt").write_text("not a shard\n")


def _v1_stray_root_dictionary(root: Path) -> None:
    shutil.copyfile(VECTORS / V1_SHARED / "dataset" / "zstd_dict.bin", root / "zstd_dict.bin")


def _grouped(name: str, source: str) -> Callable[[Path], None]:
    """Rewrite the copied dataset as framing grouped (validator_vectors.write_v2, the source's examples) with the
    crafted defect ``name`` of grouped_vectors (checksums correct: sealed). There is no valid grouped vector
    yet to copy; the examples are the source's, so a reader must refuse or return them."""
    def mutate(root: Path) -> None:
        from atlas_format.testing.vectors import decode_example

        expected = json.loads((VECTORS / source / "expected.json").read_text("utf-8"))
        items = [decode_example(e) for e in expected["examples"]]
        shutil.rmtree(root)
        grouped_vectors.write_crafted(name, root, items)
    return mutate


#: The grouped defects in the corpus: those every reader must refuse (or read correctly). The slice-rule
#: defects (ATL420, ATL422) are left out: a reader need not scan slices, so its in-order read returns what the
#: block's one pickle holds, which is not the source's examples.
GROUPED_CASES = {"magicless-frame-bomb": "zip-bomb", "standard-zstd-frame": "standard-zstd-frame",
                 "frame-starts-not-increasing": "frame-starts-not-increasing",
                 "preamble-not-canonical-base64": "preamble-not-canonical-base64"}


#: The writer parameters of cases that are not their source's layout (case.json "writer", the README's column).
WRITERS: dict[str, dict[str, Any]] = {}


def _grouped_cases() -> list[Case]:
    out: list[Case] = []
    for crafted, case in GROUPED_CASES.items():
        finding, description, options = grouped_vectors.CRAFTED[crafted]
        block_size = options["block_size"]
        WRITERS[f"v2-grouped-{case}-sealed"] = {
            "shard_size": 16 if block_size <= 32 else 140, "block_size": block_size, "codec": "zstd",
            "compression_level": 3, "framing": "grouped"}
        out.append((f"v2-grouped-{case}-sealed", V2_ZSTD, "the source's examples written as framing grouped by the "
                    f"independent test writer (validator_vectors.write_v2), then: {description}", [finding],
                    _grouped(crafted, V2_ZSTD), False))
    return out


def cases() -> list[Case]:
    """(name, source, description, expected findings, mutation, malicious)."""
    return [
        # version 2: corruption of checksummed bytes
        ("v2-block-byte-flip", V2_SHARED, "one byte flipped inside block 2 of shard 000001", ["ATL506"],
         lambda r: flip(r / "000001" / "data.bin", v2_block(r, "000001", 2)[0] + 3), False),
        ("v2-uncompressed-block-flip", V2_NONE, "one byte flipped inside an uncompressed example (v1 could not "
         "see this)", ["ATL506"], lambda r: flip(r / "000000" / "data.bin", v2_block(r, "000000", 1)[0] + 60),
         False),
        ("v2-data-truncated", V2_ZSTD, "data.bin of shard 000001 lost its last 10 bytes", ["ATL306"],
         lambda r: (r / "000001" / "data.bin").write_bytes((r / "000001" / "data.bin").read_bytes()[:-10]),
         False),
        ("v2-data-extended", V2_LZ4, "10 bytes appended to data.bin of shard 000000", ["ATL306"],
         lambda r: (r / "000000" / "data.bin").write_bytes((r / "000000" / "data.bin").read_bytes() + b"x" * 10),
         False),
        ("v2-index-entry-flip", V2_SHARED, "one byte flipped in an index.bin entry", ["ATL503"],
         lambda r: flip(r / "000000" / "index.bin", V2_INDEX_HEADER_SIZE + 24 * 3 + 17), False),
        ("v2-shard-meta-edited", V2_SHARED, "shard meta.json num_examples edited without its checksum",
         ["ATL501"], lambda r: (r / "000001" / "meta.json").write_bytes(
             (r / "000001" / "meta.json").read_bytes().replace(b'"num_examples": 64', b'"num_examples": 63')),
         False),
        ("v2-root-meta-edited", V2_ZSTD, "root meta.json compression_level edited without its checksum",
         ["ATL500"], lambda r: (r / "meta.json").write_bytes(
             (r / "meta.json").read_bytes().replace(b'"compression_level": 3', b'"compression_level": 4')), False),
        ("v2-dictionary-flip", V2_SHARED, "one byte flipped in the shared zstd_dict.bin", ["ATL505"],
         lambda r: flip(r / "zstd_dict.bin", 700), False),
        ("v2-swapped-shard-data", V2_ZSTD, "data.bin of shards 000000 and 000001 (of different sizes) swapped",
         ["ATL306"],
         lambda r: _swap(r / "000000" / "data.bin", r / "000001" / "data.bin"), False),
        ("v2-swapped-shard-folders", V2_ZSTD, "shard folders 000000 and 000001 swapped", ["ATL502"],
         lambda r: _swap(r / "000000", r / "000001"), False),
        # version 2: structure
        ("v2-missing-shard", V2_SHARED, "shard folder 000002 deleted", ["ATL101"],
         lambda r: shutil.rmtree(r / "000002"), False),
        ("v2-missing-data-file", V2_LZ4, "data.bin of shard 000001 deleted", ["ATL103"],
         lambda r: (r / "000001" / "data.bin").unlink(), False),
        ("v2-no-root-meta", V2_SHARED, "root meta.json deleted: an unfinished write", ["ATL100"],
         lambda r: (r / "meta.json").unlink(), False),
        ("v2-version-3-sealed", V2_NONE, "root version 3 with a correct checksum", ["ATL201"],
         lambda r: edit_json(r / "meta.json", lambda d: d.update(version=3), v2_checksum=True), False),
        ("v2-unknown-codec-sealed", V2_ZSTD, "root codec 'brotli' with a correct checksum", ["ATL202"],
         lambda r: edit_json(r / "meta.json", lambda d: d.update(codec="brotli"), v2_checksum=True), False),
        ("v2-zip-bomb-sealed", V2_ZSTD, "block 0 replaced by a zstd frame declaring 1 TiB, checksums resealed",
         ["ATL901"], _zip_bomb, False),
        # version 2, framing example (V2-FRAME): the defects are sealed, so the frame rules must catch them
        ("v2-frames-offsets-not-increasing-sealed", V2_FRAMES_LZ4, "framing example: offsets[1] of the stored "
         "frame table of block 1 set to offsets[2], checksums resealed", ["ATL410"], _frame_offsets_not_increasing,
         False),
        ("v2-frames-zip-bomb-sealed", V2_FRAMES_SHARED, "framing example: the frame of example 2 replaced in place "
         "by a zstd frame (with the shared dictionary's id) declaring 1 TiB, checksums resealed", ["ATL901"],
         _frame_bomb, False),
        ("v2-frames-index-flags-cleared-sealed", V2_FRAMES_LZ4, "framing example: index.bin flags bit 0 cleared in "
         "shard 000001 while its meta.json says example, checksums resealed", ["ATL307"], _index_flags_cleared,
         False),
        # version 2, framing list (V2-FRAME-5): sealed, so the list rules must catch them
        ("v2-list-wrong-count-sealed", V2_LIST_NONE, "framing list: block 1 of shard 000000 re-pickled with 5 of its "
         "6 examples, data.bin re-laid, sizes and checksums resealed", ["ATL411"],
         lambda r: _v2_list_block_rewritten(r, "000000", 1, lambda b: pickle.dumps(pickle.loads(b)[:-1], protocol=4)),
         False),
        ("v2-grouped-group-size-flags-cleared-sealed", V2_GROUPS_OF_1, "framing grouped in groups of 1: index.bin "
         "flags bits 3-4 cleared in shard 000001 (groups of 8) while its meta.json says group_size 1, checksums "
         "resealed", ["ATL307"], _group_size_bits_cleared, False),
        ("v2-typed-wrong-shape-sealed", V2_TYPED_LIST, "encoding typed: in block 1 of shard 000000 the first "
         "example's array declares one more element than its payload holds (the shape's first entry + 1), "
         "checksums resealed", ["ATL704"], lambda r: _v2_list_block_rewritten(r, "000000", 1, _typed_shape_plus_one),
         False),
        ("v2-typed-truncated-payload-sealed", V2_TYPED_LIST, "encoding typed: block 1 of shard 000000 lost its last "
         "5 bytes (its last example's MessagePack object is cut short), sizes and checksums resealed", ["ATL700"],
         lambda r: _v2_list_block_rewritten(r, "000000", 1, lambda b: b[:-5]), False),
        ("v2-typed-unknown-dtype-sealed", V2_TYPED_LIST, "encoding typed: in block 1 of shard 000000 the first "
         "example's array has dtype code 99, outside the closed table (TYPED-4), checksums resealed", ["ATL704"],
         lambda r: _v2_list_block_rewritten(r, "000000", 1, _typed_unknown_dtype), False),
        ("v2-typed-depth-bomb-sealed", V2_TYPED_LIST, "encoding typed: the last example of block 1 of shard 000000 "
         "replaced by arrays nested 100,000 deep (TYPED-5 allows 64), sizes and checksums resealed", ["ATL706"],
         _typed_depth_bomb, False),
        ("v2-typed-flag-cleared-sealed", V2_TYPED_LIST, "encoding typed: index.bin flags bit 5 (typed) cleared in "
         "shard 000001 while its meta.json says typed, checksums resealed", ["ATL307"], _typed_bit_cleared, False),
        ("v2-typed-grouped-wrong-count-sealed", V2_TYPED_GROUPED, "encoding typed, framing grouped (TYPED-7): the "
         "MessagePack array header of block 1 of shard 000000 counts 7 of its 8 examples, checksums resealed",
         ["ATL411"], _typed_grouped_count_one_less, False),
        ("v2-list-index-flags-cleared-sealed", V2_LIST_NONE, "framing list: index.bin flags bit 1 cleared in shard "
         "000001 while its meta.json says list, checksums resealed", ["ATL307"], _index_flags_cleared, False),
        ("v2-malicious-os-system", V2_NONE, "a complete, checksummed dataset whose example 3 calls os.system",
         ["ATL601"], lambda r: _malicious_v2(r, "os", os.system, "touch atlas-pwned-v2-malicious-os-system"),
         True),
        ("v2-malicious-eval", V2_NONE, "a complete, checksummed dataset whose example 3 calls builtins.eval",
         ["ATL601"], lambda r: _malicious_v2(r, "eval", eval, "__import__('os').system('touch atlas-pwned-eval')"),
         True),
        # version 2: the attack classes of the pickle policy (PICKLE-2 to PICKLE-12), sealed
        *[(f"v2-attack-{a.name}-sealed", V2_NONE, f"pickle policy: example 3 is {a.description} "
           f"({a.rule} rule), a complete, checksummed dataset", [a.finding],
           lambda r, a=a: _attack_v2(r, a), True) for a in attacks.ATTACKS],
        # version 1
        ("v1-malicious-os-system", V1_NONE, "a version 1 block whose example 3 calls os.system", ["ATL601"],
         lambda r: _malicious_v1(r, os.system, "touch atlas-pwned-v1-malicious-os-system"), True),
        ("v1-block-not-a-list", V1_NONE, "block 0 of shard 0 is a pickled dict, not a list", ["ATL412"],
         _v1_not_a_list, False),
        ("v1-block-wrong-count", V1_NONE, "block 1 of shard 0 holds 7 examples instead of 8", ["ATL411"],
         _v1_wrong_count, False),
        ("v1-offsets-not-monotonic", V1_NONE, "two index.npy offsets swapped", ["ATL305"],
         _v1_offsets_not_monotonic, False),
        ("v1-data-truncated", V1_SHARED, "data.bin of shard 1 lost its last 5 bytes", ["ATL306"],
         lambda r: (r / "1" / "data.bin").write_bytes((r / "1" / "data.bin").read_bytes()[:-5]), False),
        ("v1-missing-dictionary", V1_SHARED, "root zstd_dict.bin of a strategy-2 dataset deleted", ["ATL103"],
         lambda r: (r / "zstd_dict.bin").unlink(), False),
        ("v1-wrong-dictionary", V1_SHARED, "root zstd_dict.bin replaced by another dataset's dictionary",
         ["ATL407"], _v1_wrong_dictionary, False),
        ("v1-version-true", V1_NONE, 'root meta.json says "version": true', ["ATL201"],
         lambda r: edit_json(r / "meta.json", lambda d: d.update(version=True), v2_checksum=False), False),
        ("v1-unknown-strategy", V1_NONE, "shard 0 meta.json says compression_strategy 7", ["ATL203"],
         lambda r: edit_json(r / "0" / "meta.json", lambda d: d.update(compression_strategy=7), v2_checksum=False),
         False),
        ("v1-folder-gap", V1_NONE, "shard folder 2 renamed to 3", ["ATL102"],
         lambda r: (r / "2").rename(r / "3"), False),
        # version 1, what the original reader cannot open (issue 16)
        ("v1-extra-subfolder", V1_NONE, "a sub-folder 'notes' (holding a text file) in the root: the original "
         "opens every sub-folder as a shard", ["ATL112"], _v1_extra_subfolder, False),
        ("v1-shard-meta-unknown-key", V1_NONE, "shard 0 meta.json has an unknown key: a TypeError in the original",
         ["ATL215"], lambda r: edit_json(r / "0" / "meta.json", lambda d: d.update(note="x"), v2_checksum=False),
         False),
        ("v1-root-meta-unknown-key", V1_NONE, "root meta.json has an unknown key: a TypeError in the original",
         ["ATL215"], lambda r: edit_json(r / "meta.json", lambda d: d.update(note="x"), v2_checksum=False), False),
        *_grouped_cases(),
    ]


def warning_cases() -> list[Case]:
    """Valid cases (same shape as cases()): version 1 defects the original reader reads through."""
    return [
        ("v1-shard-sizes-wrong", V1_NONE, "root shard_sizes disagrees with the shards (the original never reads "
         "it)", ["ATL204"],
         lambda r: edit_json(r / "meta.json", lambda d: d.update(shard_sizes=[40, 40, 21]), v2_checksum=False),
         False),
        ("v1-index-big-endian", V1_SHARED, "every index.npy is big-endian (numpy reads the same offsets)",
         ["ATL312"], _v1_big_endian_indexes, False),
        ("v1-stray-root-dictionary", V1_NONE, "a root zstd_dict.bin in a strategy-0 dataset (never opened)",
         ["ATL105"], _v1_stray_root_dictionary, False),
    ]


def build(out: Path, case: Case, verdict: str = "invalid") -> None:
    name, source, description, findings, mutate, malicious = case
    folder = out / name
    folder.mkdir(parents=True)
    shutil.copytree(VECTORS / source / "dataset", folder / "dataset")
    for path in (folder / "dataset").rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    mutate(folder / "dataset")
    source_case = json.loads((VECTORS / source / "case.json").read_text())
    doc = {"name": name, "format_version": source_case["format_version"], "verdict": verdict,
           "findings": findings, "description": description,
           "writer": WRITERS.get(name, source_case.get("writer", {})),
           "source": None if malicious else source, "malicious": malicious,
           "generator": "conformance_tests/make_invalid_vectors.py"}
    (folder / "case.json").write_text(json.dumps(doc, indent=2) + "\n")
    if malicious:  # the benign examples, and the index a safe reader must refuse
        examples: list[Any] = [{"id": i} for i in range(6)]
        examples[MALICIOUS_INDEX] = None
        (folder / "expected.json").write_text(json.dumps({"examples": examples,
                                                          "must_refuse": [MALICIOUS_INDEX]}) + "\n")
    make_vectors.write_manifest(folder)


def build_corpus(out: Path, corpus: list[Case], verdict: str) -> None:
    """Build every case in a temporary folder beside ``out``, then replace ``out`` with it."""
    tmp = Path(tempfile.mkdtemp(prefix=f"{out.name}-", dir=VECTORS))
    cwd = os.getcwd()
    try:
        os.chdir(tmp)  # nothing here is unpickled, but keep any accident inside the temp folder
        for case in corpus:
            build(tmp, case, verdict)
        os.chdir(cwd)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
        out.chmod(0o755)
    finally:
        os.chdir(cwd)
        if tmp.exists():
            shutil.rmtree(tmp)


def main() -> int:
    build_corpus(VECTORS / "invalid", cases(), "invalid")
    build_corpus(VECTORS / "warnings", warning_cases(), "valid")
    make_vectors.write_readme()
    print(f"wrote {len(cases())} invalid and {len(warning_cases())} warnings vectors to {VECTORS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
