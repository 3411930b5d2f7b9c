"""Folder and file naming rules of both versions."""

from __future__ import annotations

import os
import re
from pathlib import Path

from .constants import TEMP_PREFIX, TEMP_TOKEN_HEX, V2_SHARD_NAME_WIDTH, WRITE_LOCK_SUFFIX
from .files import Location, require_folder

V1_SHARD_NAME = re.compile(r"^[0-9]+$")
V2_SHARD_NAME = re.compile(rf"^[0-9]{{{V2_SHARD_NAME_WIDTH}}}$")
#: A write's temporary folder beside its target (V2-WRITE-2): ``.atlas-tmp-<name>-<random hex>``.
TEMP_SIBLING = re.compile(rf"^{re.escape(TEMP_PREFIX)}(?P<name>.+)-(?P<token>[0-9a-f]{{{TEMP_TOKEN_HEX}}})$",
                          re.DOTALL)


def v1_shard_width(num_shards: int) -> int:
    """The original pads folder names to the width of the largest name: len(str(N - 1))."""
    return len(str(max(num_shards - 1, 0)))


def v1_shard_names(num_shards: int) -> list[str]:
    """Folder names of a version 1 dataset with ``num_shards`` shards (10 -> '0'..'9', 11 -> '00'..'10')."""
    width = v1_shard_width(num_shards)
    return [str(i).zfill(width) for i in range(num_shards)]


def v1_shard_folders(root: Path) -> list[str]:
    """The shard folders of a version 1 dataset as readers find them: every sub-folder with a decimal name,
    in numeric order (V1-LAYOUT-2, V1-LAYOUT-5). A decimal name that is a symlink raises FormatError
    (FILE-1): following it would read a folder from elsewhere as a shard."""
    names = []
    with os.scandir(root) as entries:
        for entry in entries:
            if not V1_SHARD_NAME.match(entry.name):
                continue
            if entry.is_symlink():
                require_folder(Location(root, entry.name), shard=entry.name)  # raises, naming the link
            if entry.is_dir(follow_symlinks=False):
                names.append(entry.name)
    return sorted(names, key=lambda s: (int(s), s))


def v2_shard_name(index: int) -> str:
    """Version 2 shard folders are fixed-width (six digits), so appending never renames."""
    if not 0 <= index < 10**V2_SHARD_NAME_WIDTH:
        raise ValueError(f"shard number {index} outside 0..{10**V2_SHARD_NAME_WIDTH - 1}")
    return str(index).zfill(V2_SHARD_NAME_WIDTH)


def temp_sibling_name(target_name: str, token: str) -> str:
    """The temporary folder a write to ``<parent>/<target_name>`` builds in (V2-WRITE-2)."""
    return f"{TEMP_PREFIX}{target_name}-{token}"


def is_temp_sibling(entry_name: str, target_name: str) -> bool:
    """Whether ``entry_name`` (beside the target) is the temporary folder of a write to ``target_name``.

    The random part is matched exactly, so the leftovers of a write to ``foo`` are not mistaken for those
    of a write to ``foo-bar``."""
    match = TEMP_SIBLING.match(entry_name)
    return match is not None and match["name"] == target_name


def write_lock_name(target_name: str) -> str:
    """The lock a new write to ``<parent>/<target_name>`` holds beside it while it runs (V2-WRITE-0)."""
    return f"{TEMP_PREFIX}{target_name}{WRITE_LOCK_SUFFIX}"
