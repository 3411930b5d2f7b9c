"""The conformance kit run against this project's reference implementation (proof that the kit
works, and the reference's conformance), plus the atlas-conformance command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import adapters

from atlas_format.testing.kit import ReaderConformance, WriterConformance
from torch_atlas_ds import AtlasError

HERE = Path(__file__).resolve().parent


class TestReferenceReader(ReaderConformance):
    reader_errors = (AtlasError,)

    def open_dataset(self, path):
        return adapters.reference_open(path)


class TestReferenceWriter(WriterConformance):
    v1_byte_identical = True

    def write_dataset(self, path, examples, params):
        adapters.reference_write(path, examples, params)

    def open_dataset(self, path):
        return adapters.reference_open(path)


def test_atlas_conformance_command_passes_on_reference_and_fails_on_a_broken_reader():
    cmd = [sys.executable, "-m", "atlas_format.testing.cli", "--reader", "adapters:reference_open",
           "--writer", "adapters:reference_write", "--v1-byte-identical", "--only=-s2"]
    done = subprocess.run(cmd, cwd=HERE, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| pass | pass |" in done.stdout and "all passed" in done.stdout
    broken = subprocess.run([sys.executable, "-m", "atlas_format.testing.cli", "--reader", "broken_reader:open",
                             "--only", "01-"], cwd=HERE, capture_output=True, text=True, timeout=300,
                            env={**__import__("os").environ, "PYTHONPATH": str(HERE)})
    assert broken.returncode == 1 and "FAIL" in broken.stdout


def test_atlas_conformance_rejects_bad_arguments():
    done = subprocess.run([sys.executable, "-m", "atlas_format.testing.cli", "--reader", "nocolon"],
                          cwd=HERE, capture_output=True, text=True)
    assert done.returncode == 2 and "module:function" in done.stderr
