#!/usr/bin/env bash
# The main job: with no arguments, the built-in digits data set on the local device.
# Extra arguments go to `edgeprune optimize` (e.g. --model m.keras --data d.npz --out runs/mine).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/bootstrap.sh"
cd "$repo"
exec "$repo/.venv/bin/edgeprune" optimize "$@"
