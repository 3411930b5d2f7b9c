"""Builders of valid and deliberately broken datasets for the validator tests.

``write_v2`` is a small, independent version 2 writer built from the ``atlas_format``
declarations with hooks at every stage, so a test can produce a dataset whose checksums
are all correct but whose content breaks one rule (a malicious pickle, a wrong count,
an inconsistent header). ``write_v1`` does the same for version 1. Valid datasets of
every configuration also come from the reference writer (see the tests).
"""

from __future__ import annotations

import json
import math
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grouped_vectors
import msgpack
import zstandard

from atlas_format import constants, grouped
from atlas_format.block_v2 import encode_block
from atlas_format.checksum import XXH3_64
from atlas_format.codecs import codec_info
from atlas_format.enums import Codec, Framing
from atlas_format.index_v2 import build_index, entries_array, header_value, shard_flags
from atlas_format.layout import v1_shard_names, v2_shard_name
from atlas_format.metadata import dump_checksummed_json, dump_v1_json, file_checksum_text
from atlas_format.npy import build_v1_index

Hook = Callable[..., Any] | None
#: The protocol of a block's list pickle with framing "list" (V2-FRAME-5).
LIST_PROTOCOL = constants.V2_LIST_PICKLE_PROTOCOL


def examples(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Text-like examples (a string of 100..600 characters and two integers), deterministic."""
    out = []
    for i in range(n):
        k = (i * 7919 + seed * 31) % 500
        out.append({"text": ("lorem ipsum dolor sit amet " * 30)[: 100 + k] + str(i), "a": i, "b": i * 2 + seed})
    return out


def _dict_for(blocks: list[bytes], level: int, dict_size: float) -> bytes | None:
    if len(blocks) < 7:
        return None
    size = max(int(dict_size * sum(len(b) for b in blocks)) + 1, 1024)
    return zstandard.train_dictionary(size, blocks, level=level).as_bytes()


def _dict_id(dictionary: bytes | None) -> int:
    return int.from_bytes(dictionary[4:8], "little") if dictionary else 0


def write_v2(root: Path, items: list[Any], *, codec: str = "zstd", dictionary: str = "none", block_size: int = 4,
             shard_size: int = 16, level: int = 3, dict_size: float = 0.01, protocol: int | None = None,
             framing: str = "block", pickle_hook: Hook = None, raw_hook: Hook = None, frame_hook: Hook = None,
             list_hook: Hook = None, stored_hook: Hook = None, index_hook: Hook = None,
             shard_meta_hook: Hook = None, root_meta_hook: Hook = None, index_bytes_hook: Hook = None,
             slices_hook: Hook = None, fallback: Hook = None, head_hook: Hook = None,
             group: int = grouped.FRAME_GROUP, encoding: str = "pickle") -> Path:
    """A version 2 dataset at ``root``; hooks may alter each stage before checksums are computed.

    pickle_hook(shard, block, position, bytes) -> bytes (framings "block" and "example"); raw_hook(shard, block,
    raw) -> raw (framings "block" and "list": the decoded block); frame_hook(shard, block, position, frame) ->
    frame (framing "example" only: one example's codec frame); list_hook(shard, block, examples) -> the value
    pickled as the block (framing "list" only); stored_hook(shard, block, stored) -> stored;
    index_hook(shard, header dict, entries list) -> None; index_bytes_hook(shard, index bytes) -> index bytes
    (the metadata then records the new size and checksum); shard_meta_hook(shard, doc) -> None;
    root_meta_hook(doc) -> None.

    ``framing="example"`` (spec V2-FRAME) stores each block as the uncompressed table of V2-BLOCK-3 over one
    codec frame per example; raw_size stays the size of the decoded block, the index flags get bit 0 and both
    meta.json say ``"framing": "example"``. The default writes no ``framing`` member (absent means block).

    ``framing="list"`` (V2-FRAME-5) pickles each block's examples as one list (``protocol``, by default the
    list protocol of V2-FRAME-5, 4) and stores that pickle encoded by the codec, as version 1 does;
    raw_size is the pickle's size, the index flags get bit 1 and both meta.json say ``"framing": "list"``.
    For the per-example pickles of the other framings ``protocol`` defaults to 5 (V2-BLOCK-4).

    ``framing="grouped"`` (V2-FRAME-6..9, ``grouped_vectors``) writes a preamble per shard (meta.json
    ``pickle_preamble``) and each block as slices after it, in magicless frames (V2-CODEC-4); index flags bit 2.
    ``group`` is its group size (meta.json ``group_size`` unless 8, index flags bits 3-4).

    ``encoding="typed"`` (spec 3.12) writes each example, or framing list's block, with the msgpack library
    (not the reference's encoder; no arrays, so no alignment to keep), ``pickle_hook``/``list_hook`` then
    seeing those bytes and values; both meta.json say ``"encoding": "typed"`` and the index flags get bit 5.
    Its hooks: slices_hook(shard, block, preamble, slices) -> slices; raw_hook(shard, block, decoded frames) ->
    decoded frames (a list; raw_size is their total); frame_hook(shard, block, j, frame) -> frame (frame j,
    encoded); fallback(shard, block) -> True writes the block as a list fallback (V2-FRAME-8);
    head_hook(shard, block, group offsets) -> group offsets (a block of more than 32 examples: each frame's
    interior group offsets in the stored head, V2-FRAME-7).
    """
    layout = Framing(framing)
    frames_per_example = layout is Framing.EXAMPLE
    list_blocks = layout is Framing.LIST
    grouped_blocks = layout is Framing.GROUPED
    if not grouped_blocks and (slices_hook or fallback or head_hook):
        raise ValueError("slices_hook, fallback and head_hook are for framing 'grouped'")
    if frames_per_example and raw_hook:
        raise ValueError("raw_hook is for framings 'block' and 'list'; use pickle_hook, frame_hook or stored_hook")
    if not (frames_per_example or grouped_blocks) and frame_hook:
        raise ValueError("frame_hook is for framing 'example'")
    if (list_blocks or grouped_blocks) and pickle_hook:
        raise ValueError("framing 'list' has no per-example pickles; use list_hook or raw_hook")
    if not list_blocks and list_hook:
        raise ValueError("list_hook is for framing 'list'")
    if protocol is None:
        protocol = LIST_PROTOCOL if list_blocks else constants.V2_PICKLE_PROTOCOL
    framing_member = {"framing": framing} if layout is not Framing.BLOCK else {}
    typed_examples = encoding == "typed"
    encoding_member = {"encoding": encoding} if typed_examples else {}
    root.mkdir(parents=True)
    info = codec_info(codec, magicless=grouped_blocks)
    shard_items = [items[i:i + shard_size] for i in range(0, len(items), shard_size)] or [[]]
    shared: bytes | None = None
    mode_root = dictionary
    records = []
    max_raw_all = 0
    for k, chunk in enumerate(shard_items):
        name = v2_shard_name(k)
        folder = root / name
        folder.mkdir()
        raws = []
        block_pickles = []
        block_frames: list[list[bytes]] = []
        fell_back: list[bool] = []
        block_offsets: list[list[list[int]]] = []
        preamble, memo = grouped_vectors.preamble_of(chunk) if grouped_blocks else (b"", {})
        for b, start in enumerate(range(0, len(chunk), block_size)):
            pickles = []
            if grouped_blocks:
                back = bool(fallback and fallback(k, b))
                hook = (lambda p, sl, k=k, b=b: slices_hook(k, b, p, sl)) if slices_hook else None
                frames = grouped_vectors.decoded_frames(preamble, memo, chunk[start:start + block_size],
                                                        fallback=back, slices_hook=hook, offsets_out=block_offsets,
                                                        group=group)
                frames = raw_hook(k, b, frames) if raw_hook else frames
                block_frames.append(frames)
                fell_back.append(back)
                raws.append(b"".join(frames))
                continue
            if list_blocks:  # one pickle of the block's list: the decoded block itself
                value = list(chunk[start:start + block_size])
                value = list_hook(k, b, value) if list_hook else value
                raw = msgpack.packb(value) if typed_examples else pickle.dumps(value, protocol=protocol)
                raws.append(raw_hook(k, b, raw) if raw_hook else raw)
                block_pickles.append(pickles)
                continue
            for j, ex in enumerate(chunk[start:start + block_size]):
                p = msgpack.packb(ex) if typed_examples else pickle.dumps(ex, protocol=protocol)
                pickles.append(pickle_hook(k, b, j, p) if pickle_hook else p)
            raw = encode_block(pickles)
            raws.append(raw_hook(k, b, raw) if raw_hook else raw)
            block_pickles.append(pickles)
        own: bytes | None = None
        mode = "none"
        if dictionary == "shared":
            if k == 0:
                shared = _dict_for(raws, level, dict_size)
                if shared is None:
                    mode_root = "none"
                else:
                    (root / "zstd_dict.bin").write_bytes(shared)
            mode = "shared" if shared is not None else "none"
        elif dictionary == "shard":
            own = _dict_for(raws, level, dict_size)
            mode = "shard" if own is not None else "none"
        used = shared if mode == "shared" else own
        compress = info.compressor(level, used)
        entries = []
        data = bytearray()
        for b, raw in enumerate(raws):
            if grouped_blocks:
                encoded = [compress(f) for f in block_frames[b]]
                encoded = [frame_hook(k, b, j, f) if frame_hook else f for j, f in enumerate(encoded)]
                n = min(block_size, len(chunk) - b * block_size)
                offsets = head_hook(k, b, block_offsets[b]) if head_hook else block_offsets[b]
                stored = grouped_vectors.stored(n, encoded, fallback=fell_back[b], group_offsets=offsets,
                                                raw_size=len(raw), group=group)
            elif frames_per_example:
                frames = [compress(p) for p in block_pickles[b]]
                stored = encode_block([frame_hook(k, b, j, f) if frame_hook else f for j, f in enumerate(frames)])
            else:
                stored = compress(raw)
            stored = stored_hook(k, b, stored) if stored_hook else stored
            entries.append((len(data), len(stored), len(raw), XXH3_64.of(stored)))
            data += stored
        (folder / "data.bin").write_bytes(bytes(data))
        if own is not None:
            (folder / "zstd_dict.bin").write_bytes(own)
        max_raw = max((len(r) for r in raws), default=0)
        max_raw_all = max(max_raw_all, max_raw)
        header = header_value(codec=int(info.codec), dictionary=mode, checksum_algorithm=1, block_size=block_size,
                              block_count=len(raws), example_count=len(chunk), data_size=len(data),
                              dict_id=_dict_id(used),
                              flags=shard_flags(layout, group, encoding))
        if index_hook:
            index_hook(k, header, entries)
        index = build_index(header, entries_array(entries))
        if index_bytes_hook:
            index = index_bytes_hook(k, index)
        (folder / "index.bin").write_bytes(index)
        doc = {
            "version": 2, "shard": name, "codec": info.label, "dictionary": mode, **framing_member,
            **({grouped.PREAMBLE_MEMBER: grouped.preamble_to_json(preamble), **grouped.group_member(group)}
               if grouped_blocks else {}), **encoding_member,
            "compression_level": level,
            "block_size": block_size, "num_examples": len(chunk), "num_blocks": len(raws), "data_size": len(data),
            "max_block_raw_size": max_raw, "dict_id": _dict_id(used),
            "index": {"file": "index.bin", "size": len(index), "checksum": XXH3_64.text(
                int.from_bytes(index[56:64], "little"))},
            "dictionary_file": None if own is None else {"file": "zstd_dict.bin", "size": len(own),
                                                         "dict_id": _dict_id(own),
                                                         "checksum": file_checksum_text(own)},
            "checksum_algorithm": "xxh3_64", "writer": {"library": "validator_vectors", "version": "1"},
        }
        if shard_meta_hook:
            shard_meta_hook(k, doc)
        meta = dump_checksummed_json(doc)
        (folder / "meta.json").write_bytes(meta)
        records.append({"name": name, "num_examples": doc["num_examples"], "num_blocks": doc["num_blocks"],
                        "data_size": doc["data_size"], "index_size": len(index),
                        "meta_checksum": meta[17:17 + 24].decode("ascii"), "dictionary": mode})
    root_doc = {
        "version": 2, "format": "atlas", "codec": info.label, "dictionary": mode_root, **framing_member,
        **encoding_member, "compression_level": level,
        "compression_dict_size": dict_size, "block_size": block_size, "shard_size": shard_size,
        "checksum_algorithm": "xxh3_64", "num_examples": len(items), "max_block_raw_size": max_raw_all,
        "shards": records,
        "shared_dictionary": None if shared is None else {"file": "zstd_dict.bin", "size": len(shared),
                                                           "dict_id": _dict_id(shared),
                                                           "checksum": file_checksum_text(shared)},
        "generation": 1, "writer": {"library": "validator_vectors", "version": "1"}, "user_metadata": {},
    }
    if root_meta_hook:
        root_meta_hook(root_doc)
    (root / "meta.json").write_bytes(dump_checksummed_json(root_doc))
    return root


def write_v1(root: Path, items: list[Any], *, strategy: int = 1, block_size: int = 4, shard_size: int = 16,
             level: int = 3, protocol: int = 4, block_hook: Hook = None, stored_hook: Hook = None) -> Path:
    """A version 1 dataset of strategy 0 or 1 (hooks: block_hook(shard, block, pickle) -> pickle,
    stored_hook(shard, block, stored) -> stored)."""
    if strategy not in (0, 1):
        raise ValueError("write_v1 writes strategies 0 and 1; copy a seed vector for 2 and 3")
    root.mkdir(parents=True)
    chunks = [items[i:i + shard_size] for i in range(0, len(items), shard_size)] or [[]]
    names = v1_shard_names(len(chunks))
    cctx = zstandard.ZstdCompressor(level=level)
    for k, (name, chunk) in enumerate(zip(names, chunks, strict=True)):
        folder = root / name
        folder.mkdir()
        offsets = [0]
        data = bytearray()
        for b in range(math.ceil(len(chunk) / block_size)):
            p = pickle.dumps(chunk[b * block_size:(b + 1) * block_size], protocol=protocol)
            p = block_hook(k, b, p) if block_hook else p
            stored = p if strategy == 0 else cctx.compress(p)
            stored = stored_hook(k, b, stored) if stored_hook else stored
            data += stored
            offsets.append(len(data))
        if data:
            (folder / "data.bin").write_bytes(bytes(data))
        (folder / "index.npy").write_bytes(build_v1_index(offsets))
        (folder / "meta.json").write_bytes(dump_v1_json({
            "version": 1, "block_size": block_size, "stored_examples": len(chunk), "compression_strategy": strategy,
            "compression_level": level, "compression_dict_size": 0.01}))
    (root / "meta.json").write_bytes(dump_v1_json({"version": 1, "shard_sizes": [len(c) for c in chunks],
                                                   "compression_strategy": strategy}))
    return root


def copy_seed(seed: Path, dest: Path) -> Path:
    """A writable copy of a seed-v1 dataset folder."""
    shutil.copytree(seed, dest)
    return dest


def edit_json(path: Path, mutate: Callable[[dict[str, Any]], None], *, v1: bool = True) -> None:
    """Rewrite a version 1 meta.json after ``mutate`` (no checksum)."""
    doc = json.loads(path.read_bytes())
    mutate(doc)
    path.write_bytes(dump_v1_json(doc) if v1 else json.dumps(doc).encode())


def resign(path: Path, mutate: Callable[[dict[str, Any]], None]) -> bytes:
    """Rewrite a version 2 meta.json after ``mutate``, with a correct checksum line; returns the bytes."""
    doc = json.loads(path.read_bytes())
    doc.pop("checksum", None)
    mutate(doc)
    data = dump_checksummed_json(doc)
    path.write_bytes(data)
    return data


def resign_shard(root: Path, name: str, mutate: Callable[[dict[str, Any]], None]) -> None:
    """Rewrite a shard meta.json and update the root's meta_checksum so only ``mutate``'s change remains."""
    data = resign(root / name / "meta.json", mutate)
    text = data[17:17 + 24].decode("ascii")

    def fix(doc: dict[str, Any]) -> None:
        for s in doc["shards"]:
            if s["name"] == name:
                s["meta_checksum"] = text

    resign(root / "meta.json", fix)


def flip(path: Path, offset: int, mask: int = 0x01) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))


class OsSystem:
    """An example whose pickle calls os.system(command) when loaded (never loaded by the validator)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        import os

        return (os.system, (self.command,))


class BuiltinsEval:
    """An example whose pickle calls builtins.eval(expression) when loaded."""

    def __init__(self, expression: str) -> None:
        self.expression = expression

    def __reduce__(self) -> tuple[Any, ...]:
        return (eval, (self.expression,))


def marker_command(marker: Path) -> str:
    return f"touch {marker}"


def codec_none() -> Codec:
    return Codec.NONE
