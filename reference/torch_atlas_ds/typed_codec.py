"""Typed examples (spec TYPED-1..6): encode an example to one MessagePack object, decode it with msgspec.

The encoder walks the example itself rather than handing the whole of it to a MessagePack library: it must refuse
every value outside the closed type set by its path (a library would write a tuple or a set as an
array), keep tuples apart from lists, and place array data on ``ALIGNMENT`` from the example's start,
which needs each extension's offset while writing. Arrays and tensors are written little-endian in C
order (strides and byte order are normalised). The decoder is msgspec's, with an extension hook that
checks each payload against ``atlas_format.typed``'s declarations before building the value; arrays are
copied out of the decoded block (writable, as unpickled ones are). Nothing here unpickles.
"""

from __future__ import annotations

import math
import struct
import sys
from typing import Any

import msgspec
import numpy as np

from atlas_format import typed

from .errors import FormatError

_INT8, _INT16, _INT32, _INT64 = (struct.Struct(f) for f in (">b", ">h", ">i", ">q"))
_UINT16, _UINT32, _UINT64 = (struct.Struct(f) for f in (">H", ">I", ">Q"))
_FLOAT64 = struct.Struct(">d")
#: ext 32: 0xc9, u32 payload size, i8 type; every extension is written with it so that its payload's
#: offset is known before the payload is.
_EXT32 = struct.Struct(">BIb")
_NUMPY_DTYPES = {d.code: np.dtype(d.numpy) for d in typed.DTYPES if d.numpy}  # what a decoded array has
#: an encodable numpy dtype (either byte order) -> (its table entry, the little-endian dtype written)
_ENCODABLE = {dtype: (d, _NUMPY_DTYPES[d.code]) for d in typed.DTYPES if d.numpy
              for dtype in {np.dtype(d.numpy), np.dtype(d.numpy).newbyteorder(">")}}
#: ArrayHeader's size for each ndim byte (the cache key of a payload's header, before it is checked)
_HEAD_SIZES = tuple(typed.header_size(ndim) for ndim in range(256))


class _Unencodable(Exception):
    """A value outside the closed type set; ``path`` grows as the walk unwinds."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path: list[str] = []


_PLAIN_SCALARS = frozenset((type(None), bool, float, str, bytes))
_MSGSPEC = msgspec.msgpack.Encoder()


def encode(example: Any) -> bytes:
    """The typed bytes of ``example``; TypeError naming the path of the first value that cannot be encoded
    (e.g. ``['meta']['when']: datetime is not encodable``).

    A tree of plain values (no array, tensor or tuple; types, keys, integer range and limits checked by
    ``_plain``) is written by msgspec, which writes the bytes the walk writes (the tests compare them) in
    half the time on text; anything else, or a str msgspec cannot encode, goes through the walk."""
    if _plain(example, 1):
        try:
            return _MSGSPEC.encode(example)
        except UnicodeEncodeError:  # a lone surrogate: the walk names its path
            pass
    return encode_walk(example)


def _plain(value: Any, depth: int) -> bool:
    """Whether ``value`` holds only scalars, lists and str/int-keyed dicts within the integer range and limits."""
    kind = type(value)
    if kind in _PLAIN_SCALARS:
        return True
    if kind is int:
        return bool(typed.INT_MIN <= value <= typed.INT_MAX)
    if kind is not list and kind is not dict:
        return False
    if depth > typed.MAX_DEPTH or len(value) > typed.MAX_ITEMS:
        return False
    if kind is list:
        return all(_plain(item, depth + 1) for item in value)
    return all((type(key) is str or (type(key) is int and typed.INT_MIN <= key <= typed.INT_MAX))
               and _plain(item, depth + 1) for key, item in value.items())


def encode_walk(example: Any) -> bytes:
    """``encode`` by the walk alone (every value written here)."""
    out = bytearray()
    try:
        _emit(out, example, 1)
    except _Unencodable as exc:
        where = "".join(exc.path) or "the example"
        raise TypeError(f"{where}: {exc.reason}") from None
    return bytes(out)


def _emit(out: bytearray, value: Any, depth: int) -> None:
    kind = type(value)
    if value is None:
        out.append(0xC0)
    elif kind is bool:
        out.append(0xC3 if value else 0xC2)
    elif kind is int:
        _emit_int(out, value)
    elif kind is float:
        out.append(0xCB)
        out += _FLOAT64.pack(value)
    elif kind is str:
        try:
            data = value.encode("utf-8")
        except UnicodeEncodeError:
            raise _Unencodable("a str with a lone surrogate is not encodable (not UTF-8)") from None
        n = len(data)
        if n < 32:
            out.append(0xA0 | n)
        elif n < 1 << 8:
            out += b"\xd9" + bytes((n,))
        elif n < 1 << 16:
            out += b"\xda" + _UINT16.pack(n)
        else:
            out += b"\xdb" + _UINT32.pack(n)
        out += data
    elif kind is bytes:
        n = len(value)
        out += (b"\xc4" + bytes((n,))) if n < 1 << 8 else (b"\xc5" + _UINT16.pack(n)) if n < 1 << 16 \
            else (b"\xc6" + _UINT32.pack(n))
        out += value
    elif kind is list or kind is dict or kind is tuple:
        _emit_container(out, value, depth)
    elif kind is np.ndarray:
        _emit_array(out, value, typed.EXT_NDARRAY)
    elif _is_tensor(value):
        _emit_tensor(out, value)
    elif isinstance(value, np.generic):
        raise _Unencodable(f"{_type_name(value)} is not encodable (a numpy scalar: use int(), float() or a "
                           "0-d array)")
    else:
        raise _Unencodable(f"{_type_name(value)} is not encodable")


def _emit_int(out: bytearray, value: int) -> None:
    if value >= 0:
        if value < 0x80:
            out.append(value)
        elif value < 1 << 8:
            out += b"\xcc" + bytes((value,))
        elif value < 1 << 16:
            out += b"\xcd" + _UINT16.pack(value)
        elif value < 1 << 32:
            out += b"\xce" + _UINT32.pack(value)
        elif value <= typed.INT_MAX:
            out += b"\xcf" + _UINT64.pack(value)
        else:
            raise _Unencodable(f"int {value} is above 2**64 - 1, the largest a typed example holds")
    elif value >= -32:
        out.append(value & 0xFF)
    elif value >= -(1 << 7):
        out += b"\xd0" + _INT8.pack(value)
    elif value >= -(1 << 15):
        out += b"\xd1" + _INT16.pack(value)
    elif value >= -(1 << 31):
        out += b"\xd2" + _INT32.pack(value)
    elif value >= typed.INT_MIN:
        out += b"\xd3" + _INT64.pack(value)
    else:
        raise _Unencodable(f"int {value} is below -2**63, the smallest a typed example holds")


def _emit_container(out: bytearray, value: Any, depth: int) -> None:
    if depth > typed.MAX_DEPTH:
        raise _Unencodable(f"containers nested deeper than {typed.MAX_DEPTH} are not encodable")
    n = len(value)
    if n > typed.MAX_ITEMS:
        raise _Unencodable(f"a container of {n} items is above the limit of {typed.MAX_ITEMS}")
    kind = type(value)
    if kind is dict:
        out += bytes((0x80 | n,)) if n < 16 else (b"\xde" + _UINT16.pack(n)) if n < 1 << 16 \
            else (b"\xdf" + _UINT32.pack(n))
        for key, item in value.items():
            if type(key) is not str and type(key) is not int:
                raise _Unencodable(f"a dict key of type {_type_name(key)} is not encodable (str or int keys)")
            try:
                _emit(out, key, depth + 1)
                _emit(out, item, depth + 1)
            except _Unencodable as exc:
                exc.path.insert(0, f"[{key!r}]")
                raise
        return
    at = len(out)
    if kind is tuple:
        out += _EXT32.pack(0xC9, 0, typed.EXT_TUPLE)
    out += bytes((0x90 | n,)) if n < 16 else (b"\xdc" + _UINT16.pack(n)) if n < 1 << 16 \
        else (b"\xdd" + _UINT32.pack(n))
    for k, item in enumerate(value):
        try:
            _emit(out, item, depth + 1)
        except _Unencodable as exc:
            exc.path.insert(0, f"[{k}]")
            raise
    if kind is tuple:
        _EXT32.pack_into(out, at, 0xC9, len(out) - at - _EXT32.size, typed.EXT_TUPLE)


def _emit_array(out: bytearray, array: np.ndarray[Any, Any], code: int) -> None:
    found = _ENCODABLE.get(array.dtype)
    if found is None:
        raise _Unencodable(f"an array of dtype {array.dtype} is not encodable (dtypes: "
                           f"{', '.join(d.name for d in typed.DTYPES if d.numpy)})")
    if array.ndim > typed.MAX_NDIM:
        raise _Unencodable(f"an array of {array.ndim} dimensions is above the limit of {typed.MAX_NDIM}")
    entry, little = found
    _emit_payload(out, code, entry.code, array.shape, np.ascontiguousarray(array, dtype=little))  # C order


def _emit_payload(out: bytearray, code: int, dtype: int, shape: tuple[int, ...], data: Any) -> None:
    ndim = len(shape)
    data_at = len(out) + _EXT32.size + typed.header_size(ndim)
    pad = typed.pad_for(data_at)
    out += _EXT32.pack(0xC9, typed.header_size(ndim) + pad + data.nbytes, code)
    out += typed.ARRAY_HEAD.pack(dtype, ndim, pad, 0)
    out += typed.shape_struct(ndim).pack(*shape)
    out += bytes(pad)
    out.extend(data)  # a C-contiguous array: bytearray takes its buffer (`+=` would be numpy's add)


def _is_tensor(value: Any) -> bool:
    torch = sys.modules.get("torch")  # a tensor exists only if torch was imported
    return torch is not None and type(value) is torch.Tensor


def _emit_tensor(out: bytearray, tensor: Any) -> None:
    import torch

    name = str(tensor.dtype).removeprefix("torch.")
    entry = typed.DTYPE_BY_NAME.get(name)
    if entry is None or tensor.layout is not torch.strided or tensor.is_quantized:
        raise _Unencodable(f"a tensor of dtype {tensor.dtype} and layout {tensor.layout} is not encodable")
    if tensor.dim() > typed.MAX_NDIM:
        raise _Unencodable(f"a tensor of {tensor.dim()} dimensions is above the limit of {typed.MAX_NDIM}")
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    raw = flat.view(torch.uint8) if entry.itemsize > 1 or name == "bool" else flat
    data = raw.numpy().view(np.uint8) if raw.numel() else np.empty(0, np.uint8)
    if sys.byteorder != "little":  # pragma: no cover - every supported platform is little-endian
        raise _Unencodable("tensors are written little-endian; this machine is big-endian")
    _emit_payload(out, typed.EXT_TENSOR, entry.code, tuple(tensor.shape), data)


def _type_name(value: Any) -> str:
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def array_of_encoded(items: list[bytes]) -> bytes:
    """One MessagePack array of already encoded examples (framing list's typed block, TYPED-1)."""
    n = len(items)
    head = bytes((0x90 | n,)) if n < 16 else (b"\xdc" + _UINT16.pack(n)) if n < 1 << 16 else (b"\xdd" + _UINT32.pack(n))
    return head + b"".join(items)


# -- decoding ---------------------------------------------------------------------------------------


class TypedDecoder:
    """Decodes typed examples (one per call) with msgspec; FormatError on anything TYPED-2..5 refuses that
    msgspec or the extension hook sees.

    An array header is checked once (TYPED-3) and what it says is kept, keyed by its bytes: an image
    dataset's arrays share a few headers, so a later array costs a lookup and one copy. The hook, a
    closure over its table, first tries the numeric ndarray last seen with the payload's size: one int
    lookup and one compare of the header bytes (RESULTS-typed.md: a block of 64 image dicts, 128 arrays,
    decodes in 109 us, 130 us when every array went through a method keyed by its header). Where the data
    starts at a multiple of its dtype's alignment within the payload, the whole payload is copied once, the
    header compared in the copy and the array made over the rest (5% less for that block: one slice and one
    bytes object fewer); elsewhere the data alone is copied, so every array is aligned. At most ``LAYOUTS``
    headers are kept (hostile data cannot grow the tables beyond that)."""

    LAYOUTS = 1024

    def __init__(self) -> None:
        #: header bytes -> (numpy or torch dtype, shape, where the data starts, payload size, extension code, bool)
        self._layouts: dict[bytes, tuple[Any, tuple[int, ...], int, int, int, bool]] = {}
        #: payload size -> (header bytes, numpy dtype, shape, where the data starts, whether that is a multiple
        #: of the dtype's alignment) of the numeric ndarray of that size seen last
        self._by_size: dict[int, tuple[bytes, Any, tuple[int, ...], int, bool]] = {}
        self._decoder = msgspec.msgpack.Decoder(ext_hook=self._hook())

    def __reduce__(self) -> tuple[type[TypedDecoder], tuple[()]]:
        return TypedDecoder, ()  # a new decoder in the receiving process (DataLoader workers)

    def decode(self, data: Any) -> Any:
        try:
            return self._decoder.decode(data)
        except FormatError:
            raise
        except RecursionError:
            raise FormatError("the typed example nests containers too deeply to decode") from None
        except (msgspec.DecodeError, ValueError, OverflowError) as exc:
            raise FormatError(f"not a typed example: {exc}") from None

    def _hook(self) -> Any:
        """msgspec's extension hook: the fast case inline, the rest in ``_ext``."""
        by_size, other, ndarray, ext_ndarray = self._by_size, self._ext, np.ndarray, typed.EXT_NDARRAY

        def hook(code: int, payload: memoryview) -> Any:
            if code == ext_ndarray:
                known = by_size.get(len(payload))
                if known is not None:
                    head, dtype, shape, start, whole = known
                    if whole:  # one copy of the payload, its header compared in place, the array over the rest
                        buf = bytearray(payload)
                        if buf.startswith(head):
                            return ndarray(shape, dtype, buf, start)
                    elif payload[:len(head)].tobytes() == head:
                        return ndarray(shape, dtype, bytearray(payload[start:]))
            return other(code, payload)
        return hook

    def _ext(self, code: int, payload: memoryview) -> Any:
        if code == typed.EXT_TUPLE:
            items = self._decoder.decode(payload)
            if type(items) is not list:
                raise FormatError(f"a tuple's payload holds {type(items).__name__}, not an array")
            return tuple(items)
        if code != typed.EXT_NDARRAY and code != typed.EXT_TENSOR:
            raise FormatError(f"unknown MessagePack extension type {code} (typed examples use "
                              f"{', '.join(map(str, typed.EXT_CODES))})")
        size = len(payload)
        key = payload[:_HEAD_SIZES[payload[1]]].tobytes() if size > 1 else b""
        layout = self._layouts.get(key)
        if layout is None or layout[3] != size or layout[4] != code:
            layout = self._layout(code, payload, key)
        dtype, shape, start, _, _, is_bool = layout
        data = payload[start:]
        if is_bool and len(data) and int(np.frombuffer(data, np.uint8).max()) > 1:
            raise FormatError("a bool array holds a byte other than 0 and 1")
        if code == typed.EXT_TENSOR:
            return _tensor(dtype, shape, data)
        if not is_bool:  # the hook's fast case from now on (a bool array's bytes are checked each time)
            self._by_size[size] = (key, dtype, shape, start, start % dtype.alignment == 0)
        return np.ndarray(shape, dtype, bytearray(data))

    def _layout(self, code: int, payload: memoryview, key: bytes) -> tuple[Any, tuple[int, ...], int, int, int, bool]:
        """(numpy or torch dtype, shape, where the data starts, payload size, extension code, bool) of a
        payload whose header is checked here (TYPED-3), kept for the next payload with the same header bytes."""
        entry, shape, start = _array_parts(payload)
        if code == typed.EXT_NDARRAY and entry.numpy is None:
            raise FormatError(f"an ndarray of dtype {entry.name}, which numpy has not (tensors only)")
        if len(self._layouts) >= self.LAYOUTS:
            self._layouts.clear()
            self._by_size.clear()
        dtype = _NUMPY_DTYPES[entry.code] if code == typed.EXT_NDARRAY else _torch_dtype(entry)
        self._layouts[key] = layout = (dtype, shape, start, len(payload), code, entry.name == "bool")
        return layout


def _array_parts(payload: memoryview) -> tuple[typed.DType, tuple[int, ...], int]:
    """(dtype entry, shape, where the data starts) of an array or tensor payload, its sizes checked
    (TYPED-3)."""
    if len(payload) < typed.ARRAY_HEAD.size:
        raise FormatError(f"an array payload of {len(payload)} bytes is shorter than its header")
    code, ndim, pad, reserved = typed.ARRAY_HEAD.unpack_from(payload)
    entry = typed.DTYPE_BY_CODE.get(code)
    if entry is None:
        raise FormatError(f"unknown dtype code {code} in an array payload")
    if ndim > typed.MAX_NDIM or reserved or pad >= typed.ALIGNMENT:
        raise FormatError(f"an array header with ndim {ndim}, pad {pad}, reserved {reserved} (ndim <= "
                          f"{typed.MAX_NDIM}, pad < {typed.ALIGNMENT}, reserved 0)")
    head = typed.header_size(ndim)
    if len(payload) < head + pad:
        raise FormatError(f"an array payload of {len(payload)} bytes is shorter than its {ndim}-dimension header")
    shape = typed.shape_struct(ndim).unpack_from(payload, typed.ARRAY_HEAD.size)
    expected = math.prod(shape) * entry.itemsize
    if len(payload) - head - pad != expected:
        raise FormatError(f"an array of shape {list(shape)} and dtype {entry.name} takes {expected} bytes, its "
                          f"payload holds {len(payload) - head - pad}")
    return entry, shape, head + pad


def _torch_dtype(entry: typed.DType) -> Any:
    import torch

    return getattr(torch, entry.torch)


def _tensor(dtype: Any, shape: tuple[int, ...], data: memoryview) -> Any:
    import torch

    if not len(data):
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(data), dtype=dtype).reshape(shape)
