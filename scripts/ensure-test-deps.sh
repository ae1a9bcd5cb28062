#!/usr/bin/env bash
# Makes sure the system programs the test suite starts or drives are installed:
# chromium (browser tests), nginx and python3-websockets (third-party clients and
# proxies in front of the relay), nats-server (cluster tests), openssl (the TLS
# tests' throw-away CA), tinyproxy (the connector's HTTP CONNECT proxy tests).
# As root it apt-get installs what is missing; otherwise it
# names the packages and fails, so a missing program is never a skipped test.
# Usage: scripts/ensure-test-deps.sh [--check]   (--check: report only, never install)
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }

# Sets `missing` to the Debian packages whose program or module is absent.
find_missing() {
  missing=()
  have openssl || missing+=(openssl)
  # Debian installs these two in /usr/sbin, often not on a user's PATH.
  [ -x /usr/sbin/nats-server ] || have nats-server || missing+=(nats-server)
  [ -x /usr/sbin/nginx ] || have nginx || missing+=(nginx)
  [ -x /usr/bin/tinyproxy ] || missing+=(tinyproxy)
  # The browser helper looks at FERRY_CHROMIUM first, then these (test/helpers/browser.ts).
  if ! { [ -n "${FERRY_CHROMIUM:-}" ] && [ -x "$FERRY_CHROMIUM" ]; }; then
    [ -x /usr/bin/chromium ] || have chromium || have chromium-browser || missing+=(chromium)
  fi
  # The Python clients run with the system interpreter, so its module is what counts (not a venv's).
  /usr/bin/python3 -c "import websockets" >/dev/null 2>&1 || missing+=(python3-websockets)
  return 0
}

find_missing

if [ ${#missing[@]} -eq 0 ]; then
  echo "ensure-test-deps: chromium, nginx, nats-server, openssl, python3-websockets, tinyproxy present"
  exit 0
fi

if [ "${1:-}" = "--check" ] || [ "$(id -u)" -ne 0 ] || ! have apt-get; then
  echo "ensure-test-deps: missing ${missing[*]}" >&2
  echo "ensure-test-deps: install them with: sudo apt-get install -y ${missing[*]}   (or run this script as root)" >&2
  exit 1
fi

echo "ensure-test-deps: installing ${missing[*]} (apt-get update, then apt-get install)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
wanted=("${missing[@]}")
find_missing
if [ ${#missing[@]} -gt 0 ]; then
  echo "ensure-test-deps: still missing ${missing[*]} after installing them" >&2
  exit 1
fi
echo "ensure-test-deps: installed ${wanted[*]}"
