"""The opcode scan of a decoded block of framing grouped (V2-FRAME-6, V2-FRAME-9), part by part.

A random read unpickles the block's prefix (PROTO, table, preamble) and one part (a group of the
table, or a group of 8 examples inside a frame of 32, located by the stored head); an in-order
read unpickles the whole block. The scan follows the block once and makes them the same read:
each part starts on an empty stack above the list's MARK with only the preamble's memo (what a
random read has), must end between opcodes with exactly its examples complete, and the parts'
items then go to the list's APPENDS (what the in-order read makes). A part that reads a memo entry
of another part (ATL422), or that does not end where the next begins (ATL420), is where the two
reads differ. The pickle policy applies to every opcode as in one scan.

Never unpickles, never raises: every problem is a ``ScanIssue``, with the part it is in.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from atlas_format.pickle_values import PolicyViolation, Rule

from .pickle_scan import (
    ENDS_BEFORE_STOP,
    PAUSED,
    TRUNCATED,
    ScanIssue,
    ScanLimits,
    SList,
    _finding_id,
    _Scanner,
)


@dataclass(frozen=True)
class Part:
    """What a random read unpickles after the prefix: ``raw[start:end]``, ``count`` examples, the first of which
    is example ``first`` of the block; ``name`` says which part in messages ("group 2", "frame 1 group 3")."""

    start: int
    end: int
    count: int
    first: int
    name: str


@dataclass
class GroupedScan:
    """What the scan learned: issues (with the part each is in, None outside the parts), the list's length
    (None when the scan stopped before STOP), the offset after STOP, the policy globals referenced."""

    issues: list[tuple[ScanIssue, Part | None]] = field(default_factory=list)
    count: int | None = None
    end: int | None = None
    allowed: set[tuple[str, str]] | None = None


def scan_grouped(raw: bytes, prefix_end: int, parts: list[Part], *, limits: ScanLimits,
                 allowed: frozenset[tuple[str, str]] = frozenset()) -> GroupedScan:
    """Scan ``raw`` (a decoded grouped block): the prefix ``raw[:prefix_end]``, each part, then the rest
    (APPENDS STOP) over every part's items. ``parts`` are in order and contiguous."""
    result = GroupedScan()
    if len(raw) > limits.max_pickle_size:
        result.issues.append((ScanIssue("ATL902", f"pickle of {len(raw)} bytes is above the limit of "
                                                  f"{limits.max_pickle_size}", 0, Rule.SIZE.value), None))
        return result
    seen: set[tuple[str, str]] = set()
    scanner = _Scanner(raw, limits, False, seen, prefix_end, allowed)
    scanner.pause = True
    run = _Run(scanner, result)
    try:
        run.scan(prefix_end, parts)
    except PolicyViolation as exc:
        at = scanner.pos if exc.offset is None else exc.offset
        result.issues.append((_issue(exc, at, run.part), run.part))
    except (UnicodeDecodeError, struct.error, OverflowError) as exc:
        result.issues.append((ScanIssue("ATL413", f"malformed pickle: {type(exc).__name__}: {exc}", scanner.pos),
                              run.part))
    except RecursionError:
        result.issues.append((ScanIssue("ATL902", "nesting too deep to check", scanner.pos), run.part))
    except Exception as exc:  # noqa: BLE001 - the validator must never crash on a pickle
        result.issues.append((ScanIssue("ATL990", f"internal error while scanning: {type(exc).__name__}: {exc}",
                                        scanner.pos), run.part))
    result.allowed = seen or None
    return result


def _issue(exc: PolicyViolation, at: int, part: Part | None) -> ScanIssue:
    """The issue of a violation; a part that runs past its end is a boundary inside an opcode (ATL420)."""
    if part is not None and exc.rule is Rule.STRUCTURE and exc.message in (TRUNCATED, ENDS_BEFORE_STOP):
        return ScanIssue("ATL420", f"{part.name}'s opcodes run past its end at decoded offset {part.end} (the "
                                   "boundary falls inside an opcode, or a slice is cut short)", at, exc.rule.value)
    return ScanIssue(_finding_id(exc), exc.message, at, exc.rule.value)


class _Run:
    """One block's scan; ``part`` is the part being scanned (None: the prefix or the end)."""

    def __init__(self, scanner: _Scanner, result: GroupedScan) -> None:
        self.s, self.result = scanner, result
        self.part: Part | None = None

    def scan(self, prefix_end: int, parts: list[Part]) -> None:
        s, result = self.s, self.result
        value, pos = s.scan(0)
        if value is not PAUSED or len(s.frames) != 1 or s.stack or not s.frames[0] \
                or type(s.frames[0][-1]) is not SList:
            result.issues.append((ScanIssue("ATL418", f"the prefix (decoded offsets 0..{prefix_end}) does not leave "
                                                      "the block's empty list under a MARK on an empty stack", pos),
                                  None))
            return
        below = s.frames[0]
        floor = len(s.memo)  # p: the preamble's memo entries
        preamble_memo = dict(s.memo)
        s.memo_floor, s.in_slices, s.mark_floor = floor, True, 1
        s.frozen = {id(value) for value in preamble_memo.values()}
        items: list[object] = []
        for part in parts:
            self.part = part
            # as a random read: nothing of the other parts on the stack or in the memo
            if len(s.memo) > floor:
                s.elsewhere.append(s.memo)
            s.memo = dict(preamble_memo)
            s.stack, s.stop = [], part.end
            s.scan(part.start)  # PAUSED at part.end (STOP inside the slices raises, ATL421)
            if len(s.frames) != 1 or s.frames[0] is not below or len(s.stack) != part.count:
                opened = len(s.frames) - 1
                result.issues.append((ScanIssue(
                    "ATL420", f"{part.name} ends at decoded offset {part.end} with {len(s.stack)} complete values "
                              "above the list's MARK" + (f" and {opened} MARKs still open" if opened else "")
                              + f", expected its {part.count} examples", part.end), part))
                return
            items.extend(s.stack)
        self.part = None
        s.in_slices, s.memo_floor, s.mark_floor, s.pause, s.frozen = False, 0, 0, False, set()
        s.stack, s.stop = items, len(s.data)
        value, end = s.scan(parts[-1].end if parts else prefix_end)
        s.measure(value, end)
        result.end = end
        result.count = len(value.items) if isinstance(value, SList) else None
