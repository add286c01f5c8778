#!/usr/bin/env bash
# The real tools the tests drive, installed when missing: promtool and prometheus, the
# Alertmanager and amtool, kubectl (kustomize), and headless chromium for the web page.
# Every ensure script runs even when an earlier one fails; the exit status is non-zero
# when any tool is still missing, and the last line names them.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
missing=()
run() { # run SCRIPT TOOLS: one ensure script; on failure note the tools it provides
  "$here/$1" || missing+=("$2")
}
run ensure-promtool.sh "promtool/prometheus"
run ensure-alertmanager.sh "amtool/alertmanager"
run ensure-kubectl.sh "kubectl (>= 1.21)"
run ensure-chromium.sh "chromium"
if [ "${#missing[@]}" -gt 0 ]; then
  names=""
  for m in "${missing[@]}"; do names+="${names:+, }$m"; done
  echo "$(basename "$0"): still missing: $names (see the messages above)" >&2
  exit 1
fi
