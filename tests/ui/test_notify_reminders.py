"""What goes with an escalation's notification (hints, escaped body), its one reminder, closing it
once answered, "Open folder", and no news of what the person just did themselves. Through a real
private D-Bus with the stand-in notification server (fake_notifications), on real demo runs.

The reminder's delay is injected short (``Notifier.reminder_s``): a real QTimer fires it, and the
tests wait on conditions, never on a fixed sleep."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from changes_fixtures import MadeRun
from fake_notifications import FakeNotificationServer, PrivateBus
from PySide6.QtCore import QObject, QUrl, Slot
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QMenu
from pytestqt.qtbot import QtBot

from agentray import events as ev
from agentray.demo import DemoSession
from agentray.escalation import Answer
from agentray.ui.app import TrayApp
from agentray.ui.controller import AppController
from agentray.ui.desktop_notifications import DesktopNotifications
from agentray.ui.settings import AppSettings
from agentray.ui.wording import short_folder
from conftest import QLoop, demo_workspace

pytestmark = pytest.mark.skipif(
    sys.platform in ("darwin", "win32"), reason="freedesktop notifications: Linux and the BSDs"
)

ALL_CAPS = ("actions", "body", "body-markup", "persistence")


@pytest.fixture
def bus() -> Iterator[PrivateBus]:
    private = PrivateBus()
    yield private
    private.close()


@pytest.fixture
def server(bus: PrivateBus) -> Iterator[FakeNotificationServer]:
    fake = FakeNotificationServer(bus.address, capabilities=ALL_CAPS)
    fake.start()
    yield fake
    fake.stop()


def _shell(controller: AppController, qloop: QLoop, bus: PrivateBus, **notifier: float) -> TrayApp:
    shell = TrayApp(controller)
    shell.notifier.coalescer.window_s = notifier.get("window_s", 0.05)
    shell.notifier.reminder_s = notifier.get("reminder_s", 600.0)
    assert qloop.run(shell.notifier.use_desktop_notifications(DesktopNotifications(bus.address)))
    return shell


def _question(controller: AppController, qloop: QLoop, run_id: str) -> str:
    qloop.wait_until(lambda: any(v.run_id == run_id for v in controller.pending_escalations()))
    [view] = [v for v in controller.pending_escalations() if v.run_id == run_id]
    return view.escalation_id


def _answer(controller: AppController, escalation_id: str) -> None:
    [view] = [v for v in controller.pending_escalations() if v.escalation_id == escalation_id]
    assert controller.answer_escalation(escalation_id, Answer(view.options[0].option_id, ""))


def test_escalation_is_persistent_reminded_once_and_closed_when_answered(
    qtbot: QtBot,
    qloop: QLoop,
    controller: AppController,
    demo: DemoSession,
    bus: PrivateBus,
    server: FakeNotificationServer,
) -> None:
    shell = _shell(controller, qloop, bus, reminder_s=0.5)
    notifier = shell.notifier
    run_id = qloop.run(controller.start_run(demo.config()))
    question = _question(controller, qloop, run_id)

    qtbot.waitUntil(lambda: len(server.received) == 1 and len(notifier.by_id) == 1)
    [first] = server.received
    assert first.title == "An agent needs you"
    assert "stop words" in first.body and f"in {short_folder(demo.workspace)}" in first.body
    assert first.actions == [
        "default", "Answer", "answer", "Answer", "dashboard", "Open dashboard"
    ]  # fmt: skip
    assert first.hints["urgency"] == ("y", 2) and first.hints["resident"] == ("b", True)
    assert first.timeout == 0  # never expires by itself

    # Ten minutes in the product, half a second here: the one reminder, in the first one's place.
    qtbot.waitUntil(lambda: len(server.received) == 2, timeout=10_000)
    reminder = server.received[1]
    assert reminder.title == "Still waiting: an agent needs you"
    assert reminder.replaces_id == first.notification_id == reminder.notification_id
    assert notifier.reminded == {question} and question not in notifier.reminders
    assert list(notifier.by_id) == [first.notification_id]

    # The same question raised again (as a resume does): told again, but never reminded again.
    controller.event.emit(
        ev.EscalationRaised(
            run_id=run_id,
            escalation_id=question,
            agent_id="a001",
            kind="question",
            question="Which stop words should word_count skip?",
            context="",
            options=(),
        )
    )
    qtbot.waitUntil(lambda: len(server.received) == 3)
    assert server.received[2].replaces_id == first.notification_id  # still one on screen
    assert question not in notifier.reminders and notifier.reminded == {question}

    # Answered: every notification of the question leaves the screen.
    _answer(controller, question)
    qtbot.waitUntil(lambda: set(server.closed) == {first.notification_id}, timeout=10_000)
    assert notifier.by_id == {}
    qloop.wait_until(lambda: not controller.active_runs(), timeout=40)
    qloop.run(notifier.aclose())


def test_no_reminder_once_answered_or_when_turned_off(
    qtbot: QtBot,
    qloop: QLoop,
    controller: AppController,
    demo: DemoSession,
    bus: PrivateBus,
    server: FakeNotificationServer,
    tmp_path: Path,
) -> None:
    shell = _shell(controller, qloop, bus, reminder_s=600.0)
    notifier = shell.notifier
    run_id = qloop.run(controller.start_run(demo.config()))
    question = _question(controller, qloop, run_id)
    assert notifier.reminders[question].isActive()
    assert notifier.reminders[question].interval() == 600_000
    qtbot.waitUntil(lambda: len(server.received) == 1)
    _answer(controller, question)  # answered in time: its reminder is called off
    assert question not in notifier.reminders
    qtbot.waitUntil(lambda: server.closed == [server.received[0].notification_id])

    # The setting off: the timer runs out and nothing is sent.
    controller.settings.escalation_reminder = False
    notifier.reminder_s = 0.05
    other = qloop.run(
        controller.start_run(demo.config(workspace=str(demo_workspace(tmp_path, "other"))))
    )
    silent = _question(controller, qloop, other)
    qtbot.waitUntil(lambda: silent not in notifier.reminders, timeout=10_000)  # it fired

    def asked() -> list[str]:
        return [n.title for n in server.received if n.title.endswith("needs you")]

    qtbot.waitUntil(lambda: len(asked()) == 2 and notifier.coalescer.pending == 0)
    assert asked() == ["An agent needs you", "An agent needs you"]  # no "Still waiting: …"
    assert notifier.reminded == set()
    assert AppSettings(controller.settings.file_name()).escalation_reminder is False  # stored
    controller.stop_all()
    qloop.wait_until(lambda: not controller.active_runs(), timeout=40)
    qloop.run(notifier.aclose())


def test_the_body_is_escaped_where_the_server_renders_markup(
    qtbot: QtBot, qloop: QLoop, offline_controller: AppController, bus: PrivateBus
) -> None:
    question = "Merge <feature> into main & delete it?"
    for caps, body in (
        (ALL_CAPS, "Merge &lt;feature&gt; into main &amp; delete it?"),
        (("actions", "body"), question),
    ):
        fake = FakeNotificationServer(bus.address, capabilities=caps)
        fake.start()
        try:
            shell = _shell(offline_controller, qloop, bus, window_s=60.0)
            offline_controller.event.emit(
                ev.EscalationRaised(
                    run_id="r-x",
                    escalation_id="r-x.e1",
                    agent_id="a001",
                    kind="question",
                    question=question,
                    context="",
                    options=(),
                )
            )
            shell.notifier.coalescer.flush()
            qtbot.waitUntil(lambda fake=fake: len(fake.received) == 1)  # type: ignore[misc]
            assert fake.received[0].body == body
            qloop.run(shell.notifier.aclose())
        finally:
            fake.stop()


class FolderOpener(QObject):
    """Stands in for the file manager: the folders the desktop was asked to open."""

    def __init__(self) -> None:
        super().__init__()
        self.opened: list[str] = []

    @Slot(QUrl)
    def open_url(self, url: QUrl) -> None:
        self.opened.append(url.toLocalFile())


def test_open_folder_and_no_stray_tray_clicks(
    qtbot: QtBot,
    qloop: QLoop,
    offline_controller: AppController,
    made_run: MadeRun,
    bus: PrivateBus,
    server: FakeNotificationServer,
) -> None:
    shell = _shell(offline_controller, qloop, bus, window_s=60.0)
    offline_controller.event.emit(
        ev.RunFinished(run_id=made_run.run_id, status="succeeded", summary="tidied", cost_usd=0.0)
    )
    shell.notifier.coalescer.flush()
    qtbot.waitUntil(lambda: len(server.received) == 1 and len(shell.notifier.by_id) == 1)
    [sent] = server.received
    opened: list[str] = []
    shell.notifier.open_changes.connect(opened.append)

    # Qt's own tray emits messageClicked for any click on any notification: not ours to act on.
    shell.tray.icon.messageClicked.emit()
    assert opened == [] and "dashboard" not in shell.windows

    opener = FolderOpener()
    # (the stubs say bytes; PySide6 wants the slot's name as a str)
    QDesktopServices.setUrlHandler("file", opener, "open_url")  # type: ignore[arg-type]
    try:
        server.click(sent.notification_id, "folder")
        qtbot.waitUntil(lambda: bool(opener.opened))
    finally:
        QDesktopServices.unsetUrlHandler("file")
    assert [Path(p) for p in opener.opened] == [made_run.workspace]
    assert opened == []
    qloop.run(shell.notifier.aclose())


def test_no_news_of_what_the_person_did(
    qtbot: QtBot,
    qloop: QLoop,
    controller: AppController,
    demo: DemoSession,
    tmp_path: Path,
) -> None:
    shell = TrayApp(controller)
    notifier = shell.notifier
    notifier.coalescer.window_s = 60.0  # flushed by hand: what is pending is what would be told

    # Abort from the escalation window (confirmed): no "Run stopped", and the question's
    # notification, not sent yet, is dropped too.
    aborted = qloop.run(controller.start_run(demo.config()))
    _question(controller, qloop, aborted)
    shell.open_escalations()
    shell.escalations.abort_button.click()
    box = shell.escalations.abort_confirmation
    assert box is not None
    next(b for b in box.buttons() if b.text() == "Abort run").click()
    qloop.wait_until(lambda: not controller.is_live(aborted), timeout=40)
    assert notifier.coalescer.flush() is None and notifier.sent == []

    # "Stop" in the tray menu.
    stopped = qloop.run(
        controller.start_run(demo.config(workspace=str(demo_workspace(tmp_path, "two"))))
    )
    qloop.wait_until(lambda: controller.is_live(stopped))
    shell.tray.menu.aboutToShow.emit()
    run_menu = next(
        a.menu() for a in shell.tray.menu.actions() if a.text().startswith("Make the textkit")
    )
    assert isinstance(run_menu, QMenu)
    stop = run_menu.actions()[-1]
    assert stop.text() == "Stop"
    stop.trigger()
    qloop.wait_until(lambda: not controller.is_live(stopped), timeout=40)
    assert notifier.coalescer.flush() is None and notifier.sent == []

    # Stopped by something else (`agentray stop` elsewhere, the engine itself): that is news.
    other = qloop.run(
        controller.start_run(demo.config(workspace=str(demo_workspace(tmp_path, "three"))))
    )
    qloop.wait_until(lambda: controller.is_live(other))
    controller.engine().stop_run(other)
    qloop.wait_until(lambda: not controller.is_live(other), timeout=40)
    told = notifier.coalescer.flush()
    assert told is not None and told.title == "Run stopped" and told.target_id == other

    # Quitting interrupts runs: never news.
    last = qloop.run(
        controller.start_run(demo.config(workspace=str(demo_workspace(tmp_path, "four"))))
    )
    qloop.wait_until(lambda: controller.is_live(last))
    qloop.run(controller.shutdown())
    assert controller.journal.get_run(last).status == "interrupted"  # type: ignore[union-attr]
    assert notifier.coalescer.flush() is None
