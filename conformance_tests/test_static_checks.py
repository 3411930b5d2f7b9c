"""The code stays lint-clean (ruff) and type-checked (mypy; strict on atlas_format), in CI too."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tool(name: str) -> list[str]:
    if shutil.which(name) is None and subprocess.run([sys.executable, "-m", name, "--version"],
                                                      capture_output=True).returncode != 0:
        pytest.fail(f"{name} is not installed: it is part of the test extra (pip install -e '.[test]')")
    return [sys.executable, "-m", name]


def test_ruff_is_clean():
    done = subprocess.run([*_tool("ruff"), "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_passes_on_the_three_packages():
    packages = ["spec/atlas_format", "reference/torch_atlas_ds", "validator/atlas_validator"]
    done = subprocess.run([*_tool("mypy"), *packages], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]


def test_every_planted_bug_still_has_its_site():
    """plant_bugs.py changes an exact text of the source; a refactor that moves the text would silently plant
    nothing there (and the bug would count as uncaught), so each site must occur exactly once."""
    sys.path.insert(0, str(ROOT / "conformance_tests"))
    import plant_bugs

    lost = [(name, path, (ROOT / path).read_text(encoding="utf-8").count(old))
            for name, path, old, _new, _what in plant_bugs.BUGS
            if (ROOT / path).read_text(encoding="utf-8").count(old) != 1]
    assert not lost, f"planted-bug sites not found exactly once (name, file, count): {lost}"
