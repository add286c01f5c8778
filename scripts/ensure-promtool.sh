#!/usr/bin/env bash
# The tests lint /metrics with promtool and scrape the daemon with prometheus (both in the
# Debian package "prometheus"). Install it when missing.
set -euo pipefail
command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if command -v apt-get >/dev/null 2>&1; then
  echo "installing promtool (Debian package prometheus)..." >&2
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
command -v promtool >/dev/null 2>&1 || {
  echo "promtool not found and could not be installed: install the 'prometheus' package" >&2
  exit 1
}
