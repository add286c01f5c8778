# Sourced by scripts/ensure-*.sh (not run): apt_install, with $me set by the caller.
# apt_install PACKAGE: install a Debian package as root or with sudo; on failure say why
# and return 1 (the caller's check then says what to install).
apt_install() {
  local sudo=""
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "$me: no apt-get here: cannot install the Debian package '$1' myself" >&2
    return 1
  fi
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "$me: not root and no sudo: cannot install '$1'; as root run:" \
        "apt-get update && apt-get install --no-install-recommends $1" >&2
      return 1
    fi
    sudo="sudo"
  fi
  echo "$me: installing the Debian package '$1'..." >&2
  if ! $sudo apt-get update -qq >/dev/null; then
    echo "$me: 'apt-get update' failed (see above: network, proxy, or apt sources?)" >&2
    return 1
  fi
  if ! $sudo env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "$1" >/dev/null; then
    echo "$me: 'apt-get install $1' failed (see above)" >&2
    return 1
  fi
}
