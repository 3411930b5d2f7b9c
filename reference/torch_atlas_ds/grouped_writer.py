"""Writing framing "grouped" (V2-FRAME-6..9): a shard's preamble, its examples' slices, a block's frames.

The preamble memoizes what the examples of the shard's first block share by identity (two or more of
their protocol 3 pickles memoize it): globals, numpy dtypes, dict keys and other strings. Only immutable
objects qualify: a slice refers to a preamble object by the object's identity, so an object mutated after
the first block would be read back as it was then. A random read unpickles the preamble, so it is kept
under ``PREAMBLE_TARGET`` bytes (long strings dropped first, then everything). The memo's objects are
held for the shard's lifetime, so their ids are never reused.

A block whose examples protocol 3 cannot express (it raises, or it would need ``builtins.getattr`` or
``functools.partial``, which safe loading refuses) is a list fallback: version 1's protocol 4 list pickle.
"""

from __future__ import annotations

import io
import itertools
import pickle
import pickletools
import types
from collections import Counter
from typing import Any

import numpy as np

from atlas_format import grouped
from atlas_format.constants import V2_LIST_PICKLE_PROTOCOL

#: A random read unpickles the preamble: past this size only globals, dtypes and short strings stay.
PREAMBLE_TARGET = 4096
#: The longest str/bytes kept when the preamble had to shrink.
SHORT_STRING = 64
#: What protocol 3 writes for objects protocol 4 has opcodes for (V2-FRAME-8): GLOBAL's text, then
#: the (module, name) pickletools reports for it.
_NEEDS_FALLBACK = (b"\ngetattr\n", b"\npartial\n")
_FALLBACK_GLOBALS = frozenset({"builtins getattr", "functools partial", "__builtin__ getattr"})
_GLOBAL_TYPES = (type, types.FunctionType, types.BuiltinFunctionType)


def _pickle3(obj: Any, memo: dict[int, Any] | None) -> tuple[bytes, dict[int, Any]]:
    f = io.BytesIO()
    p = pickle.Pickler(f, grouped.GROUPED_PICKLE_PROTOCOL)
    if memo:
        p.memo = memo
    p.dump(obj)
    return f.getvalue(), p.memo.copy()


def needs_fallback(data: bytes) -> bool:
    """Whether a protocol 3 pickle names builtins.getattr or functools.partial (substring filter, then
    the opcodes: the text may be inside a string)."""
    if not any(s in data for s in _NEEDS_FALLBACK):
        return False
    try:
        return any(op.name == "GLOBAL" and arg in _FALLBACK_GLOBALS for op, arg, _ in pickletools.genops(data))
    except ValueError:
        return True


def _in_pickling_order(memo: dict[int, tuple[int, Any]]) -> list[tuple[int, tuple[int, Any]]]:
    """A Pickler memo's (id, (index, object)) items by memo index: its copy iterates in the order of object
    addresses, which would make the preamble (and every byte of the shard) differ from run to run."""
    return sorted(memo.items(), key=lambda item: item[1][0])


def _shareable(obj: Any, short: bool) -> bool:
    """Immutable objects a slice may refer to by identity (``short``: only small ones)."""
    if isinstance(obj, (str, bytes)):
        return not short or len(obj) <= SHORT_STRING
    return isinstance(obj, _GLOBAL_TYPES) or isinstance(obj, np.dtype)


def _preamble(shared: list[Any]) -> tuple[bytes, dict[int, Any]] | None:
    data, memo = _pickle3(shared, None)
    preamble = data[:-1] + grouped.PREAMBLE_SUFFIX
    if needs_fallback(preamble):
        return None
    return preamble, memo


def _seeded(shared: list[Any], seed: list[Any]) -> list[Any]:
    """``seed`` (the first shard's shared objects) in its order, each replaced by this shard's equal object
    when it has one, and nothing else: every shard then numbers its memo alike (a slice's BINPUT indices
    start after the preamble's), so a dictionary trained on the first shard's blocks matches the others'."""
    mine: dict[tuple[type, Any], Any] = {}
    for obj in shared:
        try:
            mine.setdefault((type(obj), obj), obj)
        except TypeError:  # unhashable: keep it after the seed
            pass
    ordered = []
    for obj in seed:
        try:
            ordered.append(mine.pop((type(obj), obj), obj))
        except TypeError:
            ordered.append(obj)
    return ordered


def build_preamble(examples: list[Any], seed: list[Any] | None = None) -> tuple[bytes, dict[int, Any], list[Any]]:
    """(preamble, pickler memo, shared objects) of a shard whose first examples are ``examples``; ``seed``:
    the shared objects of the dataset's first shard."""
    memos = []
    for example in examples:
        try:
            data, memo = _pickle3(example, None)
        except Exception:  # noqa: BLE001 - such examples fall back; they share nothing
            continue
        if not needs_fallback(data):
            memos.append(memo)
    counts = Counter(k for m in memos for k in m)
    seen: dict[int, Any] = {}
    for m in memos:
        for k, (_, obj) in _in_pickling_order(m):
            if counts[k] >= 2 and k not in seen:
                seen[k] = obj
    for short in (False, True):
        shared = [obj for obj in seen.values() if _shareable(obj, short)]
        if seed:
            shared = _seeded(shared, [obj for obj in seed if _shareable(obj, short)])
        built = _preamble(shared)
        if built is not None and len(built[0]) <= PREAMBLE_TARGET:
            return built[0], built[1], shared
    data, memo = _pickle3([], None)  # nothing shared: an empty list (names no global)
    return data[:-1] + grouped.PREAMBLE_SUFFIX, memo, []


class GroupedEncoder:
    """Encodes one shard's blocks once its preamble and group size are set (``start``)."""

    def __init__(self) -> None:
        self.preamble = b""
        #: examples per group (V2-FRAME-6), chosen by ``start`` from the first examples' slice sizes
        self.group = grouped.FRAME_GROUP
        self._memo: dict[int, Any] = {}  # holds the preamble's objects (their ids stay theirs)
        #: the objects the preamble memoizes (the seed of the dataset's later shards)
        self.shared: list[Any] = []
        #: whether the preamble (typed examples: only the group size) is set
        self.started = False

    def start(self, examples: list[Any], seed: list[Any] | None = None) -> None:
        self.preamble, self._memo, self.shared = build_preamble(examples, seed)
        self.started = True
        slices = self.slices(examples) if examples else None
        if slices:
            self.group = grouped.choose_group(sum(map(len, slices)) / len(slices))

    def start_typed(self, mean_size: float) -> None:
        """Typed examples (TYPED-7): no preamble to build, only the group size, from their mean typed size."""
        self.group = grouped.choose_group(mean_size)
        self.started = True

    def slices(self, examples: list[Any]) -> list[bytes] | None:
        """Each example's slice, or None when the block must fall back to a protocol 4 list.

        One pickler and buffer per block; before each example its memo is reset to the preamble's (the
        setter copies it), so each slice refers only to the preamble and to itself."""
        memo = self._memo
        f = io.BytesIO()
        p = pickle.Pickler(f, grouped.GROUPED_PICKLE_PROTOCOL)
        ends = [0]
        try:
            for example in examples:
                p.memo = memo
                p.dump(example)
                ends.append(f.tell())
        except Exception:  # noqa: BLE001 - protocol 3 cannot express it: the block falls back
            return None
        data = f.getvalue()
        cut = [data[a:b] for a, b in itertools.pairwise(ends)]
        if any(s in data for s in _NEEDS_FALLBACK) and any(needs_fallback(one) for one in cut):
            return None
        return [one[2:-1] for one in cut]

    def encode(self, examples: list[Any]) -> tuple[list[bytes], list[list[int]] | None]:
        """(decoded frames, each frame's interior group offsets) of a block; the offsets are None for a
        list fallback (one protocol 4 list pickle) and [] for a one-frame block (its table is inside)."""
        slices = self.slices(examples)
        if slices is None:
            return [pickle.dumps(examples, protocol=V2_LIST_PICKLE_PROTOCOL)], None
        offsets = grouped.frame_group_offsets(slices, self.group) if len(slices) > grouped.FRAME_EXAMPLES else []
        return grouped.encode_frames(self.preamble, slices, self.group), offsets


def stored_grouped(frames: list[bytes], group_offsets: list[list[int]] | None, n: int, compress: Any,
                   group: int) -> bytes:
    """The stored block of a block's decoded frames (V2-FRAME-7/8): the head (frame starts, then each
    frame's interior group offsets, of a width set by the decoded size), then the frames; a list fallback
    (whose head has ``group``'s size) when ``group_offsets`` is None."""
    raw_size = sum(map(len, frames))
    if group_offsets is None:
        return grouped.fallback_block(n, compress(frames[0]), raw_size, group)
    return grouped.stored_block([compress(f) for f in frames], group_offsets, raw_size)
