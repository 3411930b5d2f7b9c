"""Typed examples (encoding "typed", spec TYPED-1..6): an example as one MessagePack object, no pickle.

What every implementation shares: the extension type codes, the closed dtype table, the payload
header of arrays and tensors (declared with construct; ``ARRAY_HEAD`` is its compiled fast path), the
alignment writers give array data and the limits readers and validators hold a typed example to.
The reference encodes and decodes with its own code and msgspec, the validator with its own scanner:
neither sees the other's, both read these declarations.

An array or tensor is the extension ``EXT_NDARRAY`` or ``EXT_TENSOR`` whose payload is::

    dtype    u8   code in DTYPES
    ndim     u8   at most MAX_NDIM
    pad      u8   zero bytes between the shape and the data (0 .. ALIGNMENT - 1)
    reserved u8   0
    shape    ndim x u64
    (pad zero bytes)
    data     prod(shape) x itemsize bytes, C order, little-endian

Writers choose ``pad`` so that the data starts at a multiple of ``ALIGNMENT`` bytes from the start of
the example's bytes. A tuple is the extension ``EXT_TUPLE`` whose payload is one MessagePack array.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from typing import Any

import construct as cs

from .enums import INDEX_FLAG_TYPED

#: The meta.json member (root and shard) naming the encoding; absent means "pickle".
ENCODING_MEMBER = "encoding"
PICKLE = "pickle"
TYPED = "typed"
ENCODINGS = (PICKLE, TYPED)
#: MessagePack extension type codes (TYPED-3); every other code is refused.
EXT_NDARRAY = 1
EXT_TENSOR = 2
EXT_TUPLE = 3
EXT_CODES = (EXT_NDARRAY, EXT_TENSOR, EXT_TUPLE)
#: Array data starts at a multiple of this many bytes from the start of the example (TYPED-3).
ALIGNMENT = 16
#: Containers (array, map, tuple) nested in one example, the example itself counting as depth 1 (TYPED-5).
MAX_DEPTH = 64
#: Items of one array, map or tuple (TYPED-5).
MAX_ITEMS = 1 << 24
#: Dimensions of one array or tensor (TYPED-5).
MAX_NDIM = 32
#: The integers a typed example holds: MessagePack's int 64 and uint 64 (TYPED-2).
INT_MIN = -(1 << 63)
INT_MAX = (1 << 64) - 1


@dataclass(frozen=True)
class DType:
    """One entry of the closed dtype table: its code, numpy's and torch's name for it (None where the
    library has no such type: numpy has no bfloat16), and its size."""

    code: int
    name: str
    itemsize: int
    numpy: str | None
    torch: str


#: The closed dtype table (TYPED-4). bool's bytes are 0 or 1; bfloat16 is a tensor's only.
DTYPES: tuple[DType, ...] = (
    DType(1, "bool", 1, "bool", "bool"),
    DType(2, "int8", 1, "int8", "int8"),
    DType(3, "int16", 2, "<i2", "int16"),
    DType(4, "int32", 4, "<i4", "int32"),
    DType(5, "int64", 8, "<i8", "int64"),
    DType(6, "uint8", 1, "uint8", "uint8"),
    DType(7, "uint16", 2, "<u2", "uint16"),
    DType(8, "uint32", 4, "<u4", "uint32"),
    DType(9, "uint64", 8, "<u8", "uint64"),
    DType(10, "float16", 2, "<f2", "float16"),
    DType(11, "bfloat16", 2, None, "bfloat16"),
    DType(12, "float32", 4, "<f4", "float32"),
    DType(13, "float64", 8, "<f8", "float64"),
    DType(14, "complex64", 8, "<c8", "complex64"),
    DType(15, "complex128", 16, "<c16", "complex128"),
)
DTYPE_BY_CODE = {d.code: d for d in DTYPES}
DTYPE_BY_NAME = {d.name: d for d in DTYPES}

#: The payload header of an array or tensor extension (TYPED-3); ``shape`` has ``ndim`` entries.
ArrayHeader = cs.Struct(
    "dtype" / cs.Int8ul,
    "ndim" / cs.Int8ul,
    "pad" / cs.Int8ul,
    "reserved" / cs.Const(0, cs.Int8ul),
    "shape" / cs.Array(cs.this.ndim, cs.Int64ul),
)
ArrayHeader.name = "typed array header"


def _format(field: cs.Construct) -> str:
    """The struct format of a fixed-size field of a declaration (through its name, Const or Array)."""
    while not hasattr(field, "fmtstr"):
        field = field.subcon
    return str(field.fmtstr).lstrip("<")


#: The fixed part of ``ArrayHeader`` (dtype, ndim, pad, reserved) as one compiled struct.
ARRAY_HEAD = struct.Struct("<" + "".join(_format(c) for c in ArrayHeader.subcons[:4]))
#: One shape entry of ``ArrayHeader``.
SHAPE_ENTRY = struct.Struct("<" + _format(ArrayHeader.subcons[4]))


@functools.lru_cache(maxsize=MAX_NDIM + 1)
def shape_struct(ndim: int) -> struct.Struct:
    """``ndim`` shape entries as one compiled struct (kept per ndim: readers parse one per array)."""
    return struct.Struct("<" + SHAPE_ENTRY.format.lstrip("<") * ndim)


def header_size(ndim: int) -> int:
    """Bytes of ``ArrayHeader`` with ``ndim`` dimensions (before the pad)."""
    return ARRAY_HEAD.size + SHAPE_ENTRY.size * ndim


def pad_for(data_at: int) -> int:
    """The pad that puts data which would start at ``data_at`` (from the example's start) on ALIGNMENT."""
    return -data_at % ALIGNMENT



#: The shortest MessagePack array headers (fixarray, array 16, array 32) that open a typed block of framing
#: list or grouped (TYPED-1, TYPED-7): what every MessagePack writer emits for the count.
_FIXARRAY, _ARRAY16, _ARRAY32 = 0x90, 0xDC, 0xDD


def array_header(count: int) -> bytes:
    """The MessagePack array header, in its shortest form, of ``count`` items (TYPED-1, TYPED-7)."""
    if count < 16:
        return bytes((_FIXARRAY | count,))
    if count < 1 << 16:
        return struct.pack(">BH", _ARRAY16, count)
    return struct.pack(">BI", _ARRAY32, count)


def encoding_of_meta(doc: Any) -> str:
    """The encoding a version 2 meta.json states (absent: "pickle"); ValueError if it is not one."""
    value = doc.get(ENCODING_MEMBER, PICKLE)
    if value not in ENCODINGS:
        raise ValueError(f"{ENCODING_MEMBER} must be one of {', '.join(ENCODINGS)}, got {value!r}")
    return str(value)


def encoding_member(encoding: str) -> dict[str, str]:
    """The meta.json member writers put: none for pickle (earlier datasets' bytes)."""
    return {} if encoding == PICKLE else {ENCODING_MEMBER: encoding}


def encoding_flags(encoding: str) -> int:
    """The index flag bit of an encoding (TYPED-1)."""
    return INDEX_FLAG_TYPED if encoding == TYPED else 0
