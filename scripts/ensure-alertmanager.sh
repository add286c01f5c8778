#!/usr/bin/env bash
# The tests check config/alertmanager/alertmanager.yml with amtool and run a real
# Alertmanager behind Prometheus (tests/integration/test_alert_chain.py). Both come in the
# Debian package "prometheus-alertmanager", whose server binary is
# /usr/bin/prometheus-alertmanager (upstream calls it "alertmanager"). Install it when
# missing; the package's service is not started by this script.
set -euo pipefail
have_server() { command -v alertmanager >/dev/null 2>&1 || command -v prometheus-alertmanager >/dev/null 2>&1; }
command -v amtool >/dev/null 2>&1 && have_server && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if command -v apt-get >/dev/null 2>&1; then
  echo "installing amtool and alertmanager (Debian package prometheus-alertmanager)..." >&2
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    prometheus-alertmanager >/dev/null
fi
command -v amtool >/dev/null 2>&1 && have_server || {
  echo "amtool/alertmanager not found and could not be installed: install the" \
    "'prometheus-alertmanager' package (or upstream alertmanager) so both are on PATH" >&2
  exit 1
}
