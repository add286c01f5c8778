#!/usr/bin/env bash
# tests/integration/test_page.py loads the daemon's web page in a headless browser: Debian's
# "chromium" package. Install it when missing.
set -euo pipefail
command -v chromium >/dev/null 2>&1 && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if command -v apt-get >/dev/null 2>&1; then
  echo "installing chromium (Debian package chromium)..." >&2
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
command -v chromium >/dev/null 2>&1 || {
  echo "chromium not found and could not be installed: install the 'chromium' package" >&2
  exit 1
}
