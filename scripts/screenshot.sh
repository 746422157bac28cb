#!/usr/bin/env bash
# Screenshot of a local HTML file in headless Chromium (Debian's chromium package), with a throw-away profile and
# no network chatter. Usage: scripts/screenshot.sh REPORT.html OUT.png [WIDTH,HEIGHT]   (default 1400,2000)
set -euo pipefail
if [ $# -lt 2 ]; then echo "usage: $0 REPORT.html OUT.png [WIDTH,HEIGHT]" >&2; exit 2; fi
html="$(realpath "$1")"
out="$(realpath -m "$2")"
size="${3:-1400,2000}"
browser="$(command -v chromium || command -v chromium-browser || true)"
if [ -z "$browser" ]; then echo "chromium is missing: apt-get install chromium (scripts/test.sh does)" >&2; exit 1; fi
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --hide-scrollbars --user-data-dir="$profile" --screenshot="$out" \
  --window-size="$size" "file://$html" >/dev/null 2>&1
test -s "$out"
