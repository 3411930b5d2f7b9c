"""The command line's checks of the paths it is given, before any work starts.

README promises exit status 2 and one line for every bad path (missing, a file where a folder is
expected or the reverse, unreadable, an existing or unwritable destination), so each check raises
UsageError naming the path, never an OSError whose text is Python's.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class UsageError(Exception):
    """Bad arguments or a bad path: a one-line message and exit status 2."""


def _status(path: str) -> os.stat_result:
    """The entry's status (a symlink given on the command line is followed, as readers follow the root)."""
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise UsageError(f"no such path: {path}") from None
    except PermissionError:
        raise UsageError(f"cannot read {path}: permission denied") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None


def readable_folder(path: str, what: str = "a dataset") -> Path:
    """An existing folder this process can list and enter (``what`` says what the folder should hold)."""
    if not stat.S_ISDIR(_status(path).st_mode):
        raise UsageError(f"not a folder: {path} ({what} is a folder)")
    try:
        with os.scandir(path):
            pass
    except OSError:
        raise UsageError(f"cannot read {path}: permission denied") from None
    if not os.access(path, os.R_OK | os.X_OK):
        raise UsageError(f"cannot read {path}: permission denied")
    return Path(path)


def input_file(path: str) -> Path:
    """An existing regular file this process can open (never a FIFO or device: opening one may block)."""
    mode = _status(path).st_mode
    if stat.S_ISDIR(mode):
        raise UsageError(f"not a file: {path} is a folder")
    if not stat.S_ISREG(mode):
        raise UsageError(f"not a regular file: {path}")
    try:
        with open(path, "rb"):
            pass
    except OSError:
        raise UsageError(f"cannot read {path}: permission denied") from None
    return Path(path)


def new_destination(path: str) -> Path:
    """A path that does not exist yet, whose nearest existing ancestor is a folder this process can write
    in (missing folders between them are created by the writers)."""
    if os.path.lexists(path):
        raise UsageError(f"destination exists: {path}")
    ancestor = Path(os.path.abspath(path)).parent
    while not os.path.lexists(ancestor) and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    try:
        mode = os.stat(ancestor).st_mode
    except OSError:
        raise UsageError(f"cannot create {path}: {ancestor} cannot be read") from None
    if not stat.S_ISDIR(mode):
        raise UsageError(f"cannot create {path}: {ancestor} is not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(f"cannot create {path}: no permission to write in {ancestor}")
    return Path(path)


__all__ = ["UsageError", "input_file", "new_destination", "readable_folder"]
