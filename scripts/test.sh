#!/usr/bin/env bash
# The test suite, set-up included: the venv, the package and everything the tests start (CI runs this).
# Extra arguments go to pytest (e.g. -k schedule, -m "not slow").
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/bootstrap.sh"
# The SSH tests start real OpenSSH servers on loopback ports: install the server (not started) when missing.
if [ ! -x /usr/sbin/sshd ]; then
  echo "edgeprune: installing openssh-server for the SSH tests" >&2
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq openssh-server >&2
fi
cd "$repo"
exec "$repo/.venv/bin/python" -m pytest "$@"
