"""The offline demo's scripted model serves the demo's own run only. After the demo, "Start again"
and "New run…" use the real model (the key from the environment or keyring, the controller's base
URL), or, with no key, say so and offer to set one. Never the demo's script.

"The real model" is a second simulator here, one that only accepts the person's key and answers
every goal with one line of its own, so where each request went is plain."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtWidgets import QMenu
from pytestqt.qtbot import QtBot

from agentray.demo import DEMO_GOAL, DemoSession
from agentray.demo._scenario import NOT_THE_DEMO
from agentray.escalation import Answer
from agentray.journal import Journal
from agentray.simulator import Rule, ScriptedPolicy, SimRequest, Simulator, tool_use
from agentray.ui.app import TrayApp
from agentray.ui.controller import AppController, DemoRunning
from agentray.ui.new_run_dialog import NewRunDialog
from agentray.ui.settings import AppSettings
from agentray.ui.welcome import NoKeyPrompt
from conftest import QLoop

REAL_KEY = "sk-ant-the-persons-own-key"
REAL_SUMMARY = "Done by the real model."


def real_orchestrator(request: SimRequest) -> list[dict[str, Any]]:
    """Finish at once; where finishing needs a passing build first, run the build."""
    finishes = request.tool_results_named("finish")
    if finishes and finishes[-1].is_error and not request.tool_results_named("run_build"):
        return [tool_use("run_build")]
    return [tool_use("finish", outcome="success", summary=REAL_SUMMARY)]


@pytest.fixture
def real_model() -> Iterator[Simulator]:
    policy = ScriptedPolicy([Rule(match="You are the orchestrator", turns=[real_orchestrator] * 8)])
    simulator = Simulator(policy, api_keys={REAL_KEY})
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture
def tray_controller(
    qloop: QLoop, settings: AppSettings, tmp_path: Path, real_model: Simulator
) -> Iterator[AppController]:
    """The tray's controller as `agentray` makes it: no demo of its own, the real model's URL."""
    ctl = AppController(settings, Journal(tmp_path / "j.sqlite3"), base_url=real_model.base_url)
    yield ctl
    qloop.run(ctl.shutdown())


def _ask_answered(controller: AppController, qloop: QLoop, run_id: str) -> None:
    qloop.wait_until(lambda: any(v.run_id == run_id for v in controller.pending_escalations()))
    [view] = [v for v in controller.pending_escalations() if v.run_id == run_id]
    assert controller.answer_escalation(view.escalation_id, Answer(view.options[0].option_id, ""))


def _finished_demo(shell: TrayApp, demo: DemoSession, qloop: QLoop) -> str:
    """The demo, from the tray, to its end (the person answers its question)."""
    controller = shell.controller
    shell.demo_session = demo  # the fixture's session (it closes it)
    run_id = qloop.run(shell.start_demo())
    assert run_id is not None and run_id in controller.demo_runs
    _ask_answered(controller, qloop, run_id)
    qloop.wait_until(lambda: not controller.is_live(run_id), timeout=60)
    row = controller.journal.get_run(run_id)
    assert row is not None and row.status == "succeeded"
    return run_id


def _demo_again_action(shell: TrayApp) -> Any:
    shell.tray.menu.aboutToShow.emit()
    start = next(a.menu() for a in shell.tray.menu.actions() if a.text() == "Start again")
    assert isinstance(start, QMenu)
    [action] = [a for a in start.actions() if a.text().startswith("↻ Make the textkit")]
    return action


def _newest_other_run(controller: AppController, known: set[str]) -> Any:
    rows = [r for r in controller.journal.list_runs(limit=20) if r.run_id not in known]
    return rows[0] if rows else None


def test_after_the_demo_start_again_and_new_run_use_the_real_model(
    qtbot: QtBot,
    qloop: QLoop,
    tray_controller: AppController,
    demo: DemoSession,
    real_model: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", REAL_KEY)
    ctl = tray_controller
    shell = TrayApp(ctl)
    demo_run = _finished_demo(shell, demo, qloop)
    qtbot.addWidget(shell.windows["dashboard"])
    demo_calls = len(demo.simulator.message_requests)
    assert demo_calls > 0 and real_model.message_requests == []

    # "Start again" on the finished demo: the same goal and folder, on the real model.
    _demo_again_action(shell).trigger()
    qloop.wait_until(lambda: _newest_other_run(ctl, {demo_run}) is not None)
    again = _newest_other_run(ctl, {demo_run})
    qloop.wait_until(lambda: not ctl.is_live(again.run_id), timeout=60)
    again = ctl.journal.get_run(again.run_id)
    assert again is not None and again.goal == DEMO_GOAL and again.workspace == str(demo.workspace)
    assert again.status == "succeeded" and again.summary == REAL_SUMMARY
    assert len(demo.simulator.message_requests) == demo_calls  # the script played no more
    real_calls = len(real_model.message_requests)
    assert 1 <= real_calls <= 3  # far from the 80-call cap of a script that does not fit

    # "New run…" with another goal: the dialog, then the real model again.
    shell.open_new_run()
    dialog = shell.windows["new_run"]
    assert isinstance(dialog, NewRunDialog)
    qtbot.addWidget(dialog)
    folder = tmp_path / "words"
    folder.mkdir()
    dialog.goal.setPlainText("Count the words in README.md")
    dialog.folder.setCurrentText(str(folder))
    dialog.build.setText("")
    dialog.start_button.click()
    known = {demo_run, again.run_id}
    qloop.wait_until(lambda: _newest_other_run(ctl, known) is not None)
    new = _newest_other_run(ctl, known)
    qloop.wait_until(lambda: not ctl.is_live(new.run_id), timeout=60)
    new = ctl.journal.get_run(new.run_id)
    assert new is not None and new.goal == "Count the words in README.md"
    assert new.status == "succeeded" and new.summary == REAL_SUMMARY
    assert len(demo.simulator.message_requests) == demo_calls
    assert len(real_model.message_requests) > real_calls


def test_after_the_demo_without_a_key_it_says_so_and_offers_to_set_one(
    qtbot: QtBot,
    qloop: QLoop,
    tray_controller: AppController,
    demo: DemoSession,
    real_model: Simulator,
) -> None:
    ctl = tray_controller
    shell = TrayApp(ctl)
    demo_run = _finished_demo(shell, demo, qloop)
    qtbot.addWidget(shell.windows["dashboard"])
    demo_calls = len(demo.simulator.message_requests)
    assert not ctl.has_key()  # the demo's engine is not a key

    shell.open_new_run()
    assert "new_run" not in shell.windows
    prompt = shell.windows["no_key"]
    assert isinstance(prompt, NoKeyPrompt) and prompt.isVisible()
    qtbot.addWidget(prompt)
    assert prompt.text() == "No API key is set."
    prompt.set_key_button.click()  # "Set a key…": Settings, where the key goes
    qtbot.waitUntil(lambda: "settings" in shell.windows and shell.windows["settings"].isVisible())
    qtbot.addWidget(shell.windows["settings"])
    assert not prompt.isVisible()

    # "Start again" on the demo: no run starts, the same offer comes up.
    del shell.windows["no_key"]
    _demo_again_action(shell).trigger()
    qloop.wait_until(lambda: "no_key" in shell.windows)
    again_prompt = shell.windows["no_key"]
    qtbot.addWidget(again_prompt)
    assert again_prompt.isVisible()
    assert [r.run_id for r in ctl.journal.list_runs()] == [demo_run]
    assert len(demo.simulator.message_requests) == demo_calls
    assert real_model.message_requests == []


def test_while_the_demo_runs_a_run_of_ones_own_waits_for_it(
    qtbot: QtBot,
    qloop: QLoop,
    tray_controller: AppController,
    demo: DemoSession,
    real_model: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", REAL_KEY)
    ctl = tray_controller
    shell = TrayApp(ctl)
    shell.demo_session = demo
    demo_run = qloop.run(shell.start_demo())
    assert demo_run is not None
    qtbot.addWidget(shell.windows["dashboard"])
    folder = tmp_path / "mine"
    folder.mkdir()
    mine = ctl.settings.run_config("Count the words", folder)
    with pytest.raises(DemoRunning, match="demo is still running"):
        qloop.run(ctl.start_run(mine))
    assert real_model.message_requests == []
    # Asking for the demo again while it runs shows it, it does not start a second one.
    assert qloop.run(shell.start_demo()) == demo_run

    ctl.stop_run(demo_run)
    qloop.wait_until(lambda: not ctl.is_live(demo_run), timeout=40)
    run_id = qloop.run(ctl.start_run(mine))
    qloop.wait_until(lambda: not ctl.is_live(run_id), timeout=60)
    row = ctl.journal.get_run(run_id)
    assert row is not None and row.summary == REAL_SUMMARY
    assert len(real_model.message_requests) >= 1


def test_the_demo_script_plays_only_the_demo(
    qloop: QLoop, controller: AppController, demo: DemoSession, tmp_path: Path
) -> None:
    """Even a controller wholly on the demo's simulator (``use_demo``) gets no script for another
    goal: that run ends at once, failed, saying why."""
    folder = tmp_path / "other"
    folder.mkdir()
    run_id = qloop.run(
        controller.start_run(demo.config(goal="Count the words", workspace=str(folder)))
    )
    qloop.wait_until(lambda: not controller.is_live(run_id), timeout=40)
    row = controller.journal.get_run(run_id)
    assert row is not None and row.status == "failed" and row.summary == NOT_THE_DEMO
    assert len(demo.simulator.message_requests) == 1
