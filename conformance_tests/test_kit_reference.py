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
    safe_loading = True

    def open_dataset(self, path):
        return adapters.reference_open_safe(path)


def test_malicious_vectors_never_run_their_payload(tmp_path, monkeypatch):
    """Safe loading refuses every malicious example; the payload's marker file never appears."""
    from atlas_format.testing import checks
    from atlas_format.testing.vectors import iter_vectors

    monkeypatch.chdir(tmp_path)
    malicious = [v for v in iter_vectors() if v.malicious]
    assert len(malicious) >= 3
    for vector in malicious:
        assert vector.must_refuse()
        assert checks.check_reader_invalid(vector, adapters.reference_open_safe, (AtlasError,)) == []
    assert not list(tmp_path.glob("atlas-pwned*"))


class TestReferenceWriter(WriterConformance):
    v1_byte_identical = True

    def write_dataset(self, path, examples, params):
        adapters.reference_write(path, examples, params)

    def open_dataset(self, path):
        return adapters.reference_open(path)


def test_atlas_conformance_command_passes_on_reference_and_fails_on_a_broken_reader():
    cmd = [sys.executable, "-m", "atlas_format.testing.cli", "--reader", "adapters:reference_open_safe",
           "--reader-error", "torch_atlas_ds:AtlasError", "--safe-reader", "--writer", "adapters:reference_write",
           "--validator", "atlas_validator:validate", "--v1-byte-identical", "--only=-s2"]
    done = subprocess.run(cmd, cwd=HERE, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| pass | pass | pass |" in done.stdout and "all passed" in done.stdout
    broken = subprocess.run([sys.executable, "-m", "atlas_format.testing.cli", "--reader", "broken_reader:open",
                             "--only", "01-"], cwd=HERE, capture_output=True, text=True, timeout=300,
                            env={**__import__("os").environ, "PYTHONPATH": str(HERE)})
    assert broken.returncode == 1 and "FAIL" in broken.stdout


def test_atlas_conformance_rejects_bad_arguments():
    done = subprocess.run([sys.executable, "-m", "atlas_format.testing.cli", "--reader", "nocolon"],
                          cwd=HERE, capture_output=True, text=True)
    assert done.returncode == 2 and "module:function" in done.stderr
