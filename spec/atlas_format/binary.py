"""Parsing with construct, with errors that carry the file and byte offset.

Declarations live in the modules named after each structure; this module turns a
construct failure into a FormatError and derives fast numpy/struct layouts from a
declaration, so the hot paths of readers use the same declaration as the validator.
"""

from __future__ import annotations

import io
from os import PathLike
from typing import Any

import construct as cs
import numpy as np

from .errors import FormatError


def parse(
    struct: cs.Construct,
    data: bytes | bytearray | memoryview,
    *,
    path: str | PathLike[str] | None = None,
    offset: int = 0,
    what: str | None = None,
    **context: Any,
) -> Any:
    """Parse ``data`` with ``struct``; any failure is a FormatError naming file and offset.

    ``offset`` is where ``data`` starts inside ``path``, so reported offsets are absolute.
    """
    stream = io.BytesIO(bytes(data))
    try:
        return struct.parse_stream(stream, **context)
    except cs.ConstructError as exc:
        name = what or getattr(struct, "name", None) or "structure"
        detail = str(exc).replace("\n", " ")
        raise FormatError(f"cannot parse {name}: {detail}", path=path, offset=offset + stream.tell()) from None


def build(struct: cs.Construct, value: Any, **context: Any) -> bytes:
    """Build bytes from a value; a construct failure here is a programming error (ValueError)."""
    try:
        return bytes(struct.build(value, **context))
    except cs.ConstructError as exc:
        raise ValueError(f"cannot build {getattr(struct, 'name', None) or 'structure'}: {exc}") from exc


_NUMPY_CODES = {"B": "u1", "H": "u2", "L": "u4", "I": "u4", "Q": "u8", "b": "i1", "h": "i2", "l": "i4",
                "i": "i4", "q": "i8"}


def numpy_dtype(struct: cs.Struct) -> np.dtype[Any]:
    """The numpy structured dtype of a Struct of named fixed-size integers and byte constants."""
    fields: list[tuple[str, str]] = []
    for sub in struct.subcons:
        inner = sub.subcon if isinstance(sub, cs.Renamed) else sub
        if sub.name is None:
            raise TypeError(f"unnamed field in {struct}")
        if isinstance(inner, cs.Const) and isinstance(inner.value, bytes):
            fields.append((sub.name, f"S{len(inner.value)}"))
            continue
        fmt = getattr(inner, "fmtstr", None)
        if fmt is None or fmt[-1] not in _NUMPY_CODES:
            raise TypeError(f"field {sub.name!r} of {struct} has no fixed numeric format")
        byteorder = "<" if fmt[0] == "<" else ">" if fmt[0] == ">" else "|"
        fields.append((sub.name, byteorder + _NUMPY_CODES[fmt[-1]]))
    dtype = np.dtype(fields)
    if dtype.itemsize != struct.sizeof():
        raise TypeError(f"numpy layout of {struct} is {dtype.itemsize} bytes, construct says {struct.sizeof()}")
    return dtype
