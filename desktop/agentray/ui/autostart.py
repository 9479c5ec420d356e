"""Start at login: an XDG autostart entry (Linux), a LaunchAgent (macOS), a Run key (Windows).

Plain Python (no Qt) so it can be tested without a display; every function takes the platform and
the command so tests can check each form on any machine.
"""

from __future__ import annotations

import importlib
import os
import plistlib
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "APP_ID",
    "autostart_path",
    "default_command",
    "desktop_entry",
    "disable",
    "enable",
    "is_enabled",
    "launch_agent_plist",
]

APP_ID = "io.agentray.Agentray"
_RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
_RUN_VALUE = "Agentray"


def _platform(platform: str | None) -> str:
    name = platform or sys.platform
    if name in ("linux", "macos", "windows"):
        return name
    if name.startswith("win"):
        return "windows"
    if name == "darwin":
        return "macos"
    return "linux"


def default_command() -> list[str]:
    """How to start the tray: the frozen executable, else the ``agentray`` script, else ``python -m``."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    script = shutil.which("agentray")
    if script:
        return [script]
    return [sys.executable, "-m", "agentray"]


def autostart_path(platform: str | None = None) -> Path | None:
    """The file that makes the app start at login (None on Windows: it is a registry value)."""
    kind = _platform(platform)
    if kind == "linux":
        base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        return Path(base) / "autostart" / "agentray.desktop"
    if kind == "macos":
        return Path.home() / "Library" / "LaunchAgents" / f"{APP_ID}.plist"
    return None


def _exec_quote(word: str) -> str:
    # The desktop entry spec quotes with double quotes and escapes " ` $ \ inside them.
    if word and all(c.isalnum() or c in "/-_.+=:," for c in word):
        return word
    escaped = "".join("\\" + c if c in '"`$\\' else c for c in word)
    return f'"{escaped}"'


def desktop_entry(command: list[str]) -> str:
    """The XDG autostart entry text (the same keys as packaging/agentray-autostart.desktop)."""
    exec_line = " ".join(_exec_quote(w) for w in command)
    return (
        "[Desktop Entry]\n"
        "Type=Application\n"
        "Name=Agentray\n"
        "Comment=Multi-agent runs in your system tray\n"
        f"Exec={exec_line}\n"
        "Icon=agentray\n"
        "Terminal=false\n"
        "Categories=Development;\n"
        "X-GNOME-Autostart-enabled=true\n"
    )


def launch_agent_plist(command: list[str]) -> bytes:
    return plistlib.dumps(
        {
            "Label": APP_ID,
            "ProgramArguments": list(command),
            "RunAtLoad": True,
            "KeepAlive": False,
            "ProcessType": "Interactive",
        }
    )


def enable(command: list[str] | None = None, *, platform: str | None = None) -> None:
    """Register the app to start at login (idempotent: rewrites the entry)."""
    command = list(command or default_command())
    kind = _platform(platform)
    if kind == "windows":
        _windows_set(subprocess_line(command))
        return
    path = autostart_path(kind)
    assert path is not None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    if kind == "linux":
        tmp.write_text(desktop_entry(command), encoding="utf-8")
    else:
        tmp.write_bytes(launch_agent_plist(command))
    os.replace(tmp, path)


def disable(*, platform: str | None = None) -> bool:
    """Remove the start-at-login entry; True when there was one."""
    kind = _platform(platform)
    if kind == "windows":
        return _windows_delete()
    path = autostart_path(kind)
    assert path is not None
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def is_enabled(*, platform: str | None = None) -> bool:
    kind = _platform(platform)
    if kind == "windows":
        return _windows_get() is not None
    path = autostart_path(kind)
    return path is not None and path.is_file()


def subprocess_line(command: list[str]) -> str:
    """A Windows command line (the Run key holds one string)."""
    if sys.platform.startswith("win"):
        import subprocess

        return subprocess.list2cmdline(command)
    return " ".join(shlex.quote(w) for w in command)


def _winreg() -> Any | None:
    """The winreg module (Windows only), typed loosely so mypy passes on every platform."""
    try:
        return importlib.import_module("winreg")
    except ImportError:
        return None


def _windows_set(line: str) -> None:
    winreg = _winreg()
    if winreg is None:
        raise OSError("the Windows registry is not available on this system")
    with winreg.CreateKey(winreg.HKEY_CURRENT_USER, _RUN_KEY) as key:
        winreg.SetValueEx(key, _RUN_VALUE, 0, winreg.REG_SZ, line)


def _windows_get() -> str | None:
    winreg = _winreg()
    if winreg is None:
        return None
    try:
        with winreg.OpenKey(winreg.HKEY_CURRENT_USER, _RUN_KEY) as key:
            value, _kind = winreg.QueryValueEx(key, _RUN_VALUE)
    except OSError:
        return None
    return str(value)


def _windows_delete() -> bool:
    winreg = _winreg()
    if winreg is None:
        return False
    try:
        with winreg.OpenKey(winreg.HKEY_CURRENT_USER, _RUN_KEY, 0, winreg.KEY_SET_VALUE) as key:
            winreg.DeleteValue(key, _RUN_VALUE)
    except OSError:
        return False
    return True
