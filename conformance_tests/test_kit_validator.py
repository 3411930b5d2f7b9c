"""The conformance kit run against the standalone validator: every valid vector passes, every
invalid vector reports the finding ids its case.json names."""

from __future__ import annotations

from atlas_format.testing.kit import ValidatorConformance
from atlas_validator import validate


class TestStandaloneValidator(ValidatorConformance):
    def validate(self, path):
        return validate(path)


class TestStandaloneValidatorQuickLevel(ValidatorConformance):
    """--quick reads no block: valid vectors must still pass (invalid ones are for the full level)."""

    def validate(self, path):
        return validate(path, quick=True)

    def test_invalid_vector(self, invalid_vector):
        """Block-level defects are out of --quick's reach, but what quick reports, full reports too."""
        quick = {f.id for f in validate(invalid_vector.dataset, quick=True).findings if f.severity == "error"}
        full = {f.id for f in validate(invalid_vector.dataset).findings if f.severity == "error"}
        assert quick <= full
