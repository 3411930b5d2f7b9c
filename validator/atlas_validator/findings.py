"""Findings and the report: what the validator found, where, and the overall verdict.

A finding is plain data (picklable, JSON-ready) so that worker processes return them
and the CLI renders them without knowing which check produced them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from atlas_format.errors import format_location

from . import __version__
from .catalog import ERROR, INFO, WARNING, entry
from .pickle_scan import POLICY_FINDINGS

REPORT_SCHEMA_ID = "atlas-validator-report/1"
#: Severities from the least to the most severe (``--min-severity``; "note" is what the human output calls info).
SEVERITY_ORDER = (INFO, WARNING, ERROR)
SEVERITY_ALIASES = {"note": INFO}


def severity_at_least(severity: str, minimum: str) -> bool:
    """Whether ``severity`` is ``minimum`` or more severe (an unknown severity is always shown); ValueError
    naming ``minimum`` when it is not a severity."""
    rank = {name: k for k, name in enumerate(SEVERITY_ORDER)}
    floor = rank.get(SEVERITY_ALIASES.get(minimum, minimum))
    if floor is None:
        raise ValueError(f"minimum severity {minimum!r}: expected one of {', '.join(SEVERITY_ORDER)} (or note)")
    return rank.get(severity, len(SEVERITY_ORDER)) >= floor


@dataclass(frozen=True)
class Finding:
    """One problem (or note) at one location: file, shard, block, example, byte offset.

    An example is numbered as the reader numbers it (``atlas_format.errors.format_example``): ``index`` in the
    whole dataset, ``shard``, ``block`` and ``position`` in the block; ``example`` is its number within the
    shard (kept: the JSON member predates ``index``). ``data`` holds structured detail of some findings
    (ATL605: counts per shard), bounded.
    """

    id: str
    severity: str
    clause: str
    message: str
    path: str | None = None
    shard: str | None = None
    block: int | None = None
    example: int | None = None
    offset: int | None = None
    position: int | None = None
    index: int | None = None
    data: dict[str, Any] | None = None

    def location(self) -> str:
        return format_location(self.path, self.shard, self.block, self.example, self.offset, index=self.index,
                               position=self.position) or "-"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make(finding_id: str, message: str, *, clause: str | None = None, severity: str | None = None,
         path: Any = None, shard: Any = None, block: int | None = None, example: int | None = None,
         offset: int | None = None, position: int | None = None, index: int | None = None,
         data: dict[str, Any] | None = None) -> Finding:
    """A finding of a catalog id; severity and clause default to the catalog's."""
    e = entry(finding_id)
    return Finding(
        id=finding_id, severity=severity or e.severity, clause=clause or e.clause, message=message,
        path=None if path is None else str(path), shard=None if shard is None else str(shard),
        block=None if block is None else int(block), example=None if example is None else int(example),
        offset=None if offset is None else int(offset), position=None if position is None else int(position),
        index=None if index is None else int(index), data=data,
    )


@dataclass
class Stats:
    """What was examined, for the throughput line and the JSON report."""

    shards: int = 0
    blocks: int = 0
    bytes_read: int = 0
    decoded_bytes: int = 0
    seconds: float = 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes_read / 1e6 / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Report:
    """The result of validating one dataset path."""

    path: str
    level: str = "full"
    strict: bool = False
    format_version: int | None = None
    findings: list[Finding] = field(default_factory=list)
    not_verifiable: list[str] = field(default_factory=list)
    stats: Stats = field(default_factory=Stats)
    allowed_globals: list[str] = field(default_factory=list)  # 'module:name' trusted by the caller (--allow)
    #: what the examples are: "pickle" or "typed" (spec 3.12, the root meta.json's encoding); None if not known
    encoding: str | None = None

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == WARNING]

    @property
    def infos(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == INFO]

    @property
    def ok(self) -> bool:
        """Valid: no error (and, with strict, no warning). Info findings never fail."""
        return not self.errors and not (self.strict and self.warnings)

    @property
    def safe_load(self) -> bool | None:
        """Whether safe loading (the pickle policy, spec/FORMAT.md section 5) loads every example: no error of any
        kind (a reader refuses a corrupt block as it refuses a pickle). None for --quick, which reads no pickle."""
        return None if self.level == "quick" else not self.errors

    @property
    def pickles_refused(self) -> int:
        """Findings of pickles that break the pickle policy (each is one pickle refused by safe loading)."""
        return sum(1 for f in self.errors if f.id in POLICY_FINDINGS)

    @property
    def io_error(self) -> bool:
        """The path itself could not be read (the CLI exits with 2)."""
        return any(f.id == "ATL109" for f in self.findings)

    def ids(self) -> set[str]:
        return {f.id for f in self.findings}

    def shown(self, min_severity: str = INFO) -> list[Finding]:
        """The findings of ``min_severity`` or more severe (the verdict and ``counts`` always count them all)."""
        severity_at_least(INFO, min_severity)  # a bad minimum is refused even when there is no finding
        return [f for f in self.findings if severity_at_least(f.severity, min_severity)]

    def to_dict(self, min_severity: str = INFO) -> dict[str, Any]:
        """The JSON report; ``findings`` holds those of ``min_severity`` or more severe (default: every one),
        ``counts`` counts every finding and ``not_shown`` how many the filter left out."""
        shown = self.shown(min_severity)
        return {
            "schema": REPORT_SCHEMA_ID,
            "validator_version": __version__,
            "path": self.path,
            "format_version": self.format_version,
            "level": self.level,
            "strict": self.strict,
            "ok": self.ok,
            "safe_load": self.safe_load,
            "encoding": self.encoding,
            "counts": {"error": len(self.errors), "warning": len(self.warnings), "info": len(self.infos)},
            "not_verifiable": list(self.not_verifiable),
            "stats": {
                "shards": self.stats.shards, "blocks": self.stats.blocks, "bytes_read": self.stats.bytes_read,
                "decoded_bytes": self.stats.decoded_bytes, "seconds": round(self.stats.seconds, 6),
                "mb_per_s": round(self.stats.mb_per_s, 3),
            },
            "allowed_globals": list(self.allowed_globals),
            "min_severity": SEVERITY_ALIASES.get(min_severity, min_severity),
            "not_shown": len(self.findings) - len(shown),
            "findings": [f.to_dict() for f in shown],
        }

    def to_json(self, indent: int | None = 2, min_severity: str = INFO) -> str:
        return json.dumps(self.to_dict(min_severity), indent=indent)
