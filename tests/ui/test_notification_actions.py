"""Notification actions through a real D-Bus: a private ``dbus-daemon`` with a stand-in
notification server. The run-finished notification goes out with its "Review" action; the
server's ActionInvoked (the person's click) opens the run's Changes tab. Without a server, or
with one that shows no actions, the tray icon's messages are used instead."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from changes_fixtures import MadeRun
from fake_notifications import FakeNotificationServer, PrivateBus
from pytestqt.qtbot import QtBot

from agentray import events as ev
from agentray.ui.app import TrayApp
from agentray.ui.controller import AppController
from agentray.ui.dashboard import DashboardWindow
from agentray.ui.desktop_notifications import DesktopNotifications
from conftest import QLoop

pytestmark = pytest.mark.skipif(
    sys.platform in ("darwin", "win32"), reason="freedesktop notifications: Linux and the BSDs"
)


@pytest.fixture
def bus() -> Iterator[PrivateBus]:
    private = PrivateBus()
    yield private
    private.close()


@pytest.fixture
def server(bus: PrivateBus) -> Iterator[FakeNotificationServer]:
    fake = FakeNotificationServer(bus.address)
    fake.start()
    yield fake
    fake.stop()


def test_review_action_opens_the_changes_tab(
    qtbot: QtBot,
    qloop: QLoop,
    offline_controller: AppController,
    made_run: MadeRun,
    bus: PrivateBus,
    server: FakeNotificationServer,
) -> None:
    ctl = offline_controller
    shell = TrayApp(ctl)
    notifier = shell.notifier
    notifier.coalescer.window_s = 60.0  # flushed by hand below
    desktop = DesktopNotifications(bus.address)
    assert qloop.run(notifier.use_desktop_notifications(desktop))
    assert notifier.desktop is desktop and desktop.ready
    assert desktop.server == "fake-notifier agentray-tests 1.0"
    messages: list[str] = []
    shell.tray.icon.messageClicked.connect(lambda: messages.append("clicked"))

    ctl.event.emit(
        ev.RunFinished(run_id=made_run.run_id, status="succeeded", summary="tidied", cost_usd=0.0)
    )
    notifier.coalescer.flush()
    qtbot.waitUntil(lambda: len(server.received) == 1 and len(notifier.by_id) == 1)
    [sent] = server.received
    assert (sent.app_name, sent.title, sent.body) == ("Agentray", "Run finished", "tidied")
    assert sent.actions == ["default", "Review", "review", "Review", "folder", "Open folder"]
    assert sent.hints["urgency"] == ("y", 1)
    assert notifier.by_id[sent.notification_id].target_id == made_run.run_id

    server.click(sent.notification_id, "review")  # the person presses "Review"
    qtbot.waitUntil(lambda: "dashboard" in shell.windows and shell.windows["dashboard"].isVisible())
    dash = shell.windows["dashboard"]
    assert isinstance(dash, DashboardWindow)
    assert dash.selected_run == made_run.run_id and dash.tabs.currentWidget() is dash.changes
    qtbot.waitUntil(lambda: len(dash.changes.file_rows()) == 4)

    # A failed run: a click on its body ("Show") opens its details, "Review changes" the Changes tab.
    opened: list[tuple[str, str]] = []
    notifier.open_run.connect(lambda r: opened.append(("details", r)))
    notifier.open_changes.connect(lambda r: opened.append(("changes", r)))
    ctl.event.emit(
        ev.RunFinished(run_id=made_run.run_id, status="failed", summary="no luck", cost_usd=0.0)
    )
    notifier.coalescer.flush()
    qtbot.waitUntil(lambda: len(server.received) == 2 and len(notifier.by_id) == 2)
    failed = server.received[1]
    assert failed.actions == [
        "default", "Show", "show", "Show", "review", "Review changes"
    ]  # fmt: skip
    assert failed.hints["urgency"] == ("y", 2)
    server.click(failed.notification_id, "default")
    server.click(failed.notification_id, "review")
    qtbot.waitUntil(lambda: len(opened) == 2)
    assert opened == [("details", made_run.run_id), ("changes", made_run.run_id)]
    assert messages == []  # nothing went through the tray icon's message

    # The notification server goes away: from then on the tray icon's message tells.
    server.stop()
    ctl.event.emit(
        ev.RunFinished(run_id=made_run.run_id, status="succeeded", summary="again", cost_usd=0.0)
    )
    notifier.coalescer.flush()
    qtbot.waitUntil(lambda: notifier.desktop is None)
    shell.tray.icon.messageClicked.emit()
    assert messages == ["clicked"] and opened[-1] == ("changes", made_run.run_id)
    qloop.run(notifier.aclose())


def test_no_server_or_no_actions_keeps_to_the_tray_icon(
    qloop: QLoop, offline_controller: AppController, bus: PrivateBus
) -> None:
    shell = TrayApp(offline_controller)
    notifier = shell.notifier
    # A session bus without a notification server.
    assert not qloop.run(notifier.use_desktop_notifications(DesktopNotifications(bus.address)))
    assert notifier.desktop is None

    # A server that shows no action buttons.
    plain = FakeNotificationServer(bus.address, capabilities=("body",))
    plain.start()
    try:
        assert not qloop.run(notifier.use_desktop_notifications(DesktopNotifications(bus.address)))
        assert notifier.desktop is None
        notifier.coalescer.window_s = 60.0
        offline_controller.event.emit(
            ev.RunFinished(run_id="r-x", status="succeeded", summary="done", cost_usd=0.0)
        )
        assert notifier.coalescer.flush() is not None
        assert plain.received == []  # it went to the tray icon's message
        opened: list[str] = []
        notifier.open_changes.connect(opened.append)
        shell.tray.icon.messageClicked.emit()
        assert opened == ["r-x"]
    finally:
        plain.stop()


def test_the_tray_app_uses_the_session_bus_server_from_its_start(
    qtbot: QtBot,
    qloop: QLoop,
    offline_controller: AppController,
    bus: PrivateBus,
    server: FakeNotificationServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", bus.address)
    shell = TrayApp(offline_controller)
    qloop.run(shell.start(demo=False))
    qtbot.waitUntil(lambda: shell.notifier.desktop is not None)
    assert shell.notifier.desktop is not None and shell.notifier.desktop.ready
    qloop.run(shell.quit())
    assert shell.notifier.desktop is None
