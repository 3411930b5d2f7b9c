"""What each callable of the pickle policy accepts, and what BUILD may do to what it made.

Every function here reads views (``pickle_values``) and either returns the view of the
result (a ``Made`` record, or a plain value when the result is plain data) or raises
``PolicyViolation``. Each was written against the code of the global it guards (CPython's
``datetime``, ``decimal``, ``fractions``, ``uuid``, ``pathlib``; numpy's ``_reconstruct``,
``_frombuffer``, ``scalar``, ``dtype.__setstate__``, ``MaskedArray.__setstate__``; torch's
``_rebuild_tensor_v2/v3``, ``_rebuild_parameter``, ``_rebuild_from_type_v2``, legacy
``torch.save`` streams): the arguments it admits are exactly those for which the real
global allocates no more than the bytes the pickle holds, runs no callable it is handed,
and succeeds. The numbers in messages come from the pickle; nothing here runs it.
"""

from __future__ import annotations

import calendar
import re
import struct
import sys
from collections.abc import Callable
from typing import Any, Literal, NoReturn

from .pickle_values import (
    Made,
    Mapping,
    PickleLimits,
    PolicyViolation,
    Ref,
    Rule,
    Seq,
    describe,
    describe_args,
    is_int,
    plain_mapping,
)

Check = Callable[[tuple[Any, ...], PickleLimits], Any]
BuildCheck = Callable[[Made, Any, PickleLimits], None]


def refuse(message: str, rule: Rule = Rule.CALL) -> NoReturn:
    raise PolicyViolation(rule, message)


def _arity(args: tuple[Any, ...], what: str, *counts: int) -> None:
    if len(args) not in counts:
        expected = " or ".join(str(c) for c in counts)
        refuse(f"{what} takes {expected} arguments, got {describe_args(args)}")


def _int_in(value: Any, what: str, low: int, high: int) -> int:
    if not is_int(value) or not low <= value <= high:
        refuse(f"{what} must be an integer in [{low}, {high}], got {describe(value)}")
    return int(value)


#: Bound of an array's bytes and of each dimension: numpy and torch index with signed 64-bit integers.
INDEX_BOUND = 1 << 62


def _shape(value: Any, what: str, limits: PickleLimits) -> tuple[int, ...]:
    """A shape or stride: a tuple of at most max_dimensions non-negative integers whose non-zero ones multiply
    to less than 2**62 (numpy sizes an array by that product even when another dimension is 0)."""
    if not isinstance(value, tuple) or len(value) > limits.max_dimensions or \
            not all(is_int(v) and 0 <= v < INDEX_BOUND for v in value) or \
            _product(tuple(v for v in value if v)) >= INDEX_BOUND:
        refuse(f"{what} must be a tuple of at most {limits.max_dimensions} non-negative integers whose non-zero "
               f"ones multiply to less than 2**62, got {describe(value)}")
    return value


def _product(values: tuple[int, ...]) -> int:
    n = 1
    for v in values:
        n *= v
    return n


# -- builtins ---------------------------------------------------------------------------------


def check_set(args: tuple[Any, ...], limits: PickleLimits) -> Made:
    """set() / set(list): protocol 2 and 3 sets. Never an iterator or a range (set(range(10**12)))."""
    _arity(args, "builtins.set", 0, 1)
    if args and not (isinstance(args[0], tuple) or isinstance(args[0], Seq) and args[0].kind == "list"):
        refuse(f"builtins.set takes a list or tuple of members, got {describe(args[0])}")
    return Made("set")


def check_frozenset(args: tuple[Any, ...], limits: PickleLimits) -> Made:
    _arity(args, "builtins.frozenset", 0, 1)
    if args and not (isinstance(args[0], tuple) or isinstance(args[0], Seq) and args[0].kind == "list"):
        refuse(f"builtins.frozenset takes a list or tuple of members, got {describe(args[0])}")
    return Made("frozenset")


def check_complex(args: tuple[Any, ...], limits: PickleLimits) -> Made:
    _arity(args, "builtins.complex", 2)
    if not all(type(a) is float or type(a) is int and abs(a) < 1 << 1023 for a in args):
        refuse(f"builtins.complex takes two numbers a float can hold, got {describe_args(args)}")
    return Made("complex")


def check_slice(args: tuple[Any, ...], limits: PickleLimits) -> Made:
    _arity(args, "builtins.slice", 1, 2, 3)
    if not all(a is None or is_int(a) for a in args):
        refuse(f"builtins.slice takes integers or None, got {describe_args(args)}")
    return Made("slice")


def check_range(args: tuple[Any, ...], limits: PickleLimits) -> Made:
    _arity(args, "builtins.range", 1, 2, 3)
    if not all(is_int(a) for a in args):
        refuse(f"builtins.range takes integers, got {describe_args(args)}")
    if len(args) == 3 and args[2] == 0:
        refuse("builtins.range step must not be zero")
    return Made("range")


def _latin1(text: Any, encoding: Any, what: str) -> bytes:
    if type(text) is not str or encoding not in ("latin1", "latin-1"):
        refuse(f"{what} takes (str, 'latin1'), got {describe_args((text, encoding))}")
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        refuse(f"{what}: the text has characters above U+00FF")


def check_codecs_encode(args: tuple[Any, ...], limits: PickleLimits) -> bytes:
    """_codecs.encode(str, 'latin1'): how protocols 2 and 3 store bytes. Any other codec is refused
    (zlib_codec, bz2_codec and base64 would decompress or decode attacker data)."""
    _arity(args, "_codecs.encode", 2)
    return _latin1(args[0], args[1], "_codecs.encode")


def check_bytearray(args: tuple[Any, ...], limits: PickleLimits) -> bytearray:
    """bytearray(), bytearray(bytes), bytearray(str, 'latin-1'): never bytearray(n), which allocates n bytes."""
    _arity(args, "builtins.bytearray", 0, 1, 2)
    if not args:
        return bytearray()
    if len(args) == 1:
        if type(args[0]) not in (bytes, bytearray):
            refuse(f"builtins.bytearray takes bytes, got {describe(args[0])} (an integer would allocate that many "
                   "bytes)")
        return bytearray(args[0])
    return bytearray(_latin1(args[0], args[1], "builtins.bytearray"))


def check_bytes(args: tuple[Any, ...], limits: PickleLimits) -> bytes:
    """bytes(): how protocol 2 stores b''. bytes(n) would allocate n bytes."""
    _arity(args, "builtins.bytes", 0)
    return b""


# -- collections ----------------------------------------------------------------------------

#: Factories a defaultdict may hold: types that build an empty value from no arguments.
DEFAULTDICT_FACTORIES = frozenset({
    ("builtins", "list"), ("builtins", "dict"), ("builtins", "set"), ("builtins", "frozenset"),
    ("builtins", "tuple"), ("builtins", "int"), ("builtins", "float"), ("builtins", "complex"),
    ("builtins", "str"), ("builtins", "bytes"), ("builtins", "bytearray"), ("builtins", "bool"),
    ("collections", "OrderedDict"), ("collections", "Counter"), ("collections", "deque"),
})


def check_ordered_dict(args: tuple[Any, ...], limits: PickleLimits) -> Made:
    _arity(args, "collections.OrderedDict", 0)
    return Made("OrderedDict")


def check_defaultdict(args: tuple[Any, ...], limits: PickleLimits) -> Made:
    _arity(args, "collections.defaultdict", 0, 1)
    factory = args[0] if args else None
    if factory is not None and not (isinstance(factory, Ref) and (factory.module, factory.name)
                                    in DEFAULTDICT_FACTORIES):
        refuse(f"collections.defaultdict's factory must be None or one of the builtin container and number types, "
               f"got {describe(factory)} (the factory is called for every missing key)")
    return Made("defaultdict", {"factory": factory})


def check_deque(args: tuple[Any, ...], limits: PickleLimits) -> Made:
    _arity(args, "collections.deque", 0, 1, 2)
    if args and not (isinstance(args[0], tuple) or isinstance(args[0], Seq) and args[0].kind == "list"):
        refuse(f"collections.deque takes a list or tuple of items, got {describe(args[0])}")
    maxlen = args[1] if len(args) == 2 else None
    if maxlen is not None:
        _int_in(maxlen, "collections.deque maxlen", 0, (1 << 63) - 1)
    return Made("deque", {"maxlen": maxlen})


def check_counter(args: tuple[Any, ...], limits: PickleLimits) -> Made:
    _arity(args, "collections.Counter", 0, 1)
    if args and not isinstance(args[0], Mapping):
        refuse(f"collections.Counter takes a dict, got {describe(args[0])}")
    return Made("Counter")


# -- datetime, decimal, fractions, uuid, pathlib ---------------------------------------------


def _date_fields(data: bytes, what: str) -> tuple[int, int, int]:
    year, month, day = data[0] * 256 + data[1], data[2], data[3]
    if not 1 <= year <= 9999 or not 1 <= month <= 12 or not 1 <= day <= calendar.monthrange(year, month)[1]:
        refuse(f"{what}: no such date (year {year}, month {month}, day {day})")
    return year, month, day


def _time_fields(data: bytes, what: str) -> None:
    hour, minute, second = data[0], data[1], data[2]
    micro = (data[3] << 16) | (data[4] << 8) | data[5]
    if hour > 23 or minute > 59 or second > 59 or micro > 999_999:
        refuse(f"{what}: no such time ({hour}:{minute}:{second}.{micro})")


def _state_bytes(args: tuple[Any, ...], size: int, what: str) -> bytes:
    if not args or type(args[0]) is not bytes or len(args[0]) != size:
        refuse(f"{what} takes its {size}-byte pickled state, got {describe_args(args)}")
    data: bytes = args[0]
    return data


def _tzinfo(args: tuple[Any, ...], what: str) -> None:
    if len(args) == 2 and not (args[1] is None or isinstance(args[1], Made) and args[1].kind == "timezone"):
        refuse(f"{what}'s tzinfo must be a datetime.timezone, got {describe(args[1])} (other tzinfo types read "
               "files or run code)")


def check_date(args: tuple[Any, ...], limits: PickleLimits) -> Made:
    _arity(args, "datetime.date", 1)
    _date_fields(_state_bytes(args, 4, "datetime.date"), "datetime.date")
    return Made("date")


def check_time(args: tuple[Any, ...], limits: PickleLimits) -> Made:
    _arity(args, "datetime.time", 1, 2)
    data = _state_bytes(args, 6, "datetime.time")
    _time_fields(bytes([data[0] & 0x7F]) + data[1:], "datetime.time")  # the fold bit is hour's high bit
    _tzinfo(args, "datetime.time")
    return Made("time")


def check_datetime(args: tuple[Any, ...], limits: PickleLimits) -> Made:
    _arity(args, "datetime.datetime", 1, 2)
    data = _state_bytes(args, 10, "datetime.datetime")
    _date_fields(data[:2] + bytes([data[2] & 0x7F]) + data[3:4], "datetime.datetime")  # fold: month's high bit
    _time_fields(data[4:], "datetime.datetime")
    _tzinfo(args, "datetime.datetime")
    return Made("datetime")


def check_timedelta(args: tuple[Any, ...], limits: PickleLimits) -> Made:
    _arity(args, "datetime.timedelta", 3)
    days = _int_in(args[0], "timedelta days", -999_999_999, 999_999_999)
    seconds = _int_in(args[1], "timedelta seconds", 0, 86_399)
    micro = _int_in(args[2], "timedelta microseconds", 0, 999_999)
    return Made("timedelta", {"microseconds": (days * 86_400 + seconds) * 1_000_000 + micro})


def check_timezone(args: tuple[Any, ...], limits: PickleLimits) -> Made:
    _arity(args, "datetime.timezone", 1, 2)
    offset = args[0]
    if not isinstance(offset, Made) or offset.kind != "timedelta":
        refuse(f"datetime.timezone takes a timedelta, got {describe(offset)}")
    if not -86_400_000_000 < offset["microseconds"] < 86_400_000_000:
        refuse("datetime.timezone offset must be strictly between -24 and 24 hours")
    if len(args) == 2 and (type(args[1]) is not str or len(args[1]) > 256):
        refuse(f"datetime.timezone name must be a str of at most 256 characters, got {describe(args[1])}")
    return Made("timezone")


# The forms str(Decimal) writes; an exponent of at most 15 digits (decimal refuses adjusted exponents beyond 10**18).
_DECIMAL = re.compile(r"[+-]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,15})?|Inf(?:inity)?|s?NaN\d*)\Z",
                      re.IGNORECASE)


def check_decimal(args: tuple[Any, ...], limits: PickleLimits) -> Made:
    """Decimal(str) in the form str(Decimal) writes; its length is bounded (max_number_text)."""
    _arity(args, "decimal.Decimal", 1)
    text = args[0]
    if type(text) is not str or len(text) > limits.max_number_text or not _DECIMAL.match(text):
        refuse(f"decimal.Decimal takes a decimal number of at most {limits.max_number_text} characters, got "
               f"{describe(text)}")
    return Made("Decimal")


def check_fraction(args: tuple[Any, ...], limits: PickleLimits) -> Made:
    """Fraction(numerator, denominator) with integers (never Fraction(str): '1e10000000' is 10**10**7)."""
    _arity(args, "fractions.Fraction", 2)
    if not all(is_int(a) for a in args) or args[1] == 0:
        refuse(f"fractions.Fraction takes two integers, the second not zero, got {describe_args(args)}")
    return Made("Fraction")


def check_uuid_new(args: tuple[Any, ...], limits: PickleLimits) -> Made:
    """uuid.UUID.__new__ with no arguments (NEWOBJ); its state comes with BUILD (check_uuid_build)."""
    _arity(args, "uuid.UUID", 0)
    return Made("uuid-stub")


def build_uuid(made: Made, state: Any, limits: PickleLimits) -> None:
    """UUID.__setstate__({'int': n[, 'is_safe': 0 or -1]})."""
    items = plain_mapping(state)
    if items is None or set(items) - {"int", "is_safe"} or "int" not in items:
        refuse(f"uuid.UUID state must be {{'int': n[, 'is_safe': v]}}, got {describe(state)}", Rule.BUILD)
    _int_in(items["int"], "UUID int", 0, (1 << 128) - 1)
    if "is_safe" in items and items["is_safe"] not in (0, -1) or type(items.get("is_safe", 0)) is not int:
        refuse(f"UUID is_safe must be 0 or -1, got {describe(items['is_safe'])}", Rule.BUILD)
    made.kind = "uuid"


def check_pure_path(args: tuple[Any, ...], limits: PickleLimits) -> Made:
    if len(args) > 4096 or not all(type(a) is str and len(a) <= 4096 for a in args):
        refuse(f"a pure path takes parts that are str, got {describe_args(args)}")
    return Made("purepath")


# -- numpy ------------------------------------------------------------------------------------

_NUMERIC_SIZES = {"b1": 1, "i1": 1, "u1": 1, "i2": 2, "u2": 2, "f2": 2, "i4": 4, "u4": 4, "f4": 4, "i8": 8, "u8": 8,
                  "f8": 8, "c8": 8, "c16": 16}
_FLEXIBLE = re.compile(r"([SUV])(\d{1,10})\Z")
_DATETIME_UNITS = frozenset({b"generic", b"Y", b"M", b"W", b"D", b"h", b"m", b"s", b"ms", b"us", b"ns", b"ps", b"fs",
                             b"as"})
_MAX_ITEMSIZE = (1 << 31) - 1
#: The masked array type under its numpy < 2 and numpy >= 2 module names.
MASKED_ARRAY_TYPES = (Ref("numpy.ma.core", "MaskedArray"), Ref("numpy.ma", "MaskedArray"))


def dtype_descriptor(descr: Any) -> tuple[str, int]:
    """(kind character, itemsize) of a descriptor of the closed set: numbers and bools, S<n>, U<n>, V<n>
    (raw bytes, no fields), M8 and m8. Object, structured and sub-array dtypes are outside it."""
    if type(descr) is str:
        if descr in _NUMERIC_SIZES:
            return descr[0], _NUMERIC_SIZES[descr]
        if descr in ("M8", "m8"):
            return descr[0], 8
        match = _FLEXIBLE.match(descr)
        if match:
            size = int(match.group(2)) * (4 if match.group(1) == "U" else 1)
            if size <= _MAX_ITEMSIZE:
                return match.group(1), size
    refuse(f"numpy.dtype descriptor {describe(descr)} is outside the closed set (numbers, bools, S<n>, U<n>, V<n>, "
           "M8, m8; no object, structured or sub-array dtypes)")


def check_dtype(args: tuple[Any, ...], limits: PickleLimits) -> Made:
    """numpy.dtype(descr, False, True): copy=True, so BUILD changes a new dtype, never numpy's shared one."""
    _arity(args, "numpy.dtype", 3)
    if args[1] is not False or args[2] is not True:
        refuse(f"numpy.dtype must be called as dtype(descr, False, True) (align off, copy on), got "
               f"{describe_args(args)}")
    kind, itemsize = dtype_descriptor(args[0])
    return Made("dtype", {"descr": args[0], "kind": kind, "itemsize": itemsize, "built": False})


def build_dtype(made: Made, state: Any, limits: PickleLimits) -> None:
    """dtype.__setstate__ only with the state numpy itself writes for the descriptor: a byte order and,
    for flexible and datetime types, the size, alignment, flags and unit numpy derives. Anything else
    (object fields, hand-made flags or sizes) is what makes numpy read raw bytes as pointers."""
    if made["built"]:
        refuse("numpy.dtype state set twice", Rule.BUILD)
    kind, descr, itemsize = made["kind"], made["descr"], made["itemsize"]
    one_byte = descr in ("b1", "i1", "u1") or kind in "SV"
    orders = ("|",) if one_byte else ("<", ">")
    if kind in "SV":
        tail: tuple[Any, ...] = (itemsize, 1, 0)
    elif kind == "U":
        tail = (itemsize, 4, 8)
    else:
        tail = (-1, -1, 0)
    version = 4 if kind in "Mm" else 3
    ok = isinstance(state, tuple) and len(state) == (9 if version == 4 else 8) and state[0] == version and \
        is_int(state[0]) and state[1] in orders and state[2:5] == (None, None, None) and \
        all(is_int(v) for v in state[5:8]) and state[5:8] == tail
    if ok and version == 4:
        meta = state[8]
        ok = isinstance(meta, tuple) and len(meta) == 2 and meta[0] is None and isinstance(meta[1], tuple) and \
            len(meta[1]) == 4 and meta[1][0] in _DATETIME_UNITS and is_int(meta[1][1]) and \
            1 <= meta[1][1] <= _MAX_ITEMSIZE and meta[1][2:] == (1, 1) and all(is_int(v) for v in meta[1][2:])
    if not ok:
        refuse(f"numpy.dtype state {describe(state)} is not the state numpy writes for {descr!r}", Rule.BUILD)
    made.facts.update(built=True, byteorder=state[1])


def _dtype_arg(value: Any, what: str) -> Made:
    if not isinstance(value, Made) or value.kind != "dtype":
        refuse(f"{what} must be a numpy.dtype, got {describe(value)}")
    return value


def _array_bytes(data: Any, shape: tuple[int, ...], dtype: Made, what: str) -> None:
    if _product(tuple(v for v in shape if v)) * max(dtype["itemsize"], 1) >= INDEX_BOUND:
        refuse(f"{what}: shape {shape} of {dtype['descr']} is too big for an array", Rule.CALL)
    expected = _product(shape) * dtype["itemsize"]
    if type(data) not in (bytes, bytearray) or len(data) != expected:
        got = f"{len(data)} bytes" if type(data) in (bytes, bytearray) else describe(data)
        refuse(f"{what}: shape {shape} of {dtype['descr']} needs exactly {expected} bytes of data, got {got}",
               Rule.BUILD if what.endswith("state") else Rule.CALL)


def check_reconstruct(args: tuple[Any, ...], limits: PickleLimits) -> Made:
    """numpy's _reconstruct(ndarray, (0,), b'b'): exactly what ndarray.__reduce__ writes. A bigger shape
    is allocated before any size check (the state's BUILD brings the real shape and data)."""
    if len(args) != 3 or args[0] != Ref("numpy", "ndarray") or args[1] != (0,) or type(args[2]) is not bytes or \
            args[2] != b"b":
        refuse(f"numpy _reconstruct must be called as _reconstruct(numpy.ndarray, (0,), b'b'), got "
               f"{describe_args(args)}")
    return Made("ndarray-stub")


def build_ndarray(made: Made, state: Any, limits: PickleLimits) -> None:
    """ndarray.__setstate__((1, shape, dtype, is_fortran, data)) with data of exactly the right size
    (a list there would be an object array)."""
    if not isinstance(state, tuple) or len(state) != 5 or state[0] != 1 or not is_int(state[0]) or \
            type(state[3]) is not bool:
        refuse(f"numpy array state must be (1, shape, dtype, is_fortran, data), got {describe(state)}", Rule.BUILD)
    shape = _shape(state[1], "numpy array shape", limits)
    dtype = _dtype_arg(state[2], "numpy array dtype")
    _array_bytes(state[4], shape, dtype, "numpy array state")
    made.kind = "ndarray"
    made.facts.update(descr=dtype["descr"], kind=dtype["kind"], shape=shape)


def check_frombuffer(args: tuple[Any, ...], limits: PickleLimits) -> Made:
    """numpy's _frombuffer(buffer, dtype, shape, order): protocol 5 arrays, a view of bytes the pickle holds."""
    _arity(args, "numpy _frombuffer", 4)
    dtype = _dtype_arg(args[1], "numpy _frombuffer dtype")
    shape = _shape(args[2], "numpy _frombuffer shape", limits)
    if args[3] not in ("C", "F"):
        refuse(f"numpy _frombuffer order must be 'C' or 'F', got {describe(args[3])}")
    if dtype["itemsize"] == 0:
        refuse("numpy _frombuffer cannot read a dtype of itemsize 0")
    _array_bytes(args[0], shape, dtype, "numpy _frombuffer")
    return Made("ndarray", {"descr": dtype["descr"], "kind": dtype["kind"], "shape": shape})


def check_scalar(args: tuple[Any, ...], limits: PickleLimits) -> Made:
    """numpy's scalar(dtype, bytes): a numpy scalar read from exactly itemsize bytes. Its plain value (a bool,
    int, float, complex, bytes or str equal to it, with the same hash) is kept as ``key``: the one kind of
    made object that may be a dict key or set member (POLICY-7)."""
    _arity(args, "numpy scalar", 2)
    dtype = _dtype_arg(args[0], "numpy scalar dtype")
    data = args[1]
    if type(data) is not bytes or len(data) != dtype["itemsize"]:
        refuse(f"numpy scalar of {dtype['descr']} takes exactly {dtype['itemsize']} bytes, got {describe(data)}")
    order: Literal["little", "big"] = "big" if dtype.facts.get("byteorder") == ">" else \
        "little" if dtype.facts.get("byteorder") == "<" else sys.byteorder
    kind, size = dtype["kind"], dtype["itemsize"]
    if kind == "U" and any(int.from_bytes(data[i:i + 4], order) > 0x10FFFF for i in range(0, size, 4)):
        refuse("numpy scalar of a str dtype holds a code point above U+10FFFF")
    return Made("numpy-scalar", {"descr": dtype["descr"], "key": _scalar_value(kind, size, data, order)})


def _scalar_value(kind: str, size: int, data: bytes, order: Literal["little", "big"]) -> Any:
    """The plain value a numpy scalar equals (and hashes as), or None for kinds without one (M, m, V)."""
    fmt = ">" if order == "big" else "<"
    if kind == "b":
        return data != b"\x00"
    if kind in "iu":
        return int.from_bytes(data, order, signed=kind == "i")
    if kind == "f":
        return float(struct.unpack(fmt + {2: "e", 4: "f", 8: "d"}[size], data)[0])
    if kind == "c":
        part = {4: "f", 8: "d"}[size // 2]
        real, imag = struct.unpack(fmt + part * 2, data)
        return complex(real, imag)
    if kind == "S":
        return data.rstrip(b"\x00")
    if kind == "U":
        return data.decode("utf-32-be" if order == "big" else "utf-32-le", "surrogatepass").rstrip("\x00")
    return None


def check_mareconstruct(args: tuple[Any, ...], limits: PickleLimits) -> Made:
    """numpy.ma's _mareconstruct(MaskedArray, ndarray, (0,), 'b'), as MaskedArray.__reduce__ writes it."""
    if len(args) != 4 or args[0] not in MASKED_ARRAY_TYPES or args[1] != Ref("numpy", "ndarray") or \
            args[2] != (0,) or args[3] != "b" or type(args[3]) is not str:
        refuse("numpy.ma _mareconstruct must be called as _mareconstruct(MaskedArray, ndarray, (0,), 'b'), got "
               f"{describe_args(args)}")
    return Made("masked-stub")


_NUMERIC_KINDS = frozenset("biufc")


def build_masked(made: Made, state: Any, limits: PickleLimits) -> None:
    """MaskedArray.__setstate__((1, shape, dtype, is_fortran, data, mask, fill_value)): data and mask of
    exactly the right sizes (the mask is one bool a value), fill_value None or a 0-d array numpy can cast."""
    if not isinstance(state, tuple) or len(state) != 7 or state[0] != 1 or not is_int(state[0]) or \
            type(state[3]) is not bool:
        refuse(f"masked array state must be (1, shape, dtype, is_fortran, data, mask, fill_value), got "
               f"{describe(state)}", Rule.BUILD)
    shape = _shape(state[1], "masked array shape", limits)
    dtype = _dtype_arg(state[2], "masked array dtype")
    _array_bytes(state[4], shape, dtype, "masked array state")
    mask = state[5]
    if type(mask) not in (bytes, bytearray) or len(mask) != _product(shape):
        refuse(f"masked array state: the mask must hold {_product(shape)} bytes, got {describe(mask)}", Rule.BUILD)
    fill = state[6]
    if fill is not None:
        ok = isinstance(fill, Made) and fill.kind == "ndarray" and fill["shape"] == () and (
            fill["kind"] == dtype["kind"] or {fill["kind"], dtype["kind"]} <= _NUMERIC_KINDS)
        if not ok:
            refuse(f"masked array fill_value must be None or a 0-d array of a compatible dtype, got "
                   f"{describe(fill)}", Rule.BUILD)
    made.kind = "masked"


# -- torch ------------------------------------------------------------------------------------

#: torch dtypes by name: element size, and whether a tensor of it may require grad (floating or complex).
TORCH_DTYPES: dict[str, tuple[int, bool]] = {
    "float32": (4, True), "float64": (8, True), "float16": (2, True), "bfloat16": (2, True),
    "complex32": (4, True), "complex64": (8, True), "complex128": (16, True),
    "float8_e4m3fn": (1, True), "float8_e5m2": (1, True), "float8_e4m3fnuz": (1, True), "float8_e5m2fnuz": (1, True),
    "uint8": (1, False), "uint16": (2, False), "uint32": (4, False), "uint64": (8, False), "int8": (1, False),
    "int16": (2, False), "int32": (4, False), "int64": (8, False), "bool": (1, False),
}
#: Typed storage classes of the legacy stream's persistent ids, and the dtype of their elements.
TORCH_STORAGES: dict[tuple[str, str], str | None] = {
    ("torch", "FloatStorage"): "float32", ("torch", "DoubleStorage"): "float64", ("torch", "HalfStorage"): "float16",
    ("torch", "BFloat16Storage"): "bfloat16", ("torch", "LongStorage"): "int64", ("torch", "IntStorage"): "int32",
    ("torch", "ShortStorage"): "int16", ("torch", "CharStorage"): "int8", ("torch", "ByteStorage"): "uint8",
    ("torch", "BoolStorage"): "bool", ("torch", "ComplexFloatStorage"): "complex64",
    ("torch", "ComplexDoubleStorage"): "complex128", ("torch.storage", "UntypedStorage"): None,
}
#: Elements a tensor view may show beyond those its storage holds (stride-0 broadcasts).
BROADCAST_ELEMENTS = 1 << 20
_DEVICE = re.compile(r"(cpu|cuda|meta|mps|xpu)(?::(\d{1,3}))?\Z")


def check_torch_size(args: tuple[Any, ...], limits: PickleLimits) -> Made:
    _arity(args, "torch.Size", 1)
    _shape(args[0], "torch.Size", limits)
    return Made("torch.Size")


def check_torch_device(args: tuple[Any, ...], limits: PickleLimits) -> Made:
    _arity(args, "torch.device", 1, 2)
    match = _DEVICE.match(args[0]) if type(args[0]) is str else None
    if match is None or match.group(2) is not None and (len(args) == 2 or int(match.group(2)) > 127):
        refuse(f"torch.device takes a device type of cpu, cuda, meta, mps or xpu and an index up to 127, got "
               f"{describe_args(args)}")
    if len(args) == 2:
        _int_in(args[1], "torch.device index", 0, 127)
    return Made("torch.device")


def _hooks(value: Any, what: str) -> None:
    if not (isinstance(value, Made) and value.kind == "OrderedDict" and value["length"] == 0):
        refuse(f"{what}'s backward hooks must be an empty OrderedDict, got {describe(value)}")


def _tensor(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any, hooks: Any, dtype: str,
            limits: PickleLimits, what: str) -> Made:
    """The bounds torch's set_ checks, checked before torch runs: every element the view can reach lies in
    the storage."""
    size = _shape(size, f"{what} size", limits)
    stride = _shape(stride, f"{what} stride", limits)
    if len(size) != len(stride):
        refuse(f"{what}: size {size} and stride {stride} differ in length")
    element_size, differentiable = TORCH_DTYPES[dtype]
    available = storage["nbytes"] // element_size
    offset = _int_in(offset, f"{what} storage offset", 0, available)
    if type(requires_grad) is not bool:
        refuse(f"{what} requires_grad must be a bool, got {describe(requires_grad)}")
    if requires_grad and not differentiable:
        refuse(f"{what}: a tensor of {dtype} cannot require grad")
    _hooks(hooks, what)
    numel = _product(size)
    if numel:
        last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if last >= available:
            refuse(f"{what}: the view reaches element {last} of a storage of {available} {dtype} elements")
    if numel > max(available, BROADCAST_ELEMENTS):
        refuse(f"{what}: a view of {numel} elements over {available} stored ones (a stride-0 broadcast this "
               "large would allocate that much when copied)")
    return Made("tensor", {"dtype": dtype, "requires_grad": requires_grad})


def _storage(value: Any, typed: bool, what: str) -> Made:
    if not isinstance(value, Made) or value.kind != "storage" or (value["dtype"] is not None) != typed:
        expected = "a typed storage" if typed else "an UntypedStorage"
        refuse(f"{what} takes {expected} from torch.storage._load_from_bytes, got {describe(value)}")
    return value


def check_rebuild_tensor_v2(args: tuple[Any, ...], limits: PickleLimits) -> Made:
    """torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])."""
    _arity(args, "torch._utils._rebuild_tensor_v2", 6, 7)
    if len(args) == 7 and args[6] is not None:
        refuse(f"torch._utils._rebuild_tensor_v2 metadata must be None, got {describe(args[6])}")
    storage = _storage(args[0], True, "torch._utils._rebuild_tensor_v2")
    offset, size, stride, requires_grad, hooks = args[1:6]
    return _tensor(storage, offset, size, stride, requires_grad, hooks, storage["dtype"], limits,
                   "torch._utils._rebuild_tensor_v2")


def check_rebuild_tensor_v3(args: tuple[Any, ...], limits: PickleLimits) -> Made:
    """torch._utils._rebuild_tensor_v3(untyped storage, offset, size, stride, requires_grad, hooks, dtype
    [, metadata])."""
    _arity(args, "torch._utils._rebuild_tensor_v3", 7, 8)
    if len(args) == 8 and args[7] is not None:
        refuse(f"torch._utils._rebuild_tensor_v3 metadata must be None, got {describe(args[7])}")
    storage = _storage(args[0], False, "torch._utils._rebuild_tensor_v3")
    dtype = args[6]
    if not (isinstance(dtype, Ref) and dtype.module == "torch" and dtype.name in TORCH_DTYPES):
        refuse(f"torch._utils._rebuild_tensor_v3 dtype must be a torch dtype, got {describe(dtype)}")
    offset, size, stride, requires_grad, hooks = args[1:6]
    return _tensor(storage, offset, size, stride, requires_grad, hooks, dtype.name, limits,
                   "torch._utils._rebuild_tensor_v3")


def check_rebuild_parameter(args: tuple[Any, ...], limits: PickleLimits) -> Made:
    """torch._utils._rebuild_parameter(tensor, requires_grad, hooks)."""
    _arity(args, "torch._utils._rebuild_parameter", 3)
    data, requires_grad, hooks = args
    if not isinstance(data, Made) or data.kind != "tensor":
        refuse(f"torch._utils._rebuild_parameter takes a tensor, got {describe(data)}")
    if type(requires_grad) is not bool or requires_grad and not TORCH_DTYPES[data["dtype"]][1]:
        refuse(f"torch._utils._rebuild_parameter requires_grad {describe(requires_grad)} for a {data['dtype']} tensor")
    _hooks(hooks, "torch._utils._rebuild_parameter")
    return Made("parameter", {"dtype": data["dtype"]})


REBUILD_FROM_TYPE_FUNCS: dict[Ref, Check] = {}  # filled below: the functions _rebuild_from_type_v2 may call


def check_rebuild_from_type_v2(args: tuple[Any, ...], limits: PickleLimits) -> Made:
    """torch._tensor._rebuild_from_type_v2(func, torch.Tensor, args, state) calls func(*args): func must be one
    of the tensor rebuild functions (never _load_from_bytes or any other callable), state empty."""
    _arity(args, "torch._tensor._rebuild_from_type_v2", 4)
    func, new_type, inner, state = args
    check = REBUILD_FROM_TYPE_FUNCS.get(func) if isinstance(func, Ref) else None
    if check is None:
        refuse(f"torch._tensor._rebuild_from_type_v2 may call only the tensor rebuild functions, got {describe(func)}")
    if new_type != Ref("torch", "Tensor"):
        refuse(f"torch._tensor._rebuild_from_type_v2 type must be torch.Tensor, got {describe(new_type)}")
    if not isinstance(inner, tuple):
        refuse(f"torch._tensor._rebuild_from_type_v2 arguments must be a tuple, got {describe(inner)}")
    if not (state is None or isinstance(state, Mapping) and not state.items):
        refuse(f"torch._tensor._rebuild_from_type_v2 state must be empty, got {describe(state)}")
    result: Made = check(inner, limits)
    return result


REBUILD_FROM_TYPE_FUNCS.update({
    Ref("torch._utils", "_rebuild_tensor_v2"): check_rebuild_tensor_v2,
    Ref("torch._utils", "_rebuild_tensor_v3"): check_rebuild_tensor_v3,
})


def check_load_from_bytes(args: tuple[Any, ...], limits: PickleLimits) -> bytes:
    """torch.storage._load_from_bytes(bytes): the engine reads the stream itself (check_legacy_*), with this
    policy, never torch.load: the original calls torch.load(weights_only=False), which runs any pickle."""
    if len(args) != 1 or type(args[0]) is not bytes:
        refuse(f"torch.storage._load_from_bytes takes the bytes of a torch.save stream, got {describe_args(args)}")
    data: bytes = args[0]
    return data


# -- the legacy torch.save stream inside _load_from_bytes (FORMAT.md PICKLE-2) -------------------

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
LEGACY_PICKLES = ("magic number", "protocol version", "system information", "storage", "storage keys")


def _nested(message: str) -> NoReturn:
    raise PolicyViolation(Rule.NESTED, f"torch stream in _load_from_bytes: {message}")


def check_legacy_header(magic: Any, protocol: Any, sys_info: Any) -> None:
    """The first three pickles: the magic number, protocol 1001, and a little-endian system description."""
    if not is_int(magic) or magic != LEGACY_MAGIC:
        _nested(f"the magic number is {describe(magic)}, expected {LEGACY_MAGIC:#x}")
    if not is_int(protocol) or protocol != LEGACY_PROTOCOL:
        _nested(f"the protocol is {describe(protocol)}, expected {LEGACY_PROTOCOL}")
    info = plain_mapping(sys_info)
    sizes = plain_mapping(info.get("type_sizes")) if info is not None else None
    if info is None or set(info) != {"protocol_version", "little_endian", "type_sizes"} or \
            info["protocol_version"] != LEGACY_PROTOCOL or info["little_endian"] is not True or sizes is None or \
            sizes != {"short": 2, "int": 4, "long": sizes.get("long")} or sizes.get("long") not in (4, 8):
        _nested(f"the system information must describe a little-endian machine, got {describe(sys_info)}")


def check_legacy_storage(pid: Any) -> tuple[str, str | None, int]:
    """The persistent id of the storage pickle: ('storage', storage class, key, 'cpu', numel[, None]).
    Returns (key, dtype name or None for untyped, numel)."""
    ok = isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage" and isinstance(pid[1], Ref) and \
        (pid[1].module, pid[1].name) in TORCH_STORAGES and type(pid[2]) is str and pid[3] == "cpu" and \
        is_int(pid[4]) and pid[4] >= 0 and (len(pid) == 5 or pid[5] is None)
    if not ok:
        _nested(f"the persistent id must be ('storage', <storage class>, key, 'cpu', numel), got {describe(pid)}")
    return pid[2], TORCH_STORAGES[(pid[1].module, pid[1].name)], pid[4]


def check_legacy_keys(keys: Any, key: str) -> None:
    """The last pickle lists the storage keys: exactly the one storage."""
    if keys != (key,):
        _nested(f"the storage key list must be [{key!r}], got {describe(keys)}")


def legacy_storage(dtype: str | None, numel: int, count: Any, available: int) -> Made:
    """The storage after the five pickles: an 8-byte element count that must equal numel, then the bytes."""
    element_size = 1 if dtype is None else TORCH_DTYPES[dtype][0]
    if count != numel:
        _nested(f"the storage holds {count} elements, its persistent id says {numel}")
    if numel * element_size != available:
        _nested(f"the storage needs {numel * element_size} bytes, the stream has {available} after its count")
    return Made("storage", {"dtype": dtype, "nbytes": numel * element_size})


# -- keys --------------------------------------------------------------------------------------


def refuse_key(message: str) -> NoReturn:
    raise PolicyViolation(Rule.KEY, message)
