"""Shared fixtures and the Hypothesis profiles of the conformance suite.

Profiles (select with HYPOTHESIS_PROFILE=...):
  ci       bounded examples, no deadline, derandomized (the same cases every run): what .ci/run uses
  nightly  many more examples, for long runs outside CI
  dev      the default: quick local iterations
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from atlas_format.testing.vectors import VECTORS_ROOT

settings.register_profile("ci", max_examples=40, deadline=None, print_blob=True, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("nightly", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("dev", max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

HERE = Path(__file__).resolve().parent
# run by scripts/run-no-torch in a venv without torch, from outside the checkout
collect_ignore = ["without_torch"]
VECTORS = VECTORS_ROOT
SEED_V1 = VECTORS / "seed-v1"
SEED_V1_NAMES = sorted(p.name for p in SEED_V1.iterdir() if p.is_dir())


def load_expected(name: str) -> dict:
    return json.loads((SEED_V1 / name / "expected.json").read_text(encoding="utf-8"))


@pytest.fixture(params=SEED_V1_NAMES)
def seed_v1(request: pytest.FixtureRequest) -> tuple[Path, dict]:
    """(dataset folder, expected.json) of each seed-v1 vector."""
    return SEED_V1 / request.param / "dataset", load_expected(request.param)
