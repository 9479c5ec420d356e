#!/usr/bin/env bash
# Run the sandbox tests as the ordinary user `agentray-ci` (created if missing), from a copy of
# this checkout in that user's home, with a venv of Debian's python3 (no Qt needed here).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "run as root: it creates and uses the user agentray-ci" >&2; exit 2; }

USER_NAME=agentray-ci
id -u "$USER_NAME" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$USER_NAME"
HOME_DIR=$(getent passwd "$USER_NAME" | cut -d: -f6)
SRC="$HOME_DIR/agentray-src"
VENV="$HOME_DIR/agentray-venv"
as_user() { runuser -u "$USER_NAME" -- env -i HOME="$HOME_DIR" USER="$USER_NAME" LANG=C.UTF-8 PATH=/usr/local/bin:/usr/bin:/bin "$@"; }

rm -rf "$SRC"
mkdir -p "$SRC"
tar -cf - pyproject.toml README.md desktop resources tests | tar -xf - -C "$SRC"
chown -R "$USER_NAME:" "$SRC"
if [ ! -x "$VENV/bin/python" ]; then
  as_user /usr/bin/python3 -m venv "$VENV"
fi
DEPS=("anthropic[aiohttp]>=2.14,<3" psutil keyring platformdirs rich pathspec pytest pytest-asyncio pytest-timeout)
as_user "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${DEPS[@]}"
as_user "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --force-reinstall "$SRC"

echo "sandbox tests as the ordinary user $USER_NAME (uid $(id -u "$USER_NAME")):"
cd "$SRC"
as_user "$VENV/bin/python" -m pytest -q -p no:cacheprovider -p no:qt tests/test_sandbox.py tests/test_sandbox_profiles.py
