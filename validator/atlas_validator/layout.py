"""Layout checks of the dataset root: shard folder names, missing and unexpected entries.

Version 1 finds shards by listing folders (V1-LAYOUT-2); version 2 lists them in the
root meta.json and folders are only compared with that list (V2-LAYOUT-1, -4).
"""

from __future__ import annotations

import os
from pathlib import Path

from atlas_format.constants import DICT_FILE, META_FILE, TEMP_PREFIX
from atlas_format.layout import V1_SHARD_NAME, V2_SHARD_NAME, is_temp_sibling, v1_shard_width, v2_shard_name

from .common import Sink, list_dir, real_folder


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _is_link(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_symlink()
    except OSError:
        return False


def v1_shard_folders(root: Path, sink: Sink, *, root_dict_expected: bool) -> list[str]:
    """The shard folder names of a version 1 dataset in shard order; reports ATL102/105/106/112/113.

    The original reader makes a shard of every sub-folder and orders them by name as text: a
    sub-folder that is not a shard stops it (ATL112, an error), names whose text order is their
    number order read correctly however they are padded (ATL113, a warning), and a file it does
    not name, a stray dictionary included, is never opened (ATL105, a warning).
    """
    entries = list_dir(root, sink, shown=".")
    if entries is None:
        return []
    shards: list[str] = []
    for entry in entries:
        name = entry.name
        if V1_SHARD_NAME.match(name) and _is_link(entry):
            real_folder(root, name, sink)  # ATL111: a link is never a shard (FILE-1); readers refuse it
        elif _is_dir(entry) and V1_SHARD_NAME.match(name):
            shards.append(name)
        elif _is_dir(entry) and not _is_link(entry):
            leftover = " (a leftover of an interrupted write)" if name.startswith(TEMP_PREFIX) else ""
            sink.add("ATL112", f"sub-folder {name!r}{leftover} is not a shard folder: the original reader opens "
                               "every sub-folder of a version 1 root as a shard and fails on it", path=name)
        elif name.startswith(TEMP_PREFIX):
            sink.add("ATL106", "leftover temporary entry of an interrupted write", path=name, clause="V1-LAYOUT-5")
        elif name == META_FILE:
            continue
        elif name == DICT_FILE and root_dict_expected:
            continue
        elif name == DICT_FILE:
            sink.add("ATL105", "root zstd_dict.bin present but the root strategy is not 2 (no reader opens it)",
                     path=name, clause="V1-LAYOUT-4, V1-LAYOUT-5")
        else:
            sink.add("ATL105", "unexpected entry in the dataset root", path=name, clause="V1-LAYOUT-5")
    shards.sort(key=lambda n: (int(n), n))
    numbers = [int(n) for n in shards]
    if numbers != list(range(len(shards))):
        missing = sorted(set(range(len(shards))) - set(numbers))
        sink.add("ATL102", f"shard folders are not numbered 0..{len(shards) - 1} (found {_preview(shards)}"
                           + (f"; missing numbers {_preview([str(m) for m in missing])}" if missing else "") + ")",
                 path=".", clause="V1-LAYOUT-2")
    elif sorted(shards) != shards:
        misplaced = [a for a, b in zip(sorted(shards), shards, strict=True) if a != b]
        sink.add("ATL102", "shard folder names of several widths: readers that order them as text, as the "
                           f"original does, read them out of order ({_preview(misplaced)})", path=".",
                 clause="V1-LAYOUT-2")
    else:
        width = v1_shard_width(len(shards))
        bad_width = [n for n in shards if len(n) != width]
        if bad_width:
            sink.add("ATL113", f"the writer pads the names of {len(shards)} shards to {width} digits; these are "
                               f"not: {_preview(bad_width)} (their text order is still their number order)",
                     path=".")
    return shards


def v2_root_entries(root: Path, listed: list[str], sink: Sink, *,
                    shared_dict_expected: bool) -> tuple[set[str], set[str]]:
    """Compare the root folder with the listed shards; returns the names of the listed shards present as
    real folders, and of those present as something else (a symlink, a file: reported as ATL111)."""
    entries = list_dir(root, sink, shown=".")
    if entries is None:
        return set(), set()
    listed_set = set(listed)
    present: set[str] = set()
    refused: set[str] = set()
    for entry in entries:
        name = entry.name
        if name.startswith(TEMP_PREFIX):
            sink.add("ATL106", "leftover .atlas-tmp-* entry: an append was interrupted", path=name)
        elif name == META_FILE:
            continue
        elif name == DICT_FILE:
            if not shared_dict_expected:
                sink.add("ATL104", "root zstd_dict.bin present but the dictionary mode is not 'shared'", path=name,
                         clause="V2-LAYOUT-3")
        elif name in listed_set:
            if not _is_link(entry) and _is_dir(entry):
                present.add(name)
            else:
                real_folder(root, name, sink)
                refused.add(name)
        elif V2_SHARD_NAME.match(name) and _is_dir(entry):
            sink.add("ATL107", "shard folder not listed in the root meta.json (ignored by readers)", path=name)
        else:
            sink.add("ATL105", "unexpected entry in the dataset root", path=name, clause="V2-LAYOUT-4")
    for k, name in enumerate(listed):
        expected = v2_shard_name(k) if k < 10**6 else None
        if name != expected:
            sink.add("ATL102", f"shards[{k}] is named {name!r}, expected {expected!r} (six digits, contiguous "
                               "from 000000)", path=META_FILE, clause="V2-LAYOUT-1")
    return present, refused


def unexpected_in_shard(shard_dir: Path, allowed: set[str], sink: Sink, *, shown: str, clause: str) -> set[str]:
    """Warn about entries of a shard folder that are not among ``allowed``; returns the names present."""
    entries = list_dir(shard_dir, sink, shown=shown)
    if entries is None:
        return set()
    names = {e.name for e in entries}
    for name in sorted(names - allowed):
        if name.startswith(TEMP_PREFIX):
            sink.add("ATL106", "leftover temporary entry inside a shard", path=f"{shown}/{name}")
        else:
            sink.add("ATL105", "unexpected entry in a shard folder", path=f"{shown}/{name}", clause=clause)
    return names


def unfinished_write(root: Path) -> list[str]:
    """The temporary folders beside a missing ``root`` that a write to it left (V2-WRITE-2, V2-STATE-1):
    a write that never finished, or one still running."""
    try:
        names = os.listdir(root.parent)
    except OSError:
        return []
    return sorted(n for n in names if is_temp_sibling(n, root.name))


def _preview(names: list[str], n: int = 8) -> str:
    shown = ", ".join(names[:n])
    return shown + (f", ... ({len(names)} in all)" if len(names) > n else "")
