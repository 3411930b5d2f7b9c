#!/usr/bin/env bash
# One virtual environment per peer group (their pins conflict: pyarrow, numpy, torchvision...),
# each with the CPU build torch==2.13.0 installed FIRST so that no peer pulls a CUDA build.
# Idempotent: an existing venv whose marker file matches the requested packages is kept.
#
#   bash benchmarks/peers/setup.sh            # all groups
#   bash benchmarks/peers/setup.sh atlas hf   # some groups
#
# Venvs live in benchmarks/.work/venvs/<group> (git-ignored); the installed versions are
# written to benchmarks/.work/venvs/<group>/versions.txt (pip freeze) and read by run.py.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENVS="$ROOT/benchmarks/.work/venvs"
PY="${PYTHON:-python3.11}"
TORCH="torch==2.13.0"

# group -> packages (after torch). "PROJECT" means `pip install -e <repo>`.
declare -A PKGS=(
  [atlas]="PROJECT matplotlib"
  [hf]="datasets"
  [mds]="mosaicml-streaming"
  [litdata]="litdata"
  [lance]="pylance"
  [arrayrecord]="array-record numpy"
)
ORDER=(atlas hf mds litdata lance arrayrecord)
[ $# -gt 0 ] && ORDER=("$@")

mkdir -p "$VENVS"
for g in "${ORDER[@]}"; do
  pkgs="${PKGS[$g]:?unknown group $g}"
  venv="$VENVS/$g"
  marker="$venv/.installed"
  want="$TORCH $pkgs"
  if [ -f "$marker" ] && [ "$(cat "$marker")" = "$want" ]; then
    echo "== $g: up to date ($want)"; continue
  fi
  echo "== $g: creating $venv with $want"
  [ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  "$venv/bin/python" -m pip install -q "$TORCH"           # first, always the CPU wheel from local disk
  args=()
  for p in $pkgs; do
    # the project is three local packages: the format first (the reader and validator pin it)
    if [ "$p" = PROJECT ]; then args+=(-e "$ROOT/spec" -e "$ROOT/validator" -e "$ROOT"); else args+=("$p"); fi
  done
  # the constraint keeps torch at 2.13.0 whatever a peer asks for (a newer torch would be a CUDA download)
  echo "$TORCH" > "$venv/constraints.txt"
  "$venv/bin/python" -m pip install -q -c "$venv/constraints.txt" "${args[@]}"
  "$venv/bin/python" -m pip freeze > "$venv/versions.txt"
  echo "$want" > "$marker"
  echo "-- $g: $(grep -i -E "^(torch|datasets|mosaicml-streaming|litdata|pylance|array.record|numpy|pyarrow)=" "$venv/versions.txt" | tr '\n' ' ')"
done
