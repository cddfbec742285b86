#!/usr/bin/env bash
# Installs haproxy (Debian's package) if it is missing: tests/python/test_deploy.py checks the
# shipped deploy/compose/haproxy.cfg with it and runs it in front of two real gateways (the tests
# fail without it when CI is set, and skip with a note elsewhere). Idempotent. The package's own
# service is not started: the tests start haproxy themselves.
set -euo pipefail
if command -v haproxy >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "haproxy is missing and apt-get cannot run here: install Debian's 'haproxy' package" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends haproxy >/dev/null
# sed reads to the end: `head` would close the pipe early and pipefail would fail on SIGPIPE.
haproxy -v | sed -n 1p
