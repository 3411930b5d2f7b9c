"""The dependency rule: atlas_format and atlas_validator never import torch or each other's twin."""

from __future__ import annotations

import subprocess
import sys


def _modules_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return set(out.split())


def test_atlas_format_does_not_import_torch():
    mods = _modules_after("import atlas_format, atlas_format.codecs, atlas_format.metadata, atlas_format.npy, "
                          "atlas_format.index_v2, atlas_format.block_v2, atlas_format.pickle_policy")
    assert "torch" not in mods
    assert "torch_atlas_ds" not in mods
    assert "atlas_validator" not in mods


def test_atlas_validator_does_not_import_torch_or_reference():
    mods = _modules_after("import atlas_validator")
    assert "torch" not in mods
    assert "torch_atlas_ds" not in mods


def test_all_three_packages_import():
    mods = _modules_after("import atlas_format, torch_atlas_ds, atlas_validator")
    assert {"atlas_format", "torch_atlas_ds", "atlas_validator"} <= mods
