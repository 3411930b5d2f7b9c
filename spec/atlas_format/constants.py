"""Names, magic numbers, versions and limits shared by every Atlas implementation."""

from __future__ import annotations

from dataclasses import dataclass

# Versions -------------------------------------------------------------------------
FORMAT_VERSION_1 = 1
FORMAT_VERSION_2 = 2
SUPPORTED_VERSIONS = (FORMAT_VERSION_1, FORMAT_VERSION_2)
LATEST_VERSION = FORMAT_VERSION_2

# File names (both versions) -------------------------------------------------------
META_FILE = "meta.json"
DATA_FILE = "data.bin"
DICT_FILE = "zstd_dict.bin"
V1_INDEX_FILE = "index.npy"
V2_INDEX_FILE = "index.bin"

# Version 2 shard folders are six decimal digits, never renamed (append-safe).
V2_SHARD_NAME_WIDTH = 6
# Temporary folders of the write and append protocols start with this prefix.
TEMP_PREFIX = ".atlas-tmp-"
#: The lock an appender holds inside the dataset root for its whole run (V2-APPEND-0); under the temporary
#: prefix, so readers never look at it and validators report one left by a dead writer as a leftover.
APPEND_LOCK_FILE = TEMP_PREFIX + "append.lock"
#: Suffix of the lock a new write holds beside its target: ``<parent>/.atlas-tmp-<name>.lock`` (V2-WRITE-0).
WRITE_LOCK_SUFFIX = ".lock"
#: Hex digits of the random part of a write's temporary folder ``<parent>/.atlas-tmp-<name>-<random>``.
TEMP_TOKEN_HEX = 12

# Magic numbers ---------------------------------------------------------------------
NPY_MAGIC = b"\x93NUMPY"
ZSTD_FRAME_MAGIC = 0xFD2FB528
ZSTD_SKIPPABLE_MAGIC_MIN = 0x184D2A50
ZSTD_SKIPPABLE_MAGIC_MAX = 0x184D2A5F
ZSTD_DICT_MAGIC = 0xEC30A437
LZ4_FRAME_MAGIC = 0x184D2204
V2_INDEX_MAGIC = b"ATLASIDX"

# Version 2 binary sizes -------------------------------------------------------------
V2_INDEX_HEADER_SIZE = 64
V2_INDEX_ENTRY_SIZE = 24

# Pickle protocol written by version 2 writers (fixed so bytes do not depend on Python).
V2_PICKLE_PROTOCOL = 5
#: Pickle protocol of a version 2 block with framing "list" (V2-FRAME-5): version 1's, so the
#: decoded block is what version 1 stores, and numpy arrays unpickle about 25% faster than
#: through protocol 5's in-band buffers (bytearray plus frombuffer).
V2_LIST_PICKLE_PROTOCOL = 4

# Dictionary training rules of the original writer (kept by version 2 writers).
MIN_BLOCKS_FOR_DICTIONARY = 7  # both versions: zstd cannot train on fewer blocks
V1_MIN_BLOCKS_FOR_DICTIONARY = MIN_BLOCKS_FOR_DICTIONARY
MIN_DICTIONARY_SIZE = 1024
V1_MIN_DICTIONARY_SIZE = MIN_DICTIONARY_SIZE


@dataclass(frozen=True)
class Limits:
    """Sizes a reader checks *before* allocating (spec clause LIM). Readers may lower them."""

    max_block_raw_size: int = 1 << 30  # decompressed bytes of one block: 1 GiB
    max_block_stored_size: int = 1 << 30
    max_examples_per_block: int = 1 << 24
    max_examples_per_shard: int = (1 << 32) - 1
    max_blocks_per_shard: int = (1 << 32) - 1
    max_shards: int = 10**V2_SHARD_NAME_WIDTH
    max_metadata_size: int = 128 << 20  # any meta.json
    max_dictionary_size: int = 64 << 20
    max_preamble_size: int = 64 << 10  # a shard's pickle preamble (framing grouped), decoded
    max_index_size: int = 24 * ((1 << 32) - 1) + 64
    max_data_size: int = 1 << 50


DEFAULT_LIMITS = Limits()
