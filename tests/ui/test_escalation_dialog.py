"""The escalation window on three real pending escalations (three demo runs, one simulator)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from agentray.demo import DemoSession
from agentray.ui.controller import AppController
from agentray.ui.escalation_dialog import EscalationWindow, affirmative_option, negative_option
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

    # an option button answers with that choice; the agent resumes
    view = window.current()
    assert view is not None and view.live
    assert [b.text() for b in window.option_buttons] == list(view.options)
    assert "stop words" in window.question.text()
    window.option_buttons[1].click()
    row = controller.journal.get_escalation(view.escalation_id)
    assert row is not None and row.choice == view.options[1] and row.answer == view.options[1]
    assert row.answered_by == "human"
    qloop.wait_until(lambda: window.counter.text().endswith(" of 2"))

    # Abort run stops the current one's run
    target = window.current()
    assert target is not None
    finished: list[tuple[str, str]] = []
    controller.run_finished.connect(lambda r, s, _m: finished.append((r, s)))
    window.abort_button.click()
    qloop.wait_until(lambda: (target.run_id, "cancelled") in finished)
    qloop.wait_until(lambda: window.counter.text() == "1 of 1")

    # Approve picks the first option (none looks affirmative) and "Approved"
    last = window.current()
    assert last is not None
    window.approve_button.click()
    row = controller.journal.get_escalation(last.escalation_id)
    assert row is not None and row.answer == "Approved" and row.choice == last.options[0]
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
    window.reply.setText("Use the minimal list, please")
    window.reply_button.click()
    row = controller.journal.get_escalation(view.escalation_id)
    assert row is not None and row.answer == "Use the minimal list, please" and row.choice is None


def test_option_mapping() -> None:
    assert affirmative_option(("No, skip it", "Yes, go ahead")) == "Yes, go ahead"
    assert affirmative_option(("Minimal", "Longer")) == "Minimal"
    assert affirmative_option(()) is None
    assert negative_option(("Yes", "Deny the change")) == "Deny the change"
    assert negative_option(("Minimal", "Longer")) is None
