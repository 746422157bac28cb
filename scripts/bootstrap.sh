#!/usr/bin/env bash
# Creates .venv and installs edgeprune (editable) with its test needs. Idempotent: it reinstalls only when
# pyproject.toml changed since the last install. Sourced by run.sh and test.sh; usable on its own.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"
stamp="$venv/.edgeprune-installed"

find_python() {
  # tensorflow 2.21 has wheels for CPython 3.10-3.13.
  for candidate in "${EDGEPRUNE_PYTHON:-}" python3.11 python3.12 python3.13 python3.10 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 13) else 1)' 2>/dev/null; then
      command -v "$candidate"; return 0
    fi
  done
  echo "edgeprune: needs Python 3.10-3.13 (set EDGEPRUNE_PYTHON=/path/to/python)" >&2
  return 1
}

want="$(sha256sum "$repo/pyproject.toml" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ]; then
  python="$(find_python)"
  echo "edgeprune: creating $venv with $python" >&2
  "$python" -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "edgeprune: installing the package and its dependencies into .venv (first time: a few minutes)" >&2
  log="$venv/install.log"
  if ! { "$venv/bin/python" -m pip install --upgrade pip && "$venv/bin/python" -m pip install -e "$repo[test]"; } >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "edgeprune: installing into .venv failed (full log: $log)" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi
