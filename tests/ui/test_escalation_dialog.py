"""The escalation window on three real pending escalations (three demo runs, one simulator)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QMessageBox

from agentray.demo import DemoSession
from agentray.escalation import (
    APPROVAL_OPTIONS,
    BLOCKER_OPTIONS_WAITING,
    model_options,
    options_from_json,
    options_to_json,
)
from agentray.ui.controller import AppController
from agentray.ui.escalation_dialog import EscalationWindow
from conftest import demo_workspace

if TYPE_CHECKING:
    from conftest import QLoop


def start_three(
    controller: AppController, demo: DemoSession, qloop: QLoop, tmp_path: Path
) -> list[str]:
    workspaces = [demo.workspace, demo_workspace(tmp_path, "d2"), demo_workspace(tmp_path, "d3")]
    run_ids = [qloop.run(controller.start_run(demo.config(workspace=str(w)))) for w in workspaces]
    qloop.wait_until(lambda: len(controller.pending_escalations()) == 3, timeout=30)
    return run_ids


def test_queue_counter_option_answer_and_abort(
    controller: AppController, demo: DemoSession, qloop: QLoop, tmp_path: Path, qtbot
) -> None:
    run_ids = start_three(controller, demo, qloop, tmp_path)
    window = EscalationWindow(controller)
    qtbot.addWidget(window)
    window.show_escalation()
    assert window.isVisible()
    assert window.counter.text() == "1 of 3"
    window.next_button.click()
    assert window.counter.text() == "2 of 3"
    window.previous_button.click()
    window.previous_button.click()
    assert window.counter.text() == "3 of 3"  # wraps around

    # the options are the buttons, in order; one click answers with that option's id
    view = window.current()
    assert view is not None and view.live
    assert [b.text() for b in window.option_buttons] == [o.label for o in view.options]
    assert "stop words" in window.question.text()
    assert window.reply_button.isVisibleTo(window)  # a model's question also takes a free reply
    window.option_buttons[1].click()
    row = controller.journal.get_escalation(view.escalation_id)
    assert row is not None and row.choice == view.options[1].label and row.answer == view.options[1].label
    assert row.answered_by == "human"
    qloop.wait_until(lambda: window.counter.text().endswith(" of 2"))

    # Abort run asks first: Cancel keeps the run, confirming stops it
    target = window.current()
    assert target is not None
    finished: list[tuple[str, str]] = []
    controller.run_finished.connect(lambda r, s, _m: finished.append((r, s)))
    window.abort_button.click()
    box = window.abort_confirmation
    assert box is not None and box.isVisible()
    box.button(QMessageBox.StandardButton.Cancel).click()
    qloop.wait_until(lambda: window.abort_confirmation is None)
    assert controller.is_live(target.run_id) and window.counter.text().endswith(" of 2")
    window.abort_button.click()
    box = window.abort_confirmation
    assert box is not None
    abort = next(b for b in box.buttons() if b.text() == "Abort run")
    abort.click()
    qloop.wait_until(lambda: (target.run_id, "cancelled") in finished)
    qloop.wait_until(lambda: window.counter.text() == "1 of 1")

    # Esc closes without answering; Enter answers with the focused option
    last = window.current()
    assert last is not None
    QTest.keyClick(window, Qt.Key.Key_Escape)
    assert not window.isVisible()
    assert controller.journal.get_escalation(last.escalation_id).answered_at is None  # type: ignore[union-attr]
    window.show_escalation(last.escalation_id)
    window.option_buttons[0].setFocus()
    QTest.keyClick(window.option_buttons[0], Qt.Key.Key_Return)
    row = controller.journal.get_escalation(last.escalation_id)
    assert row is not None and row.choice == last.options[0].label
    assert not window.isVisible()  # the queue is empty: the window goes away
    qloop.wait_until(lambda: not controller.active_runs(), timeout=40)
    statuses = {r: controller.journal.get_run(r).status for r in run_ids}  # type: ignore[union-attr]
    assert sorted(statuses.values()) == ["cancelled", "succeeded", "succeeded"]


def test_reply_sends_typed_text(
    controller: AppController, demo: DemoSession, qloop: QLoop, qtbot
) -> None:
    qloop.run(controller.start_run(demo.config()))
    qloop.wait_until(lambda: bool(controller.pending_escalations()))
    window = EscalationWindow(controller)
    qtbot.addWidget(window)
    view = window.current()
    assert view is not None
    window.reply.setText("")
    window.reply_button.click()
    assert "Type a reply first" in window.notice.text()
    assert controller.journal.get_escalation(view.escalation_id).answered_at is None  # type: ignore[union-attr]
    window.reply.setText("Use the minimal list, please")
    window.reply_button.click()
    row = controller.journal.get_escalation(view.escalation_id)
    assert row is not None and row.answer == "Use the minimal list, please" and row.choice is None


def test_approval_shows_approve_and_deny_and_engine_kinds_need_an_option(
    controller: AppController, qtbot, tmp_path: Path
) -> None:
    """A question without options is an approval; a blocker takes only its own options."""
    journal = controller.journal
    journal.create_run("r1129-aaaa", goal="g", workspace=str(tmp_path), config={}, pid=1)
    journal.update_run("r1129-aaaa", status="interrupted")
    journal.create_escalation(
        "r1129-aaaa", "e1", agent_id="a001", kind="approval", question="Delete the old cache?",
        context="", options=options_to_json(model_options(())), call_id=None,
    )  # fmt: skip
    journal.create_escalation(
        "r1129-aaaa", "e2", agent_id="a002", kind="blocker", question="a002 is blocked",
        context="", options=options_to_json(BLOCKER_OPTIONS_WAITING), call_id=None,
    )  # fmt: skip
    window = EscalationWindow(controller)
    qtbot.addWidget(window)
    window.show_escalation("e1")
    assert [b.text() for b in window.option_buttons] == ["Approve", "Deny"]
    assert window.reply_button.isVisibleTo(window)
    window.show_escalation("e2")
    assert [b.text() for b in window.option_buttons] == [o.label for o in BLOCKER_OPTIONS_WAITING]
    assert not window.reply_button.isVisibleTo(window)
    window.reply.setText("some text")
    window.on_reply()  # Enter in the note field
    assert "Pick one of the options" in window.notice.text()
    assert journal.get_escalation("e2").answered_at is None  # type: ignore[union-attr]


def test_model_options_ids_and_deny() -> None:
    options = model_options(("Yes, go ahead", "No, skip it"))
    assert [(o.option_id, o.label, o.denies) for o in options] == [
        ("1", "Yes, go ahead", False),
        ("2", "No, skip it", True),
    ]
    assert model_options(("Minimal", "Longer"))[1].denies is False
    assert model_options(()) == APPROVAL_OPTIONS
    assert options_from_json(options_to_json(options)) == options
    assert options_from_json(["A", "B"]) == model_options(("A", "B"))  # journals before ids
