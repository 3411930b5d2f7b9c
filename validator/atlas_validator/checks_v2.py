"""Version 2 checks (spec section 3): checksummed metadata, the binary index, blocks, dictionaries.

Every byte a version 2 dataset lists is bound by a checksum or a size (DETECT-1); the
checks below verify each binding and report the location of every mismatch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from atlas_format import grouped, metadata, typed
from atlas_format.binary import parse
from atlas_format.block_v2 import block_count, example_offsets, table_size
from atlas_format.checksum import ChecksumAlgorithm, parse_checksum_text
from atlas_format.codecs import codec_info
from atlas_format.constants import (
    DATA_FILE,
    DICT_FILE,
    META_FILE,
    V2_INDEX_ENTRY_SIZE,
    V2_INDEX_FILE,
    V2_INDEX_HEADER_SIZE,
    V2_LIST_PICKLE_PROTOCOL,
    V2_PICKLE_PROTOCOL,
)
from atlas_format.enums import INDEX_FLAG_GROUP_SHIFT, INDEX_FLAG_TYPED, KNOWN_INDEX_FLAGS, Codec, Framing
from atlas_format.errors import AtlasError
from atlas_format.index_v2 import (
    DICTIONARY_MODE_NAMES,
    INDEX_CHECKSUM_OFFSET,
    INDEX_ENTRY_DTYPE,
    IndexHeader,
    compute_index_checksum,
    entry_field_offset,
)
from atlas_format.index_v2 import (
    header_field_offset as header_at,
)
from atlas_format.zstd_frame import DICTIONARY_ID_OFFSET, ZstdDictionaryHeader

from .blocks import check_list_pickle, decode_block, decode_frame, frame_declared_size, make_dctx, protocol_text
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
from .grouped_checks import GroupedShard, check_preamble
from .grouped_checks import check_block as check_grouped_block
from .layout import unexpected_in_shard
from .pickle_scan import scan_pickle
from .tasks import ShardTask
from .typed_scan import check_typed_list, scan_typed

SHARD_FILES = {META_FILE, DATA_FILE, V2_INDEX_FILE, DICT_FILE}
FRAMINGS = tuple(f.value for f in Framing)
# The index header's framing bits (V2-FRAME-1), from the framings themselves: at most one is set.
FRAMING_FLAGS = sum(f.index_flags for f in Framing)
# The clauses of the shape findings of a block of framing 'list' (one pickle of a list, V2-FRAME-5).
LIST_CLAUSES = {"ATL411": "V2-FRAME-5, V2-BLOCK-1", "ATL412": "V2-FRAME-5", "ATL414": "V2-FRAME-5",
                "ATL415": "V2-FRAME-5, V2-BLOCK-4"}


_FRAMING_BITS = ", ".join(f"bit {f.index_flags.bit_length() - 1} {f.value!r}" for f in Framing if f.index_flags)


def framing_of_flags(flags: int) -> Framing | None:
    """The framing an index header's flags say (V2-FRAME-1); None when two framing bits are set."""
    bits = flags & FRAMING_FLAGS
    return next((f for f in Framing if f.index_flags == bits), None)


def framing_of(doc: dict[str, Any]) -> str | None:
    """A version 2 meta.json's framing (absent means 'block', V2-FRAME-1); None when it is not a known one."""
    value = doc.get("framing", Framing.BLOCK.value)
    return value if isinstance(value, str) and value in FRAMINGS else None


def check_framing_codec(framing: str | None, codec: str | None, sink: Sink, *, shown: str) -> None:
    """ATL214 for framing 'example' with codec 'none': there is no frame (V2-FRAME-1)."""
    if framing == Framing.EXAMPLE.value and codec == "none":
        sink.add("ATL214", "framing is 'example' but the codec is 'none' (there is no frame to hold an example)",
                 path=shown)


def _schema_members(name: str) -> dict[str, set[str]]:
    """Known member names per object of a schema: '' for the top level, else the member holding the object."""
    schema = metadata.load_schema(name)
    props = schema.get("properties", {})
    known = {"": set(props)}
    for key, sub in props.items():
        candidates = [sub] + list(sub.get("oneOf", [])) + ([sub["items"]] if "items" in sub else [])
        for cand in candidates:
            if isinstance(cand, dict) and "properties" in cand:
                known[key] = set(cand["properties"])
    return known


def report_unknown_members(doc: Any, schema: str, sink: Sink, *, shown: str) -> None:
    """ATL210 for every JSON member the schema does not declare (readers ignore them, V2-COMPAT-2)."""
    if not isinstance(doc, dict):
        return
    known = _schema_members(schema)
    for key in doc:
        if key not in known[""]:
            sink.add("ATL210", f"unknown member /{key} (ignored by readers)", path=shown)
    for key, members in known.items():
        if not key:
            continue
        value = doc.get(key)
        objs = value if isinstance(value, list) else [value]
        for i, obj in enumerate(objs):
            if isinstance(obj, dict):
                where = f"/{key}/{i}" if isinstance(value, list) else f"/{key}"
                for member in obj:
                    if member not in members:
                        sink.add("ATL210", f"unknown member {where}/{member} (ignored by readers)", path=shown)


def load_checksummed(root: Path, shown: str, sink: Sink, *, limits: Any, schema: str, mismatch_id: str,
                     schema_id: str) -> tuple[Any, str | None]:
    """(document or None, checksum text on the first line or None) of a version 2 meta.json."""
    raw = read_limited(root, shown, limits.max_metadata_size, sink, what="meta.json")
    if raw is None:
        return None, None
    text: str | None = None
    try:
        text, covered = metadata.split_checksummed_json(raw, path=shown)
    except AtlasError as exc:
        sink.from_error("ATL213", exc)
    else:
        try:
            algorithm, value = parse_checksum_text(text)
        except AtlasError as exc:
            sink.add("ATL507", exc.message, path=shown, offset=len(metadata.CHECKSUM_PREFIX))
        else:
            actual = algorithm.of(covered)
            if actual != value:
                sink.add(mismatch_id, f"checksum mismatch: the file says {text}, its content hashes to "
                                      f"{algorithm.text(actual)}", path=shown, offset=len(metadata.CHECKSUM_PREFIX))
    try:
        doc = metadata.parse_json(raw, path=shown, limits=limits)
    except AtlasError as exc:
        sink.from_error("ATL200", exc, clause="V2-META-1")
        return None, text
    for pointer, message in metadata.schema_errors(doc, schema):
        sink.add(schema_id, f"{pointer}: {message}", path=shown,
                 clause="V2-META-3" if schema == "v2-root" else "V2-META-4")
    report_unknown_members(doc, schema, sink, shown=shown)
    return doc, text


def check_dictionary(root: Path, shown: str, record: Any, sink: Sink, *, limits: Any,
                     algorithm: ChecksumAlgorithm | None) -> tuple[bytes, int] | None:
    """Check a zstd_dict.bin against its JSON record {file, size, dict_id, checksum}; (bytes, id) when usable."""
    raw = read_limited(root, shown, limits.max_dictionary_size, sink, what="dictionary")
    if raw is None:
        return None
    record = record if isinstance(record, dict) else {}
    if is_int(record.get("size")) and record["size"] != len(raw):
        sink.add("ATL505", f"dictionary is {len(raw)} bytes, the metadata says {record['size']}", path=shown)
    text = record.get("checksum")
    if isinstance(text, str):
        try:
            alg, value = parse_checksum_text(text)
        except AtlasError as exc:
            sink.add("ATL507", exc.message, path=shown)
        else:
            if alg.of(raw) != value:
                sink.add("ATL505", f"dictionary checksum mismatch: the metadata says {text}, the file hashes to "
                                   f"{alg.text(alg.of(raw))}", path=shown)
    try:
        header = parse(ZstdDictionaryHeader, raw[:ZstdDictionaryHeader.sizeof()], path=shown)
    except AtlasError as exc:
        sink.from_error("ATL408", exc, clause="V2-DICT-1")
        return None
    dict_id = int(header.dict_id)
    if is_int(record.get("dict_id")) and record["dict_id"] != dict_id:
        sink.add("ATL409", f"dictionary id is {dict_id}, the metadata records {record['dict_id']}", path=shown,
                 offset=DICTIONARY_ID_OFFSET)
    return raw, dict_id


def check_shard(task: ShardTask, progress: Any = None) -> ShardResult:
    """Every check of one version 2 shard; never raises."""
    return guarded_shard_check(task, progress, _check_shard)


def _int(doc: dict[str, Any], key: str) -> int | None:
    value = doc.get(key)
    return value if is_int(value) and value >= 0 else None


def _check_shard(task: ShardTask, sink: Sink, stats: Stats, summary: dict[str, Any], progress: Any) -> None:
    root = Path(task.root)
    name = task.name
    limits = task.limits
    shard_dir = root / name
    exp = task.expect
    entry_value = exp.get("entry")
    entry = entry_value if isinstance(entry_value, dict) else {}
    meta_shown = f"{name}/{META_FILE}"
    unexpected_in_shard(shard_dir, SHARD_FILES, sink, shown=name, clause="V2-LAYOUT-4")
    doc, text = load_checksummed(root, meta_shown, sink, limits=limits, schema="v2-shard",
                                 mismatch_id="ATL501", schema_id="ATL203")
    if text is not None and isinstance(entry.get("meta_checksum"), str) and entry["meta_checksum"] != text:
        sink.add("ATL502", f"root meta_checksum is {entry['meta_checksum']}, the shard meta.json says {text}",
                 path=meta_shown)
    doc = doc if isinstance(doc, dict) else {}
    if "shard" in doc and doc["shard"] != name:
        sink.add("ATL211", f"meta.json says shard {doc['shard']!r}, its folder is {name!r}", path=meta_shown)

    num_examples = _int(doc, "num_examples")
    num_blocks = _int(doc, "num_blocks")
    data_size = _int(doc, "data_size")
    block_size = _int(doc, "block_size") or None
    max_raw = _int(doc, "max_block_raw_size")
    mode = doc.get("dictionary") if doc.get("dictionary") in ("none", "shared", "shard") else None
    codec_label = doc.get("codec") if doc.get("codec") in ("none", "zstd", "lz4") else None
    framing = framing_of(doc)
    summary.update(num_examples=num_examples, max_block_raw_size=max_raw)

    # -- root <-> shard ----------------------------------------------------------------
    index_len = regular_size(root, f"{name}/{V2_INDEX_FILE}")
    for key, actual in (("name", doc.get("shard")), ("num_examples", num_examples), ("num_blocks", num_blocks),
                        ("data_size", data_size), ("dictionary", mode), ("index_size", index_len)):
        want = entry.get(key)
        if want is not None and actual is not None and want != actual:
            what = "index.bin size" if key == "index_size" else key
            sink.add("ATL207", f"root shards[{task.position}].{key} is {want!r}, the shard's {what} is {actual!r}",
                     path=meta_shown)
    for key in ("codec", "compression_level", "block_size"):
        if key in doc and exp.get(key) is not None and doc[key] != exp[key]:
            sink.add("ATL206", f"shard {key} is {doc[key]!r}, the root says {exp[key]!r}", path=meta_shown)
    if framing is not None and exp.get("framing") is not None and framing != exp["framing"]:
        sink.add("ATL206", f"shard framing is {framing!r}, the root says {exp['framing']!r} (absent means 'block')",
                 path=meta_shown, clause="V2-FRAME-1, V2-META-5")
    encoding, root_encoding = doc.get(typed.ENCODING_MEMBER, typed.PICKLE), exp.get("encoding", typed.PICKLE)
    if encoding != root_encoding:
        sink.add("ATL206", f"shard encoding is {encoding!r}, the root says {root_encoding!r} (absent means "
                           "'pickle')", path=meta_shown, clause="TYPED-1, V2-META-5")
    check_framing_codec(framing, codec_label, sink, shown=meta_shown)
    preamble = None
    if framing == Framing.GROUPED.value and grouped.PREAMBLE_MEMBER in doc:  # presence: the schema (ATL203)
        preamble = check_preamble(doc[grouped.PREAMBLE_MEMBER], sink, shown=meta_shown, limits=limits,
                                  scan_limits=task.scan_limits, allowed=task.allowed)
    root_mode = exp.get("dictionary")
    allowed_modes = {"none": {"none"}, "shared": {"shared"}, "shard": {"shard", "none"}}.get(root_mode or "", set())
    if mode is not None and root_mode is not None and mode not in allowed_modes:
        sink.add("ATL206", f"shard dictionary mode {mode!r} is not allowed under root mode {root_mode!r}",
                 path=meta_shown, clause="V2-DICT-2")
    if num_examples is not None and block_size and num_blocks is not None \
            and num_blocks != math.ceil(num_examples / block_size):
        sink.add("ATL208", f"num_blocks is {num_blocks}, ceil({num_examples} / {block_size}) = "
                           f"{math.ceil(num_examples / block_size)}", path=meta_shown)
    if max_raw is not None and max_raw > limits.max_block_raw_size:
        sink.add("ATL900", f"max_block_raw_size {max_raw} is above the limit", path=meta_shown)

    # -- dictionaries -------------------------------------------------------------------
    dict_id = doc.get("dict_id") if is_int(doc.get("dict_id")) else None
    dfile = doc.get("dictionary_file")
    dict_shown = f"{name}/{DICT_FILE}"
    dictionary: tuple[bytes, int] | None = None
    if mode == "shard":
        if not isinstance(dfile, dict):
            sink.add("ATL212", "dictionary mode is 'shard' but dictionary_file is null", path=meta_shown)
        dictionary = check_dictionary(root, dict_shown, dfile, sink, limits=limits,
                                      algorithm=None)
        if isinstance(dfile, dict) and dict_id is not None and dfile.get("dict_id") != dict_id:
            sink.add("ATL212", f"dict_id {dict_id} differs from dictionary_file.dict_id {dfile.get('dict_id')}",
                     path=meta_shown)
        if dictionary is not None and dict_id is not None and dictionary[1] != dict_id:
            sink.add("ATL409", f"dictionary file id {dictionary[1]} differs from the shard dict_id {dict_id}",
                     path=dict_shown, offset=DICTIONARY_ID_OFFSET)
    else:
        if isinstance(dfile, dict):
            sink.add("ATL212", f"dictionary_file is set but the dictionary mode is {mode!r}", path=meta_shown)
        if entry_status(root, dict_shown) is not None and mode is not None:
            sink.add("ATL104", f"zstd_dict.bin present but the shard's dictionary mode is {mode!r}",
                     path=dict_shown, clause="V2-LAYOUT-2")
        if mode == "shared":
            dictionary = exp.get("shared_dictionary")
            shared_id = exp.get("shared_dict_id")
            if dict_id is not None and shared_id is not None and dict_id != shared_id:
                sink.add("ATL212", f"dict_id {dict_id} differs from the root shared_dictionary.dict_id {shared_id}",
                         path=meta_shown)
        elif mode == "none" and dict_id not in (None, 0):
            sink.add("ATL212", f"dict_id is {dict_id} without a dictionary (must be 0)", path=meta_shown)

    # -- index --------------------------------------------------------------------------
    data_len = regular_size(root, f"{name}/{DATA_FILE}", sink)  # ATL111 when it is not a regular file
    if data_len is None and entry_status(root, f"{name}/{DATA_FILE}") is None:
        sink.add("ATL103", "data.bin is missing", path=f"{name}/{DATA_FILE}", clause="V2-LAYOUT-2")
    elif data_len is not None and data_size is not None and data_len != data_size:
        sink.add("ATL306", f"data.bin is {data_len} bytes, meta.json data_size is {data_size}",
                 path=f"{name}/{DATA_FILE}", clause="V2-META-5")
    index = _check_index(task, sink, doc, data_len, max_raw, dictionary)
    if task.quick or index is None or data_len is None:
        return
    header, entries = index
    if codec_label is None:
        return
    # The index flags agree with meta.json here (else the index is not usable). With codec none a
    # frame is the pickle itself, so an example-framed block has the layout of a block-framed one.
    layout = framing_of_flags(header.flags) or Framing.BLOCK
    # framing grouped writes magicless zstd frames without a dictionary id (V2-CODEC-4)
    magicless = layout is Framing.GROUPED
    info = codec_info(codec_label, magicless=magicless)
    if mode in ("shared", "shard") and dictionary is None:
        return  # reported above
    dctx = None
    if (dictionary is not None or magicless) and info.codec == Codec.ZSTD:
        dctx = make_dctx(None if dictionary is None else dictionary[0], sink,
                         path=DICT_FILE if mode == "shared" else f"{name}/{DICT_FILE}", magicless=magicless)
        if dctx is None:
            return
    frame_dict_id = dictionary[1] if dictionary is not None and not magicless else 0
    if layout is Framing.EXAMPLE and info.codec == Codec.NONE:
        layout = Framing.BLOCK
    shard = GroupedShard(preamble, block_size, num_examples, grouped.group_of_flags(header.flags),
                         typed=bool(header.flags & INDEX_FLAG_TYPED)) if layout is Framing.GROUPED else None
    _check_blocks(task, sink, stats, entries, data_len, info, dctx, frame_dict_id, block_size,
                  num_examples, progress, layout, shard, typed_examples=bool(header.flags & INDEX_FLAG_TYPED))
    if shard is not None:
        shard.finish(sink, f"{name}/{DATA_FILE}")


def _check_index(task: ShardTask, sink: Sink, doc: dict[str, Any], data_len: int | None, max_raw: int | None,
                 dictionary: tuple[bytes, int] | None) -> tuple[Any, np.ndarray] | None:
    """Check index.bin; (header, entries) when the entries can be trusted to read blocks."""
    name = task.name
    shown = f"{name}/{V2_INDEX_FILE}"
    limits = task.limits
    raw = read_limited(Path(task.root), shown, limits.max_index_size, sink,
                       what="index.bin")
    if raw is None:
        return None
    try:
        header = parse(IndexHeader, raw, path=shown)
    except AtlasError as exc:
        sink.from_error("ATL300", exc, clause="V2-INDEX-1")
        return None
    usable = True
    if header.format_version != 2:
        sink.add("ATL309", f"format_version is {header.format_version}, expected 2",
                 path=shown, offset=header_at("format_version"))
    if header.header_size < V2_INDEX_HEADER_SIZE:
        sink.add("ATL309", f"header_size {header.header_size} is below {V2_INDEX_HEADER_SIZE}",
                 path=shown, offset=header_at("header_size"))
        usable = False
    if header.entry_size < V2_INDEX_ENTRY_SIZE:
        sink.add("ATL309", f"entry_size {header.entry_size} is below {V2_INDEX_ENTRY_SIZE}",
                 path=shown, offset=header_at("entry_size"))
        usable = False
    if header.header_size > V2_INDEX_HEADER_SIZE or header.entry_size > V2_INDEX_ENTRY_SIZE:
        sink.add("ATL311", f"header_size {header.header_size}, entry_size {header.entry_size}: extension bytes "
                           "are ignored", path=shown, offset=header_at("header_size"))
    try:
        header_codec = codec_info(header.codec)
    except AtlasError as exc:
        sink.add("ATL309", exc.message, path=shown, offset=header_at("codec"), clause="V2-COMPAT-3")
        header_codec = None
        usable = False
    header_mode = DICTIONARY_MODE_NAMES.get(header.dictionary)
    if header_mode is None:
        sink.add("ATL309", f"unknown dictionary mode id {header.dictionary}",
                 path=shown, offset=header_at("dictionary"),
                 clause="V2-COMPAT-3")
    for field in ("reserved", "reserved2"):
        if header[field] != 0:
            sink.add("ATL309", f"{field} is {header[field]}, must be 0", path=shown, offset=header_at(field))
    unknown_flags = header.flags & ~KNOWN_INDEX_FLAGS
    if unknown_flags:
        sink.add("ATL309", f"flags is {header.flags:#04x}: bits {unknown_flags:#04x} are not defined (only the "
                           f"framing bits are: {_FRAMING_BITS}; bits 3-4: grouped's group size; bit 5: typed)",
                 path=shown, offset=header_at("flags"),
                 clause="V2-INDEX-1, V2-COMPAT-3")
    framing = framing_of(doc)
    meta_framing = f"meta.json framing is {framing!r}{'' if 'framing' in doc else ' (absent)'}"
    flags_framing = framing_of_flags(header.flags)
    if flags_framing is None:
        named = [f"bit {f.index_flags.bit_length() - 1} {f.value!r}" for f in Framing
                 if f.index_flags & header.flags]
        count = "both framing bits" if len(named) == 2 else f"{len(named)} framing bits"
        sink.add("ATL307", f"index header flags {header.flags:#04x} set {count} ({', '.join(named)}), which is "
                           f"invalid (at most one is set); {meta_framing}", path=shown, offset=header_at("flags"),
                 clause="V2-INDEX-2, V2-FRAME-1")
        usable = False
    elif framing is not None and flags_framing.value != framing:
        bits = header.flags & FRAMING_FLAGS
        sink.add("ATL307", f"index header flags framing bits are {bits:#04x} (framing {flags_framing.value!r}), "
                           f"{meta_framing}", path=shown, offset=header_at("flags"), clause="V2-INDEX-2, V2-FRAME-1")
        usable = False
    elif not _group_agrees(header.flags, flags_framing, doc, sink, shown):
        usable = False
    if not _encoding_agrees(header.flags, doc, sink, shown):
        usable = False
    algorithm = None
    try:
        from atlas_format.checksum import checksum_algorithm

        algorithm = checksum_algorithm(header.checksum_algorithm)
    except AtlasError as exc:
        sink.add("ATL309", exc.message, path=shown, offset=header_at("checksum_algorithm"), clause="V2-COMPAT-3")
    if algorithm is not None:
        actual = compute_index_checksum(raw, header.checksum_algorithm)
        if actual != header.checksum:
            sink.add("ATL503", f"index checksum mismatch: header says {algorithm.text(header.checksum)}, the file "
                               f"hashes to {algorithm.text(actual)}", path=shown, offset=INDEX_CHECKSUM_OFFSET)
            usable = False
        record_value = doc.get("index")
        record = record_value if isinstance(record_value, dict) else {}
        if isinstance(record.get("checksum"), str) and record["checksum"] != algorithm.text(header.checksum):
            sink.add("ATL504", f"meta.json index.checksum is {record['checksum']}, the index header says "
                               f"{algorithm.text(header.checksum)}", path=f"{name}/{META_FILE}")
        if is_int(record.get("size")) and record["size"] != len(raw):
            sink.add("ATL504", f"meta.json index.size is {record['size']}, index.bin is {len(raw)} bytes",
                     path=f"{name}/{META_FILE}")
    if header.block_count > limits.max_blocks_per_shard:
        sink.add("ATL900", f"block_count {header.block_count} exceeds max_blocks_per_shard",
                 path=shown, offset=header_at("block_count"))
        return None
    if header.example_count > limits.max_examples_per_shard:
        sink.add("ATL900", f"example_count {header.example_count} exceeds max_examples_per_shard", path=shown,
                 offset=header_at("example_count"))
    if header.data_size > limits.max_data_size:
        sink.add("ATL900", f"data_size {header.data_size} exceeds max_data_size",
                 path=shown, offset=header_at("data_size"))
    if header.block_size > limits.max_examples_per_block:
        sink.add("ATL900", f"block_size {header.block_size} exceeds max_examples_per_block",
                 path=shown, offset=header_at("block_size"))
    expected_len = header.header_size + header.block_count * header.entry_size
    if expected_len != len(raw):
        sink.add("ATL308", f"index.bin is {len(raw)} bytes, header_size + block_count * entry_size = "
                           f"{expected_len}", path=shown, offset=min(len(raw), expected_len))
        usable = False
    # header <-> meta.json (V2-INDEX-2)
    pairs = (("codec", header_codec.label if header_codec else header.codec, doc.get("codec")),
             ("dictionary", header_mode, doc.get("dictionary")),
             ("block_size", header.block_size, doc.get("block_size")),
             ("block_count", header.block_count, doc.get("num_blocks")),
             ("example_count", header.example_count, doc.get("num_examples")),
             ("data_size", header.data_size, doc.get("data_size")),
             ("dict_id", header.dict_id, doc.get("dict_id")))
    for field, have, want in pairs:
        if want is not None and have != want:
            sink.add("ATL307", f"index header {field} is {have!r}, meta.json says {want!r}", path=shown,
                     offset=header_at(field))
            usable = False
    if dictionary is not None and header.dict_id != dictionary[1]:
        sink.add("ATL409", f"index header dict_id {header.dict_id} differs from the dictionary's {dictionary[1]}",
                 path=shown, offset=header_at("dict_id"))
    if not usable and expected_len > len(raw):
        return None
    count = min(header.block_count, max(0, (len(raw) - header.header_size) // max(header.entry_size, 1)))
    entries = np.ndarray(shape=(count,), dtype=INDEX_ENTRY_DTYPE, buffer=raw, offset=header.header_size,
                         strides=(header.entry_size,)) if header.entry_size >= V2_INDEX_ENTRY_SIZE else None
    if entries is None:
        return None
    offsets = entries["offset"].astype(np.uint64)
    stored = entries["stored_size"].astype(np.uint64)
    raws = entries["raw_size"]

    header_size: int = header.header_size
    entry_size: int = header.entry_size

    def entry_offset(b: int) -> int:
        return header_size + b * entry_size

    if count:
        if int(offsets[0]) != 0:
            sink.add("ATL304", f"first block offset is {int(offsets[0])}, must be 0", path=shown, block=0,
                     offset=entry_offset(0))
            usable = False
        ends = offsets + stored
        bad = np.nonzero(offsets[1:] != ends[:-1])[0]
        for b in bad[:10]:
            b1 = int(b) + 1
            sink.add("ATL305", f"block {b1} starts at {int(offsets[b1])}, the previous block ends at "
                               f"{int(ends[b1 - 1])}", path=shown, block=b1, offset=entry_offset(b1))
        if len(bad):
            usable = False
        end = int(ends[-1])
    else:
        end = 0
    for size, what in ((header.data_size, "the index header data_size"), (data_len, "data.bin")):
        if size is not None and end != size:
            sink.add("ATL306", f"the blocks end at {end}, {what} is {size} bytes", path=shown,
                     offset=entry_offset(max(count - 1, 0)))
            usable = False
    for b in np.nonzero(stored == 0)[0][:10]:
        sink.add("ATL310", "block has stored_size 0", path=shown, block=int(b),
                 offset=entry_offset(int(b)) + entry_field_offset("stored_size"))
        usable = False
    if max_raw is not None:
        for b in np.nonzero(raws > max_raw)[0][:10]:
            sink.add("ATL310", f"raw_size {int(raws[b])} is above the shard max_block_raw_size {max_raw}", path=shown,
                     block=int(b), offset=entry_offset(int(b)) + entry_field_offset("raw_size"))
        if count and int(raws.max()) != max_raw:
            sink.add("ATL310", f"max_block_raw_size is {max_raw}, the largest raw_size is {int(raws.max())}",
                     path=f"{name}/{META_FILE}", clause="V2-META-5")
    if header_codec is not None and header_codec.codec == Codec.NONE:
        heads = _grouped_heads(header, count, raws) if flags_framing is Framing.GROUPED else 0
        for b in np.nonzero(raws.astype(np.int64) + heads != entries["stored_size"])[0][:10]:
            more = f" + its {int(np.broadcast_to(heads, (count,))[b])} bytes of head (frame starts, group offsets)" \
                if flags_framing is Framing.GROUPED else ""
            sink.add("ATL310", f"codec none but stored_size differs from raw_size{more}", path=shown, block=int(b),
                     offset=entry_offset(int(b)) + entry_field_offset("raw_size"),
                     clause="V2-INDEX-4, V2-FRAME-7" if more else None)
    for b in np.nonzero(stored > limits.max_block_stored_size)[0][:10]:
        sink.add("ATL900", f"stored_size {int(stored[b])} is above max_block_stored_size", path=shown, block=int(b),
                 offset=entry_offset(int(b)) + entry_field_offset("stored_size"))
        usable = False
    for b in np.nonzero(raws > limits.max_block_raw_size)[0][:10]:
        sink.add("ATL900", f"raw_size {int(raws[b])} is above max_block_raw_size", path=shown, block=int(b),
                 offset=entry_offset(int(b)) + entry_field_offset("raw_size"))
    if algorithm is None:
        usable = False
    return (header, entries) if usable else None


def _group_agrees(flags: int, flags_framing: Framing, doc: dict[str, Any], sink: Sink, shown: str) -> bool:
    """Whether the index flags' group size bits (3-4) agree with meta.json (V2-INDEX-2): only framing grouped
    sets them, and they say meta.json's ``group_size`` (absent: 8); ATL307 otherwise."""
    bits = flags & INDEX_FLAG_GROUP_SHIFT
    said = f"index header flags {flags:#04x} set the group size bits 3-4 to {bits:#04x} (groups of " \
           f"{grouped.group_of_flags(flags)})"
    if flags_framing is not Framing.GROUPED:
        if bits:
            sink.add("ATL307", f"{said}, which only framing grouped has; the framing bits say "
                               f"{flags_framing.value!r}", path=shown, offset=header_at("flags"),
                     clause="V2-INDEX-1, V2-INDEX-2")
        return not bits
    try:
        meta_group = grouped.group_of_meta(doc)
    except ValueError:
        return True  # the schema reports it (ATL203); the blocks are read with the flags' size
    if meta_group == grouped.group_of_flags(flags):
        return True
    absent = "" if grouped.GROUP_SIZE_MEMBER in doc else " (absent)"
    sink.add("ATL307", f"{said}, meta.json group_size is {meta_group}{absent}", path=shown,
             offset=header_at("flags"), clause="V2-INDEX-2, V2-FRAME-6")
    return False


def _encoding_agrees(flags: int, doc: dict[str, Any], sink: Sink, shown: str) -> bool:
    """Whether the index flags' typed bit (5) says meta.json's encoding (TYPED-1); ATL307 otherwise."""
    bit = bool(flags & INDEX_FLAG_TYPED)
    encoding = doc.get(typed.ENCODING_MEMBER, typed.PICKLE)
    if bit == (encoding == typed.TYPED) or encoding not in typed.ENCODINGS:  # an unknown one: the schema's
        return True
    absent = "" if typed.ENCODING_MEMBER in doc else " (absent)"
    sink.add("ATL307", f"index header flags {flags:#04x} {'set' if bit else 'clear'} bit 5 (typed examples), "
                       f"meta.json encoding is {encoding!r}{absent}", path=shown, offset=header_at("flags"),
             clause="V2-INDEX-2, TYPED-1")
    return False


def _grouped_heads(header: Any, count: int, raws: np.ndarray) -> np.ndarray:
    """Per block, the bytes of the head (frame starts, then group offsets of 2 or 4 bytes by raw_size) a grouped
    stored block holds before its frames (V2-FRAME-7): with codec none the stored block is those and the decoded
    bytes."""
    size = max(int(header.block_size), 1)
    group, typed_examples = grouped.group_of_flags(header.flags), bool(header.flags & INDEX_FLAG_TYPED)
    tables = np.full(count, grouped.frame_table_size(size), dtype=np.int64)
    interior = np.full(count, sum(grouped.interior_groups(size, group, typed_examples)), dtype=np.int64)
    if count:
        last = max(1, min(size, int(header.example_count) - (count - 1) * size))
        tables[-1] = grouped.frame_table_size(last)
        interior[-1] = sum(grouped.interior_groups(last, group, typed_examples))
    widths = np.where(raws.astype(np.int64) < 1 << 16, 2, 4)
    return tables + widths * interior


def _check_blocks(task: ShardTask, sink: Sink, stats: Stats, entries: np.ndarray, data_len: int,
                  info: Any, dctx: Any, dict_id: int, block_size: int | None, num_examples: int | None,
                  progress: Any, layout: Framing = Framing.BLOCK, shard: GroupedShard | None = None,
                  typed_examples: bool = False) -> None:
    shown = f"{task.name}/{DATA_FILE}"
    fields = entries[["offset", "stored_size", "raw_size", "checksum"]]
    from atlas_format.checksum import XXH3_64

    digest = XXH3_64.digest
    handle = open_limited(Path(task.root), shown, task.limits.max_data_size, sink, what="data.bin")
    if handle is None:
        return
    with handle:
        mapped = handle.raw_map()
        view: Any = mapped if mapped is not None else b""
        data_len = min(data_len, handle.size)
        try:
            for b, (offset, stored, raw_size, checksum) in _rows(fields):
                if offset + stored > data_len:
                    break
                data = view[offset:offset + stored]
                stats.blocks += 1
                stats.bytes_read += stored
                try:
                    if digest(data) != checksum:
                        sink.add("ATL506", f"block checksum mismatch (index says {checksum:016x}, bytes hash to "
                                           f"{digest(data):016x})", path=shown, block=b, offset=offset)
                    else:
                        _check_block(task, sink, stats, data, b, offset, raw_size, info, dctx, dict_id, block_size,
                                     num_examples, shown, layout, shard, typed_examples)
                except Exception as exc:  # noqa: BLE001 - one block's surprise must not hide the others
                    sink.add("ATL990", f"internal error: {type(exc).__name__}: {exc}", path=shown, block=b,
                             offset=offset)
                if progress is not None:
                    progress(stored)
        finally:
            if mapped is not None:
                mapped.close()


def _rows(fields: np.ndarray, chunk: int = 1 << 16) -> Any:
    """(block, entry tuple) for every entry, converted to Python ints a chunk at a time (bounded memory)."""
    for first in range(0, len(fields), chunk):
        for i, row in enumerate(fields[first:first + chunk].tolist()):
            yield first + i, row


def _check_block(task: ShardTask, sink: Sink, stats: Stats, data: bytes, b: int, offset: int, raw_size: int,
                 info: Any, dctx: Any, dict_id: int, block_size: int | None, num_examples: int | None,
                 shown: str, layout: Framing = Framing.BLOCK, shard: GroupedShard | None = None,
                 typed_examples: bool = False) -> None:
    """One stored block whose checksum matched, as ``layout`` (the framing of its index flags) says:
    example frames (V2-FRAME-2), one frame over a list pickle (V2-FRAME-5), grouped frames (V2-FRAME-6..9,
    ``grouped_checks``) or one frame over per-example pickles; with ``typed_examples`` (index flag bit 5) each
    example, or framing list's block, is typed (spec 3.12) and decoded by ``typed_scan``."""
    if layout is Framing.GROUPED:
        if shard is not None:
            check_grouped_block(shard, task, sink, stats, data, b, offset, raw_size, info, dctx, shown)
        return
    if layout is Framing.EXAMPLE:
        _check_example_frames(task, sink, stats, data, b, offset, raw_size, info, dctx, dict_id, block_size,
                              num_examples, shown, typed_examples)
        return
    raw = decode_block(info, data, expected_raw=raw_size, dict_id=dict_id, dctx=dctx, limits=task.limits, sink=sink,
                       path=shown, block=b, offset=offset)
    if raw is None:
        return
    stats.decoded_bytes += len(raw)
    compressed = info.codec != Codec.NONE
    if layout is Framing.LIST:
        expected = None
        if block_size and num_examples is not None:
            expected = min(block_size, num_examples - b * block_size)
        if typed_examples:
            check_typed_list(raw, sink, path=shown, block=b, offset=offset, compressed=compressed,
                             expected=expected, first=b * block_size if block_size else None)
            return
        check_list_pickle(raw, scan_limits=task.scan_limits, sink=sink, path=shown, block=b, offset=offset,
                          compressed=compressed, expected=expected, clauses=LIST_CLAUSES,
                          protocol=V2_LIST_PICKLE_PROTOCOL, allowed=task.allowed,
                          first=b * block_size if block_size else None)
        return
    where = {"path": shown, "block": b, "offset": offset}
    table = _parse_table(task, sink, raw, b, block_size, num_examples, where, stored=False)
    if table is None:
        return
    base, offs = table

    def locate(k: int, at: int | None) -> tuple[int, str]:
        if compressed:
            return offset, f"position {k} of the block" + ("" if at is None else f", decoded offset "
                                                                                    f"{base + offs[k] + at}")
        return offset if at is None else offset + base + offs[k] + at, f"position {k} of the block"

    _scan_examples(task, sink, raw, [(k, base + offs[k], base + offs[k + 1]) for k in range(len(offs) - 1)],
                   shown=shown, b=b, block_size=block_size, locate=locate, typed_examples=typed_examples)


def _parse_table(task: ShardTask, sink: Sink, buf: bytes, b: int, block_size: int | None,
                 num_examples: int | None, where: dict[str, Any], *, stored: bool) -> tuple[int, list[int]] | None:
    """(table size, offsets) of a block's table (V2-BLOCK-3): the decoded block's example table, or with
    ``stored`` the frame table a block of framing 'example' stores uncompressed (V2-FRAME-2); None if unusable."""
    if stored:
        block, table, items, rule = "stored block", "frame table", "frames", {"clause": "V2-FRAME-2, V2-BLOCK-3"}
    else:
        block, table, items, rule = "decoded block", "example table", "examples", {}
    if len(buf) < table_size(0):
        sink.add("ATL410", f"{block} is {len(buf)} bytes, too short for its {table}", **where, **rule)
        return None
    n = block_count(buf)
    expected = None
    if block_size and num_examples is not None:
        expected = min(block_size, num_examples - b * block_size)
    if expected is not None and n != expected:
        sink.add("ATL411", f"block {table} counts {n} {items}, expected {expected}", **where, clause="V2-BLOCK-1")
    if n > task.limits.max_examples_per_block:
        sink.add("ATL900", f"block {table} counts {n} {items}, above max_examples_per_block", **where)
        return None
    base = table_size(n)
    if base > len(buf):
        sink.add("ATL410", f"{table} of {n} {items} needs {base} bytes, the {block} has {len(buf)}", **where,
                 **rule)
        return None
    offs = list(example_offsets(buf, n))
    if offs[0] != 0:
        sink.add("ATL410", f"{table} offsets[0] is {offs[0]}, must be 0", **where, **rule)
        return None
    for k in range(n):
        if offs[k + 1] <= offs[k]:
            sink.add("ATL410", f"{table} offsets[{k + 1}] ({offs[k + 1]}) is not greater than offsets[{k}] "
                               f"({offs[k]})", **where, **rule)
            return None
    if base + offs[n] != len(buf):
        sink.add("ATL410", f"{table} header + payload = {base + offs[n]} bytes, the {block} is {len(buf)}", **where,
                 **rule)
        return None
    return base, offs


def _check_example_frames(task: ShardTask, sink: Sink, stats: Stats, data: bytes, b: int, offset: int,
                          raw_size: int, info: Any, dctx: Any, dict_id: int, block_size: int | None,
                          num_examples: int | None, shown: str, typed_examples: bool = False) -> None:
    """A stored block of framing 'example' (V2-FRAME-2, V2-FRAME-3): its frame table; every frame's header
    (dictionary id, declared size) before anything is decompressed; the declared sizes against raw_size; then
    each frame decoded within that budget and its example pickle scanned as in a block-framed block."""
    limits = task.limits
    where = {"path": shown, "block": b, "offset": offset}
    table = _parse_table(task, sink, data, b, block_size, num_examples, where, stored=True)
    if table is None:
        return
    base, offs = table
    n = len(offs) - 1
    first = b * (block_size or 0)
    stats.decoded_bytes += base  # the table is part of the decoded block too (raw_size counts it)

    def frame_where(k: int) -> dict[str, Any]:
        return {"path": shown, "block": b, "example": first + k if block_size else None, "position": k,
                "offset": offset + base + offs[k]}

    def frame_name(k: int) -> str:
        return f"example frame (position {k} of the block)"

    frames = [data[base + offs[k]:base + offs[k + 1]] for k in range(n)]
    # 1. headers only: nothing is allocated for a frame before its declared size is known and bounded
    declared = [frame_declared_size(info, frames[k], dict_id=dict_id, limits=limits, sink=sink,
                                    where=frame_where(k), frame=frame_name(k), clause="V2-FRAME-2")
                for k in range(n)]
    known = [d for d in declared if d is not None]
    if base + sum(known) > raw_size or (len(known) == n and base + sum(known) != raw_size):
        sink.add("ATL403", f"the frame table ({base} bytes) and the sizes its {len(known)} readable frames declare "
                           f"({sum(known)} bytes) make {base + sum(known)} bytes, the index raw_size is {raw_size}",
                 **where, clause="V2-FRAME-3")
    # 2. decode within the budget raw_size (and the limit) grant: a frame that does not fit is not decoded
    budget = raw_size - base
    cap = limits.max_block_raw_size - base
    spent = pos = 0
    pieces: list[bytes] = []
    slices: list[tuple[int, int, int]] = []
    for k, size in enumerate(declared):
        if size is None or spent + size > budget:
            continue  # reported: the frame's own finding, or ATL403 above (the declared sizes exceed raw_size)
        if spent + size > cap:
            sink.add("ATL901", f"the example frames declare more than the limit of {limits.max_block_raw_size} "
                               "bytes in total (the rest refused before allocating)", **frame_where(k))
            break
        piece = decode_frame(info, frames[k], size, dctx, sink=sink, where=frame_where(k), frame=frame_name(k),
                             clause="V2-FRAME-2")
        spent += size
        if piece is None:
            continue
        stats.decoded_bytes += len(piece)
        slices.append((k, pos, pos + len(piece)))
        pieces.append(piece)
        pos += len(piece)
    if not pieces:
        return

    def locate(k: int, at: int | None) -> tuple[int, str]:
        return offset + base + offs[k], f"position {k} of the block" + (
            "" if at is None else f", decoded offset {at} of its frame")

    _scan_examples(task, sink, b"".join(pieces), slices, shown=shown, b=b, block_size=block_size, locate=locate,
                   typed_examples=typed_examples)


def _scan_examples(task: ShardTask, sink: Sink, buf: bytes, slices: list[tuple[int, int, int]], *, shown: str,
                   b: int, block_size: int | None, locate: Any, typed_examples: bool = False) -> None:
    """Scan the example pickles ``buf[start:end]`` of block ``b`` for every (position, start, end) of ``slices``
    (``typed_examples``: decode each typed example, spec 3.12).

    ``locate(position, at)`` gives the data.bin offset to report and the message's location suffix, for an
    offset ``at`` inside the pickle (None: the example as a whole).
    """
    first = b * (block_size or 0)
    if typed_examples:
        for k, start, end in slices:
            for found in scan_typed(buf[start:end])[1]:
                at, where_text = locate(k, found.offset)
                sink.add(found.id, f"{found.message} ({where_text})", path=shown, block=b,
                         example=first + k if block_size else None, position=k, offset=at)
        return
    limits = task.scan_limits
    for k, start, end in slices:
        result = scan_pickle(buf, limits=limits, start=start, stop=end, allowed=task.allowed)  # in place, no copy
        clean = not result.issues and result.end == end and result.protocol == V2_PICKLE_PROTOCOL
        if clean and not result.allowed:
            continue  # the common case: a clean protocol-5 pickle of plain data filling its slice
        example = first + k if block_size else None
        at_example, suffix = locate(k, None)  # only when something is noted (it formats a message)
        if result.allowed:
            sink.note_allowed(result.allowed, path=shown, block=b, example=example, position=k, offset=at_example)
        if clean:
            continue
        for issue in result.issues:
            at, where_text = locate(k, (issue.offset or start) - start)
            sink.add(issue.id, f"{issue.message} ({where_text})", path=shown, block=b, example=example, position=k,
                     offset=at)
        if result.end is not None and result.end != end:
            at, where_text = locate(k, result.end - start)
            sink.add("ATL414", f"example pickle ends at STOP {end - result.end} bytes before the end of its "
                               f"slice ({where_text})", path=shown, block=b, example=example, position=k,
                     offset=at, clause="V2-BLOCK-4")
        if result.end is not None and result.protocol != V2_PICKLE_PROTOCOL:
            sink.add("ATL415", f"example pickle uses protocol {protocol_text(result.protocol)}, writers must use "
                               f"{V2_PICKLE_PROTOCOL} ({suffix})", path=shown, block=b, example=example,
                     position=k, offset=at_example)


def check_root(root: Path, sink: Sink, limits: Any) -> tuple[dict[str, Any], list[str], dict[str, Any]]:
    """Root meta.json (checksum, schema), shared dictionary; (doc, listed shard names, expectations for shards)."""
    doc, _text = load_checksummed(root, META_FILE, sink, limits=limits, schema="v2-root",
                                  mismatch_id="ATL500", schema_id="ATL202")
    doc = doc if isinstance(doc, dict) else {}
    shards_value = doc.get("shards")
    shards = shards_value if isinstance(shards_value, list) else []
    if len(shards) > limits.max_shards:
        sink.add("ATL900", f"{len(shards)} shards exceed max_shards {limits.max_shards}", path=META_FILE)
        shards = shards[:limits.max_shards]
    listed: list[str] = []
    for k, s in enumerate(shards):
        shard_name = s.get("name") if isinstance(s, dict) else None
        listed.append(shard_name if isinstance(shard_name, str) else f"<shards[{k}]>")
    mode = doc.get("dictionary") if doc.get("dictionary") in ("none", "shared", "shard") else None
    expect: dict[str, Any] = {
        "codec": doc.get("codec") if doc.get("codec") in ("none", "zstd", "lz4") else None,
        "compression_level": doc.get("compression_level") if is_int(doc.get("compression_level")) else None,
        "block_size": doc.get("block_size") if is_int(doc.get("block_size")) else None,
        "dictionary": mode,
        "framing": framing_of(doc),
        "encoding": doc.get(typed.ENCODING_MEMBER, typed.PICKLE),
    }
    check_framing_codec(expect["framing"], expect["codec"], sink, shown=META_FILE)
    shared = doc.get("shared_dictionary")
    if mode == "shared":
        if not isinstance(shared, dict):
            sink.add("ATL212", "dictionary mode is 'shared' but shared_dictionary is null", path=META_FILE)
        result = check_dictionary(root, DICT_FILE, shared, sink, limits=limits, algorithm=None)
        if result is not None:
            expect["shared_dictionary"] = result
            expect["shared_dict_id"] = result[1]
        elif isinstance(shared, dict) and is_int(shared.get("dict_id")):
            expect["shared_dict_id"] = shared["dict_id"]
    elif isinstance(shared, dict):
        sink.add("ATL212", f"shared_dictionary is set but the dictionary mode is {mode!r}", path=META_FILE)
    return doc, listed, expect


def cross_shard(doc: dict[str, Any], results: list[ShardResult]) -> list[Finding]:
    """Root totals (V2-META-5) and shard shapes (V2-META-6)."""
    sink = Sink()
    counts: list[int | None] = [r.summary.get("num_examples") for r in results]
    raws: list[int | None] = [r.summary.get("max_block_raw_size") for r in results]
    known_counts = [c for c in counts if c is not None]
    known_raws = [m for m in raws if m is not None]
    if results and len(known_counts) == len(counts) and is_int(doc.get("num_examples")) \
            and doc["num_examples"] != sum(known_counts):
        sink.add("ATL209", f"root num_examples is {doc['num_examples']}, the shards hold {sum(known_counts)}",
                 path=META_FILE)
    if results and len(known_raws) == len(raws) and is_int(doc.get("max_block_raw_size")) \
            and doc["max_block_raw_size"] != max(known_raws):
        sink.add("ATL209", f"root max_block_raw_size is {doc['max_block_raw_size']}, the shards' maximum is "
                           f"{max(known_raws)}", path=META_FILE)
    shard_size = doc.get("shard_size")
    if is_int(shard_size):
        for r, c in zip(results, counts, strict=True):
            if c is not None and c > shard_size:
                sink.add("ATL205", f"shard holds {c} examples, more than shard_size {shard_size}",
                         path=f"{r.name}/{META_FILE}", shard=r.name, clause="V2-META-6")
    return sink.close()

