"""The main job of the README (examples/digits_demo.py) runs end to end: write, validate, info, train."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parent.parent / "examples" / "digits_demo.py"


def test_digits_demo_runs_and_learns(tmp_path):
    pytest.importorskip("sklearn", reason="the demo extra (scikit-learn) is installed by scripts/run-tests")
    done = subprocess.run([sys.executable, str(DEMO), "--out", str(tmp_path / "out"), "--epochs", "3"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert out.count("VALID (version 2") == 2
    assert "SHARED_DICTIONARY_COMPRESSION" in out and "examples/s" in out
    assert "same examples: True" in out
    accuracy = float(out.rsplit("final test accuracy", 1)[1].split()[0])
    assert accuracy > 0.85
