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


@dataclass(frozen=True)
class Finding:
    """One problem (or note) at one location: file, shard, block, example, byte offset."""

    id: str
    severity: str
    clause: str
    message: str
    path: str | None = None
    shard: str | None = None
    block: int | None = None
    example: int | None = None
    offset: int | None = None

    def location(self) -> str:
        return format_location(self.path, self.shard, self.block, self.example, self.offset) or "-"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make(finding_id: str, message: str, *, clause: str | None = None, severity: str | None = None,
         path: Any = None, shard: Any = None, block: int | None = None, example: int | None = None,
         offset: int | None = None) -> Finding:
    """A finding of a catalog id; severity and clause default to the catalog's."""
    e = entry(finding_id)
    return Finding(
        id=finding_id, severity=severity or e.severity, clause=clause or e.clause, message=message,
        path=None if path is None else str(path), shard=None if shard is None else str(shard),
        block=None if block is None else int(block), example=None if example is None else int(example),
        offset=None if offset is None else int(offset),
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": REPORT_SCHEMA_ID,
            "validator_version": __version__,
            "path": self.path,
            "format_version": self.format_version,
            "level": self.level,
            "strict": self.strict,
            "ok": self.ok,
            "safe_load": self.safe_load,
            "counts": {"error": len(self.errors), "warning": len(self.warnings), "info": len(self.infos)},
            "not_verifiable": list(self.not_verifiable),
            "stats": {
                "shards": self.stats.shards, "blocks": self.stats.blocks, "bytes_read": self.stats.bytes_read,
                "decoded_bytes": self.stats.decoded_bytes, "seconds": round(self.stats.seconds, 6),
                "mb_per_s": round(self.stats.mb_per_s, 3),
            },
            "findings": [f.to_dict() for f in self.findings],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)
