"""README screenshots: the tray menu, the escalation pop-up, the dashboard and its Changes and
Timeline tabs, taken from the real windows while the offline demo runs through the real engine and
the simulator (the Changes and Timeline tabs once the run has finished).

    xvfb-run -a python scripts/screenshots.py [--out docs/screenshots] [--only changes ...]

Nothing of the user's is touched: the journal and settings live in a temporary folder.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TMP = Path(tempfile.mkdtemp(prefix="agentray-shots-"))
os.environ["AGENTRAY_JOURNAL"] = str(TMP / "journal.sqlite3")
os.environ["XDG_CONFIG_HOME"] = str(TMP / "config")
os.environ.pop("ANTHROPIC_API_KEY", None)

import qasync  # noqa: E402
from PySide6.QtCore import QPoint, QRect, QSettings, Qt  # noqa: E402
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPixmap  # noqa: E402
from PySide6.QtWidgets import QApplication, QSplitter, QWidget  # noqa: E402

from agentray.demo import DemoSession  # noqa: E402
from agentray.escalation import Answer  # noqa: E402
from agentray.journal import Journal  # noqa: E402
from agentray.ui.controller import AppController  # noqa: E402
from agentray.ui.dashboard import DashboardWindow  # noqa: E402
from agentray.ui.escalation_dialog import EscalationWindow  # noqa: E402
from agentray.ui.icons import state_icon  # noqa: E402
from agentray.ui.settings import AppSettings  # noqa: E402
from agentray.ui.tray import Tray  # noqa: E402


class _Shell:
    """The tray's shell; the screenshots click nothing."""

    def open_dashboard(self, run_id: str | None = None) -> None: ...
    def open_changes(self, run_id: str) -> None: ...
    def open_new_run(self, goal: Any = None, workspace: Any = None, preset: Any = None) -> None: ...
    def open_settings(self) -> None: ...
    def open_escalations(self, escalation_id: str | None = None) -> None: ...
    def request_quit(self) -> None: ...
    def show_error(self, title: str, message: str) -> None: ...


async def _until(predicate: Any, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def _settle(app: QApplication, seconds: float = 0.4) -> None:
    # The qasync loop paints while we sleep; processEvents() here would re-enter asyncio tasks.
    del app
    await asyncio.sleep(seconds)


ONLY: set[str] = set()  # --only: the names to write (empty: all)


def _save(pixmap: QPixmap | QImage, path: Path) -> None:
    if ONLY and path.stem not in ONLY:
        return
    if not pixmap.save(str(path), "PNG"):  # type: ignore[call-overload]
        raise OSError(f"cannot write {path}")
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}", flush=True)


def _tray_scene(menu: QWidget, state: str, count: int) -> QImage:
    """The menu as it drops from a top panel, the tray icon highlighted above it."""
    shot = menu.grab()
    panel_h, margin = 30, 16
    width = max(shot.width() + 2 * margin, 420)
    image = QImage(width, panel_h + shot.height() + margin, QImage.Format.Format_ARGB32)
    image.fill(QColor("#eef1f5"))
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.fillRect(QRect(0, 0, width, panel_h), QColor("#1f2430"))
    painter.setPen(QColor("#d8dee9"))
    font = QFont(painter.font())
    font.setPointSize(9)
    painter.setFont(font)
    painter.drawText(QRect(10, 0, 200, panel_h), Qt.AlignmentFlag.AlignVCenter, "Activities")
    painter.drawText(
        QRect(width - 70, 0, 62, panel_h),
        Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight,
        "14:02",
    )
    icon_x = width - margin - shot.width() // 2 - 12
    painter.fillRect(QRect(icon_x - 4, 0, 32, panel_h), QColor("#3b4252"))
    painter.drawPixmap(icon_x, 3, state_icon(state, count).pixmap(24, 24))
    menu_x = width - margin - shot.width()
    painter.drawPixmap(QPoint(menu_x, panel_h), shot)
    painter.end()
    return image


async def take(out: Path) -> None:
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    settings = AppSettings(TMP / "settings.ini")
    settings.add_recent_goal("Upgrade the HTTP client and fix the deprecation warnings")
    settings.save_preset("Nightly: make the suite green", "Make every test pass", str(TMP))
    controller = AppController(settings, Journal(Path(os.environ["AGENTRAY_JOURNAL"])))
    demo = DemoSession.start(TMP / "textkit", latency_s=0.35)
    controller.use_demo(demo)
    try:
        run_id = await controller.start_run(demo.config())
        dashboard = DashboardWindow(controller)
        dashboard.resize(1240, 760)
        dashboard.show_run(run_id)
        await _until(lambda: bool(controller.pending_escalations()), what="the demo's question")
        await _settle(app, 1.0)

        # Dashboard: select the blocked worker (its progress file shows the blocker).
        view = controller.pending_escalations()[0]
        agents = controller.engine().runs[run_id].agents.values()
        blocked = next((a.agent_id for a in agents if a.status == "blocked"), view.agent_id)
        dashboard.agents.setCurrentItem(dashboard._agent_items[blocked])
        await _settle(app, 0.6)
        _save(dashboard.grab(), out / "dashboard.png")

        escalation = EscalationWindow(controller)
        escalation.show_escalation(view.escalation_id)
        escalation.resize(640, 600)
        await _settle(app, 0.6)
        _save(escalation.grab(), out / "escalation.png")
        escalation.hide()

        tray = Tray(controller, _Shell())
        tray.refresh()
        tray.rebuild_menu()
        tray.menu.popup(QPoint(600, 40))
        await _settle(app, 0.6)
        _save(_tray_scene(tray.menu, tray.state, tray.count), out / "tray-menu.png")
        tray.menu.hide()
        tray.icon.hide()

        # Changes: answer the question, let the run finish, review what each agent changed.
        controller.answer_escalation(view.escalation_id, Answer(view.options[0].option_id))
        await _until(lambda: not controller.is_live(run_id), 150, "the run to finish")
        dashboard.resize(1240, 820)
        dashboard.show_changes(run_id)
        changes = dashboard.changes
        await _until(lambda: len(changes.file_rows()) >= 4 and not changes.busy, what="changes")
        fixer = next(a for a in agents if a.title == "Fix the failing build").agent_id
        dashboard.agents.setCurrentItem(dashboard._agent_items[fixer])
        split = dashboard.tabs.parentWidget()
        if isinstance(split, QSplitter):  # room for the diff: the agent tree gets what it needs
            split.setSizes([170, 600])
        changes.select_file("textkit/headline.py")
        await _until(
            lambda: (
                changes.file_diff is not None and changes.file_diff.path == "textkit/headline.py"
            ),
            what="the diff",
        )
        await _settle(app, 0.6)
        _save(dashboard.grab(), out / "changes.png")

        # Timeline: the finished run, each agent's states over time, one row each.
        dashboard.tabs.setCurrentWidget(dashboard.timeline_scroll)
        if isinstance(split, QSplitter):
            split.setSizes([230, 540])
        timeline = dashboard.timeline
        await _until(
            lambda: (t := timeline.timeline()) is not None and not t.live and len(t.agents) >= 4,
            what="the timeline",
        )
        await _settle(app, 0.6)
        _save(dashboard.grab(), out / "timeline.png")
        dashboard.hide()
    finally:
        print("stopping the demo run", flush=True)
        await asyncio.wait_for(controller.shutdown(), 30)
        print("stopped", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument(
        "--only",
        nargs="+",
        default=[],
        metavar="NAME",
        help="write only these (dashboard escalation tray-menu changes timeline)",
    )
    args = parser.parse_args()
    ONLY.update(args.only)
    args.out.mkdir(parents=True, exist_ok=True)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(TMP / "qsettings"))
    app = QApplication(sys.argv[:1])
    app.setStyle("Fusion")
    app.setQuitOnLastWindowClosed(False)
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(asyncio.wait_for(take(args.out), 180))
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
