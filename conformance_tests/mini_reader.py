"""A tiny, independent reader of the Atlas Dataset format, written only from spec/FORMAT.md.

``open_dataset(path)`` returns a read-only sequence (``len``, ``[i]``, negative indices,
``IndexError`` outside ``[-len, len)``: V1-READ-2, V2-READ-1) over a version 1 or version 2
dataset (GEN-5). It imports nothing of this project: it implements the text a second time to
catch bugs in FORMAT.md and in the reference. Clauses implemented:

* files: FILE-1 (no symlink at any component inside the root, regular files and real folders
  only), FILE-2 (``O_NONBLOCK | O_NOFOLLOW``, then ``fstat``), FILE-3 (size against its limit or
  the declared size before reading), FILE-4 (one decoded block cached);
* limits: GEN-4, LIM-1 (counts and sizes checked before use), LIM-2 (a frame's declared size
  checked before decompressing; a frame without one is refused);
* version 1: V1-LAYOUT-1..5, V1-META-1..3/5 (``shard_sizes`` only for missing shards), V1-READ-5,
  table V1-STRATEGY, V1-INDEX-1..3 (the ``.npy`` header parsed as a literal, never evaluated),
  V1-BLOCK-1..4, V1-DICT-1, V1-READ-1..3;
* version 2: V2-LAYOUT-1..3, V2-CODEC-1..3, V2-CHK-1..3 (every checksum; a block's on every
  read), V2-META-1..5, V2-INDEX-1..4, V2-BLOCK-1..4, V2-FRAME-1..9 (a grouped block: checked
  whole once, each example read the random way, by its group or frame), V2-CODEC-4, V2-DICT-1/2,
  V2-READ-1/2, V2-COMPAT-1..4.

Anything malformed raises ``MiniReaderError`` naming the file (and block, example) and what
was wrong.

NOT A SAFE LOADER: examples are unpickled with the standard ``pickle`` module, which runs
whatever a pickle names; section 5's pickle policy is not implemented. Open only trusted data.
"""

from __future__ import annotations

import ast
import base64
import binascii
import io
import json
import operator
import os
import pickle
import re
import stat
import struct
from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate, pairwise
from typing import Any

import lz4.frame
import xxhash
import zstandard

MAX_RAW = MAX_STORED = 2**30  # LIM-1
MAX_PER_BLOCK, MAX_PER_SHARD, MAX_SHARDS = 2**24, 2**32 - 1, 10**6
MAX_META, MAX_DICT, MAX_INDEX, MAX_DATA = 128 * 2**20, 64 * 2**20, 64 + 24 * (2**32 - 1), 2**50
MAX_PREAMBLE = 64 * 2**10

CODECS = {"none": 0, "zstd": 1, "lz4": 2}                         # V2-CODEC-1
DICT_MODES = {"none": 0, "shared": 1, "shard": 2}                  # V2-INDEX-1
FRAMING_FLAGS = {"block": 0, "example": 1, "list": 2, "grouped": 4}  # V2-FRAME-1
V1_CODEC = {0: "none", 1: "zstd", 2: "zstd", 3: "zstd"}            # V2-CODEC-2
# V1-INDEX-2: what numpy reads to the same offsets: 1, 2, 4 or 8-byte integers, either byte order, signed or not
NPY_DTYPES = {f"{order}{kind}{size}": ("<" if order != ">" else ">") + (code if kind == "i" else code.upper())
              for size, code in ((1, "b"), (2, "h"), (4, "i"), (8, "q")) for kind in "iu"
              for order in (("|",) if size == 1 else ("<", ">"))}
V2_PREFIX = re.compile(rb'\{\n  "checksum": "(xxh3_64:[0-9a-f]{16})",\n')  # V2-META-2
INDEX_HEADER, ENTRY = struct.Struct("<8sHHHBBBBHIQQQIIQ"), struct.Struct("<QIIQ")  # V2-INDEX-1, V2-INDEX-4


class MiniReaderError(Exception):
    """A malformed dataset (the message names the file and what was wrong)."""


def _check(ok: Any, where: str, what: str) -> None:
    if not ok:
        raise MiniReaderError(f"{where}: {what}")


def _xxh(data: bytes) -> str:
    return f"xxh3_64:{xxhash.xxh3_64_intdigest(data):016x}"  # V2-CHK-1


def _is_int(value: Any, lo: int = 0, hi: int = 2**64 - 1) -> bool:
    return type(value) is int and lo <= value <= hi


def _increasing(values: Sequence[int], step: int = 2**64) -> bool:
    return values[0] == 0 and all(a < b <= a + step for a, b in pairwise(values))


def _read(root: str, rel: str, limit: int, size: int | None = None, offset: int = 0, length: int = -1) -> bytes:
    """FILE-1..3: open root/rel following no symlink and without blocking, check it is a regular
    file within ``limit`` (and of the declared ``size``), then read ``length`` bytes at ``offset``."""
    where, flags, fd, file_fd = f"{root}/{rel}", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, -1, -1
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)  # the root itself may be a symlink
        *folders, name = rel.split("/")
        for folder in folders:
            fd, old = os.open(folder, flags | os.O_DIRECTORY, dir_fd=fd), fd
            os.close(old)
        file_fd = os.open(name, flags, dir_fd=fd)
        info = os.fstat(file_fd)
        _check(stat.S_ISREG(info.st_mode), where, "not a regular file")
        _check(info.st_size <= limit, where, f"size {info.st_size} above the limit {limit}")
        _check(size in (None, info.st_size), where, f"size {info.st_size}, the metadata declares {size}")
        length = info.st_size if length < 0 else length
        data = os.pread(file_fd, length, offset)
    except OSError as exc:
        raise MiniReaderError(f"{where}: cannot open or read ({exc.strerror}; missing, a symlink?)") from None
    finally:
        for descriptor in (fd, file_fd):
            if descriptor >= 0:
                os.close(descriptor)
    _check(len(data) == length, where, f"short read at byte {offset}: {len(data)} of {length} bytes")
    return data


def _present(root: str, rel: str, wanted: bool, rule: str) -> None:
    """Layout rules "X exactly when Y" (V1-LAYOUT-3/4, V2-LAYOUT-2/3), without opening anything."""
    try:
        os.stat(f"{root}/{rel}", follow_symlinks=False)
        found = True
    except FileNotFoundError:
        found = False
    except OSError as exc:
        raise MiniReaderError(f"{root}/{rel}: cannot stat ({exc.strerror})") from None
    _check(found == wanted, f"{root}/{rel}", f"{'missing' if wanted else 'unexpected'} ({rule})")


def _json(data: bytes, where: str) -> dict[str, Any]:
    """V2-META-1: a UTF-8 JSON object without duplicate keys, NaN or Infinity."""
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        _check(len({k for k, _ in items}) == len(items), where, "duplicate key")
        return dict(items)

    def constant(name: str) -> None:
        raise MiniReaderError(f"{where}: {name} is not JSON")

    try:
        meta = json.loads(data.decode("utf-8"), object_pairs_hook=pairs, parse_constant=constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MiniReaderError(f"{where}: not valid JSON ({exc})") from None
    _check(isinstance(meta, dict), where, "not a JSON object")
    return meta  # type: ignore[no-any-return]


def _v2_json(data: bytes, where: str) -> tuple[dict[str, Any], str]:
    """V2-META-2: verify the leading checksum line before using the JSON; return (meta, checksum)."""
    match = V2_PREFIX.match(data)
    _check(match, where, "does not start with the checksum line of V2-META-2")
    _check(_xxh(data[match.end():]) == match[1].decode(), where, "checksum mismatch")
    return _json(data, where), match[1].decode()


def _dictionary(data: bytes, where: str) -> tuple[zstandard.ZstdCompressionDict, int]:
    """V1-DICT-1: magic 0xEC30A437, then the u32 dictionary id; returns (dictionary, id)."""
    _check(len(data) >= 8 and data[:4] == b"\x37\xa4\x30\xec", where, "not a trained zstd dictionary")
    return zstandard.ZstdCompressionDict(data), int.from_bytes(data[4:8], "little")


def _declared(codec: str, frame: bytes, dict_id: int, where: str, magicless: bool = False) -> int:
    """The content size a frame header declares (V2-CODEC-1, V1-BLOCK-3, LIM-2); ``magicless``: a zstd
    frame without magic number or dictionary id (V2-CODEC-4)."""
    if codec == "zstd":  # RFC 8878: magic, descriptor, [window], [dictionary id], content size
        if magicless:
            frame, dict_id = b"\x28\xb5\x2f\xfd" + frame, 0
        _check(len(frame) >= 6 and frame[:4] == b"\x28\xb5\x2f\xfd", where, "not a zstd frame")
        fhd = frame[4]
        single = fhd >> 5 & 1
        _check(not fhd & 0x08, where, "zstd frame header reserved bit set")
        _check(not fhd & 0x04, where, "zstd frame carries a content checksum")
        pos, did_len, fcs_len = 6 - single, (0, 1, 2, 4)[fhd & 3], (single, 2, 4, 8)[fhd >> 6]
        _check(fcs_len and len(frame) >= pos + did_len + fcs_len, where, "zstd frame declares no content size")
        found = int.from_bytes(frame[pos:pos + did_len], "little")
        _check(found == dict_id, where, f"zstd frame dictionary id {found}, expected {dict_id}")
        return int.from_bytes(frame[pos + did_len:pos + did_len + fcs_len], "little") + (256 if fcs_len == 2 else 0)
    # LZ4 frame format 1.6: magic, FLG (version 01, reserved bit 1 clear), BD, then the content size
    _check(len(frame) >= 15 and frame[:4] == b"\x04\x22\x4d\x18", where, "not an LZ4 frame")
    flg, bd = frame[4], frame[5]
    _check(flg >> 6 == 1 and not flg & 0x02 and not bd & 0x8F and bd >> 4 >= 4, where, "bad LZ4 frame descriptor")
    _check(not flg & 0x01, where, "LZ4 frame with a dictionary id (codec lz4 has no dictionary)")
    _check(flg & 0x08, where, "LZ4 frame declares no content size")
    return int.from_bytes(frame[6:14], "little")


def _decode(codec: str, frame: bytes, zdict: Any, dict_id: int, limit: int, where: str,
            expect: int | None = None, magicless: bool = False) -> bytes:
    """Decode one complete frame, its declared size checked first (LIM-2, V2-CODEC-3, V2-FRAME-3)."""
    if codec == "none":
        return frame
    size = _declared(codec, frame, dict_id, where, magicless)
    _check(expect is None or size == expect, where, f"frame declares {size} bytes, the index says {expect}")
    _check(size <= limit, where, f"frame declares {size} bytes, above the bound {limit}")
    try:
        if codec == "zstd":
            fmt = zstandard.FORMAT_ZSTD1_MAGICLESS if magicless else zstandard.FORMAT_ZSTD1
            out = zstandard.ZstdDecompressor(dict_data=zdict, format=fmt).decompress(
                frame, max_output_size=size, allow_extra_data=False)
        else:
            out, used = lz4.frame.decompress(frame, return_bytes_read=True)
            _check(used == len(frame), where, "bytes follow the LZ4 frame")
    except (zstandard.ZstdError, RuntimeError, ValueError) as exc:
        raise MiniReaderError(f"{where}: {codec} frame does not decode ({exc})") from None
    _check(len(out) == size, where, f"frame decodes to {len(out)} bytes, declares {size}")
    return out


def _unpickle(data: bytes, where: str, v2: bool) -> Any:
    """TRUSTED pickle load of exactly one pickle ending at the end of ``data`` (V1-BLOCK-4,
    V2-BLOCK-4: protocols 2 to 5 in version 2)."""
    _check(not v2 or (len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5), where, "not a protocol 2-5 pickle")
    stream = io.BytesIO(data)
    try:
        value = pickle.Unpickler(stream).load()
    except Exception as exc:  # noqa: BLE001 - the standard unpickler raises anything on a malformed pickle
        raise MiniReaderError(f"{where}: pickle does not load ({type(exc).__name__}: {exc})") from None
    _check(stream.tell() == len(data), where, f"{len(data) - stream.tell()} bytes after the pickle's STOP")
    return value


# TYPED-3/4: extension codes; dtype code -> (numpy dtype, itemsize), bfloat16 (11) a tensor's only
TYPED_DTYPES = {1: ("bool", 1), 2: ("int8", 1), 3: ("<i2", 2), 4: ("<i4", 4), 5: ("<i8", 8), 6: ("uint8", 1),
                7: ("<u2", 2), 8: ("<u4", 4), 9: ("<u8", 8), 10: ("<f2", 2), 11: (None, 2), 12: ("<f4", 4),
                13: ("<f8", 8), 14: ("<c8", 8), 15: ("<c16", 16)}
TORCH_NAMES = {1: "bool", 2: "int8", 3: "int16", 4: "int32", 5: "int64", 6: "uint8", 7: "uint16", 8: "uint32",
               9: "uint64", 10: "float16", 11: "bfloat16", 12: "float32", 13: "float64", 14: "complex64",
               15: "complex128"}


def _typed(data: bytes, where: str) -> Any:
    """TYPED-2..6: one MessagePack object (decoded with the msgpack library) and nothing after it; extension
    1 an ndarray, 2 a tensor, 3 a tuple; map keys str or int; containers at most 64 deep."""
    import msgpack
    import numpy as np

    def ext(code: int, payload: bytes) -> Any:
        if code == 3:
            items = msgpack.unpackb(payload, strict_map_key=False, ext_hook=ext, raw=False)
            _check(type(items) is list, where, "a tuple's payload is not an array")
            return tuple(items)
        _check(code in (1, 2) and len(payload) >= 4, where, f"extension {code} is not an array, tensor or tuple")
        dtype, ndim, pad, reserved = payload[0], payload[1], payload[2], payload[3]
        _check(dtype in TYPED_DTYPES and ndim <= 32 and pad < 16 and reserved == 0, where, "bad array header")
        _check(len(payload) >= 4 + 8 * ndim + pad, where, "array payload shorter than its header")
        shape = struct.unpack_from(f"<{ndim}Q", payload, 4)
        name, size = TYPED_DTYPES[dtype]
        body = payload[4 + 8 * ndim + pad:]
        count = 1
        for n in shape:
            count *= n
        _check(len(body) == count * size, where, f"array of shape {list(shape)} does not hold {len(body)} bytes")
        _check(dtype != 1 or not body or max(body) <= 1, where, "a bool array holds a byte other than 0 and 1")
        if code == 2:
            import torch
            dt = getattr(torch, TORCH_NAMES[dtype])
            return torch.frombuffer(bytearray(body), dtype=dt).reshape(shape) if body else torch.empty(shape, dtype=dt)
        _check(name is not None, where, "an ndarray of dtype bfloat16")
        return np.frombuffer(body, dtype=name).reshape(shape).copy()

    try:
        value = msgpack.unpackb(data, strict_map_key=False, ext_hook=ext, raw=False)
    except MiniReaderError:
        raise
    except Exception as exc:  # noqa: BLE001 - msgpack raises several types on malformed input
        raise MiniReaderError(f"{where}: not one typed example ({type(exc).__name__}: {exc})") from None

    def depth(v: Any, d: int) -> None:
        if isinstance(v, (list, tuple, dict)):
            _check(d <= 64, where, "containers nested deeper than 64")
            for item in (v.values() if isinstance(v, dict) else v):
                depth(item, d + 1)
            if isinstance(v, dict):
                _check(all(type(k) in (str, int) for k in v), where, "a map key that is not str or int")

    depth(value, 1)
    return value


def _table(buf: bytes, n: int, where: str) -> tuple[int, tuple[int, ...]]:
    """V2-BLOCK-3 / V2-FRAME-2: count n, n + 1 u32 offsets, a payload ending at the end of ``buf``."""
    base = 8 + 4 * n
    _check(len(buf) >= base and int.from_bytes(buf[:4], "little") == n, where, f"table does not hold {n} examples")
    offsets = struct.unpack_from(f"<{n + 1}I", buf, 4)
    _check(_increasing(offsets), where, "example offsets do not increase strictly from 0")
    _check(base + offsets[n] == len(buf), where, f"example offsets end at {base + offsets[n]}, not at {len(buf)}")
    return base, offsets


def _grouped_head(n: int, raw_size: int, group: int, typed: bool = False) -> tuple[int, list[int], int]:
    """V2-FRAME-7: (head size, interior group offsets per frame, their width) of a grouped block of n examples
    in groups of ``group`` (TYPED-7: typed blocks of up to 32 have a head too, groups of min(G, ceil(n / 8)))."""
    counts = [min(32, n - a) for a in range(0, n, 32)] if n > 32 or typed else []
    size = group if n > 32 else max(1, min(group, -(-n // 8)))
    inner, width = [-(-c // size) - 1 for c in counts], 2 if raw_size < 65536 else 4
    return 4 * max(0, len(counts) - 1) + width * sum(inner), inner, width


def _array_head(count: int) -> bytes:
    """TYPED-1: the shortest MessagePack array header of ``count`` items."""
    return bytes([0x90 | count]) if count < 16 else struct.pack(">BH", 0xDC, count) if count < 65536 else \
        struct.pack(">BI", 0xDD, count)


class _Dataset(Sequence[Any]):
    """Global example i -> (shard, block, position) (V1-READ-1, V2-READ-1, V1-/V2-BLOCK-1)."""

    def __init__(self, root: str, shards: list[Any]) -> None:
        self.root, self._shards, self._ends = root, shards, list(accumulate(s.count for s in shards))
        self._key: tuple[int, int] | None = None
        self._block: Any = None

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    def __getitem__(self, i: Any) -> Any:
        i, n = operator.index(i), len(self)
        if not -n <= i < n:
            raise IndexError(f"{self.root}: index {i} outside [{-n}, {n})")
        i += n if i < 0 else 0
        k = bisect_right(self._ends, i)
        shard = self._shards[k]
        block, pos = divmod(i - (self._ends[k - 1] if k else 0), shard.block_size)
        if self._key != (k, block):  # FILE-4: one decoded block kept
            n_block = min(shard.block_size, shard.count - block * shard.block_size)
            self._key, self._block = None, shard.load(block, n_block)
            self._key = (k, block)
        return shard.pick(self._block, block, pos)


class _V1Shard:
    def __init__(self, root: str, name: str, root_strategy: int, root_dict: Any) -> None:
        self.root, self.name, where = root, name, f"{root}/{name}/meta.json"
        meta = _json(_read(root, f"{name}/meta.json", MAX_META), where)  # V1-META-2
        _check(_is_int(meta.get("version"), 1, 1), where, f"version {meta.get('version')!r}, not the integer 1")
        _check(_is_int(meta.get("block_size"), 1, MAX_PER_BLOCK), where, "block_size missing or out of range")
        _check(_is_int(meta.get("stored_examples"), 0, MAX_PER_SHARD), where, "stored_examples missing or out of range")
        ratio = meta.get("compression_dict_size")
        _check(type(meta.get("compression_level")) is int and type(ratio) in (int, float) and 0 <= ratio <= 1, where,
               "compression_level or compression_dict_size missing or out of range")
        self.strategy, self.block_size, self.count = (meta.get(k) for k in ("compression_strategy", "block_size",
                                                                            "stored_examples"))
        _check(_is_int(self.strategy, 0, 3), where, f"unknown compression_strategy {self.strategy!r}")  # V1-READ-3
        _check(self.strategy in {0: (0,), 1: (1,), 2: (2,), 3: (3, 1)}[root_strategy], where,  # V1-META-5
               f"strategy {self.strategy} under a root of strategy {root_strategy}")
        blocks = -(-self.count // self.block_size)
        _present(root, f"{name}/zstd_dict.bin", self.strategy == 3, "V1-LAYOUT-3: exactly for strategy 3")
        self.zdict, self.dict_id = root_dict if self.strategy == 2 else (None, 0)
        if self.strategy == 3:
            rel = f"{name}/zstd_dict.bin"
            self.zdict, self.dict_id = _dictionary(_read(root, rel, MAX_DICT), f"{root}/{rel}")
        self.index = self._index(f"{name}/index.npy", blocks)
        _present(root, f"{name}/data.bin", blocks > 0, "V1-LAYOUT-3: exactly when the shard has blocks")
        if blocks:
            _read(root, f"{name}/data.bin", MAX_DATA, self.index[-1], length=0)

    def _index(self, rel: str, blocks: int) -> tuple[int, ...]:
        """V1-INDEX-1..3: a .npy 1.0 file of blocks + 1 strictly increasing offsets from 0."""
        where = f"{self.root}/{rel}"
        head = _read(self.root, rel, MAX_INDEX, length=12)
        _check(head[:6] == b"\x93NUMPY" and head[6:8] in (b"\x01\x00", b"\x02\x00", b"\x03\x00"), where,
               "not a .npy file of format version 1.0, 2.0 or 3.0")
        prefix = 10 if head[6] == 1 else 12  # 2.0 and 3.0 have a 4-byte header length
        end = prefix + int.from_bytes(head[8:prefix], "little")
        header = _read(self.root, rel, MAX_INDEX, offset=prefix, length=end - prefix)
        _check(header.endswith(b"\n"), where, "header not ended by \\n")
        try:
            fields = ast.literal_eval(header.decode("latin-1"))
        except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
            raise MiniReaderError(f"{where}: header is not a Python literal") from None
        _check(isinstance(fields, dict) and set(fields) == {"descr", "fortran_order", "shape"}, where, "bad header")
        code = NPY_DTYPES.get(fields["descr"]) if isinstance(fields["descr"], str) else None
        _check(code and isinstance(fields["fortran_order"], bool), where, f"dtype {fields['descr']!r}")
        _check(fields["shape"] == (blocks + 1,) and type(fields["shape"][0]) is int, where,
               f"shape {fields['shape']!r}, expected ({blocks + 1},) for {self.count} examples")
        size = struct.calcsize(code) * (blocks + 1)
        data = _read(self.root, rel, MAX_INDEX, None, end, size)  # bytes after the array are ignored, as numpy does
        index = struct.unpack(f"{code[0]}{blocks + 1}{code[1]}", data)
        _check(_increasing(index, MAX_STORED), where, "offsets do not increase strictly from 0 (within LIM-1)")
        return index

    def load(self, block: int, n: int) -> list[Any]:
        where = f"{self.root}/{self.name}/data.bin block {block}"
        start, end = self.index[block], self.index[block + 1]
        stored = _read(self.root, f"{self.name}/data.bin", MAX_DATA, self.index[-1], start, end - start)
        raw = _decode(V1_CODEC[self.strategy], stored, self.zdict, self.dict_id, MAX_RAW, where)
        value = _unpickle(raw, where, v2=False)  # V1-BLOCK-2
        _check(type(value) is list and len(value) == n, where, f"not a list of {n} examples")
        return value

    def pick(self, value: list[Any], block: int, pos: int) -> Any:
        return value[pos]


def _open_v1(root: str, meta: dict[str, Any], where: str) -> _Dataset:
    strategy, sizes = meta.get("compression_strategy"), meta.get("shard_sizes")  # V1-META-1
    _check(_is_int(strategy, 0, 3), where, f"unknown compression_strategy {strategy!r}")
    _check(isinstance(sizes, list) and all(_is_int(s, 0, MAX_PER_SHARD) for s in sizes), where, "bad shard_sizes")
    try:
        names = sorted(n for n in os.listdir(root) if re.fullmatch("[0-9]+", n))  # V1-LAYOUT-5
    except OSError as exc:
        raise MiniReaderError(f"{root}: cannot list ({exc.strerror})") from None
    _check(len(names) <= MAX_SHARDS, root, "too many shard folders")
    wanted = [str(k).zfill(len(str(len(names) - 1))) for k in range(len(names))]  # V1-LAYOUT-2
    _check(names == wanted, root, f"shard folders {names[:12]} are not contiguous names of one width")
    if strategy == 2:  # V1-LAYOUT-4: at another strategy a root dictionary is never opened
        _present(root, "zstd_dict.bin", True, "V1-LAYOUT-4: strategy 2")
    root_dict = _dictionary(_read(root, "zstd_dict.bin", MAX_DICT), f"{root}/zstd_dict.bin") if strategy == 2 else None
    shards = [_V1Shard(root, name, strategy, root_dict) for name in names]
    # V1-META-3, V1-READ-5: shard_sizes listing more shards than there are folders loses examples; any other
    # disagreement changes nothing read, and the original reads it
    _check(len(sizes) <= len(shards), where, f"shard_sizes lists {len(sizes)} shards, the root holds {len(shards)}")
    return _Dataset(root, shards)


def _dict_file(root: str, rel: str, spec: Any, where: str) -> tuple[Any, int]:
    """A zstd_dict.bin described in JSON: size, checksum and id (V2-META-3/4, V2-CHK-2, V2-DICT-1)."""
    _check(isinstance(spec, dict) and spec.get("file") == "zstd_dict.bin" and _is_int(spec.get("size"), 8, MAX_DICT)
           and _is_int(spec.get("dict_id"), 1, 2**32 - 1), where, f"bad dictionary description {spec!r}")
    data = _read(root, rel, MAX_DICT, spec["size"])
    _check(_xxh(data) == spec.get("checksum"), f"{root}/{rel}", "checksum mismatch")
    zdict, dict_id = _dictionary(data, f"{root}/{rel}")
    _check(dict_id == spec["dict_id"], f"{root}/{rel}", f"dictionary id {dict_id}, the metadata says {spec['dict_id']}")
    return zdict, dict_id


class _V2Shard:
    def __init__(self, root: str, k: int, entry: Any, top: dict[str, Any], shared: Any) -> None:
        self.root, self.name, where = root, f"{k:06d}", f"{root}/{k:06d}/meta.json"  # V2-LAYOUT-1
        keys = ("num_examples", "num_blocks", "data_size", "dictionary")
        _check(isinstance(entry, dict) and entry.get("name") == self.name and all(key in entry for key in keys)
               and "index_size" in entry, f"{root}/meta.json", f"shards[{k}] is not a description of {self.name}")
        meta, checksum = _v2_json(_read(root, f"{self.name}/meta.json", MAX_META), where)  # V2-META-4/5
        _check(checksum == entry.get("meta_checksum"), where, "checksum differs from the root's meta_checksum")
        _check(_is_int(meta.get("version"), 2, 2) and meta.get("shard") == self.name, where, "bad version or shard")
        for key in ("codec", "compression_level", "block_size", "checksum_algorithm", "framing", *keys):
            wanted = entry[key] if key in keys else top.get(key, "block" if key == "framing" else None)
            _check(meta.get(key, "block" if key == "framing" else None) == wanted, where,
                   f"{key} {meta.get(key)!r} differs from the root's {wanted!r}")
        self.codec, self.framing, self.mode = top["codec"], top.get("framing", "block"), meta["dictionary"]
        self.block_size, (self.count, blocks, self.data_size) = top["block_size"], (meta[key] for key in keys[:3])
        _check(_is_int(self.count, 0, MAX_PER_SHARD) and _is_int(blocks, 0, MAX_PER_SHARD)
               and _is_int(self.data_size, 0, MAX_DATA), where, "num_examples, num_blocks or data_size out of range")
        _check(blocks == -(-self.count // self.block_size), where, f"num_blocks {blocks} for {self.count} examples")
        self.max_raw = meta.get("max_block_raw_size")
        _check(_is_int(self.max_raw, 0, top["max_block_raw_size"]), where, "max_block_raw_size above the root's")
        _check(self.mode in {"none": ("none",), "shared": ("shared",), "shard": ("shard", "none")}[top["dictionary"]],
               where, f"dictionary {self.mode!r} under a root {top['dictionary']!r}")  # V2-DICT-2
        _present(root, f"{self.name}/zstd_dict.bin", self.mode == "shard", "V2-LAYOUT-2: exactly for dictionary shard")
        self.zdict, self.dict_id = shared if self.mode == "shared" else (None, 0)
        if self.mode == "shard":
            rel = f"{self.name}/zstd_dict.bin"
            self.zdict, self.dict_id = _dict_file(root, rel, meta.get("dictionary_file"), where)
        else:
            _check("dictionary_file" in meta and meta["dictionary_file"] is None, where, "dictionary_file not null")
        _check(meta.get("dict_id") == self.dict_id, where, f"dict_id {meta.get('dict_id')!r}, expected {self.dict_id}")
        index = meta.get("index")
        _check(isinstance(index, dict) and index.get("file") == "index.bin"
               and index.get("size") == entry["index_size"], where, "bad index description")
        self.encoding = top.get("encoding", "pickle")  # TYPED-1: every shard has the root's encoding
        _check(meta.get("encoding", "pickle") == self.encoding and self.encoding in ("pickle", "typed"), where,
               f"encoding {meta.get('encoding')!r} with root {top.get('encoding')!r}")
        self.group = meta.get("group_size", 8)  # V2-FRAME-6: framing grouped only, absent means 8
        _check(_is_int(self.group, 1, 8) and self.group in (8, 4, 2, 1)
               and ("group_size" not in meta or self.framing == "grouped"), where,
               f"group_size {self.group!r}: 8, 4, 2 or 1, and only with framing grouped")
        self.entries = self._index(entry["index_size"], index.get("checksum"), blocks)
        self.preamble = self._preamble(meta.get("pickle_preamble"), where)
        _read(root, f"{self.name}/data.bin", MAX_DATA, self.data_size, length=0)  # V2-LAYOUT-2: always present

    def _index(self, size: int, checksum_text: Any, blocks: int) -> list[tuple[int, int, int, int]]:
        """V2-INDEX-1..4 and V2-COMPAT-4: the header against the shard meta.json, then the entries."""
        where = f"{self.root}/{self.name}/index.bin"
        data = _read(self.root, f"{self.name}/index.bin", MAX_INDEX, size)
        _check(len(data) >= 64, where, "shorter than its 64-byte header")
        (magic, version, header_size, entry_size, codec, mode, algorithm, flags, reserved, block_size, block_count,
         example_count, data_size, dict_id, reserved2, checksum) = INDEX_HEADER.unpack_from(data)
        _check(magic == b"ATLASIDX" and version == 2, where, "bad magic or format_version")
        _check(f"xxh3_64:{checksum:016x}" == _xxh(data[:56] + data[64:]) == checksum_text, where,
               "checksum mismatch (of the header, the bytes, or the shard meta.json)")  # V2-INDEX-3
        _check(header_size >= 64 and entry_size >= 24 and algorithm == 1 and reserved == reserved2 == 0, where,
               "bad header_size, entry_size, checksum_algorithm or reserved field")
        group_bits = {8: 0, 4: 1, 2: 2, 1: 3}[self.group] << 3  # V2-INDEX-1: bits 3-4, groups of 8 >> s
        group_bits |= 0x20 if self.encoding == "typed" else 0  # TYPED-1: bit 5
        _check(flags == FRAMING_FLAGS[self.framing] | group_bits, where,
               f"flags {flags:#x} do not say framing {self.framing!r} in groups of {self.group}")
        _check((codec, mode, block_size, block_count, example_count, data_size, dict_id) == (CODECS[self.codec],
               DICT_MODES[self.mode], self.block_size, blocks, self.count, self.data_size, self.dict_id), where,
               "header disagrees with the shard meta.json (V2-INDEX-2)")
        _check(len(data) == header_size + blocks * entry_size, where, "size is not header_size + blocks * entry_size")
        entries = [ENTRY.unpack_from(data, header_size + b * entry_size) for b in range(blocks)]
        end = 0
        for b, (offset, stored, raw, _) in enumerate(entries):  # V2-INDEX-4
            _check(offset == end and 0 < stored <= MAX_STORED and raw <= self.max_raw, where, f"bad entry {b}")
            head = _grouped_head(min(self.block_size, self.count - b * self.block_size), raw, self.group,
                                 self.encoding == "typed")[0]
            _check(self.codec != "none" or raw + (head if self.framing == "grouped" else 0) == stored, where,
                   f"entry {b}: codec none, stored_size is not raw_size (+ the head of framing grouped)")
            end += stored
        _check(end == self.data_size, where, f"blocks end at {end}, data_size is {self.data_size}")
        _check(max((e[2] for e in entries), default=0) == self.max_raw, where, "max_block_raw_size is not the largest")
        return entries

    def _preamble(self, text: Any, where: str) -> bytes:
        """V2-FRAME-7: base64 (canonical, padded), at most MAX_PREAMBLE bytes, PROTO 3 ... POP EMPTY_LIST MARK."""
        _check((text is None) == (self.framing != "grouped" or self.encoding == "typed"), where,
               "pickle_preamble exactly for framing grouped with pickled examples (TYPED-7: none for typed)")
        if text is None:
            return b""
        _check(isinstance(text, str) and len(text) <= 4 * -(-MAX_PREAMBLE // 3), where, "pickle_preamble too long")
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            data = b""
        _check(base64.b64encode(data).decode() == text and len(data) <= MAX_PREAMBLE, where,
               "pickle_preamble is not canonical base64 of at most 64 KiB")
        _check(data[:2] == b"\x80\x03" and data[-3:] == b"0](" and len(data) >= 5, where,
               "pickle_preamble does not start with PROTO 3 and end with POP, EMPTY_LIST, MARK")
        return data

    def _grouped(self, stored: bytes, n: int, raw_size: int, where: str) -> Any:
        """V2-FRAME-6..8: the m = ceil(n / 32) frames after the head (m - 1 u32 starts, then each frame's
        interior group offsets, groups of G, u16 below 64 KiB of raw_size); a list fallback as framing list."""
        m, typed = max(1, -(-n // 32)), self.encoding == "typed"
        head, inner, width = _grouped_head(n, raw_size, self.group, typed)
        _check(len(stored) > head, where, f"shorter than its {head}-byte head")
        values = struct.unpack_from(f"<{m - 1}I{sum(inner)}{'H' if width == 2 else 'I'}", stored)
        starts = (head, *values[:m - 1], len(stored))
        groups, at = [], m - 1
        for c in inner:
            groups.append(values[at:at + c])
            at += c
        fallback = m > 1 and all(a == head for a in starts[1:-1]) and not any(values[m - 1:]) and not typed
        _check(fallback or all(a < b for a, b in pairwise(starts)), where, "frame starts out of order")
        if fallback:
            starts = (head, len(stored))
        frames, left = [], raw_size
        for j, (a, b) in enumerate(pairwise(starts)):
            frames.append(_decode(self.codec, stored[a:b], self.zdict, self.dict_id, left, f"{where} frame {j}",
                                  magicless=True))
            left -= len(frames[-1])
        _check(left == 0, where, f"frames decode to {raw_size - left} bytes, raw_size is {raw_size}")
        joined = b"".join(frames)
        whole = _typed(joined, where) if typed else _unpickle(joined, where, v2=True)
        _check(type(whole) is list and len(whole) == n, where, f"not a list of {n} examples")
        if (fallback or frames[0][:2] == b"\x80\x04") and not typed:  # V2-FRAME-8
            return whole
        first = len(_array_head(n)) if typed else len(self.preamble)  # where frame 0's first example starts
        for j, offsets in enumerate(groups):
            size = len(frames[j]) - (first if j == 0 else 0) - (2 if j == m - 1 and not typed else 0)
            _check(all(a < b for a, b in pairwise((0, *offsets, size))), where,
                   f"frame {j}'s group offsets {list(offsets)} do not increase inside its {size} bytes of slices")
        return frames, n, groups

    def _part(self, frames: list[bytes], n: int, groups: list[Any], pos: int, where: str) -> Any:
        """V2-FRAME-9: example ``pos`` by unpickling only its group (one frame) or its frame (several)."""
        pre, end = self.preamble, b"e."
        if self.encoding == "typed":  # TYPED-7: the array of the example's group
            (j, k), g = divmod(pos, 32), self.group if n > 32 else max(1, min(self.group, -(-n // 8)))
            base, q = len(_array_head(n)) if j == 0 else 0, k // g
            bounds = (0, *groups[j], len(frames[j]) - base)
            want, at = min(g, min(32, n - 32 * j) - g * q), k % g
            part = _typed(_array_head(want) + frames[j][base + bounds[q]:base + bounds[q + 1]], where)
        elif len(frames) == 1:
            raw, size = frames[0], max(1, min(self.group, -(-n // 8)))
            count = -(-n // size)
            length = raw[3] if len(raw) > 3 else 0
            width = (length - 4) // (count + 1)
            _check(raw[:3] == b"\x80\x03C" and width in (2, 4) and length == 4 + width * (count + 1), where,
                   f"no group table of {count + 1} offsets")
            start, *offsets = struct.unpack_from(f"<I{count + 1}{'H' if width == 2 else 'I'}", raw, 4)
            _check(start == 3 + length + len(pre) and raw[4 + length:start] == b"0" + pre[2:], where,
                   "the group table's POP and the shard's preamble do not precede the slices")
            _check(offsets[0] == 0 and _increasing(offsets) and start + offsets[-1] + 2 == len(raw)
                   and raw[-2:] == end, where, "group offsets do not cover the slices up to APPENDS STOP")
            q = pos // size
            part = _unpickle(raw[:start] + raw[start + offsets[q]:start + offsets[q + 1]] + end, where, v2=True)
            want, at = min(size, n - q * size), pos - q * size
        else:
            (j, k), last = divmod(pos, 32), len(frames) - 1
            _check(frames[0][:len(pre)] == pre, where, "frame 0 does not start with the shard's preamble")
            g = self.group
            base, q = len(pre) if j == 0 else 0, k // g
            bounds = (0, *groups[j], len(frames[j]) - base - (2 if j == last else 0))
            part = _unpickle(pre + frames[j][base + bounds[q]:base + bounds[q + 1]] + end, where, v2=True)
            want, at = min(g, min(32, n - 32 * j) - g * q), k % g
        _check(type(part) is list and len(part) == want, where, f"its part is not a list of {want} examples")
        return part[at]

    def load(self, block: int, n: int) -> Any:
        where = f"{self.root}/{self.name}/data.bin block {block}"
        offset, stored_size, raw_size, checksum = self.entries[block]
        stored = _read(self.root, f"{self.name}/data.bin", MAX_DATA, self.data_size, offset, stored_size)
        _check(xxhash.xxh3_64_intdigest(stored) == checksum, where, "block checksum mismatch")  # V2-CHK-3
        if self.framing == "example":  # V2-FRAME-2/3: the frames' declared sizes add up to raw_size
            base, offsets = _table(stored, n, where)
            declared = sum(_declared(self.codec, stored[base + a:base + b], self.dict_id, f"{where} example {k}")
                           for k, (a, b) in enumerate(pairwise(offsets)))
            _check(base + declared == raw_size, where, f"frames declare {declared} bytes, raw_size is {raw_size}")
            return stored, base, offsets
        if self.framing == "grouped":
            return self._grouped(stored, n, raw_size, where)
        raw = _decode(self.codec, stored, self.zdict, self.dict_id, MAX_RAW, where, expect=raw_size)
        if self.framing == "list":  # V2-FRAME-5 (TYPED-1: one MessagePack array of typed examples)
            value = _typed(raw, where) if self.encoding == "typed" else _unpickle(raw, where, v2=True)
            _check(type(value) is list and len(value) == n, where, f"not a list of {n} examples")
            return value
        return (raw, *_table(raw, n, where))  # V2-BLOCK-3

    def pick(self, loaded: Any, block: int, pos: int) -> Any:
        where = f"{self.root}/{self.name}/data.bin block {block} example {pos}"
        if self.framing == "grouped" and type(loaded) is tuple:
            return self._part(*loaded, pos, where)
        if self.framing in ("list", "grouped"):
            return loaded[pos]
        data, base, offsets = loaded
        piece = data[base + offsets[pos]:base + offsets[pos + 1]]
        if self.framing == "example":
            piece = _decode(self.codec, piece, self.zdict, self.dict_id, self.entries[block][2] - base, where)
        return _typed(piece, where) if self.encoding == "typed" else _unpickle(piece, where, v2=True)


def _open_v2(root: str, meta: dict[str, Any], where: str) -> _Dataset:
    """V2-META-3 (each member present, of its type), V2-META-5, V2-COMPAT-3."""
    codec, mode, framing, ratio = meta.get("codec"), meta.get("dictionary"), meta.get("framing", "block"), \
        meta.get("compression_dict_size")
    _check(meta.get("format") == "atlas", where, "format is not 'atlas'")
    _check(codec in CODECS and mode in DICT_MODES and framing in FRAMING_FLAGS, where,
           f"unknown codec {codec!r}, dictionary mode {mode!r} or framing {framing!r}")
    _check(meta.get("checksum_algorithm") == "xxh3_64", where, "unknown checksum_algorithm")
    _check(codec == "zstd" or mode == "none", where, f"dictionary {mode!r} with codec {codec!r} (V2-CODEC-1)")
    _check(codec != "none" or framing != "example", where, "framing example with codec none (V2-FRAME-1)")
    _check(type(meta.get("compression_level")) is int and type(ratio) in (int, float) and 0 <= ratio <= 1, where,
           "compression_level or compression_dict_size missing or out of range")
    _check(_is_int(meta.get("block_size"), 1, MAX_PER_BLOCK) and _is_int(meta.get("shard_size"), 1)
           and _is_int(meta.get("num_examples")) and _is_int(meta.get("max_block_raw_size"), 0, MAX_RAW), where,
           "block_size, shard_size, num_examples or max_block_raw_size missing or out of range")
    _check(_is_int(meta.get("generation"), 1) and isinstance(meta.get("writer"), dict)
           and isinstance(meta.get("user_metadata"), dict), where, "generation, writer or user_metadata missing")
    entries = meta.get("shards")
    _check(isinstance(entries, list) and len(entries) <= MAX_SHARDS, where, "shards is not a list within max_shards")
    _present(root, "zstd_dict.bin", mode == "shared", "V2-LAYOUT-3: exactly for dictionary shared")
    shared = None
    if mode == "shared":
        shared = _dict_file(root, "zstd_dict.bin", meta.get("shared_dictionary"), where)
    else:
        _check("shared_dictionary" in meta and meta["shared_dictionary"] is None, where, "shared_dictionary not null")
    shards = [_V2Shard(root, k, entry, meta, shared) for k, entry in enumerate(entries)]
    _check(sum(s.count for s in shards) == meta["num_examples"], where, "num_examples is not the sum over shards")
    _check(max((s.max_raw for s in shards), default=0) == meta["max_block_raw_size"], where,
           "max_block_raw_size is not the shards' maximum")
    return _Dataset(root, shards)


def open_dataset(path: str | os.PathLike[str]) -> Sequence[Any]:
    """Open a version 1 or 2 dataset (GEN-5, V2-COMPAT-1); raise MiniReaderError if malformed."""
    root = os.fspath(path)
    where = f"{root}/meta.json"
    data = _read(root, "meta.json", MAX_META)  # V1-LAYOUT-1, V2-READ-2: no root meta.json, no dataset
    checksummed = V2_PREFIX.match(data) is not None
    meta = _v2_json(data, where)[0] if checksummed else _json(data, where)
    version = meta.get("version")
    _check(_is_int(version, 2 if checksummed else 1, 2 if checksummed else 1), where,
           f"version {version!r}{'' if checksummed else ' without a checksum line'}: this reader implements 1 and 2")
    return _open_v2(root, meta, where) if checksummed else _open_v1(root, meta, where)
