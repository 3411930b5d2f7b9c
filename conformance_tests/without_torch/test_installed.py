"""The torch-free distributions as another person installs them: `pip install ./spec ./validator`
in a fresh virtual environment without torch, then the validator and the conformance kit.

Not part of the main suite (conformance_tests/conftest.py ignores this folder): scripts/run-no-torch
makes that environment, copies this file out of the checkout and runs it there, so the golden
vectors can only come from the installed package data.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import atlas_format
from atlas_format.testing.vectors import VECTORS_ROOT, iter_vectors

BIN = Path(sys.executable).parent
CHECKOUT = Path(os.environ["ATLAS_CHECKOUT"]).resolve()
ORIGINAL = VECTORS_ROOT / "seed-v1" / "03-s2-shared-dict" / "dataset"


def run(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """A console script of the venv, run from a folder outside the checkout."""
    return subprocess.run([str(BIN / argv[0]), *argv[1:]], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": str(tmp_path)})


def test_torch_and_the_reference_are_absent():
    assert importlib.util.find_spec("torch") is None
    assert importlib.util.find_spec("torch_atlas_ds") is None


def test_the_packages_and_vectors_are_installed_not_read_from_the_checkout():
    installed = Path(atlas_format.__file__).resolve()
    assert "site-packages" in installed.parts and CHECKOUT / "spec" not in installed.parents
    corpora = {v.folder.parent.name for v in iter_vectors()}
    assert corpora == {"seed-v1", "v2", "invalid", "warnings"}
    assert len(list(iter_vectors())) >= 90


def test_atlas_validate_passes_an_original_dataset_and_fails_a_broken_one(tmp_path):
    done = run(tmp_path, "atlas-validate", str(ORIGINAL))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "VALID" in done.stdout
    broken = next(v for v in iter_vectors() if v.name == "v2-block-byte-flip")
    done = run(tmp_path, "atlas-validate", str(broken.dataset))
    assert done.returncode == 1 and "ATL506" in done.stdout


def test_atlas_conformance_passes_the_validator(tmp_path):
    done = run(tmp_path, "atlas-conformance", "--validator", "atlas_validator:validate")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert "all passed" in done.stdout and "FAIL" not in done.stdout


def test_atlas_conformance_passes_a_second_implementation_written_from_format_md(tmp_path):
    """mini_reader (conformance_tests/mini_reader.py, copied beside this file) judged by the kit, and the
    validator beside it: what a second implementer runs."""
    shutil.copy(Path(__file__).with_name("mini_reader.py"), tmp_path)
    done = run(tmp_path, "atlas-conformance", "--reader", "mini_reader:open_dataset",
               "--reader-error", "mini_reader:MiniReaderError", "--validator", "atlas_validator:validate")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    counts = re.search(r"^reader: (\d+) passed, (\d+) failed", done.stdout, re.MULTILINE)
    assert counts and int(counts[1]) >= 80 and counts[2] == "0", done.stdout[-3000:]
    assert "FAIL" not in done.stdout and "all passed" in done.stdout


@pytest.mark.parametrize(("option", "body", "why"), [
    ("--validator", "def check(path):\n    return []\n", "invalid vector reported no error"),
    ("--reader", "def check(path):\n    raise OSError('cannot read ' + str(path))\n", "OSError: cannot read"),
    ("--reader", "def check(path):\n    return []\n", "len 0, expected"),
])
def test_atlas_conformance_fails_an_implementation_that_checks_nothing(tmp_path, option, body, why):
    (tmp_path / "lazy.py").write_text(body)
    done = run(tmp_path, "atlas-conformance", option, "lazy:check")
    assert done.returncode == 1, done.stdout[-3000:]
    assert "| FAIL |" in done.stdout and why in done.stdout and "FAILURES" in done.stdout


def test_atlas_conformance_fails_when_no_vector_is_checked(tmp_path):
    (tmp_path / "empty").mkdir()
    done = run(tmp_path, "atlas-conformance", "--validator", "atlas_validator:validate", "--vectors", "empty")
    assert done.returncode == 1 and "nothing was checked" in done.stderr


KIT_TESTS = '''
import pytest
from atlas_format.testing.kit import ReaderConformance, ValidatorConformance
from atlas_validator import validate


class TestValidator(ValidatorConformance):
    def validate(self, path):
        return validate(path)


class TestSkippingReader(ReaderConformance):
    def open_dataset(self, path):
        pytest.skip("not implemented yet")
'''


@pytest.mark.parametrize(("select", "exit_code", "summary"), [
    ("TestValidator", 0, "0 failed, 0 skipped"),
    ("TestSkippingReader", 1, "FAILURE, no kit test passed"),
])
def test_the_pytest_kit_passes_the_validator_and_fails_a_run_that_skips_everything(tmp_path, select, exit_code,
                                                                                  summary):
    (tmp_path / "test_my_impl.py").write_text(KIT_TESTS)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", select,
                           "test_my_impl.py"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == exit_code, done.stdout[-3000:]
    assert "atlas conformance kit:" in done.stdout and summary in done.stdout
