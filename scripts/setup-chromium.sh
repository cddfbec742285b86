#!/usr/bin/env bash
# Installs Chromium (Debian's `chromium` package) if it is missing. Idempotent: a machine that
# has it does nothing. The status page's browser test needs it in CI (it fails without it when
# CI is set, and skips with a note elsewhere): it loads /status headless and checks the
# screenshots for the charts.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium is missing and apt-get cannot run here: install Debian's 'chromium' package" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
chromium --version
