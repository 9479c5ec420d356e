"""Notifications: coalescing (unit, with a hand-driven scheduler), the muted setting, clicks,
and the real tray icon under X (xvfb-run -a dbus-run-session)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from agentray.demo import DemoSession
from agentray.ui.app import TrayApp
from agentray.ui.controller import AppController
from agentray.ui.notifications import Coalescer, Item, Notification, compose
from conftest import demo_workspace

if TYPE_CHECKING:
    from conftest import QLoop


class ManualClock:
    """A scheduler the test fires by hand: (due time, callback)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[tuple[float, Callable[[], Any]]] = []

    def schedule(self, delay: float, callback: Callable[[], Any]) -> None:
        self.timers.append((self.now + delay, callback))

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [t for t in self.timers if t[0] <= self.now]
        self.timers = [t for t in self.timers if t[0] > self.now]
        for _, callback in due:
            callback()


def test_burst_of_three_escalations_gives_one_notification() -> None:
    clock = ManualClock()
    shown: list[Notification] = []
    coalescer = Coalescer(shown.append, clock.schedule, window_s=2.0)
    for n in range(3):
        coalescer.add(Item("escalation", f"r{n}", f"question {n}?", f"e{n}"))
        clock.advance(0.5)
    assert shown == []
    clock.advance(1.0)  # 2 s after the first
    assert len(shown) == 1
    assert shown[0].title == "3 agents need you"
    assert (shown[0].target_kind, shown[0].target_id) == ("escalation", "e0")
    # a later event starts a new burst
    coalescer.add(Item("succeeded", "r9", "all tests pass"))
    clock.advance(2.0)
    assert [n.title for n in shown] == ["3 agents need you", "Run finished"]
    assert shown[1].target_kind == "run" and shown[1].message == "all tests pass"


def test_compose_mixed_and_failures() -> None:
    mixed = compose([Item("escalation", "r1", "ok?", "e1"), Item("failed", "r2", "build failed")])
    assert mixed.title == "An agent needs you" and "1 run failed" in mixed.message
    runs = compose(
        [Item("succeeded", "r1", "a"), Item("cancelled", "r2", "b"), Item("failed", "r3", "c")]
    )
    assert runs.title == "1 run finished, 1 run failed, 1 run stopped"
    assert runs.level == "critical" and runs.target_id == "r3"


def start_three(controller: AppController, demo: DemoSession, qloop: QLoop, tmp_path: Path) -> None:
    for workspace in (
        demo.workspace,
        demo_workspace(tmp_path, "n2"),
        demo_workspace(tmp_path, "n3"),
    ):
        qloop.run(controller.start_run(demo.config(workspace=str(workspace))))
    qloop.wait_until(lambda: len(controller.pending_escalations()) == 3, timeout=30)


def test_real_runs_coalesce_and_click_opens_escalations(
    controller: AppController, demo: DemoSession, qloop: QLoop, tmp_path: Path
) -> None:
    shell = TrayApp(controller)
    notifier = shell.notifier
    notifier.coalescer.window_s = 60.0  # flushed by hand below: no timing in the assert
    start_three(controller, demo, qloop, tmp_path)
    assert notifier.coalescer.pending == 3 and notifier.sent == []
    notifier.coalescer.flush()
    assert [n.title for n in notifier.sent] == ["3 agents need you"]
    assert "stop words" in notifier.sent[0].message
    shell.tray.icon.messageClicked.emit()
    assert shell.escalations.isVisible()
    view = shell.escalations.current()
    assert view is not None and view.escalation_id == notifier.sent[0].target_id
    controller.stop_all()
    qloop.wait_until(lambda: not controller.active_runs())


def test_muted_gives_none(controller: AppController, demo: DemoSession, qloop: QLoop) -> None:
    controller.settings.notifications_muted = True
    shell = TrayApp(controller)
    shell.notifier.coalescer.window_s = 0.05
    qloop.run(controller.start_run(demo.config()))
    qloop.wait_until(lambda: bool(controller.pending_escalations()))
    controller.stop_all()
    qloop.wait_until(lambda: not controller.active_runs())
    assert shell.notifier.coalescer.pending == 0 and shell.notifier.sent == []


X11_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, os, sys
    from pathlib import Path
    import qasync
    from PySide6.QtWidgets import QApplication, QSystemTrayIcon
    from agentray.demo import DemoSession
    from agentray.journal import Journal
    from agentray.ui.app import TrayApp
    from agentray.ui.controller import AppController
    from agentray.ui.settings import AppSettings

    tmp = Path(sys.argv[1])
    app = QApplication([])
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    demo = DemoSession.start(tmp / "demo", latency_s=0.01)
    controller = AppController(AppSettings(tmp / "s.ini"), Journal(tmp / "j.sqlite3"))
    shell = TrayApp(controller, tray_available=QSystemTrayIcon.isSystemTrayAvailable())
    shell.notifier.coalescer.window_s = 0.5
    calls = []
    shell.notifier.shown.connect(lambda n: calls.append([n.title, n.message]))

    async def main():
        shell.tray.icon.show()
        controller.use_demo(demo)
        await controller.start_run(demo.config())
        for _ in range(600):
            if calls:
                break
            await asyncio.sleep(0.05)
        await controller.shutdown()
        demo.close()
        return {"platform": app.platformName(), "calls": calls,
                "tray": QSystemTrayIcon.isSystemTrayAvailable(), "state": shell.tray.state}

    with loop:
        print(json.dumps(loop.run_until_complete(main())))
    """
)


@pytest.mark.x11
def test_real_tray_icon_shows_message_under_x(tmp_path: Path) -> None:
    if not os.environ.get("DISPLAY"):
        if os.environ.get("AGENTRAY_REQUIRE_DESKTOP") == "1":
            pytest.fail("scripts/test.sh should provide an X server (xvfb-run)")
        pytest.skip("needs an X server: run under xvfb-run -a dbus-run-session")
    script = tmp_path / "x11_tray.py"
    script.write_text(X11_SCRIPT, encoding="utf-8")
    env = {**os.environ, "QT_QPA_PLATFORM": "xcb", "AGENTRAY_JOURNAL": str(tmp_path / "j.sqlite3")}
    env.pop("ANTHROPIC_API_KEY", None)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["platform"] == "xcb"
    assert result["calls"] and result["calls"][0][0] == "An agent needs you"
    assert "stop words" in result["calls"][0][1]
