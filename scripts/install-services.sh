#!/usr/bin/env bash
# Installs Debian's redis-server and postgresql for the distributed tests (tests/services.py starts private,
# loopback-only instances of both in temp dirs), if they are missing. Idempotent: does nothing when both binaries
# are already there. Never starts or enables the system services: the tests run their own servers.
set -euo pipefail

# initdb and pg_ctl are not on PATH on Debian: they live under /usr/lib/postgresql/<version>/bin.
find_pg_bin() {
  if command -v "$1" >/dev/null 2>&1; then command -v "$1"; return 0; fi
  ls -1d /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | sort -V | tail -n 1
}

have_redis() { command -v redis-server >/dev/null 2>&1; }
have_pg() { [ -n "$(find_pg_bin initdb)" ] && [ -n "$(find_pg_bin pg_ctl)" ]; }

report() {
  echo "redis-server present: $(redis-server --version | cut -d' ' -f1-3)"
  echo "postgresql present: $("$(find_pg_bin pg_ctl)" --version)"
}

if have_redis && have_pg; then
  report
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-services: need root (or sudo) to apt-get install redis-server postgresql" >&2
    exit 1
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-services: apt-get not found; install redis-server and postgresql yourself" >&2
  exit 1
fi

PACKAGES=()
have_redis || PACKAGES+=(redis-server)
have_pg || PACKAGES+=(postgresql)
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# policy-rc.d 101: the packages' postinst must not start the system-wide servers (a container has no init,
# and the tests never use them).
POLICY=/usr/sbin/policy-rc.d
ADDED_POLICY=0
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null && $SUDO chmod +x "$POLICY" && ADDED_POLICY=1
fi
$SUDO apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
if [ "$ADDED_POLICY" -eq 1 ]; then $SUDO rm -f "$POLICY"; fi
report
