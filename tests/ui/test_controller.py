"""AppController against the real engine on the offline simulator (the demo's scripted run)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from agentray import events as ev
from agentray.demo import DemoSession
from agentray.errors import NoApiKeyError
from agentray.escalation import Answer
from agentray.journal import Journal
from agentray.ui.controller import AppController
from agentray.ui.settings import AppSettings

if TYPE_CHECKING:
    from conftest import QLoop


def test_demo_run_signals_escalation_and_finish(
    controller: AppController, demo: DemoSession, qloop: QLoop, settings: AppSettings
) -> None:
    events: list[ev.Event] = []
    runs_changed: list[int] = []
    escalations_changed: list[int] = []
    finished: list[tuple[str, str, str]] = []
    controller.event.connect(events.append)
    controller.runs_changed.connect(lambda: runs_changed.append(1))
    controller.escalations_changed.connect(lambda: escalations_changed.append(1))
    controller.run_finished.connect(lambda r, s, m: finished.append((r, s, m)))

    run_id = qloop.run(controller.start_run(demo.config()))
    assert [s.run_id for s in controller.active_runs()] == [run_id]
    assert settings.recent_goals[0] == demo.config().goal

    qloop.wait_until(lambda: bool(controller.pending_escalations()))
    [view] = controller.pending_escalations()
    assert view.live and view.run_id == run_id and view.kind == "question"
    assert "stop words" in view.question and len(view.options) == 2
    assert "# " in view.progress_tail  # the escalating agent's progress file
    qloop.wait_until(lambda: bool(escalations_changed))  # coalesced, a few ms later
    summary = controller.active_runs()[0]
    assert summary.total >= 3 and summary.status == "running"

    assert controller.answer_escalation(view.escalation_id, Answer(view.options[0].option_id, "Minimal"))
    qloop.wait_until(lambda: bool(finished), timeout=40)
    assert finished[0][:2] == (run_id, "succeeded")
    assert controller.active_runs() == []
    assert controller.pending_escalations() == []
    row = controller.journal.get_escalation(view.escalation_id)
    assert row is not None and row.choice == view.options[0].label and row.answered_by == "human"
    types = {type(e) for e in events}
    assert {ev.RunStarted, ev.AgentSpawned, ev.EscalationRaised, ev.RunFinished} <= types
    # coalesced: far fewer runs_changed than engine events
    assert 0 < len(runs_changed) < len(events)


def test_journal_only_escalation_resumed_and_answered(
    controller: AppController,
    demo: DemoSession,
    qloop: QLoop,
    settings: AppSettings,
    tmp_path: Path,
) -> None:
    run_id = qloop.run(controller.start_run(demo.config()))
    qloop.wait_until(lambda: bool(controller.pending_escalations()))
    escalation_id = controller.pending_escalations()[0].escalation_id
    qloop.run(controller.shutdown())  # quit the app: the run stays resumable
    assert controller.journal.get_run(run_id).status == "interrupted"  # type: ignore[union-attr]

    # "restart": a new controller sees the escalation from the journal only
    fresh = AppController(settings, Journal(tmp_path / "j.sqlite3"))
    fresh.use_demo(demo)
    [view] = fresh.pending_escalations()
    assert view.escalation_id == escalation_id and not view.live
    ok = qloop.run(fresh.resume_and_answer(run_id, escalation_id, Answer(view.options[0].option_id, "Minimal")))
    assert ok
    assert qloop.run(fresh.wait(run_id), timeout=40) == "succeeded"
    qloop.run(fresh.shutdown())


def test_no_key_raises(settings: AppSettings, tmp_path: Path, qloop: QLoop) -> None:
    ctl = AppController(settings, Journal(tmp_path / "j.sqlite3"))
    assert not ctl.has_key()
    with pytest.raises(NoApiKeyError):
        ctl.engine()
    assert not ctl.has_engine()


def test_stop_run_through_controller(
    controller: AppController, demo: DemoSession, qloop: QLoop
) -> None:
    finished: list[str] = []
    controller.run_finished.connect(lambda r, s, m: finished.append(s))
    run_id = qloop.run(controller.start_run(demo.config()))
    controller.stop_run(run_id)
    qloop.wait_until(lambda: bool(finished))
    assert finished == ["cancelled"]
    assert controller.journal.get_run(run_id).status == "cancelled"  # type: ignore[union-attr]
