"""The unit of parallel work: one shard to check, with what the root metadata expects of it.

Plain picklable data, so the runner can hand it to a worker process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from atlas_format.constants import DEFAULT_LIMITS, Limits

from .pickle_scan import DEFAULT_SCAN_LIMITS, ScanLimits


@dataclass(frozen=True)
class ShardTask:
    """Check shard ``name`` (position ``position`` in the dataset) of the dataset at ``root``."""

    root: str
    name: str
    position: int
    version: int
    quick: bool = False
    limits: Limits = DEFAULT_LIMITS
    scan_limits: ScanLimits = DEFAULT_SCAN_LIMITS
    # Root-level facts the shard is checked against (version specific, JSON-like values).
    expect: dict[str, Any] = field(default_factory=dict)
    # Globals outside the pickle policy the caller trusts completely (the reader's allowed_globals).
    allowed: frozenset[tuple[str, str]] = frozenset()
