"""The tray item's status: NeedsAttention while anything waits for the person, Active otherwise.

Qt's QSystemTrayIcon has no API for the StatusNotifierItem's Status (its own item says
NeedsAttention only for the seconds of a ``showMessage``), so ``Tray.status`` is shown with the
attention icon and a tooltip that says who waits: both asserted here, on real demo runs."""

from __future__ import annotations

from PySide6.QtGui import QIcon

from agentray.demo import DemoSession
from agentray.journal import Journal
from agentray.ui.app import TrayApp
from agentray.ui.controller import AppController
from agentray.ui.icons import state_icon
from agentray.ui.settings import AppSettings
from agentray.ui.tray import ACTIVE, NEEDS_ATTENTION
from conftest import QLoop


def _looks_like(icon: QIcon, other: QIcon) -> bool:
    return icon.pixmap(22, 22).toImage() == other.pixmap(22, 22).toImage()


def test_needs_attention_while_a_question_waits_and_back_when_answered(
    controller: AppController, demo: DemoSession, qloop: QLoop
) -> None:
    shell = TrayApp(controller)
    tray = shell.tray
    statuses: list[str] = []
    tray.status_changed.connect(statuses.append)
    assert tray.status == ACTIVE

    run_id = qloop.run(controller.start_run(demo.config()))
    qloop.wait_until(lambda: tray.status == NEEDS_ATTENTION, timeout=30)
    assert statuses == [NEEDS_ATTENTION]
    assert _looks_like(tray.icon.icon(), state_icon("attention"))
    assert not _looks_like(tray.icon.icon(), state_icon("working", 1))
    tip = tray.icon.toolTip()
    assert tip.startswith("Agentray — needs you")
    assert "1 question waits for you" in tip and "stop words" in tip

    # Answered in the escalation window: the run goes on, nothing waits for the person.
    shell.open_escalations()
    shell.escalations.option_buttons[0].click()
    qloop.wait_until(lambda: tray.status == ACTIVE)
    assert statuses == [NEEDS_ATTENTION, ACTIVE]
    assert "needs you" not in tray.icon.toolTip()
    assert not _looks_like(tray.icon.icon(), state_icon("attention"))
    qloop.wait_until(lambda: not controller.is_live(run_id), timeout=40)
    assert tray.status == ACTIVE and statuses == [NEEDS_ATTENTION, ACTIVE]


def test_a_question_left_from_before_a_restart_needs_attention_at_start(
    controller: AppController, demo: DemoSession, qloop: QLoop, settings: AppSettings
) -> None:
    run_id = qloop.run(controller.start_run(demo.config()))
    qloop.wait_until(lambda: bool(controller.pending_escalations()), timeout=30)
    qloop.run(controller.shutdown())  # the app quits: the run is interrupted, its question kept

    again = AppController(settings, Journal(controller.journal.path))
    try:
        tray = TrayApp(again).tray
        assert tray.status == NEEDS_ATTENTION
        assert "1 question waits for you" in tray.icon.toolTip()
        [view] = again.pending_escalations()
        assert view.run_id == run_id and not view.live
    finally:
        qloop.run(again.shutdown())
