"""Checksum algorithms of version 2, a registry keyed by the id stored in index headers.

XXH3-64 is the only algorithm: on a 23 KB block it costs 0.4 us, against 6.8 us for
LZ4 and 15.9 us for zstd-with-dictionary decompression of the same block (see
spec/FORMAT.md, clause V2-CHK).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import xxhash

from .errors import FormatError


@dataclass(frozen=True)
class ChecksumAlgorithm:
    """One checksum algorithm: its header id, its JSON name and the digest function."""

    id: int
    name: str
    digest: Callable[[bytes | bytearray | memoryview], int]
    bits: int

    def text(self, value: int) -> str:
        """The JSON form, e.g. 'xxh3_64:0123456789abcdef'."""
        return f"{self.name}:{value:0{self.bits // 4}x}"

    def of(self, data: bytes | bytearray | memoryview) -> int:
        return self.digest(data)


XXH3_64 = ChecksumAlgorithm(id=1, name="xxh3_64", digest=xxhash.xxh3_64_intdigest, bits=64)

CHECKSUM_ALGORITHMS: dict[int, ChecksumAlgorithm] = {XXH3_64.id: XXH3_64}
CHECKSUM_ALGORITHMS_BY_NAME: dict[str, ChecksumAlgorithm] = {a.name: a for a in CHECKSUM_ALGORITHMS.values()}
DEFAULT_CHECKSUM = XXH3_64

_TEXT = re.compile(r"^([a-z0-9_]+):([0-9a-f]+)$")


def checksum_algorithm(key: int | str) -> ChecksumAlgorithm:
    """Look an algorithm up by header id or JSON name; unknown ones are a FormatError."""
    table: dict[int, ChecksumAlgorithm] | dict[str, ChecksumAlgorithm]
    table = CHECKSUM_ALGORITHMS if isinstance(key, int) else CHECKSUM_ALGORITHMS_BY_NAME
    try:
        return table[key]  # type: ignore[index]
    except KeyError:
        known = ", ".join(a.name for a in CHECKSUM_ALGORITHMS.values())
        raise FormatError(f"unknown checksum algorithm {key!r} (known: {known})") from None


def parse_checksum_text(text: str) -> tuple[ChecksumAlgorithm, int]:
    """Split 'xxh3_64:<hex>' into its algorithm and integer value."""
    match = _TEXT.match(text) if isinstance(text, str) else None
    if match is None:
        raise FormatError(f"checksum {text!r} is not of the form '<algorithm>:<lowercase hex>'")
    algorithm = checksum_algorithm(match.group(1))
    if len(match.group(2)) != algorithm.bits // 4:
        raise FormatError(f"checksum {text!r} must have {algorithm.bits // 4} hex digits")
    return algorithm, int(match.group(2), 16)
