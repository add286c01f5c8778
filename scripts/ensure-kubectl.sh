#!/usr/bin/env bash
# tests/unit/test_k8s_kit.py renders deploy/kubernetes with `kubectl kustomize`, whose
# overlays use kustomize Components (kubectl >= 1.21). Install Debian's kubernetes-client
# when kubectl is missing (as root or with sudo), then check that this kubectl can build a Component: Debian 12's
# package is kubectl 1.20 (kustomize v2), which cannot, and then this script says so.
set -euo pipefail
can_build_components() {
  local dir
  dir="$(mktemp -d)"
  mkdir -p "$dir/c"
  printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [cm.yaml]\ncomponents: [c]\n' >"$dir/kustomization.yaml"
  printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: probe}\n' >"$dir/cm.yaml"
  printf 'apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\ncommonLabels: {probe: "1"}\n' >"$dir/c/kustomization.yaml"
  local ok=1
  kubectl kustomize "$dir" 2>/dev/null | grep -q 'probe: "1"' && ok=0
  rm -rf "$dir"
  return $ok
}
me="$(basename "$0")"
# shellcheck source=scripts/apt-install.sh
. "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh"
command -v kubectl >/dev/null 2>&1 || apt_install kubernetes-client || true
command -v kubectl >/dev/null 2>&1 || {
  echo "$me: kubectl not found and could not be installed: install kubectl >= 1.21" \
    "(Debian's 'kubernetes-client' package, or Kubernetes' own packages)" >&2
  exit 1
}
can_build_components || {
  echo "$me: $(command -v kubectl) ($(kubectl version --client 2>/dev/null | head -1)) cannot" \
    "build kustomize Components: install kubectl >= 1.21 (Kubernetes' own packages)" >&2
  exit 1
}
