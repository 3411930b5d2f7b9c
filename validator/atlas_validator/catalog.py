"""The findings catalog: every check the validator makes, with a stable id.

Ids never change meaning once published (CI pipelines filter on them). Ranges:
ATL1xx layout, ATL2xx metadata, ATL3xx index, ATL4xx blocks/codecs/dictionaries,
ATL5xx checksums, ATL6xx pickle security, ATL7xx typed examples, ATL9xx limits and internal errors.
``validator/FINDINGS.md`` is generated from this table (``--catalog-markdown``).

Each entry also says what the original reader (torch_atlas_ds 0.1.0, ``atlas.py``) does
with a version 1 dataset that has the defect, because version 1 verdicts follow it: what
it cannot open or reads wrongly is an error, what it reads correctly at most a warning.
"""

from __future__ import annotations

from dataclasses import dataclass

ERROR = "error"
WARNING = "warning"
INFO = "info"
SEVERITIES = (ERROR, WARNING, INFO)

# What the original reader does with a version 1 dataset that has the defect.
CANNOT_OPEN = "cannot open"  # it raises opening the dataset or reading an example
WRONG_DATA = "reads wrong data"  # it returns other values (or fewer examples) than were written
READS = "reads correctly"  # it returns every example as written
BY_DESIGN = "refused by design"  # it would read it; a clause of FORMAT.md refuses it on purpose (safety, ambiguity)
NOT_CHECKED = "not checked"  # the validator could not check the location, so it cannot pass it
V2_ONLY = "v2 only"  # never reported for a version 1 dataset
# The version 1 severities each verdict allows: the line issue 16 draws.
V1_SEVERITIES: dict[str, tuple[str, ...]] = {
    CANNOT_OPEN: (ERROR,), WRONG_DATA: (ERROR,), BY_DESIGN: (ERROR,), NOT_CHECKED: (ERROR,),
    READS: (WARNING, INFO), V2_ONLY: SEVERITIES,
}


@dataclass(frozen=True)
class CatalogEntry:
    """One kind of finding: id, default severity, one-line description, clause(s) of spec/FORMAT.md, and
    what the original reader does with it in version 1 (``v1``, ``why``); ``v1_severity`` when version 1
    reports it at another severity than version 2."""

    id: str
    severity: str
    title: str
    clause: str
    v1: str
    why: str
    v1_severity: str | None = None

    def severity_for(self, version: int | None) -> str:
        """The severity of this finding in a dataset of ``version``."""
        return self.v1_severity if version == 1 and self.v1_severity else self.severity


_O = "atlas.py"  # the original reader's module; line numbers are of torch_atlas_ds 0.1.0
_POLICY_WHY = ("the original unpickles the block ({o}:234) and so runs whatever the pickle names; the pickle "
               "policy refuses it ({c}); allow a global with allowed_globals").format
_V2 = "version 2 structure; version 1 has no such thing"
_TYPED = "typed examples are a version 2 encoding; version 1 examples are pickles"
_NO_CHECKSUMS = "version 1 has no checksums (ATL590)"

_ENTRIES: tuple[CatalogEntry, ...] = (
    # -- layout ------------------------------------------------------------------------
    CatalogEntry("ATL100", ERROR, "no root meta.json: not a complete dataset (a write never finished)",
                 "V1-LAYOUT-1, V2-STATE-1", CANNOT_OPEN,
                 f"the original reads the root meta.json first ({_O}:279): FileNotFoundError"),
    CatalogEntry("ATL101", ERROR, "a shard required by the metadata is missing", "V1-META-3, V2-META-5, V2-READ-2",
                 WRONG_DATA, f"the original reads the folders present ({_O}:284) and never shard_sizes: the "
                 "missing shard's examples are gone and every later example is renumbered"),
    CatalogEntry("ATL102", ERROR, "shard folder names are not contiguous or their text order is not their number "
                 "order (version 1), or a listed name is not the expected one (version 2)",
                 "V1-LAYOUT-2, V2-LAYOUT-1", WRONG_DATA,
                 f"the original orders shard folders by name as text ({_O}:284): a gap, or names of several "
                 "widths that sort out of numeric order, put examples at other global indices"),
    CatalogEntry("ATL103", ERROR, "a required file is missing (meta.json, index, data.bin, dictionary)",
                 "V1-LAYOUT-3, V1-LAYOUT-4, V1-META-5, V2-LAYOUT-2, V2-LAYOUT-3", CANNOT_OPEN,
                 f"a shard meta.json is read at open ({_O}:160), the root dictionary of strategy 2 too (:289); "
                 "index.npy, data.bin and a shard's dictionary at the first read of the shard (:173-177); a "
                 "strategy-2 shard under a root that is not 2 gets no dictionary at all (:180)"),
    CatalogEntry("ATL104", ERROR, "a file that must be absent is present (version 2: a dictionary of another "
                 "dictionary mode)", "V2-LAYOUT-2, V2-LAYOUT-3", V2_ONLY,
                 f"in version 1 such files (a dictionary the strategy does not use, data.bin of a shard without "
                 f"blocks) are never opened by the original ({_O}:173-184, :288) and are ATL105"),
    CatalogEntry("ATL105", WARNING, "unexpected file or folder in the dataset", "V1-LAYOUT-5, V2-LAYOUT-4", READS,
                 f"the original opens only the files the strategy names ({_O}:160-184, :289); a sub-folder of a "
                 "version 1 root is not this finding but ATL112"),
    CatalogEntry("ATL106", WARNING, "leftover .atlas-tmp-* entry of an interrupted write or append",
                 "V2-LAYOUT-4, V2-STATE-1", READS,
                 "a leftover file is never opened; a leftover folder in a version 1 root is ATL112 (the original "
                 "opens it as a shard)"),
    CatalogEntry("ATL107", WARNING, "shard folder not listed in the root meta.json (interrupted append)",
                 "V2-LAYOUT-4, V2-STATE-1", V2_ONLY, "version 1 lists no shards: every sub-folder is one"),
    CatalogEntry("ATL109", ERROR, "the dataset path does not exist or cannot be read", "GEN-4", CANNOT_OPEN,
                 "nothing can be read from it"),
    CatalogEntry("ATL110", ERROR, "a file or folder of the dataset cannot be read (I/O error)", "GEN-4", CANNOT_OPEN,
                 "the original's read of the same file fails the same way"),
    CatalogEntry("ATL111", ERROR, "a dataset file or shard folder is a symlink, FIFO, socket, device or the wrong kind "
                 "of entry (not followed, not opened)", "FILE-1, FILE-2", BY_DESIGN,
                 "the original follows symlinks and opens FIFOs and devices (it may block, or read files from "
                 "elsewhere); FILE-1 and FILE-2 refuse them for safety"),
    CatalogEntry("ATL112", ERROR, "a sub-folder of a version 1 root is not a shard folder (the original opens every "
                 "sub-folder as a shard)", "V1-LAYOUT-5", CANNOT_OPEN,
                 f"the original makes a shard of every sub-folder ({_O}:284, :291): one without a shard's meta.json "
                 "is a FileNotFoundError at open"),
    CatalogEntry("ATL113", WARNING, "version 1 shard folder names are not padded as the writer pads them, but their "
                 "text order is their number order", "V1-LAYOUT-2", READS,
                 f"the original sorts the names as text ({_O}:284), which here is the shards' order"),
    # -- metadata ----------------------------------------------------------------------
    CatalogEntry("ATL200", ERROR, "meta.json is not strict UTF-8 JSON (syntax, duplicate keys, NaN)",
                 "V1-META-1, V1-META-2, V2-META-1", BY_DESIGN,
                 f"what Python's json cannot parse fails at open ({_O}:160, :279); duplicate keys and NaN, which it "
                 "accepts, are refused on purpose (GEN-4): JSON parsers disagree on them (which duplicate wins)"),
    CatalogEntry("ATL201", ERROR, "unknown or unsupported format version (the integer 1 or 2 is required)",
                 "GEN-5, V2-COMPAT-1", BY_DESIGN,
                 f"a version that is not 1 is refused ({_O}:281); true and 1.0, equal to 1 in Python, pass there and "
                 "are refused on purpose (GEN-5, V1-READ-3): they are not the integer 1"),
    CatalogEntry("ATL202", ERROR, "root meta.json does not match its JSON Schema", "V1-META-1, V2-META-3",
                 BY_DESIGN, "a root value outside the schema the original reads through: it never reads "
                 f"shard_sizes, and the strategy only decides whether it loads the root dictionary ({_O}:288); "
                 "V1-META-1 and V1-READ-3 refuse such values. Missing or unknown keys are ATL215"),
    CatalogEntry("ATL203", ERROR, "shard meta.json does not match its JSON Schema", "V1-META-2, V2-META-4",
                 BY_DESIGN, f"a shard value outside the schema: some the original cannot use (a version other than "
                 f"1 is refused at {_O}:162, a block_size of 0 divides by zero at :219), others it reads (an "
                 "informational key of another type, an unknown strategy it reads as uncompressed, :176-184); "
                 "V1-META-2 and V1-READ-3 refuse them all. Missing or unknown keys are ATL215"),
    CatalogEntry("ATL204", WARNING, "root shard_sizes disagrees with the shard folders or their stored_examples",
                 "V1-META-3", READS,
                 f"the original never reads shard_sizes: lengths come from each shard's meta.json ({_O}:301); "
                 "shards missing from the folders are ATL101"),
    CatalogEntry("ATL205", WARNING, "shard sizes are not 'full shards except the last'", "V1-META-4, V2-META-6",
                 READS, f"every shard is read by its own stored_examples ({_O}:301-302)"),
    CatalogEntry("ATL206", ERROR, "shard codec/strategy/level/block size/dictionary mode/framing inconsistent with "
                 "the root", "V1-META-5, V2-META-5, V2-DICT-2, V2-FRAME-1", READS,
                 f"the original decodes each shard by its own strategy ({_O}:176-184); a strategy-2 shard under a "
                 "root that is not 2, which it cannot read, is reported as ATL103", v1_severity=WARNING),
    CatalogEntry("ATL207", ERROR, "root shards[] entry disagrees with the shard (name, counts, sizes, dictionary)",
                 "V2-META-5", V2_ONLY, _V2),
    CatalogEntry("ATL208", ERROR, "num_blocks is not ceil(num_examples / block_size)", "V2-META-5, V2-BLOCK-1",
                 V2_ONLY, _V2),
    CatalogEntry("ATL209", ERROR, "root num_examples or max_block_raw_size disagrees with the shards", "V2-META-5",
                 V2_ONLY, _V2),
    CatalogEntry("ATL210", INFO, "unknown JSON member (ignored by readers)", "V2-COMPAT-2", V2_ONLY,
                 "the original fails on an unknown key of a version 1 meta.json: ATL215"),
    CatalogEntry("ATL211", ERROR, "shard meta.json names another shard than its folder", "V2-META-4", V2_ONLY, _V2),
    CatalogEntry("ATL212", ERROR, "dictionary metadata inconsistent (dict_id, dictionary_file, shared_dictionary)",
                 "V2-META-4, V2-DICT-1", V2_ONLY, _V2),
    CatalogEntry("ATL213", ERROR, "version 2 meta.json does not start with its checksum line", "V2-META-2",
                 V2_ONLY, _NO_CHECKSUMS),
    CatalogEntry("ATL214", ERROR, "framing 'example' with codec 'none' (there is no frame)", "V2-FRAME-1",
                 V2_ONLY, _V2),
    CatalogEntry("ATL215", ERROR, "version 1 meta.json keys are not the original's (a missing or an unknown key)",
                 "V1-META-1, V1-META-2", CANNOT_OPEN,
                 f"the original unpacks meta.json into a NamedTuple ({_O}:160, :279): a missing or unknown key is a "
                 "TypeError at open"),
    CatalogEntry("ATL216", ERROR, "framing grouped: the shard's pickle_preamble is not a preamble (canonical base64, "
                 "PROTO 3 ... POP EMPTY_LIST MARK, P + APPENDS STOP a well-formed pickle of [], memo PUTs 0..p-1 "
                 "once each)", "V2-FRAME-6, V2-FRAME-7", V2_ONLY, _V2),
    # -- index -------------------------------------------------------------------------
    CatalogEntry("ATL300", ERROR, "index file cannot be parsed (magic, header, truncated or extra bytes)",
                 "V1-INDEX-1, V2-INDEX-1", CANNOT_OPEN,
                 f"np.load refuses it or cannot map the declared array ({_O}:173); what numpy reads although the "
                 "writer would not write it is ATL312"),
    CatalogEntry("ATL301", ERROR, "index dtype or shape not allowed (an integer array of one dimension)",
                 "V1-INDEX-1, V1-INDEX-2", CANNOT_OPEN,
                 f"seek() refuses an offset that is not an integer and the rows of an array of more dimensions "
                 f"({_O}:225-228); numpy refuses an object array"),
    CatalogEntry("ATL302", WARNING, "index dtype is not the narrowest that holds the last entry", "V1-INDEX-2",
                 READS, "any unsigned width holds the same offsets"),
    CatalogEntry("ATL303", ERROR, "index entry count differs from the block count", "V1-INDEX-3, V2-INDEX-2",
                 WRONG_DATA, f"the shard's meta.json and index disagree on its blocks: the original fails past the "
                 f"index's end or silently leaves out the blocks past stored_examples ({_O}:216-225)"),
    CatalogEntry("ATL304", ERROR, "first block offset is not 0", "V2-INDEX-4", V2_ONLY,
                 "in version 1, bytes before the first offset are never read by the original: ATL313"),
    CatalogEntry("ATL305", ERROR, "block offsets are not strictly increasing / contiguous", "V1-INDEX-3, V2-INDEX-4",
                 WRONG_DATA, f"an empty block fails to decode, a negative length reads to the end of data.bin "
                 f"({_O}:225-234): the block decodes as another block's examples, or fails"),
    CatalogEntry("ATL306", ERROR, "the blocks do not end at the size of data.bin (version 1: they end after it)",
                 "V1-INDEX-3, V2-INDEX-4, V2-META-5", CANNOT_OPEN,
                 f"the last block is cut short and fails to decode ({_O}:229-234); bytes after the last block are "
                 "ATL313"),
    CatalogEntry("ATL307", ERROR, "index header disagrees with the shard meta.json (fields, flags framing bits vs "
                 "framing, both framing bits set, group size bits vs group_size or on a framing other than "
                 "grouped)", "V2-INDEX-2, V2-FRAME-1", V2_ONLY, _V2),
    CatalogEntry("ATL308", ERROR, "index file size is not header_size + block_count * entry_size", "V2-INDEX-2",
                 V2_ONLY, _V2),
    CatalogEntry("ATL309", ERROR, "index header field invalid (version, sizes, unknown codec/dictionary/checksum id, "
                 "undefined flag bits, reserved bits)", "V2-INDEX-1, V2-COMPAT-3", V2_ONLY, _V2),
    CatalogEntry("ATL310", ERROR, "index entry invalid (empty block, raw_size above the shard maximum, "
                 "codec none with raw_size != stored_size)", "V2-INDEX-4", V2_ONLY, _V2),
    CatalogEntry("ATL311", INFO, "index header or entries carry extension bytes (header_size > 64 or entry_size > 24)",
                 "V2-COMPAT-4", V2_ONLY, _V2),
    CatalogEntry("ATL312", WARNING, "version 1 index.npy is not as the writer writes it, but numpy reads the same "
                 "offsets from it (byte order, signed type, fortran_order, npy format 2.0/3.0, bytes after the "
                 "array)", "V1-INDEX-1, V1-INDEX-2", READS,
                 f"np.load ({_O}:173) reads any of these, and seek()/read() take any integer ({_O}:225-229)"),
    CatalogEntry("ATL313", WARNING, "version 1 data.bin holds bytes outside every block (before the first offset or "
                 "after the last)", "V1-INDEX-3", READS,
                 f"the original reads only the bytes between consecutive offsets ({_O}:225-229)"),
    # -- blocks, codecs, dictionaries ----------------------------------------------------
    CatalogEntry("ATL400", ERROR, "block or example frame cannot be decoded by its codec (not a frame, corrupt, "
                 "truncated, another size than declared)", "V1-BLOCK-3, V2-CODEC-3, V2-FRAME-2, V2-FRAME-3",
                 CANNOT_OPEN, f"zstd raises on the block ({_O}:232)"),
    CatalogEntry("ATL401", ERROR, "compressed frame does not declare its content size",
                 "LIM-2, V1-BLOCK-3, V2-FRAME-2", CANNOT_OPEN,
                 f"python-zstandard's decompress() refuses a frame without content size ({_O}:232)"),
    CatalogEntry("ATL403", ERROR, "frame's declared size differs from the index raw_size (framing example: frame table "
                 "+ the frames' declared sizes)", "V2-CODEC-3, V2-FRAME-3", V2_ONLY, _V2),
    CatalogEntry("ATL404", ERROR, "bytes follow the compressed frame inside the block (or the example frame's slice)",
                 "V1-BLOCK-4, V2-CODEC-3, V2-FRAME-2", READS,
                 f"python-zstandard decodes the first frame and ignores what follows ({_O}:232)",
                 v1_severity=WARNING),
    CatalogEntry("ATL406", WARNING, "zstd frame carries a content checksum (writers must not write one)",
                 "V1-BLOCK-3, V2-CODEC-1, V2-FRAME-2", READS, "zstd verifies the checksum and decodes the frame"),
    CatalogEntry("ATL407", ERROR, "frame dictionary id does not match the dictionary the shard uses",
                 "V1-BLOCK-3, V2-DICT-1, V2-FRAME-2", CANNOT_OPEN,
                 f"zstd refuses a frame whose dictionary id is not the loaded dictionary's ({_O}:232)"),
    CatalogEntry("ATL408", ERROR, "zstd_dict.bin is not a trained zstd dictionary", "V1-DICT-1, V2-DICT-1",
                 CANNOT_OPEN, f"such bytes load as a raw-content dictionary of id 0 ({_O}:177, :182), so the "
                 "frames, which name a trained dictionary's id, fail to decode"),
    CatalogEntry("ATL409", ERROR, "dictionary id differs between dictionary file, metadata and index header",
                 "V2-DICT-1", V2_ONLY, _V2),
    CatalogEntry("ATL410", ERROR, "version 2 block table invalid (offsets, sizes): the decoded block's example "
                 "table, or the stored frame table of framing example", "V2-BLOCK-3, V2-FRAME-2", V2_ONLY, _V2),
    CatalogEntry("ATL411", ERROR, "block holds the wrong number of examples",
                 "V1-BLOCK-1, V1-BLOCK-2, V2-BLOCK-1, V2-FRAME-5", WRONG_DATA,
                 f"a short block raises IndexError ({_O}:238), which silently ends a for loop; a long one holds "
                 "examples the original never returns, and later positions are not the examples written"),
    CatalogEntry("ATL412", ERROR, "block pickle's value is not a list (version 1, version 2 framing list)",
                 "V1-BLOCK-2, V2-FRAME-5, PICKLE-4", WRONG_DATA,
                 f"block[position] ({_O}:238) of a dict, string or number raises or returns something that is not "
                 "the example"),
    CatalogEntry("ATL413", ERROR, "malformed or truncated pickle", "V1-BLOCK-2, V2-BLOCK-4, V2-FRAME-5, PICKLE-1",
                 CANNOT_OPEN, f"unpickling the block raises ({_O}:234)"),
    CatalogEntry("ATL414", ERROR, "bytes after the pickle's STOP opcode", "V1-BLOCK-4, V2-BLOCK-4, V2-FRAME-5",
                 READS, f"unpickling stops at STOP and ignores what follows ({_O}:234)", v1_severity=WARNING),
    CatalogEntry("ATL415", WARNING, "version 2 example pickle (framing list: block pickle) does not use protocol 5",
                 "V2-BLOCK-4, V2-FRAME-5", V2_ONLY, "version 1 uses the writing Python's default protocol"),
    CatalogEntry("ATL416", ERROR, "framing grouped: the stored block's head is invalid (frame starts not strictly "
                 "increasing inside the block, a frame's group offsets not greater than 0, not strictly increasing or "
                 "not before its last slice's end, or a list fallback's starts not all at the end of the head with "
                 "group offsets 0)",
                 "V2-FRAME-7, V2-FRAME-8", V2_ONLY, _V2),
    CatalogEntry("ATL417", ERROR, "framing grouped: a zstd frame is not magicless (it starts with the zstd magic "
                 "number) or carries a dictionary id", "V2-CODEC-4, V2-FRAME-7", V2_ONLY, _V2),
    CatalogEntry("ATL418", ERROR, "framing grouped: the decoded block's layout is invalid (group table: length, "
                 "offset width, start, offsets; or the block does not end with APPENDS STOP)", "V2-FRAME-6",
                 V2_ONLY, _V2),
    CatalogEntry("ATL419", ERROR, "framing grouped: the block's preamble differs from the shard's pickle_preamble",
                 "V2-FRAME-6, V2-FRAME-7", V2_ONLY, _V2),
    CatalogEntry("ATL420", ERROR, "framing grouped: a group offset or frame boundary is not between examples (inside "
                 "an opcode, or not exactly the expected examples complete above the list's MARK): a random read "
                 "returns other examples than an in-order read", "V2-FRAME-6, V2-FRAME-9", V2_ONLY, _V2),
    CatalogEntry("ATL421", ERROR, "framing grouped: a slice holds PROTO, FRAME, MEMOIZE or STOP", "V2-FRAME-6",
                 V2_ONLY, _V2),
    CatalogEntry("ATL422", ERROR, "framing grouped: a slice writes a preamble memo index, reads a memo entry another "
                 "group of the block wrote, or changes an object of the preamble: the in-order and the "
                 "random read differ", "V2-FRAME-6, V2-FRAME-9",
                 V2_ONLY, _V2),
    CatalogEntry("ATL423", INFO, "framing grouped: blocks of the shard are list fallbacks (protocol 4 list pickles, "
                 "checked as framing list; one note per shard with the count)", "V2-FRAME-8", V2_ONLY, _V2),
    # -- checksums ------------------------------------------------------------------------
    CatalogEntry("ATL500", ERROR, "root meta.json checksum mismatch", "V2-META-2, V2-CHK-2", V2_ONLY, _NO_CHECKSUMS),
    CatalogEntry("ATL501", ERROR, "shard meta.json checksum mismatch", "V2-META-2, V2-CHK-2", V2_ONLY, _NO_CHECKSUMS),
    CatalogEntry("ATL502", ERROR, "root meta_checksum differs from the shard meta.json checksum",
                 "V2-META-5, V2-CHK-2", V2_ONLY, _NO_CHECKSUMS),
    CatalogEntry("ATL503", ERROR, "index.bin checksum mismatch", "V2-INDEX-3, V2-CHK-2", V2_ONLY, _NO_CHECKSUMS),
    CatalogEntry("ATL504", ERROR, "shard meta.json index checksum or size differs from index.bin",
                 "V2-CHK-2, V2-META-4", V2_ONLY, _NO_CHECKSUMS),
    CatalogEntry("ATL505", ERROR, "dictionary checksum or size mismatch", "V2-CHK-2, V2-DICT-1", V2_ONLY,
                 _NO_CHECKSUMS),
    CatalogEntry("ATL506", ERROR, "block checksum mismatch", "V2-CHK-2, V2-BLOCK-2", V2_ONLY, _NO_CHECKSUMS),
    CatalogEntry("ATL507", ERROR, "checksum text malformed or of an unknown algorithm", "V2-CHK-1, V2-COMPAT-3",
                 V2_ONLY, _NO_CHECKSUMS),
    CatalogEntry("ATL590", INFO, "version 1 has no checksums: some corruption is not verifiable",
                 "DETECT-2, V1-READ-4", READS, "a note on every version 1 dataset, not a defect"),
    # -- pickle security --------------------------------------------------------------------
    CatalogEntry("ATL600", ERROR, "pickle references a global outside the pickle policy", "PICKLE-5", BY_DESIGN,
                 _POLICY_WHY(o=_O, c="PICKLE-5")),
    CatalogEntry("ATL601", ERROR, "pickle references a known-dangerous global (code execution)", "PICKLE-5",
                 BY_DESIGN, _POLICY_WHY(o=_O, c="PICKLE-5")),
    CatalogEntry("ATL602", ERROR, "pickle uses a persistent id (PERSID/BINPERSID)", "PICKLE-3", BY_DESIGN,
                 f"unpickling without a persistent_load raises ({_O}:234); refused before unpickling (PICKLE-3)"),
    CatalogEntry("ATL603", ERROR, "a global that cannot be named statically (STACK_GLOBAL of non-strings, the "
                 "extension registry)", "PICKLE-2, PICKLE-5", BY_DESIGN, _POLICY_WHY(o=_O, c="PICKLE-2, PICKLE-5")),
    CatalogEntry("ATL604", ERROR, "the torch stream of _load_from_bytes is not what torch writes", "PICKLE-12",
                 BY_DESIGN, _POLICY_WHY(o=_O, c="PICKLE-12")),
    CatalogEntry("ATL605", INFO, "pickles reference a global of the pickle policy (one note per global and dataset)",
                 "PICKLE-5", READS, "a note: the policy admits the global"),
    CatalogEntry("ATL606", ERROR, "pickle uses an opcode outside the safe subset", "PICKLE-2", BY_DESIGN,
                 _POLICY_WHY(o=_O, c="PICKLE-2")),
    CatalogEntry("ATL607", ERROR, "a call (REDUCE, NEWOBJ) with arguments the pickle policy does not admit",
                 "PICKLE-6", BY_DESIGN, _POLICY_WHY(o=_O, c="PICKLE-6")),
    CatalogEntry("ATL608", ERROR, "BUILD on a target or with a state the pickle policy does not admit", "PICKLE-7",
                 BY_DESIGN, _POLICY_WHY(o=_O, c="PICKLE-7")),
    CatalogEntry("ATL609", ERROR, "APPEND, SETITEM or ADDITEMS on an object that is not a container of that kind",
                 "PICKLE-8", BY_DESIGN, _POLICY_WHY(o=_O, c="PICKLE-8")),
    CatalogEntry("ATL610", ERROR, "a dict key or set member the pickle policy does not admit", "PICKLE-9",
                 BY_DESIGN, _POLICY_WHY(o=_O, c="PICKLE-9")),
    CatalogEntry("ATL611", ERROR, "a memo index not as assigned, or never stored", "PICKLE-10", BY_DESIGN,
                 _POLICY_WHY(o=_O, c="PICKLE-10")),
    # -- typed examples (spec 3.12) -------------------------------------------------------------
    CatalogEntry("ATL700", ERROR, "a typed example is not one MessagePack object of the typed set (truncated, an "
                 "unused format byte, bytes after it; framing list: the block is not one array of them)", "TYPED-2",
                 V2_ONLY, _TYPED),
    CatalogEntry("ATL701", ERROR, "a typed example's map key is not a str or an int, or appears twice", "TYPED-2",
                 V2_ONLY, _TYPED),
    CatalogEntry("ATL702", ERROR, "a typed example's str is not UTF-8", "TYPED-2", V2_ONLY, _TYPED),
    CatalogEntry("ATL703", ERROR, "a MessagePack extension type outside the typed set, or a tuple whose payload is "
                 "not exactly one array", "TYPED-3", V2_ONLY, _TYPED),
    CatalogEntry("ATL704", ERROR, "an ndarray or tensor payload that breaks its header (dtype code, ndim, pad, "
                 "reserved, size against the shape, pad bytes, bool bytes)", "TYPED-3, TYPED-4", V2_ONLY, _TYPED),
    CatalogEntry("ATL705", WARNING, "an ndarray or tensor whose data does not start on 16 bytes from the example's "
                 "start (readable, but not viewable in place)", "TYPED-3", V2_ONLY, _TYPED),
    CatalogEntry("ATL706", ERROR, "a typed example beyond its limits (containers nested deeper than 64, more than "
                 "2^24 items)", "TYPED-5", V2_ONLY, _TYPED),
    # -- limits and internal ----------------------------------------------------------------
    CatalogEntry("ATL900", ERROR, "a declared size or count exceeds the format limits", "LIM-1, GEN-4", BY_DESIGN,
                 "the original has no limits; LIM-1 refuses what exceeds the configured ones (raise them to check "
                 "such a dataset)"),
    CatalogEntry("ATL901", ERROR, "frame declares a content size above the limit (refused before decoding)", "LIM-2",
                 BY_DESIGN, f"the original allocates the declared size before decoding ({_O}:232); LIM-2 refuses it"),
    CatalogEntry("ATL902", ERROR, "a pickle exceeds a limit of the pickle policy (size, depth, items, integers)",
                 "PICKLE-11, LIM-3", BY_DESIGN, _POLICY_WHY(o=_O, c="PICKLE-11")),
    CatalogEntry("ATL990", ERROR, "internal error of the validator while checking this location", "GEN-4",
                 NOT_CHECKED, "the validator cannot say what the original does here, and passes nothing unchecked"),
)

CATALOG: dict[str, CatalogEntry] = {entry.id: entry for entry in _ENTRIES}
if len(CATALOG) != len(_ENTRIES):
    raise ImportError("duplicate finding id in the catalog")


def v1_rule_violations(entries: tuple[CatalogEntry, ...] | list[CatalogEntry]) -> list[str]:
    """Entries whose version 1 severity breaks the line of their verdict (V1_SEVERITIES), or whose verdict
    is unknown or unexplained; empty for a consistent catalog."""
    problems = []
    for e in entries:
        allowed = V1_SEVERITIES.get(e.v1)
        if allowed is None:
            problems.append(f"{e.id}: unknown version 1 verdict {e.v1!r}")
        elif e.severity_for(1) not in allowed:
            problems.append(f"{e.id}: the original {e.v1}, but version 1 reports it as {e.severity_for(1)}")
        if not e.why.strip():
            problems.append(f"{e.id}: no reason for its version 1 verdict")
    return problems


if v1_rule_violations(_ENTRIES):
    raise ImportError("; ".join(v1_rule_violations(_ENTRIES)))


def entry(finding_id: str) -> CatalogEntry:
    """The catalog entry of an id (KeyError for an id not in the catalog: a programming error)."""
    return CATALOG[finding_id]


def _severity_cell(e: CatalogEntry) -> str:
    return f"{e.severity} (v1: {e.v1_severity})" if e.v1_severity else e.severity


def markdown() -> str:
    """validator/FINDINGS.md, generated from the catalog."""
    lines = [
        "# atlas-validate findings",
        "",
        "Generated from `validator/atlas_validator/catalog.py` by",
        "`python -m atlas_validator --catalog-markdown > validator/FINDINGS.md`; do not edit by hand",
        "(a test fails when this file is stale). Ids are stable. Clauses refer to `spec/FORMAT.md`.",
        "",
        "Version 1 verdicts follow the original reader (`torch_atlas_ds` 0.1.0, `atlas.py`, line numbers",
        "of that file): what it cannot open or reads wrongly is an error, what it reads correctly is at",
        "most a warning. The last column says, for every id, what the original does with a version 1",
        "dataset that has the defect:",
        "",
        f"- **{CANNOT_OPEN}**: it raises opening the dataset or reading an example (error);",
        f"- **{WRONG_DATA}**: it returns other values, or fewer examples, than were written (error);",
        f"- **{READS}**: it returns every example as written (warning or info);",
        f"- **{BY_DESIGN}**: it would read it, but a clause of FORMAT.md refuses it on purpose, for safety",
        "  (pickles, symlinks, limits) or because readers would disagree on it (error);",
        f"- **{NOT_CHECKED}**: the validator could not check it, so it does not pass it (error);",
        f"- **{V2_ONLY}**: never reported for a version 1 dataset.",
        "",
        "| id | severity | finding | clauses | version 1: the original reader |",
        "|---|---|---|---|---|",
    ]
    for e in _ENTRIES:
        lines.append(f"| {e.id} | {_severity_cell(e)} | {e.title.replace('|', '/')} | {e.clause} | "
                     f"**{e.v1}**: {e.why.replace('|', '/')} |")
    lines.append("")
    lines.append("`--strict` turns warnings into failures (exit code 1); info findings never fail.")
    lines.append("")
    return "\n".join(lines)
