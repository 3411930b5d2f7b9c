"""Enumerations of both versions: v1 compression strategies, v2 codecs, dictionary modes and framings."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum, IntEnum
from typing import Any


class CompressionStrategy(IntEnum):
    """The original's strategies, same members and values (version 1 `compression_strategy`)."""

    NO_COMPRESSION = 0
    STANDARD_COMPRESSION = 1
    SHARED_DICTIONARY_COMPRESSION = 2
    DICTIONARY_COMPRESSION = 3


class Codec(IntEnum):
    """Version 2 block codecs; the value is the byte stored in the index header."""

    NONE = 0
    ZSTD = 1
    LZ4 = 2

    @property
    def label(self) -> str:
        """The JSON spelling: 'none', 'zstd', 'lz4'."""
        return self.name.lower()

    @classmethod
    def from_label(cls, label: str) -> Codec:
        return cls[label.upper()]


class DictionaryMode(str, Enum):
    """Which zstd dictionary a version 2 shard's blocks use."""

    NONE = "none"
    SHARED = "shared"  # the dataset's root zstd_dict.bin
    SHARD = "shard"  # the shard's own zstd_dict.bin


class Framing(str, Enum):
    """How a version 2 block holds its examples (spec V2-FRAME).

    ``BLOCK``: one codec frame per block over the example table (per-example pickles).
    ``EXAMPLE``: the table stored uncompressed, each example its own frame, so a random
    read decodes one example instead of its whole block.
    ``LIST``: one codec frame per block over one pickle of the list of its examples
    (version 1's block content): the fastest in-order reads and the smallest blocks, but
    a read of one example unpickles its whole block.
    ``GROUPED``: one pickle of the block's list, like ``LIST``, written so that a group of
    examples (or a frame of 32) also unpickles alone after a short per-shard preamble:
    version 1's in-order speed and bytes with most of a random read's unpickling saved
    (V2-FRAME-6; the version 2 writers' default with zstd).
    """

    BLOCK = "block"
    EXAMPLE = "example"
    LIST = "list"
    GROUPED = "grouped"

    @classmethod
    def from_meta(cls, doc: Mapping[str, Any]) -> Framing:
        """The framing a version 2 meta.json states (absent means BLOCK); ValueError if unknown."""
        return cls(doc.get("framing", cls.BLOCK.value))

    @property
    def meta_member(self) -> dict[str, str]:
        """The ``framing`` member writers put in meta.json: none for BLOCK (the default, byte-stable)."""
        return {} if self is Framing.BLOCK else {"framing": self.value}

    @property
    def index_flags(self) -> int:
        """The bits this framing sets in the index header's ``flags`` byte."""
        return {Framing.EXAMPLE: INDEX_FLAG_EXAMPLE_FRAMES, Framing.LIST: INDEX_FLAG_LIST_BLOCKS,
                Framing.GROUPED: INDEX_FLAG_GROUPED_BLOCKS}.get(self, 0)

    @classmethod
    def from_index_flags(cls, flags: int) -> Framing:
        """The framing of an index header's ``flags`` (ValueError: two framing bits, or unknown bits)."""
        if flags & ~KNOWN_INDEX_FLAGS:
            raise ValueError(f"unknown index flag bits 0x{flags & ~KNOWN_INDEX_FLAGS:02x}")
        found = [f for f in cls if f.index_flags and flags & f.index_flags]
        if len(found) > 1:
            raise ValueError(f"index flags 0x{flags:02x} name two framings ({', '.join(f.value for f in found)})")
        return found[0] if found else cls.BLOCK

    @property
    def per_example_pickles(self) -> bool:
        """Whether the decoded block is V2-BLOCK-3's table of per-example pickles (BLOCK, EXAMPLE)."""
        return self in (Framing.BLOCK, Framing.EXAMPLE)


#: ``flags`` bit 0 of the version 2 index header: every example is its own codec frame.
INDEX_FLAG_EXAMPLE_FRAMES = 0x01
#: ``flags`` bit 1: every decoded block is one pickle of the list of its examples (framing "list").
INDEX_FLAG_LIST_BLOCKS = 0x02
#: ``flags`` bit 2: every decoded block is one pickle of its list written in groups (framing "grouped").
INDEX_FLAG_GROUPED_BLOCKS = 0x04
#: The framing bits; at most one is set.
FRAMING_INDEX_FLAGS = INDEX_FLAG_EXAMPLE_FRAMES | INDEX_FLAG_LIST_BLOCKS | INDEX_FLAG_GROUPED_BLOCKS
#: ``flags`` bits 3-4 (framing "grouped" only): s, the shard's groups hold ``8 >> s`` examples (0: groups of
#: 8, as in every grouped shard written before the group size became the writer's choice; atlas_format.grouped).
INDEX_FLAG_GROUP_SHIFT = 0x18
#: ``flags`` bit 5: the examples are typed (one MessagePack object each, spec 3.12 TYPED-1), not pickles.
INDEX_FLAG_TYPED = 0x20
#: Every flag bit this version of the format defines; readers refuse any other (V2-COMPAT-3).
KNOWN_INDEX_FLAGS = FRAMING_INDEX_FLAGS | INDEX_FLAG_GROUP_SHIFT | INDEX_FLAG_TYPED


def strategy_to_v2(strategy: CompressionStrategy) -> tuple[Codec, DictionaryMode]:
    """The version 2 codec and dictionary mode that express a version 1 strategy."""
    return {
        CompressionStrategy.NO_COMPRESSION: (Codec.NONE, DictionaryMode.NONE),
        CompressionStrategy.STANDARD_COMPRESSION: (Codec.ZSTD, DictionaryMode.NONE),
        CompressionStrategy.SHARED_DICTIONARY_COMPRESSION: (Codec.ZSTD, DictionaryMode.SHARED),
        CompressionStrategy.DICTIONARY_COMPRESSION: (Codec.ZSTD, DictionaryMode.SHARD),
    }[CompressionStrategy(strategy)]


def v2_to_strategy(codec: Codec, dictionary: DictionaryMode) -> CompressionStrategy | None:
    """The version 1 strategy for a codec and dictionary mode, None when v1 cannot express it (LZ4)."""
    for strategy in CompressionStrategy:
        if strategy_to_v2(strategy) == (codec, dictionary):
            return strategy
    return None
