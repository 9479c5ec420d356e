"""Start at login: the XDG autostart entry for real (under a temp XDG_CONFIG_HOME), the macOS
LaunchAgent plist under a temp HOME."""

from __future__ import annotations

import configparser
import plistlib
import shutil
import subprocess
from pathlib import Path

import pytest

from agentray.ui import autostart


def _parse_entry(path: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(path.read_text(encoding="utf-8"))
    return parser["Desktop Entry"]


def test_linux_entry_written_valid_and_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    command = ["/opt/Agent Ray/agentray", "--tray"]
    assert not autostart.is_enabled(platform="linux")

    autostart.enable(command, platform="linux")

    path = tmp_path / "cfg" / "autostart" / "agentray.desktop"
    assert autostart.autostart_path("linux") == path
    assert path.is_file() and autostart.is_enabled(platform="linux")
    entry = _parse_entry(path)
    assert entry["Type"] == "Application"
    assert entry["Name"] == "Agentray"
    assert entry["Exec"] == '"/opt/Agent Ray/agentray" --tray'  # spaces quoted per the spec
    assert entry["Terminal"] == "false"
    if shutil.which("desktop-file-validate"):
        result = subprocess.run(
            ["desktop-file-validate", str(path)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr

    assert autostart.disable(platform="linux") is True
    assert not path.exists() and not autostart.is_enabled(platform="linux")
    assert autostart.disable(platform="linux") is False


def test_linux_default_location_without_xdg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    autostart.enable(["agentray"], platform="linux")
    assert (tmp_path / ".config" / "autostart" / "agentray.desktop").is_file()


def test_macos_launch_agent_plist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    autostart.enable(["/Applications/Agentray.app/Contents/MacOS/agentray"], platform="darwin")

    path = tmp_path / "Library" / "LaunchAgents" / "io.agentray.Agentray.plist"
    assert autostart.is_enabled(platform="darwin")
    with path.open("rb") as handle:
        data = plistlib.load(handle)
    assert data["Label"] == "io.agentray.Agentray"
    assert data["ProgramArguments"] == ["/Applications/Agentray.app/Contents/MacOS/agentray"]
    assert data["RunAtLoad"] is True
    assert autostart.disable(platform="darwin") and not path.exists()


def test_windows_without_registry_reports_off() -> None:
    # On Linux/macOS there is no winreg: the Windows form must say "off", not crash.
    if autostart._winreg() is not None:
        pytest.skip("a real registry is here")
    assert autostart.is_enabled(platform="win32") is False
    assert autostart.disable(platform="win32") is False
    with pytest.raises(OSError):
        autostart.enable(["agentray"], platform="win32")


def test_default_command_starts_agentray() -> None:
    command = autostart.default_command()
    assert command and (command[0].endswith("agentray") or command[-1] == "agentray")
