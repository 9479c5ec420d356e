#!/usr/bin/env bash
# Install everything the test suite needs (system packages, a venv, the package with its test
# extra), then run ruff, mypy and pytest — the real tray, notification and keyring tests under
# a virtual X server and a private D-Bus session. Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
SYSTEM_PACKAGES=(bubblewrap dunst git python3-venv xvfb xauth dbus dbus-x11 gnome-keyring desktop-file-utils appstream
                 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0
                 libxcb-xinerama0 libxcb-randr0 libxcb-render-util0 libxcb-image0 libegl1 libgl1 libfontconfig1 libdbus-1-3)

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for pkg in "${SYSTEM_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
fi
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing system packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e '.[test]'

.venv/bin/ruff check desktop tests scripts
.venv/bin/mypy

# The sandbox attacks once more as an ordinary user (root hides permission failures). That user
# cannot reach root's interpreter or this checkout, so it gets a copy and a venv of its own.
if [ "$(id -u)" -eq 0 ] && command -v runuser >/dev/null 2>&1 && [ -z "${AGENTRAY_SKIP_NONROOT:-}" ]; then
  scripts/nonroot-sandbox-tests.sh
fi

# A private D-Bus session with an unlocked gnome-keyring (Secret Service) and a virtual X server.
exec xvfb-run -a -s "-screen 0 1280x800x24" dbus-run-session -- bash -c '
  # a throw-away keyring folder with a known password: no unlock prompt can block the tests
  eval "$(printf "agentray-ci" | XDG_DATA_HOME="$(mktemp -d)" gnome-keyring-daemon --daemonize --unlock --components=secrets 2>/dev/null)" || true
  export GNOME_KEYRING_CONTROL SSH_AUTH_SOCK
  export AGENTRAY_REQUIRE_DESKTOP=1 AGENTRAY_NO_SKIPS=1  # a skip fails the run (tests/no_skips.py)
  exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
' bash "$@"
