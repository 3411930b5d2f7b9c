"""Writers of versions 1 and 2: build in a temporary folder, publish atomically, append.

Version 2 is the default. ``format_version=1`` reproduces the original writer byte for
byte (pickle protocol 4, its dictionary rules and folder naming), but publishes
atomically too: a dataset folder appears complete or not at all.

Write protocol: missing parent folders are created; the writer locks the target
(``<parent>/.atlas-tmp-<name>.lock``, so a second writer is refused before it writes) and
removes the temporary folders of earlier writes that died; files go to
``<parent>/.atlas-tmp-<name>-<random>``; every file and folder is fsynced; root meta.json is
written last; one rename publishes. An exception inside ``with`` (a full disk included)
removes the temporary folder and publishes nothing.

Append protocol (version 2): the appender locks the root (``root/.atlas-tmp-append.lock``)
before reading anything, so a concurrent append is refused at once, then removes what dead
appenders left (``.atlas-tmp-*`` entries, shard folders root meta.json does not list: they
would collide with the new shards). New shards are staged under ``root/.atlas-tmp-<random>/``,
renamed into root one by one (a reader never lists them: root meta.json does not name
them yet), then root meta.json is replaced atomically. Any failure before that
replace removes what was staged and renamed, so the old dataset stays exactly as it
was and readers opened before keep working.
"""

from __future__ import annotations

import json
import os
import pickle
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import zstandard

from atlas_format import grouped, typed
from atlas_format.block_v2 import decoded_size, encode_block
from atlas_format.checksum import XXH3_64
from atlas_format.codecs import codec_info
from atlas_format.constants import (
    APPEND_LOCK_FILE,
    DATA_FILE,
    DEFAULT_LIMITS,
    DICT_FILE,
    META_FILE,
    MIN_BLOCKS_FOR_DICTIONARY,
    MIN_DICTIONARY_SIZE,
    TEMP_PREFIX,
    V1_INDEX_FILE,
    V2_INDEX_FILE,
    V2_LIST_PICKLE_PROTOCOL,
    V2_PICKLE_PROTOCOL,
    Limits,
)
from atlas_format.enums import Codec, CompressionStrategy, DictionaryMode, Framing, strategy_to_v2
from atlas_format.files import Location
from atlas_format.index_v2 import build_index, header_value, shard_flags
from atlas_format.layout import temp_sibling_name, v1_shard_names, v2_shard_name, write_lock_name
from atlas_format.metadata import dump_checksummed_json, dump_v1_json, file_checksum_text
from atlas_format.npy import build_v1_index

from . import typed_codec
from ._util import fsync_dir, publish_folder, write_file
from .errors import LimitError, VersionError
from .grouped_writer import GroupedEncoder, stored_grouped
from .leftovers import Leftover, clear_root, clear_siblings
from .locking import WriterLock
from .shard_files import load_dictionary, read_v2_meta

V1_PICKLE_PROTOCOL = 4  # the original's default protocol on Python 3.8 to 3.13 (what seed-v1 holds)
WRITER_LIBRARY = "torch-atlas-ds"


def _writer_info() -> dict[str, str]:
    from . import __version__

    return {"library": WRITER_LIBRARY, "version": __version__}


def _dict_target_size(dict_size: float, blocks: list[bytes]) -> int:
    return max(int(dict_size * sum(len(b) for b in blocks)) + 1, MIN_DICTIONARY_SIZE)


#: fastCover parameters of version 2 dictionary training. Version 1 keeps zstd's default, which
#: searches four values of k (what the original wrote); fixing k=400, d=8 trains 4-6x faster
#: (0.36 -> 0.08 s on 7 MB of text blocks, about half of a dataset's write time) and compressed
#: the benchmark datasets 0.0-0.2% smaller (FORMAT.md section 9).
V2_DICTIONARY_TRAINING: dict[str, int] = {"k": 400, "d": 8}


def _train(dict_size: float, blocks: list[bytes], level: int, version: int = 1) -> zstandard.ZstdCompressionDict:
    samples: list[bytes | bytearray | memoryview] = list(blocks)
    params = V2_DICTIONARY_TRAINING if version == 2 else {}
    return zstandard.train_dictionary(_dict_target_size(dict_size, blocks), samples, level=level, **params)


def _zstd(level: int, dictionary: zstandard.ZstdCompressionDict | None) -> Any:
    return zstandard.ZstdCompressor(level=level, dict_data=dictionary, write_checksum=False,
                                    write_content_size=True, write_dict_id=True).compress


def _as_dict(value: Any) -> zstandard.ZstdCompressionDict | None:
    if value is None or isinstance(value, zstandard.ZstdCompressionDict):
        return value
    return zstandard.ZstdCompressionDict(bytes(value))


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _check_dict_size(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"compression_dict_size must be a number in [0, 1], got {value!r}")
    return value


def _temp_sibling(target: Path) -> Path:
    return target.parent / temp_sibling_name(target.name, secrets.token_hex(6))


def _make_parent(target: Path) -> None:
    """Create the target's missing parent folders (the quick start writes into ``data/train``)."""
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise NotADirectoryError(f"cannot write a dataset at {target}: {parent} (or a folder above it) "
                                 "exists and is not a folder") from None


def _lock_new_target(target: Path) -> tuple[WriterLock, list[Leftover]]:
    """Lock a new write's target and remove the temporary folders of dead writes to it.

    Refuses (DatasetLockedError) while another writer writes to it, and an existing target."""
    _make_parent(target)
    lock = WriterLock(target.parent / write_lock_name(target.name), "write", f"the write to {target}").acquire()
    try:
        if os.path.lexists(target):
            raise FileExistsError(f"[Errno 17] File exists: '{target}'")
        recovered = clear_siblings(target)  # under the lock: their writers are dead
    except BaseException:
        lock.release()
        raise
    return lock, recovered


def _quietly(action: Any, *args: Any) -> None:
    """Run one step of an abort; its failure (a full disk again) must not stop the steps after it."""
    try:
        action(*args)
    except Exception:  # noqa: BLE001 - abort goes on: removing the files matters more than this step
        pass


def _discard(f: Any) -> None:
    """Close a file being written without writing its buffer again (it failed once: a full disk)."""
    if f is None:
        return
    try:
        getattr(f, "raw", f).close()  # the raw file first: a closed raw file makes close() below skip the flush
    except (OSError, ValueError):
        pass
    try:
        f.close()
    except (OSError, ValueError):
        pass


# -- version 1 ------------------------------------------------------------------------


class _V1ShardBuilder:
    """One version 1 shard, written exactly as the original's AtlasDatasetShardWriter does."""

    def __init__(self, folder: Path, block_size: int, strategy: CompressionStrategy, level: int,
                 dict_size: float, dictionary: zstandard.ZstdCompressionDict | None, *, train: bool = False) -> None:
        folder.mkdir()
        self.folder = folder
        self.block_size = block_size
        self.strategy = strategy  # what the shard is asked to do
        self.level = level
        self.dict_size = dict_size
        self.dictionary = dictionary
        self.train = train or strategy == CompressionStrategy.DICTIONARY_COMPRESSION
        self.count = 0
        self.pending: list[Any] = []
        self.held: list[bytes] = []
        self.offsets = [0]
        self._data: Any = None
        if strategy == CompressionStrategy.NO_COMPRESSION:
            self._compress: Any = None
        elif not self.train:
            self._compress = _zstd(level, dictionary)

    def add_example(self, example: Any) -> None:
        self.pending.append(example)
        self.count += 1
        if len(self.pending) >= self.block_size:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        raw = pickle.dumps(self.pending, protocol=V1_PICKLE_PROTOCOL)
        self.pending = []
        if self.train:
            self.held.append(raw)
        else:
            self._write(raw if self._compress is None else self._compress(raw))

    def _write(self, block: bytes) -> None:
        if self._data is None:
            self._data = open(self.folder / DATA_FILE, "wb")  # noqa: SIM115 - closed in close()
        self._data.write(block)
        self.offsets.append(self.offsets[-1] + len(block))

    def close(self, shared_mode: bool = False) -> tuple[int, zstandard.ZstdCompressionDict | None]:
        """Finish the shard; returns (strategy written in meta.json, trained dictionary or None)."""
        self._flush()
        written = int(self.strategy)
        trained = None
        if self.train:
            if len(self.held) >= MIN_BLOCKS_FOR_DICTIONARY:
                trained = _train(self.dict_size, self.held, self.level)
                compress = _zstd(self.level, trained)
                if not shared_mode:
                    write_file(self.folder / DICT_FILE, trained.as_bytes())
                written = int(CompressionStrategy.SHARED_DICTIONARY_COMPRESSION if shared_mode
                              else CompressionStrategy.DICTIONARY_COMPRESSION)
            else:
                compress = _zstd(self.level, None)
                written = int(CompressionStrategy.STANDARD_COMPRESSION)
            for raw in self.held:
                self._write(compress(raw))
            self.held = []
        if self._data is not None:
            self._data.flush()
            os.fsync(self._data.fileno())
            self._data.close()
        write_file(self.folder / V1_INDEX_FILE, build_v1_index(self.offsets))
        write_file(self.folder / META_FILE, dump_v1_json({
            "version": 1, "block_size": self.block_size, "stored_examples": self.count,
            "compression_strategy": written, "compression_level": self.level,
            "compression_dict_size": self.dict_size}))
        fsync_dir(self.folder)
        return written, trained

    def abort(self) -> None:
        _discard(self._data)
        self._data = None


# -- version 2 ------------------------------------------------------------------------


class _V2ShardBuilder:
    """One version 2 shard: blocks of per-example pickles (or pickled lists), checksummed index and meta."""

    def __init__(self, folder: Path, name: str, block_size: int, codec: Codec, level: int, dict_size: float,
                 mode: str, dictionary: bytes | None = None, limits: Limits = DEFAULT_LIMITS,
                 on_shared_dictionary: Any = None, framing: Framing = Framing.GROUPED,
                 preamble_seed: list[Any] | None = None, encoding: str = typed.PICKLE, first: int = 0) -> None:
        """``mode``: 'none', 'shared' (use ``dictionary``), 'shard' (train its own), 'train-shared'.

        ``framing``: one codec frame per block, one per example, one per block over a pickled
        list, or a list pickled in groups (spec V2-FRAME). With LIST and GROUPED a block is pickled
        when it is full, as version 1 does (GROUPED's preamble is built from the shard's first block, so
        an example is never pickled after a later one was added). ``preamble_seed``: the first shard's
        shared objects, so that
        every shard's preamble numbers them alike (see grouped_writer).

        ``on_shared_dictionary(bytes)`` is called with a dictionary trained for sharing before
        any block compressed with it is written (the root dictionary precedes its users).
        ``encoding`` "typed" stores each example as one MessagePack object (spec 3.12) instead of a pickle
        (every framing; grouped: TYPED-7); ``first`` is the dataset index of the shard's first example, which
        an example that cannot be encoded is named by.
        """
        self.on_shared_dictionary = on_shared_dictionary
        folder.mkdir()
        self.folder, self.name = folder, name
        self.block_size, self.codec, self.level, self.dict_size = block_size, codec, level, dict_size
        self.mode = mode
        self.framing = framing
        self.limits = limits
        self.count = 0
        self._grouped = framing is Framing.GROUPED
        self._list = framing is Framing.LIST
        self.encoding, self.first = encoding, first
        self._typed = encoding == typed.TYPED
        self._encoder = GroupedEncoder()
        self._seed = preamble_seed
        self.pending: list[Any] = []  # the block being filled: example pickles, or examples (LIST, GROUPED)
        # blocks waiting for the dictionary: lists of pickles, list pickles, or (frames, group offsets or None,
        # n) (GROUPED)
        self.held: list[Any] = []
        self.entries: list[tuple[int, int, int, int]] = []
        self.data_size = 0
        self.max_raw = 0
        self.dict_bytes = dictionary
        self._data = open(folder / DATA_FILE, "wb")  # noqa: SIM115 - closed in close()/abort()
        self._compress: Any = None
        if mode in ("none", "shared"):
            self._compress = self._compressor(dictionary if mode == "shared" else None)

    def _compressor(self, dictionary: bytes | None) -> Any:
        return codec_info(self.codec, magicless=self._grouped).compressor(self.level, dictionary)

    def add_example(self, example: Any) -> None:
        if self._typed:
            try:
                self.pending.append(typed_codec.encode(example))
            except TypeError as exc:
                raise TypeError(f"example {self.first + self.count}: {exc}") from None
        else:
            self.pending.append(example if self._list or self._grouped
                                else pickle.dumps(example, protocol=V2_PICKLE_PROTOCOL))
        self.count += 1
        if len(self.pending) >= self.block_size:
            self._flush()

    def _flush_grouped(self) -> None:
        """The full block pickled in groups; the shard's first block also builds the preamble."""
        if self._typed:
            self._flush_typed_grouped()
            return
        examples, self.pending = self.pending, []
        if not examples:
            return
        encoder = self._encoder
        if not encoder.started:
            encoder.start(examples, self._seed)
        frames, group_offsets = encoder.encode(examples)
        self._keep((frames, group_offsets, len(examples)), sum(map(len, frames)), len(examples))

    def _flush_typed_grouped(self) -> None:
        """TYPED-7: framing list's array in frames of 32, the group offsets of every frame in the head; the
        group size is chosen once per shard from its first examples' typed sizes (V2-FRAME-6's rule)."""
        items, self.pending = self.pending, []
        if not items:
            return
        encoder = self._encoder
        if not encoder.started:
            encoder.start_typed(sum(map(len, items)) / len(items))
        offsets = grouped.frame_group_offsets(items, grouped.block_group(len(items), encoder.group))
        frames = grouped.typed_frames(items)
        self._keep((frames, offsets, len(items)), sum(map(len, frames)), len(items))

    def _flush(self) -> None:
        if self._grouped:
            self._flush_grouped()
            return
        if not self.pending:
            return
        block: Any
        if self._list:  # V2-FRAME-5: one pickle of the block's list, or one MessagePack array (typed)
            block = typed_codec.array_of_encoded(self.pending) if self._typed \
                else pickle.dumps(self.pending, protocol=V2_LIST_PICKLE_PROTOCOL)
            total = len(block)
        else:
            block = self.pending
            total = sum(len(p) for p in block) + 4 * (len(block) + 2)
        count = len(self.pending)
        self.pending = []
        self._keep(block, total, count)

    def _keep(self, block: Any, total: int, count: int) -> None:
        """Write a block of ``total`` decoded bytes, or hold it until the dictionary is trained."""
        if total > min(self.limits.max_block_raw_size, (1 << 32) - 1):
            raise LimitError(f"a block of {count} examples takes {total} bytes decoded, above the "
                             f"limit of {self.limits.max_block_raw_size} bytes; use a smaller block_size",
                             shard=self.name, block=len(self.entries) + len(self.held))
        if self._compress is None:
            self.held.append(block)
        else:
            self._write(block)

    def _decoded(self, block: Any) -> bytes:
        """The decoded block of what _flush produced (V2-BLOCK-3's table, V2-FRAME-5's list pickle, or
        V2-FRAME-6's frames joined)."""
        if self._grouped:
            return b"".join(block[0])
        return block if self._list else encode_block(block)

    def _write(self, block: Any) -> None:
        if self.framing is Framing.EXAMPLE:  # V2-FRAME-2: the table over one frame per example, uncompressed
            compress = self._compress
            stored = encode_block([compress(p) for p in block])
            raw_size = decoded_size(len(block), [len(p) for p in block])
        elif self._grouped:  # V2-FRAME-7: the head (frame starts, group offsets), then the frames (or a fallback)
            frames, group_offsets, n = block
            stored = stored_grouped(frames, group_offsets, n, self._compress, self._encoder.group)
            raw_size = sum(map(len, frames))
        else:
            raw = self._decoded(block)
            stored, raw_size = self._compress(raw), len(raw)
        self._data.write(stored)
        self.entries.append((self.data_size, len(stored), raw_size, XXH3_64.of(stored)))
        self.data_size += len(stored)
        self.max_raw = max(self.max_raw, raw_size)

    def close(self) -> tuple[dict[str, Any], bytes | None]:
        """Finish the shard; returns (its root meta.json record, dictionary trained for sharing or None)."""
        self._flush()
        trained: bytes | None = None
        if self._compress is None:  # 'shard' or 'train-shared': the blocks waited for the dictionary
            if len(self.held) >= MIN_BLOCKS_FOR_DICTIONARY:  # trained on decoded blocks, whatever the framing
                trained = _train(self.dict_size, [self._decoded(p) for p in self.held], self.level, 2).as_bytes()
                self.dict_bytes = trained
                self.mode = "shard" if self.mode == "shard" else "shared"
                if self.mode == "shared" and self.on_shared_dictionary is not None:
                    self.on_shared_dictionary(trained)
            else:
                self.mode = "none"
            self._compress = self._compressor(self.dict_bytes if self.mode != "none" else None)
            for block in self.held:
                self._write(block)
            self.held = []
        self._data.flush()
        os.fsync(self._data.fileno())
        self._data.close()
        dict_id = 0
        dictionary_file = None
        if self.mode != "none" and self.dict_bytes is not None:
            dict_id = zstandard.ZstdCompressionDict(self.dict_bytes).dict_id()
        if self.mode == "shard":
            write_file(self.folder / DICT_FILE, self.dict_bytes or b"")
            dictionary_file = {"file": DICT_FILE, "size": len(self.dict_bytes or b""), "dict_id": dict_id,
                               "checksum": file_checksum_text(self.dict_bytes or b"")}
        header = header_value(codec=int(self.codec), dictionary=self.mode, checksum_algorithm=XXH3_64.id,
                              block_size=self.block_size, block_count=len(self.entries),
                              example_count=self.count, data_size=self.data_size, dict_id=dict_id,
                              flags=shard_flags(self.framing, self._encoder.group, self.encoding))
        index = build_index(header, self.entries)
        index_checksum = int.from_bytes(index[56:64], "little")
        write_file(self.folder / V2_INDEX_FILE, index)
        meta = dump_checksummed_json({
            "version": 2, "shard": self.name, "codec": self.codec.label, "dictionary": self.mode,
            **self.framing.meta_member, **self._preamble_member(), **typed.encoding_member(self.encoding),
            "compression_level": self.level,
            "block_size": self.block_size,
            "num_examples": self.count,
            "num_blocks": len(self.entries), "data_size": self.data_size, "max_block_raw_size": self.max_raw,
            "dict_id": dict_id,
            "index": {"file": V2_INDEX_FILE, "size": len(index), "checksum": XXH3_64.text(index_checksum)},
            "dictionary_file": dictionary_file, "checksum_algorithm": XXH3_64.name, "writer": _writer_info(),
        })
        write_file(self.folder / META_FILE, meta)
        fsync_dir(self.folder)
        record = {"name": self.name, "num_examples": self.count, "num_blocks": len(self.entries),
                  "data_size": self.data_size, "index_size": len(index),
                  "meta_checksum": meta[len(b'{\n  "checksum": "'):meta.index(b'",\n')].decode("ascii"),
                  "dictionary": self.mode, "max_block_raw_size": self.max_raw}
        return record, (trained if self.mode == "shared" else None)

    def _preamble_member(self) -> dict[str, Any]:
        """Framing grouped's meta.json members: the preamble, and the group size unless it is 8."""
        if not self._grouped:
            return {}
        if self._typed:  # TYPED-7: no preamble
            return grouped.group_member(self._encoder.group)
        if not self._encoder.started:  # no example: nothing shared
            self._encoder.start([])
        return {grouped.PREAMBLE_MEMBER: grouped.preamble_to_json(self._encoder.preamble),
                **grouped.group_member(self._encoder.group)}

    def abort(self) -> None:
        _discard(self._data)

    def write_all(self, examples: Any) -> tuple[dict[str, Any], bytes | None]:
        """Every example, then ``close`` (a shard built in one go by a worker or a task); on any error the
        shard's file is discarded."""
        try:
            for example in examples:
                self.add_example(example)
            return self.close()
        except BaseException:
            self.abort()
            raise


def _resolve_codec(codec: Any, strategy: CompressionStrategy | int | None,
                   format_version: int) -> tuple[Codec, DictionaryMode, CompressionStrategy]:
    """(codec, dictionary mode, v1 strategy) from the caller's codec= and compression_strategy=."""
    if codec is None:
        strat = CompressionStrategy(strategy if strategy is not None
                                    else CompressionStrategy.SHARED_DICTIONARY_COMPRESSION)
        c, mode = strategy_to_v2(strat)
        return c, mode, strat
    try:
        c = Codec.from_label(codec) if isinstance(codec, str) else Codec(codec)
    except (KeyError, ValueError):
        raise ValueError(f"unknown codec {codec!r}; use one of {[x.label for x in Codec]}") from None
    if format_version == 1 and c == Codec.LZ4:
        raise ValueError("version 1 cannot store LZ4 blocks; use format_version=2")
    if strategy is None:
        mode = DictionaryMode.SHARED if c == Codec.ZSTD else DictionaryMode.NONE
    else:
        s_codec, mode = strategy_to_v2(CompressionStrategy(strategy))
        if c != Codec.ZSTD and mode != DictionaryMode.NONE:
            raise ValueError(f"codec {c.label} cannot use a zstd dictionary (compression_strategy={strategy!r}); "
                             "omit compression_strategy or use STANDARD_COMPRESSION")
        if (c == Codec.NONE) != (s_codec == Codec.NONE) and not (c == Codec.LZ4 and s_codec == Codec.ZSTD):
            raise ValueError(f"codec {c.label} contradicts compression_strategy={strategy!r}")
    strat = {(Codec.NONE, DictionaryMode.NONE): CompressionStrategy.NO_COMPRESSION,
             (Codec.ZSTD, DictionaryMode.NONE): CompressionStrategy.STANDARD_COMPRESSION,
             (Codec.ZSTD, DictionaryMode.SHARED): CompressionStrategy.SHARED_DICTIONARY_COMPRESSION,
             (Codec.ZSTD, DictionaryMode.SHARD): CompressionStrategy.DICTIONARY_COMPRESSION,
             }.get((c, mode), CompressionStrategy.STANDARD_COMPRESSION)
    return c, mode, strat


def _resolve_encoding(encoding: str | None, format_version: int) -> str:
    """The caller's encoding=: "pickle" (None) or "typed" (spec 3.12, version 2 only)."""
    value = typed.PICKLE if encoding is None else encoding
    if value not in typed.ENCODINGS:
        raise ValueError(f"encoding must be 'pickle' or 'typed', got {encoding!r}")
    if value == typed.TYPED and format_version == 1:
        raise ValueError("encoding='typed' needs format_version=2 (version 1 examples are pickles)")
    return value


def _resolve_framing(framing: Framing | str | None, codec: Codec, format_version: int) -> Framing:
    """The caller's framing=, checked against the codec and the version (V2-FRAME-1). None: the default,
    GROUPED for version 2 with zstd (pickled examples, or typed ones: TYPED-7); BLOCK with LZ4 and none,
    chosen for random reads that decode fast or not at all, where grouped's decoding of a group (or a frame
    of 32) would cost 0.2-0.8x of them; version 1 has only its list blocks (BLOCK here)."""
    if framing is None:
        return Framing.GROUPED if format_version == 2 and codec == Codec.ZSTD else Framing.BLOCK
    try:
        value = Framing(framing)
    except ValueError:
        raise ValueError(f"framing must be 'grouped', 'block', 'example' or 'list', got {framing!r}") from None
    if value is not Framing.BLOCK and format_version == 1:
        raise ValueError(f"framing={value.value!r} needs format_version=2 (version 1 has no framing: its blocks "
                         "are always pickled lists in one frame)")
    if value is Framing.EXAMPLE and codec == Codec.NONE:
        raise ValueError("framing='example' needs a codec (zstd or lz4): codec none has no frames")
    return value


class _Publisher:
    """Context-manager plumbing shared by the writers: close on success, abort on error."""

    _closed: bool

    def __enter__(self) -> Any:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def close(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("the writer is closed")


class AtlasDatasetWriter(_Publisher):
    """Writes a dataset of shards of ``shard_size`` examples in blocks of ``block_size`` examples.

    ``compression_strategy`` defaults to SHARED_DICTIONARY_COMPRESSION (zstd); with
    ``codec=Codec.LZ4`` (or "lz4") and no explicit strategy, no dictionary is used.
    ``format_version=1`` writes the original's format; ``user_metadata`` (a JSON object)
    is stored in a version 2 root meta.json. ``framing=Framing.EXAMPLE`` (or "example")
    compresses each example in its own frame: random reads decode one example instead of
    a block, for more bytes on disk (version 2, codec zstd or lz4; spec V2-FRAME).
    ``framing=Framing.LIST`` (or "list") pickles each block as one list, as version 1 does:
    the fastest in-order reads and the fewest bytes, a whole block unpickled per random
    read; a block is pickled when it is full, so do not mutate an example after adding it.
    ``encoding="typed"`` stores each example as one MessagePack object instead of a pickle (spec 3.12):
    None, bool, int, float, str, bytes, list, tuple, dict with str or int keys, numpy arrays and torch
    tensors, read back without unpickling; any other value is a TypeError naming the example and the path
    of the value (the write is then abandoned).

    Missing parent folders are created. A second writer to the same path is refused at once
    (DatasetLockedError); the temporary folders of earlier writes to it that died are removed
    (listed in ``recovered``).
    """

    def __init__(self, path: str | os.PathLike[str], shard_size: int, block_size: int,
                 compression_strategy: CompressionStrategy | int | None = None, compression_level: int = 3,
                 compression_dict_size: float = 0.01, *, codec: Codec | str | None = None, format_version: int = 2,
                 user_metadata: dict[str, Any] | None = None, limits: Limits = DEFAULT_LIMITS,
                 framing: Framing | str | None = None, encoding: str | None = None) -> None:
        self._closed = True
        if format_version not in (1, 2):
            raise ValueError(f"format_version must be 1 or 2, got {format_version!r}")
        self.format_version = format_version
        self.encoding = _resolve_encoding(encoding, format_version)
        self.shard_size = _check_int("shard_size", shard_size, 0 if format_version == 1 else 1)
        self.block_size = _check_int("block_size", block_size, 1)
        self.compression_level = _check_int("compression_level", compression_level, -(1 << 17))
        self.compression_dict_size = _check_dict_size(compression_dict_size)
        self.codec, self.mode, self.strategy = _resolve_codec(codec, compression_strategy, format_version)
        self.framing = _resolve_framing(framing, self.codec, format_version)
        lo, hi = codec_info(self.codec).level_range
        if self.codec != Codec.NONE and not lo <= compression_level <= hi:
            raise ValueError(f"compression_level {compression_level} outside {lo}..{hi} for {self.codec.label}")
        if user_metadata is not None and not isinstance(user_metadata, dict):
            raise TypeError("user_metadata must be a dict (a JSON object)")
        self.user_metadata = dict(user_metadata or {})
        json.dumps(self.user_metadata, allow_nan=False)  # fail now, not at close
        self.limits = limits
        self.path = Path(path)
        if os.path.lexists(self.path):
            raise FileExistsError(f"[Errno 17] File exists: '{self.path}'")
        self._lock, self.recovered = _lock_new_target(self.path)
        self._tmp = _temp_sibling(self.path)
        try:
            self._tmp.mkdir()
        except BaseException:
            self._lock.release()
            raise
        self._closed = False
        self._append = False
        #: Called with the finished temporary folder (a complete dataset) just before it is published; an
        #: exception from it aborts the write (``atlas-ds convert`` validates the result there).
        self.before_publish: Callable[[Path], None] | None = None
        self._moved: list[Path] = []
        self._meta_tmp: Path | None = None
        self._base_doc: dict[str, Any] = {}
        self._records: list[dict[str, Any]] = []
        self._shared: Any = None  # v1: trained ZstdCompressionDict; v2: dictionary bytes
        self._shard_number = 0
        self.num_examples = 0
        self._current: Any = None
        self._preamble_seed: list[Any] | None = None  # framing grouped: the first shard's shared objects
        self._v1_written: list[int] = []
        if format_version == 1:
            self._current = self._new_v1_shard()

    # -- shards -----------------------------------------------------------------------

    def _new_v1_shard(self) -> _V1ShardBuilder:
        n = self._shard_number
        self._shard_number += 1
        strategy = self.strategy
        shared = strategy == CompressionStrategy.SHARED_DICTIONARY_COMPRESSION
        if shared and n > 0:
            if self._shared is None:  # shard 0 could not train: the whole dataset falls back to 1
                strategy = CompressionStrategy.STANDARD_COMPRESSION
            return _V1ShardBuilder(self._tmp / str(n), self.block_size, strategy, self.compression_level,
                                   self.compression_dict_size, self._shared)
        return _V1ShardBuilder(self._tmp / str(n), self.block_size, strategy, self.compression_level,
                               self.compression_dict_size, None, train=shared)

    def _close_v1_shard(self) -> None:
        shard = self._current
        shared = self.strategy == CompressionStrategy.SHARED_DICTIONARY_COMPRESSION and len(self._v1_written) == 0
        written, trained = shard.close(shared_mode=shared)  # if it fails, abort() discards the shard's file
        self._current = None
        if shared and trained is not None:
            self._shared = trained
        self._v1_written.append(shard.count)

    def _stage_dir(self) -> Path:
        return self._tmp

    def _new_v2_shard(self) -> _V2ShardBuilder:
        name = v2_shard_name(self._shard_number)
        self._shard_number += 1
        mode = self.mode.value
        if mode == "shared":
            if self._shared is not None:
                dictionary: bytes | None = self._shared
            elif not self._records and not self._append:
                mode, dictionary = "train-shared", None
            else:  # the first shard could not train: the dataset falls back to no dictionary
                mode, dictionary = "none", None
        else:
            dictionary = None
        return _V2ShardBuilder(self._stage_dir() / name, name, self.block_size, self.codec,
                               self.compression_level, self.compression_dict_size, mode, dictionary, self.limits,
                               on_shared_dictionary=self._write_shared_dictionary, framing=self.framing,
                               preamble_seed=self._preamble_seed, encoding=self.encoding,
                               first=self._base_doc.get("num_examples", 0) + self.num_examples)

    def _write_shared_dictionary(self, dictionary: bytes) -> None:
        write_file(self._tmp / DICT_FILE, dictionary)
        fsync_dir(self._tmp)

    def _close_v2_shard(self) -> None:
        shard = self._current
        record, trained = shard.close()  # if it fails, the shard stays current: abort() discards its file
        self._current = None
        if self._preamble_seed is None:
            self._preamble_seed = shard._encoder.shared
        if trained is not None:
            self._shared = trained
        self._records.append(record)

    def add_example(self, example: Any) -> None:
        """Append one example (any picklable object)."""
        self._check_open()
        try:
            if self.format_version == 1:
                if self._current.count >= self.shard_size:
                    self._close_v1_shard()
                    self._current = self._new_v1_shard()
            else:
                if self._current is not None and self._current.count >= self.shard_size:
                    self._close_v2_shard()
                if self._current is None:
                    self._current = self._new_v2_shard()
            self._current.add_example(example)
        except BaseException:
            self.abort()
            raise
        self.num_examples += 1

    # -- publishing -------------------------------------------------------------------

    def close(self) -> None:
        """Finish every shard, write root meta.json last and publish atomically."""
        if self._closed:
            return
        try:
            if self._append:
                self._finish_append()
            else:
                if self.format_version == 1:
                    self._finish_v1()
                else:
                    self._finish_v2()
                fsync_dir(self._tmp)
                if self.before_publish is not None:
                    self.before_publish(self._tmp)
                publish_folder(self._tmp, self.path)
                self._closed = True
        except BaseException:
            self.abort()
            raise
        self._lock.release()

    def _finish_v1(self) -> None:
        self._close_v1_shard()
        names = v1_shard_names(len(self._v1_written))
        for i, name in enumerate(names):
            if name != str(i):
                os.rename(self._tmp / str(i), self._tmp / name)
        root_strategy = int(self.strategy)
        if self.strategy == CompressionStrategy.SHARED_DICTIONARY_COMPRESSION:
            if self._shared is None:
                root_strategy = int(CompressionStrategy.STANDARD_COMPRESSION)
            else:
                write_file(self._tmp / DICT_FILE, self._shared.as_bytes())
        write_file(self._tmp / META_FILE, dump_v1_json({"version": 1, "shard_sizes": self._v1_written,
                                                        "compression_strategy": root_strategy}))

    def _root_doc(self, generation: int) -> dict[str, Any]:
        mode = self.mode.value
        shared = None
        if mode == "shared":
            if self._shared is None:
                mode = "none"
            else:
                shared = {"file": DICT_FILE, "size": len(self._shared),
                          "dict_id": zstandard.ZstdCompressionDict(self._shared).dict_id(),
                          "checksum": file_checksum_text(self._shared)}
        return {
            "version": 2, "format": "atlas", "codec": self.codec.label, "dictionary": mode,
            **self.framing.meta_member, **typed.encoding_member(self.encoding),
            "compression_level": self.compression_level, "compression_dict_size": self.compression_dict_size,
            "block_size": self.block_size, "shard_size": self.shard_size, "checksum_algorithm": XXH3_64.name,
            "num_examples": sum(r["num_examples"] for r in self._records),
            "max_block_raw_size": max([r["max_block_raw_size"] for r in self._records], default=0),
            "shards": [{k: v for k, v in r.items() if k != "max_block_raw_size"} for r in self._records],
            "shared_dictionary": shared, "generation": generation, "writer": _writer_info(),
            "user_metadata": self.user_metadata,
        }

    def _finish_v2(self) -> None:
        if self._current is not None:
            self._close_v2_shard()
        doc = self._root_doc(1)
        write_file(self._tmp / META_FILE, dump_checksummed_json(doc))

    def abort(self) -> None:
        """Discard everything written so far; nothing is published (the old dataset stays as it was).

        Every step runs even if one before it fails (on a full disk, closing a file fails again), and no
        buffered data is written again: what was written is removed, then the lock is released."""
        if self._closed:
            return
        self._closed = True
        if self._current is not None:
            _quietly(self._current.abort)
            self._current = None
        if self._append:
            for folder in self._moved:
                shutil.rmtree(folder, ignore_errors=True)
            if self._meta_tmp is not None:
                _quietly(os.unlink, self._meta_tmp)
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._lock.release()

    # -- append -----------------------------------------------------------------------

    @classmethod
    def append(cls, root: str | os.PathLike[str], *, user_metadata: dict[str, Any] | None = None,
               limits: Limits = DEFAULT_LIMITS) -> AtlasDatasetWriter:
        """A writer adding examples to an existing version 2 dataset as new shards.

        Codec, framing, level, block_size, shard_size and the shared dictionary are the dataset's.
        ``user_metadata`` members, when given, are merged into the stored object.
        Use it as a context manager; an exception inside ``with`` leaves the dataset unchanged.
        A concurrent append is refused at once (DatasetLockedError, naming the holder's pid); what
        killed appenders left (staging entries, unlisted shard folders) is removed (``recovered``).
        """
        root = Path(root)
        lock = WriterLock(root / APPEND_LOCK_FILE, "append", f"the dataset at {root}")
        if root.is_dir():  # else reading meta.json below names what is wrong
            lock.acquire()  # before reading anything: a concurrent append is refused here, not at its commit
        try:
            return cls._open_append(root, lock, user_metadata, limits)
        except BaseException:
            lock.release()
            raise

    @classmethod
    def _open_append(cls, root: Path, lock: WriterLock, user_metadata: dict[str, Any] | None,
                     limits: Limits) -> AtlasDatasetWriter:
        meta_path = root / META_FILE
        from .shard_files import check_version, read_json_file

        _, raw = read_json_file(Location(root, META_FILE), limits)
        if check_version(raw, meta_path) != 2:
            raise VersionError("append needs a version 2 dataset (version 1 cannot be appended to safely)",
                               path=meta_path)
        doc, _ = read_v2_meta(Location(root, META_FILE), "v2-root", limits)
        self = cls.__new__(cls)
        self._closed = True
        self.format_version = 2
        self.path = root
        self.limits = limits
        self.shard_size, self.block_size = doc["shard_size"], doc["block_size"]
        self.compression_level, self.compression_dict_size = doc["compression_level"], doc["compression_dict_size"]
        self.codec, self.mode = Codec.from_label(doc["codec"]), DictionaryMode(doc["dictionary"])
        self.encoding = typed.encoding_of_meta(doc)  # the schema checked it
        self.framing = _resolve_framing(doc.get("framing", Framing.BLOCK.value), self.codec, 2)
        self.strategy = CompressionStrategy.STANDARD_COMPRESSION
        self._shared = None
        if doc["shared_dictionary"] is not None:
            self._shared = load_dictionary(Location(root, DICT_FILE), doc["shared_dictionary"], limits)
        self.user_metadata = {**doc["user_metadata"], **(user_metadata or {})}
        json.dumps(self.user_metadata, allow_nan=False)
        self._base_doc = doc
        self._append = True
        self._records = []
        self._moved = []
        self._meta_tmp = None
        self._shard_number = max((int(s["name"]) + 1 for s in doc["shards"]), default=0)
        self.num_examples = 0
        self._current = None
        self._preamble_seed = None
        self._lock = lock
        self.before_publish = None
        # Under the lock, what dead appenders left (staging entries, shard folders meta.json does not list:
        # killed after moving them in, before the commit) is theirs alone; the new shards take those numbers.
        self.recovered = clear_root(root, {s["name"] for s in doc["shards"]})
        self._tmp = root / f"{TEMP_PREFIX}{secrets.token_hex(6)}"
        self._tmp.mkdir()
        self._closed = False
        return self

    def _finish_append(self) -> None:
        if self._current is not None:
            self._close_v2_shard()
        if not self._records:  # nothing added: leave the dataset untouched
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._closed = True
            return
        fsync_dir(self._tmp)
        for record in self._records:
            target = self.path / record["name"]
            if os.path.lexists(target):
                raise FileExistsError(f"[Errno 17] File exists: '{target}' (a concurrent append?)")
            os.rename(self._tmp / record["name"], target)
            self._moved.append(target)
        fsync_dir(self.path)
        base = self._base_doc
        new_records = [{k: v for k, v in r.items() if k != "max_block_raw_size"} for r in self._records]
        doc = {**base}
        doc.pop("checksum", None)
        doc["shards"] = list(base["shards"]) + new_records
        doc["num_examples"] = base["num_examples"] + sum(r["num_examples"] for r in self._records)
        doc["max_block_raw_size"] = max([base["max_block_raw_size"]] +
                                        [r["max_block_raw_size"] for r in self._records])
        doc["generation"] = base["generation"] + 1
        doc["writer"] = _writer_info()
        doc["user_metadata"] = self.user_metadata
        self._meta_tmp = self.path / f"{TEMP_PREFIX}{secrets.token_hex(6)}.json"
        write_file(self._meta_tmp, dump_checksummed_json(doc))
        _replace(self._meta_tmp, self.path / META_FILE)  # the commit point
        self._meta_tmp = None
        self._moved = []
        self._closed = True
        fsync_dir(self.path)
        shutil.rmtree(self._tmp, ignore_errors=True)


def _replace(src: Path, dst: Path) -> None:
    """os.replace, a separate function so tests can inject a failure at the commit point."""
    os.replace(src, dst)


class AtlasDatasetShardWriter(_Publisher):
    """Writes one shard folder on its own (the original's class), published atomically.

    Version 2 by default; ``compression_dict`` is the shared dictionary (bytes or a
    zstandard.ZstdCompressionDict) for SHARED_DICTIONARY_COMPRESSION.
    """

    def __init__(self, path: str | os.PathLike[str], block_size: int,
                 compression_strategy: CompressionStrategy | int | None = CompressionStrategy.DICTIONARY_COMPRESSION,
                 compression_level: int = 3, compression_dict: Any = None, compression_dict_size: float = 0.01, *,
                 codec: Codec | str | None = None, format_version: int = 2, limits: Limits = DEFAULT_LIMITS,
                 framing: Framing | str | None = None) -> None:
        self._closed = True
        if format_version not in (1, 2):
            raise ValueError(f"format_version must be 1 or 2, got {format_version!r}")
        _check_int("block_size", block_size, 1)
        _check_dict_size(compression_dict_size)
        if codec is not None and compression_strategy == CompressionStrategy.DICTIONARY_COMPRESSION:
            compression_strategy = None
        c, mode, strategy = _resolve_codec(codec, compression_strategy, format_version)
        framing = _resolve_framing(framing, c, format_version)
        if mode == DictionaryMode.SHARED and compression_dict is None:
            raise ValueError("SHARED_DICTIONARY_COMPRESSION needs compression_dict (the dataset's dictionary)")
        self.path = Path(path)
        if os.path.lexists(self.path):
            raise FileExistsError(f"[Errno 17] File exists: '{self.path}'")
        self._lock, self.recovered = _lock_new_target(self.path)
        self._tmp = _temp_sibling(self.path)
        try:
            self._open_builder(format_version, block_size, strategy, c, mode, compression_level,
                               compression_dict_size, compression_dict, limits, framing)
        except BaseException:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._lock.release()
            raise
        self._closed = False

    def _open_builder(self, format_version: int, block_size: int, strategy: CompressionStrategy, c: Codec,
                      mode: DictionaryMode, compression_level: int, compression_dict_size: float,
                      compression_dict: Any, limits: Limits, framing: Framing) -> None:
        self.format_version = format_version
        self._builder: Any
        if format_version == 1:
            self._builder = _V1ShardBuilder(self._tmp, block_size, strategy, compression_level,
                                            compression_dict_size, _as_dict(compression_dict))
        else:
            name = self.path.name
            name = name.zfill(6) if name.isdigit() and len(name) <= 6 else "000000"
            d = compression_dict
            if isinstance(d, zstandard.ZstdCompressionDict):
                d = d.as_bytes()
            self._builder = _V2ShardBuilder(self._tmp, name, block_size, c, compression_level,
                                            compression_dict_size, mode.value, None if d is None else bytes(d),
                                            limits, framing=framing)

    def add_example(self, example: Any) -> None:
        self._check_open()
        try:
            self._builder.add_example(example)
        except BaseException:
            self.abort()
            raise

    def close(self) -> None:
        if self._closed:
            return
        try:
            self._builder.close()
            publish_folder(self._tmp, self.path)
            self._closed = True
        except BaseException:
            self.abort()
            raise
        self._lock.release()

    def abort(self) -> None:
        if self._closed:
            return
        self._closed = True
        _quietly(self._builder.abort)
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._lock.release()
