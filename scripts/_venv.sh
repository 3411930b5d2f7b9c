# Sourced by scripts/run-tests and scripts/run-main: a project-local virtual environment,
# torch 2.13.0 (CPU) first, then the project with the given extras. Idempotent.
set -euo pipefail
VENV="${ATLAS_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3.11 -m venv "$VENV" 2>/dev/null || python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install -q --disable-pip-version-check)
"$PY" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
# torch first, pinned: a bare 'torch' requirement would download a multi-GB CUDA build.
"$PY" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null \
  || "${PIP[@]}" torch==2.13.0
# torch-atlas-ds 0.2.0 bundled atlas_format and atlas_validator: upgrading it in place would delete
# the console scripts the new distributions just installed, so it goes first.
if "$PY" -c "import importlib.metadata as m, sys; sys.exit(m.version('torch-atlas-ds') != '0.2.0')" 2>/dev/null; then
  "$PY" -m pip uninstall -q -y torch-atlas-ds
fi
# spec/ and validator/ are their own distributions (atlas-ds-format, atlas-ds-validator), named in
# the same command so pip takes them from here and never looks them up on an index.
"${PIP[@]}" -e "./spec[testing]" -e ./validator -e ".[${ATLAS_EXTRAS:-test}]"
