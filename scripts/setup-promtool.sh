#!/usr/bin/env bash
# Installs promtool (Debian's `prometheus` package ships it) if it is missing. Idempotent: a
# machine that has it does nothing. The metrics tests need it in CI (they fail without it when
# CI is set, and skip with a note elsewhere).
set -euo pipefail
if command -v promtool >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "promtool is missing and apt-get cannot run here: install Debian's 'prometheus' package" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# We want promtool only; on a machine with systemd the package also starts a Prometheus server.
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
# sed reads to the end: `head` would close the pipe early and pipefail would fail on SIGPIPE.
promtool --version | sed -n 1p
