#!/usr/bin/env bash
# The tests check config/alertmanager/alertmanager.yml with amtool and run a real
# Alertmanager (tests/unit/test_alertmanager_config.py, and behind Prometheus in
# tests/integration/test_alert_chain.py). Both come in the Debian package
# "prometheus-alertmanager", whose server binary is /usr/bin/prometheus-alertmanager
# (upstream calls it "alertmanager"). Install it when missing, as root or with sudo; the
# package's service is not started by this script.
set -euo pipefail
have_server() { command -v alertmanager >/dev/null 2>&1 || command -v prometheus-alertmanager >/dev/null 2>&1; }
have() { command -v amtool >/dev/null 2>&1 && have_server; }
have && exit 0
me="$(basename "$0")"
# shellcheck source=scripts/apt-install.sh
. "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh"
apt_install prometheus-alertmanager || true
have || {
  echo "$me: amtool/alertmanager not found and could not be installed: install the" \
    "'prometheus-alertmanager' package (or upstream alertmanager) so both are on PATH" >&2
  exit 1
}
