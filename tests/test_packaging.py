"""packaging/: the desktop entries, the AppStream metainfo, the macOS Info.plist fragment, the
Windows icon and the PyInstaller spec. The freedesktop validators run when installed (the CI
installs desktop-file-utils and appstream); otherwise the files are checked by parsing."""

from __future__ import annotations

import ast
import configparser
import os
import plistlib
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before any Qt import (make_icons)

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
DESKTOP_FILES = ["agentray.desktop", "agentray-autostart.desktop"]
METAINFO = PACKAGING / "io.agentray.Agentray.metainfo.xml"


def _entry(path: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text(encoding="utf-8"))
    return parser["Desktop Entry"]


@pytest.mark.parametrize("name", DESKTOP_FILES)
def test_desktop_entry(name: str) -> None:
    path = PACKAGING / name
    entry = _entry(path)
    assert entry["Type"] == "Application" and entry["Name"] == "Agentray"
    assert entry["Exec"].split()[0] == "agentray" and entry["Icon"] == "agentray"
    assert entry["Terminal"] == "false"
    assert entry["Categories"].endswith(";")
    if name.endswith("autostart.desktop"):
        assert entry["X-GNOME-Autostart-enabled"] == "true"
    if shutil.which("desktop-file-validate"):
        result = subprocess.run(
            ["desktop-file-validate", str(path)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "error" not in result.stdout.lower()


def test_autostart_module_writes_the_same_keys() -> None:
    from agentray.ui.autostart import desktop_entry

    packaged = set(_entry(PACKAGING / "agentray-autostart.desktop"))
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(desktop_entry(["agentray"]))
    written = set(parser["Desktop Entry"])
    assert {"Type", "Name", "Exec", "Icon", "Terminal", "X-GNOME-Autostart-enabled"} <= written
    assert written - {"NoDisplay"} <= packaged | written


def test_metainfo() -> None:
    root = ET.parse(METAINFO).getroot()
    assert root.tag == "component" and root.get("type") == "desktop-application"
    assert root.findtext("id") == "io.agentray.Agentray"
    assert root.findtext("metadata_license") == "CC0-1.0"
    assert root.findtext("project_license") == "MIT"
    assert root.findtext("name") == "Agentray" and root.findtext("summary")
    assert root.find("description/p") is not None
    launchable = root.find("launchable")
    assert launchable is not None and launchable.get("type") == "desktop-id"
    assert (PACKAGING / str(launchable.text)).is_file()
    assert root.find("content_rating") is not None
    assert root.find("releases/release").get("version") == "0.1.0"  # type: ignore[union-attr]
    if shutil.which("appstreamcli"):
        result = subprocess.run(
            ["appstreamcli", "validate", "--no-net", str(METAINFO)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_macos_info_plist_fragment() -> None:
    with (PACKAGING / "macos" / "Info.plist").open("rb") as handle:
        info = plistlib.load(handle)
    assert info["LSUIElement"] is True  # a menu-bar app: no Dock icon
    assert info["CFBundleIdentifier"] == "io.agentray.Agentray"


def test_windows_icon_has_several_png_sizes() -> None:
    data = (PACKAGING / "windows" / "agentray.ico").read_bytes()
    reserved, kind, count = struct.unpack_from("<HHH", data)
    assert (reserved, kind) == (0, 1) and count >= 4
    sizes = set()
    for i in range(count):
        width, _h, _c, _r, _planes, _bpp, length, offset = struct.unpack_from(
            "<BBBBHHII", data, 6 + 16 * i
        )
        assert data[offset : offset + 8] == b"\x89PNG\r\n\x1a\n"
        assert offset + length <= len(data)
        sizes.add(width or 256)
    assert {16, 32, 48, 256} <= sizes


def test_icon_regenerates_from_svg(qapp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    # qapp: a QApplication must exist first, or make_icons would make a QGuiApplication that
    # the widget tests later in the session cannot use.
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_icons", PACKAGING / "make_icons.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "ROOT", tmp_path)
    assert module.main(ROOT / "resources" / "icons" / "agentray.svg") == 0
    written = (tmp_path / "packaging" / "windows" / "agentray.ico").read_bytes()
    assert written[:4] == b"\x00\x00\x01\x00" and len(written) > 2000


def test_pyinstaller_spec_and_scripts() -> None:
    spec = (PACKAGING / "agentray.spec").read_text(encoding="utf-8")
    ast.parse(spec)  # valid Python
    assert "entry.py" in spec and "COLLECT(" in spec  # one-folder
    assert '"agentray/resources"' in spec and "qasync" in spec and "PySide6.QtSvg" in spec
    assert "Info.plist" in spec and "agentray.ico" in spec
    entry = (PACKAGING / "entry.py").read_text(encoding="utf-8")
    assert "from agentray.cli import main" in entry
    build = PACKAGING / "build.sh"
    assert build.stat().st_mode & 0o111
    text = build.read_text(encoding="utf-8")
    assert "--version" in text and "demo --headless" in text and "QT_QPA_PLATFORM=offscreen" in text
    result = subprocess.run(["bash", "-n", str(build)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
