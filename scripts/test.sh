#!/usr/bin/env bash
# The test suite, set-up included: the venv, the package and everything the tests start (CI runs this).
# Extra arguments go to pytest (e.g. -k schedule, -m "not slow").
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/bootstrap.sh"

# install_missing PROGRAM DEBIAN_PACKAGE WHY: apt-get install the package when the program is missing.
install_missing() {
  if [ -x "$1" ] || command -v "$1" >/dev/null 2>&1; then return 0; fi
  echo "edgeprune: installing $2 $3" >&2
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  if [ -z "${apt_updated:-}" ]; then $sudo apt-get update -qq >&2; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$2" >&2
}
# The SSH tests start real OpenSSH servers on loopback ports (the server is installed, not started).
install_missing /usr/sbin/sshd openssh-server "for the SSH tests"
# The report test opens the HTML report in headless Chromium for a screenshot.
install_missing chromium chromium "for the HTML report test"
# The lab tests (tests/lab): an emulated aarch64 Raspberry Pi (debootstrap + qemu-user) and devices in network
# namespaces behind veth pairs, with tc rate limits and nftables packet loss.
install_missing /usr/sbin/debootstrap debootstrap "for the emulated Raspberry Pi of the lab tests"
install_missing /usr/bin/qemu-aarch64-static qemu-user-static "for the emulated Raspberry Pi of the lab tests"
install_missing /sbin/ip iproute2 "for the network namespaces of the lab tests"
install_missing /usr/sbin/nft nftables "for the packet loss of the lab tests"
# The store's tests (tests/store) start a real PostgreSQL server (initdb into a temporary folder, loopback port).
install_missing "$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | tail -n 1)" postgresql "for the PostgreSQL store tests"
cd "$repo"
exec "$repo/.venv/bin/python" -m pytest "$@"
