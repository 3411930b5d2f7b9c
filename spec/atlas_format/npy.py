"""The version 1 index file: a NumPy ``.npy`` file (format 1.0) holding block offsets.

Declared here with construct: the magic, the version, the header length and the
header text (a Python dict literal, parsed with ``ast.literal_eval``, never eval),
then the array of little-endian unsigned offsets. The builder reproduces numpy's own
header byte for byte (checked against ``np.save`` and the seed-v1 corpus).
"""

from __future__ import annotations

import ast
import re
from typing import Any

import construct as cs
import numpy as np

from .constants import NPY_MAGIC

ARRAY_ALIGN = 64
GROWTH_AXIS_MAX_DIGITS = 21

# The dtypes the v1 index rule may produce, narrowest first, with their maxima.
V1_INDEX_DTYPES: tuple[tuple[str, int], ...] = (
    ("<u1", 0xFF),
    ("<u2", 0xFFFF),
    ("<u4", 0xFFFF_FFFF),
    ("<u8", 0xFFFF_FFFF_FFFF_FFFF),
)
# numpy writes '|u1' for single-byte types (byte order is irrelevant).
_DESCR_ALIASES = {"|u1": "<u1", "<u1": "<u1", "<u2": "<u2", "<u4": "<u4", "<u8": "<u8"}
INDEX_ENTRY = {
    "<u1": cs.Int8ul,
    "<u2": cs.Int16ul,
    "<u4": cs.Int32ul,
    "<u8": cs.Int64ul,
}


# What numpy loads as an integer array whose values seek() and read() take: the original reader reads
# offsets of any of these correctly (spec V1-INDEX-2), though writers write only the four above.
_READABLE_DESCR = re.compile(r"^(?:[<>][ui][1248]|\|[ui]1)$")


def written_descr(descr: Any) -> str | None:
    """The canonical spelling ('<u1'..'<u8') of a descr writers write, or None for any other."""
    return _DESCR_ALIASES.get(descr) if isinstance(descr, str) else None


def readable_dtype(descr: Any) -> np.dtype[Any] | None:
    """The dtype of an index header's descr when the original reader reads its values as offsets (an
    integer of 1, 2, 4 or 8 bytes, either byte order, signed or not), else None (it cannot use them)."""
    if not isinstance(descr, str) or not _READABLE_DESCR.match(descr):
        return None
    return np.dtype(descr)


def v1_index_dtype(last_entry: int) -> str:
    """The original's rule: the narrowest unsigned type whose maximum is >= the last entry."""
    for descr, maximum in V1_INDEX_DTYPES:
        if maximum >= last_entry:
            return descr
    raise ValueError(f"offset {last_entry} does not fit in 64 bits")


def numpy_descr(descr: str) -> str:
    """The spelling numpy writes in the header ('|u1' for one byte)."""
    return "|u1" if descr in ("<u1", "|u1") else descr


class _HeaderDict(cs.Adapter):  # type: ignore[misc]
    """The header text <-> dict, formatted exactly as numpy's ``_write_array_header``."""

    def _decode(self, obj: bytes, context: Any, path: str) -> dict[str, Any]:
        try:
            text = obj.decode("latin1")
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
            raise cs.ValidationError(f"npy header is not a Python literal: {exc}", path=path) from None
        if not isinstance(value, dict):
            raise cs.ValidationError("npy header is not a dict", path=path)
        if set(value) != {"descr", "fortran_order", "shape"}:
            raise cs.ValidationError(f"npy header keys are {sorted(value)!r}", path=path)
        return value

    def _encode(self, obj: dict[str, Any], context: Any, path: str) -> bytes:
        return header_text(obj, prefix_len=10).encode("latin1")


def header_text(d: dict[str, Any], prefix_len: int = 10) -> str:
    """numpy's header text for a format 1.0 file, padding and newline included."""
    parts = ["{"]
    for key, value in sorted(d.items()):
        parts.append(f"'{key}': {value!r}, ")
    parts.append("}")
    header = "".join(parts)
    shape = d["shape"]
    if len(shape) > 0:
        header += " " * (GROWTH_AXIS_MAX_DIGITS - len(repr(shape[-1 if d["fortran_order"] else 0])))
    hlen = len(header) + 1
    padlen = ARRAY_ALIGN - ((prefix_len + hlen) % ARRAY_ALIGN)
    return header + " " * padlen + "\n"


NpyHeader = cs.Struct(
    "magic" / cs.Const(NPY_MAGIC),
    "major" / cs.OneOf(cs.Int8ul, [1, 2, 3]),
    "minor" / cs.Const(0, cs.Int8ul),
    "header_len" / cs.Rebuild(
        cs.Switch(cs.this.major, {1: cs.Int16ul}, default=cs.Int32ul),
        lambda ctx: len(header_text(ctx.header, prefix_len=10 if ctx.major == 1 else 12)),
    ),
    "header" / _HeaderDict(cs.Bytes(cs.this.header_len)),
)
NpyHeader.name = "npy header"


def _entry_type(ctx: Any) -> str:
    descr = _DESCR_ALIASES.get(ctx.header.header["descr"])
    if descr is None:
        raise cs.ValidationError(f"index dtype {ctx.header.header['descr']!r} is not an unsigned little-endian integer")
    return descr


def _count(ctx: Any) -> int:
    shape = ctx.header.header["shape"]
    if not (isinstance(shape, tuple) and len(shape) == 1 and isinstance(shape[0], int) and shape[0] >= 0):
        raise cs.ValidationError(f"index shape {shape!r} is not one-dimensional")
    return int(shape[0])


# A whole version 1 index.npy: the header, then shape[0] offsets of the declared dtype.
NpyIndexFile = cs.Struct(
    "header" / NpyHeader,
    "entries" / cs.Array(_count, cs.Switch(_entry_type, INDEX_ENTRY)),
    cs.Terminated,
)
NpyIndexFile.name = "index.npy"


def index_header(count: int, descr: str) -> dict[str, Any]:
    """The header dict numpy writes for a 1-D index of ``count`` entries."""
    return {"descr": numpy_descr(descr), "fortran_order": False, "shape": (count,)}


def build_v1_index(offsets: list[int] | np.ndarray[Any, Any]) -> bytes:
    """index.npy bytes for these offsets, dtype chosen by the v1 rule (same bytes as np.save)."""
    values = [int(v) for v in offsets]
    descr = v1_index_dtype(values[-1] if values else 0)
    return bytes(NpyIndexFile.build({"header": {"major": 1, "header": index_header(len(values), descr)},
                                     "entries": values}))
