"""The conformance kit run against mini_reader, the second, independent reader written only from
FORMAT.md: every golden vector (valid ones read back exactly, invalid ones refused with
MiniReaderError or read correctly), and the atlas-conformance command line over it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mini_reader

from atlas_format.testing.kit import ReaderConformance

HERE = Path(__file__).resolve().parent


class TestMiniReader(ReaderConformance):
    reader_errors = (mini_reader.MiniReaderError,)

    def open_dataset(self, path):
        return mini_reader.open_dataset(path)


def test_atlas_conformance_command_passes_on_the_mini_reader():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "atlas_format.testing.cli", "--reader", "mini_reader:open_dataset",
                           "--reader-error", "mini_reader:MiniReaderError"],
                          cwd=HERE, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all passed" in done.stdout
    assert "0 failed" in done.stdout
