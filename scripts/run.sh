#!/usr/bin/env bash
# The main job: with no arguments, the built-in digits data set on the local device.
# It runs `edgeprune run`: optimize, bench, report. Extra arguments go to it (e.g. --model m.keras --data d.npz
# --out runs/mine --device raspberry-pi-4).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/bootstrap.sh"
cd "$repo"
exec "$repo/.venv/bin/edgeprune" run "$@"
