#!/usr/bin/env bash
# The tests lint /metrics with promtool and scrape the daemon with prometheus (both in the
# Debian package "prometheus"). Install it when missing: as root, or with sudo.
set -euo pipefail
have() { command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; }
have && exit 0
me="$(basename "$0")"
# shellcheck source=scripts/apt-install.sh
. "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh"
apt_install prometheus || true
have || {
  echo "$me: promtool/prometheus not found and could not be installed: install the" \
    "'prometheus' package (or upstream Prometheus) so both are on PATH" >&2
  exit 1
}
