#!/usr/bin/env bash
# tests/integration/test_page.py loads the daemon's web page in a headless browser: Debian's
# "chromium" package. Install it when missing, as root or with sudo.
set -euo pipefail
have() { command -v chromium >/dev/null 2>&1; }
have && exit 0
me="$(basename "$0")"
# shellcheck source=scripts/apt-install.sh
. "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh"
apt_install chromium || true
have || {
  echo "$me: chromium not found and could not be installed: install the 'chromium'" \
    "package so 'chromium' is on PATH" >&2
  exit 1
}
