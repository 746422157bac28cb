#!/usr/bin/env bash
# The test suite, set-up included: the venv, the package and everything the tests start (CI runs this).
# Extra arguments go to pytest (e.g. -k schedule, -m "not slow").
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/bootstrap.sh"
cd "$repo"
exec "$repo/.venv/bin/python" -m pytest "$@"
