#!/usr/bin/env bash
# Build the one-folder app with PyInstaller and smoke-start it.
#   packaging/build.sh            # uses $PYTHON (default: python3) with agentray installed
# Output: dist/agentray/agentray (and dist/Agentray.app on macOS).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
cd "$ROOT"

"$PYTHON" -m pip install --quiet "pyinstaller>=6.6"
"$PYTHON" -c "import agentray" 2>/dev/null || "$PYTHON" -m pip install --quiet -e .

# The Windows icon is generated from the SVG (kept in the repository too, for builds without Qt).
QT_QPA_PLATFORM=offscreen "$PYTHON" packaging/make_icons.py

"$PYTHON" -m PyInstaller --noconfirm --clean \
    --distpath "$ROOT/dist" --workpath "$ROOT/build/pyinstaller" \
    packaging/agentray.spec

APP="$ROOT/dist/agentray/agentray"
[[ -x "$APP" ]] || APP="$ROOT/dist/agentray/agentray.exe"

echo "== ripgrep ships with the app (fast, gitignore-aware search)"
find "$ROOT/dist/agentray" -maxdepth 2 -name 'rg' -o -maxdepth 2 -name 'rg.exe' | grep -q . \
    || { echo "ripgrep is missing from the bundle" >&2; exit 1; }

echo "== smoke: --version"
"$APP" --version

echo "== smoke: offline demo, headless and offscreen"
SMOKE="$(mktemp -d)"
trap 'rm -rf "$SMOKE"' EXIT
# The demo asks the human one question; answered by policy here so the run cannot wait forever.
AGENTRAY_JOURNAL="$SMOKE/journal.sqlite3" QT_QPA_PLATFORM=offscreen \
    timeout 300 "$APP" demo --headless --dir "$SMOKE/project" --on-escalation deny </dev/null \
    > "$SMOKE/demo.log" 2>&1 || { status=$?; cat "$SMOKE/demo.log"; exit "$status"; }
tail -n 5 "$SMOKE/demo.log"

echo "== smoke: the tray app, offscreen, playing the demo"
AGENTRAY_JOURNAL="$SMOKE/tray-journal.sqlite3" QT_QPA_PLATFORM=offscreen XDG_CONFIG_HOME="$SMOKE/config" \
    "$APP" demo --dir "$SMOKE/tray-project" > "$SMOKE/tray.log" 2>&1 &
TRAY=$!
sleep 10
kill -0 "$TRAY" 2>/dev/null || { cat "$SMOKE/tray.log"; echo "the tray app exited early"; exit 1; }
kill -TERM "$TRAY"
wait "$TRAY" || { status=$?; cat "$SMOKE/tray.log"; echo "the tray app exited with $status"; exit "$status"; }
ls "$SMOKE/tray-project/agent-responses" | grep -q '^a.*\.md$' || { cat "$SMOKE/tray.log"; echo "the tray demo started no agent"; exit 1; }
echo "tray app ran the demo and quit cleanly"
echo "== built: $APP"
