"""The findings catalog: every check the validator makes, with a stable id.

Ids never change meaning once published (CI pipelines filter on them). Ranges:
ATL1xx layout, ATL2xx metadata, ATL3xx index, ATL4xx blocks/codecs/dictionaries,
ATL5xx checksums, ATL6xx pickle security, ATL9xx limits and internal errors.
``validator/FINDINGS.md`` is generated from this table (``--catalog-markdown``).
"""

from __future__ import annotations

from dataclasses import dataclass

ERROR = "error"
WARNING = "warning"
INFO = "info"
SEVERITIES = (ERROR, WARNING, INFO)


@dataclass(frozen=True)
class CatalogEntry:
    """One kind of finding: id, default severity, one-line description, clause(s) of spec/FORMAT.md."""

    id: str
    severity: str
    title: str
    clause: str


_ENTRIES: tuple[CatalogEntry, ...] = (
    # -- layout ------------------------------------------------------------------------
    CatalogEntry("ATL100", ERROR, "no root meta.json: not a complete dataset (a write never finished)",
                 "V1-LAYOUT-1, V2-STATE-1"),
    CatalogEntry("ATL101", ERROR, "a shard required by the metadata is missing", "V1-META-3, V2-META-5, V2-READ-2"),
    CatalogEntry("ATL102", ERROR, "shard folder names are not contiguous or not of one width",
                 "V1-LAYOUT-2, V2-LAYOUT-1"),
    CatalogEntry("ATL103", ERROR, "a required file is missing (meta.json, index, data.bin, dictionary)",
                 "V1-LAYOUT-3, V1-LAYOUT-4, V2-LAYOUT-2, V2-LAYOUT-3"),
    CatalogEntry("ATL104", ERROR, "a file that must be absent is present (dictionary, data.bin of an empty v1 shard)",
                 "V1-LAYOUT-3, V1-LAYOUT-4, V2-LAYOUT-2, V2-LAYOUT-3"),
    CatalogEntry("ATL105", WARNING, "unexpected file or folder in the dataset", "V1-LAYOUT-5, V2-LAYOUT-4"),
    CatalogEntry("ATL106", WARNING, "leftover .atlas-tmp-* entry of an interrupted write or append",
                 "V2-LAYOUT-4, V2-STATE-1"),
    CatalogEntry("ATL107", WARNING, "shard folder not listed in the root meta.json (interrupted append)",
                 "V2-LAYOUT-4, V2-STATE-1"),
    CatalogEntry("ATL109", ERROR, "the dataset path does not exist or cannot be read", "GEN-4"),
    CatalogEntry("ATL110", ERROR, "a file or folder of the dataset cannot be read (I/O error)", "GEN-4"),
    CatalogEntry("ATL111", ERROR, "a dataset file or shard folder is a symlink, FIFO, socket, device or the wrong kind "
                 "of entry (not followed, not opened)", "FILE-1, FILE-2"),
    # -- metadata ----------------------------------------------------------------------
    CatalogEntry("ATL200", ERROR, "meta.json is not strict UTF-8 JSON (syntax, duplicate keys, NaN)",
                 "V1-META-1, V1-META-2, V2-META-1"),
    CatalogEntry("ATL201", ERROR, "unknown or unsupported format version (the integer 1 or 2 is required)",
                 "GEN-5, V2-COMPAT-1"),
    CatalogEntry("ATL202", ERROR, "root meta.json does not match its JSON Schema", "V1-META-1, V2-META-3"),
    CatalogEntry("ATL203", ERROR, "shard meta.json does not match its JSON Schema", "V1-META-2, V2-META-4"),
    CatalogEntry("ATL204", ERROR, "root shard_sizes disagrees with the shard folders or their stored_examples",
                 "V1-META-3"),
    CatalogEntry("ATL205", WARNING, "shard sizes are not 'full shards except the last'", "V1-META-4, V2-META-6"),
    CatalogEntry("ATL206", ERROR, "shard codec/strategy/level/block size/dictionary mode/framing inconsistent with "
                 "the root", "V1-META-5, V2-META-5, V2-DICT-2, V2-FRAME-1"),
    CatalogEntry("ATL207", ERROR, "root shards[] entry disagrees with the shard (name, counts, sizes, dictionary)",
                 "V2-META-5"),
    CatalogEntry("ATL208", ERROR, "num_blocks is not ceil(num_examples / block_size)", "V2-META-5, V2-BLOCK-1"),
    CatalogEntry("ATL209", ERROR, "root num_examples or max_block_raw_size disagrees with the shards", "V2-META-5"),
    CatalogEntry("ATL210", INFO, "unknown JSON member (ignored by readers)", "V2-COMPAT-2"),
    CatalogEntry("ATL211", ERROR, "shard meta.json names another shard than its folder", "V2-META-4"),
    CatalogEntry("ATL212", ERROR, "dictionary metadata inconsistent (dict_id, dictionary_file, shared_dictionary)",
                 "V2-META-4, V2-DICT-1"),
    CatalogEntry("ATL213", ERROR, "version 2 meta.json does not start with its checksum line", "V2-META-2"),
    CatalogEntry("ATL214", ERROR, "framing 'example' with codec 'none' (there is no frame)", "V2-FRAME-1"),
    # -- index -------------------------------------------------------------------------
    CatalogEntry("ATL300", ERROR, "index file cannot be parsed (magic, header, truncated or extra bytes)",
                 "V1-INDEX-1, V2-INDEX-1"),
    CatalogEntry("ATL301", ERROR, "index dtype or shape not allowed (unsigned little-endian, 1-D, C order)",
                 "V1-INDEX-1, V1-INDEX-2"),
    CatalogEntry("ATL302", WARNING, "index dtype is not the narrowest that holds the last entry", "V1-INDEX-2"),
    CatalogEntry("ATL303", ERROR, "index entry count differs from the block count", "V1-INDEX-3, V2-INDEX-2"),
    CatalogEntry("ATL304", ERROR, "first block offset is not 0", "V1-INDEX-3, V2-INDEX-4"),
    CatalogEntry("ATL305", ERROR, "block offsets are not strictly increasing / contiguous", "V1-INDEX-3, V2-INDEX-4"),
    CatalogEntry("ATL306", ERROR, "the blocks do not end at the size of data.bin", "V1-INDEX-3, V2-INDEX-4, V2-META-5"),
    CatalogEntry("ATL307", ERROR, "index header disagrees with the shard meta.json (fields, flags framing bits vs "
                 "framing, both framing bits set)", "V2-INDEX-2, V2-FRAME-1"),
    CatalogEntry("ATL308", ERROR, "index file size is not header_size + block_count * entry_size", "V2-INDEX-2"),
    CatalogEntry("ATL309", ERROR, "index header field invalid (version, sizes, unknown codec/dictionary/checksum id, "
                 "undefined flag bits, reserved bits)", "V2-INDEX-1, V2-COMPAT-3"),
    CatalogEntry("ATL310", ERROR, "index entry invalid (empty block, raw_size above the shard maximum, "
                 "codec none with raw_size != stored_size)", "V2-INDEX-4"),
    CatalogEntry("ATL311", INFO, "index header or entries carry extension bytes (header_size > 64 or entry_size > 24)",
                 "V2-COMPAT-4"),
    # -- blocks, codecs, dictionaries ----------------------------------------------------
    CatalogEntry("ATL400", ERROR, "block or example frame cannot be decoded by its codec (not a frame, corrupt, "
                 "truncated, another size than declared)", "V1-BLOCK-3, V2-CODEC-3, V2-FRAME-2, V2-FRAME-3"),
    CatalogEntry("ATL401", ERROR, "compressed frame does not declare its content size",
                 "LIM-2, V1-BLOCK-3, V2-FRAME-2"),
    CatalogEntry("ATL403", ERROR, "frame's declared size differs from the index raw_size (framing example: frame table "
                 "+ the frames' declared sizes)", "V2-CODEC-3, V2-FRAME-3"),
    CatalogEntry("ATL404", ERROR, "bytes follow the compressed frame inside the block (or the example frame's slice)",
                 "V1-BLOCK-4, V2-CODEC-3, V2-FRAME-2"),
    CatalogEntry("ATL406", WARNING, "zstd frame carries a content checksum (writers must not write one)",
                 "V1-BLOCK-3, V2-CODEC-1, V2-FRAME-2"),
    CatalogEntry("ATL407", ERROR, "frame dictionary id does not match the dictionary the shard uses",
                 "V1-BLOCK-3, V2-DICT-1, V2-FRAME-2"),
    CatalogEntry("ATL408", ERROR, "zstd_dict.bin is not a trained zstd dictionary", "V1-DICT-1, V2-DICT-1"),
    CatalogEntry("ATL409", ERROR, "dictionary id differs between dictionary file, metadata and index header",
                 "V2-DICT-1"),
    CatalogEntry("ATL410", ERROR, "version 2 block table invalid (offsets, sizes): the decoded block's example "
                 "table, or the stored frame table of framing example", "V2-BLOCK-3, V2-FRAME-2"),
    CatalogEntry("ATL411", ERROR, "block holds the wrong number of examples",
                 "V1-BLOCK-1, V1-BLOCK-2, V2-BLOCK-1, V2-FRAME-5"),
    CatalogEntry("ATL412", ERROR, "block pickle's value is not a list (version 1, version 2 framing list)",
                 "V1-BLOCK-2, V2-FRAME-5, PICKLE-4"),
    CatalogEntry("ATL413", ERROR, "malformed or truncated pickle", "V1-BLOCK-2, V2-BLOCK-4, V2-FRAME-5, PICKLE-1"),
    CatalogEntry("ATL414", ERROR, "bytes after the pickle's STOP opcode", "V1-BLOCK-4, V2-BLOCK-4, V2-FRAME-5"),
    CatalogEntry("ATL415", WARNING, "version 2 example pickle (framing list: block pickle) does not use protocol 5",
                 "V2-BLOCK-4, V2-FRAME-5"),
    # -- checksums ------------------------------------------------------------------------
    CatalogEntry("ATL500", ERROR, "root meta.json checksum mismatch", "V2-META-2, V2-CHK-2"),
    CatalogEntry("ATL501", ERROR, "shard meta.json checksum mismatch", "V2-META-2, V2-CHK-2"),
    CatalogEntry("ATL502", ERROR, "root meta_checksum differs from the shard meta.json checksum",
                 "V2-META-5, V2-CHK-2"),
    CatalogEntry("ATL503", ERROR, "index.bin checksum mismatch", "V2-INDEX-3, V2-CHK-2"),
    CatalogEntry("ATL504", ERROR, "shard meta.json index checksum or size differs from index.bin",
                 "V2-CHK-2, V2-META-4"),
    CatalogEntry("ATL505", ERROR, "dictionary checksum or size mismatch", "V2-CHK-2, V2-DICT-1"),
    CatalogEntry("ATL506", ERROR, "block checksum mismatch", "V2-CHK-2, V2-BLOCK-2"),
    CatalogEntry("ATL507", ERROR, "checksum text malformed or of an unknown algorithm", "V2-CHK-1, V2-COMPAT-3"),
    CatalogEntry("ATL590", INFO, "version 1 has no checksums: some corruption is not verifiable",
                 "DETECT-2, V1-READ-4"),
    # -- pickle security --------------------------------------------------------------------
    CatalogEntry("ATL600", ERROR, "pickle references a global outside the pickle policy", "PICKLE-5"),
    CatalogEntry("ATL601", ERROR, "pickle references a known-dangerous global (code execution)", "PICKLE-5"),
    CatalogEntry("ATL602", ERROR, "pickle uses a persistent id (PERSID/BINPERSID)", "PICKLE-3"),
    CatalogEntry("ATL603", ERROR, "a global that cannot be named statically (STACK_GLOBAL of non-strings, the "
                 "extension registry)", "PICKLE-2, PICKLE-5"),
    CatalogEntry("ATL604", ERROR, "the torch stream of _load_from_bytes is not what torch writes", "PICKLE-12"),
    CatalogEntry("ATL605", INFO, "pickles reference a global of the pickle policy (one note per global and dataset)",
                 "PICKLE-5"),
    CatalogEntry("ATL606", ERROR, "pickle uses an opcode outside the safe subset", "PICKLE-2"),
    CatalogEntry("ATL607", ERROR, "a call (REDUCE, NEWOBJ) with arguments the pickle policy does not admit",
                 "PICKLE-6"),
    CatalogEntry("ATL608", ERROR, "BUILD on a target or with a state the pickle policy does not admit", "PICKLE-7"),
    CatalogEntry("ATL609", ERROR, "APPEND, SETITEM or ADDITEMS on an object that is not a container of that kind",
                 "PICKLE-8"),
    CatalogEntry("ATL610", ERROR, "a dict key or set member the pickle policy does not admit", "PICKLE-9"),
    CatalogEntry("ATL611", ERROR, "a memo index not as assigned, or never stored", "PICKLE-10"),
    # -- limits and internal ----------------------------------------------------------------
    CatalogEntry("ATL900", ERROR, "a declared size or count exceeds the format limits", "LIM-1, GEN-4"),
    CatalogEntry("ATL901", ERROR, "frame declares a content size above the limit (refused before decoding)", "LIM-2"),
    CatalogEntry("ATL902", ERROR, "a pickle exceeds a limit of the pickle policy (size, depth, items, integers)",
                 "PICKLE-11, LIM-3"),
    CatalogEntry("ATL990", ERROR, "internal error of the validator while checking this location", "GEN-4"),
)

CATALOG: dict[str, CatalogEntry] = {entry.id: entry for entry in _ENTRIES}
if len(CATALOG) != len(_ENTRIES):
    raise ImportError("duplicate finding id in the catalog")


def entry(finding_id: str) -> CatalogEntry:
    """The catalog entry of an id (KeyError for an id not in the catalog: a programming error)."""
    return CATALOG[finding_id]


def markdown() -> str:
    """validator/FINDINGS.md, generated from the catalog."""
    lines = [
        "# atlas-validate findings",
        "",
        "Generated from `validator/atlas_validator/catalog.py` by",
        "`python -m atlas_validator --catalog-markdown > validator/FINDINGS.md`; do not edit by hand",
        "(a test fails when this file is stale). Ids are stable. Clauses refer to `spec/FORMAT.md`.",
        "",
        "| id | severity | finding | clauses |",
        "|---|---|---|---|",
    ]
    for e in _ENTRIES:
        lines.append(f"| {e.id} | {e.severity} | {e.title.replace('|', '/')} | {e.clause} |")
    lines.append("")
    lines.append("`--strict` turns warnings into failures (exit code 1); info findings never fail.")
    lines.append("")
    return "\n".join(lines)
