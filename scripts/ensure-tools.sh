#!/usr/bin/env bash
# The real tools the tests drive, installed when missing: promtool and prometheus, the
# Alertmanager and amtool, kubectl (kustomize), and headless chromium for the web page.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
"$here/ensure-promtool.sh"
"$here/ensure-alertmanager.sh"
"$here/ensure-kubectl.sh"
"$here/ensure-chromium.sh"
