"""The tray icon's states and its menu, on real runs of the demo scenario."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentray.demo import DemoSession
from agentray.simulator import Policy, Reply, SimRequest
from agentray.ui.app import TrayApp
from agentray.ui.controller import AppController
from agentray.ui.icons import STATES, badge_text, render_pixmap, state_icon
from conftest import demo_workspace

if TYPE_CHECKING:
    from conftest import QLoop


def test_icons_render_at_several_sizes(qapp) -> None:
    for state in STATES:
        icon = state_icon(state, 3)
        assert len(icon.availableSizes()) >= 6
        assert not icon.pixmap(22, 22).isNull()
    badged = render_pixmap("working", 32, "3").toImage()
    plain = render_pixmap("working", 32).toImage()
    assert badged != plain  # the badge is drawn
    assert badge_text(0) == "" and badge_text(4) == "4" and badge_text(12) == "9+"


class HoldTheQuestion:
    """The demo's model, except that the orchestrator's escalate turn waits (on the simulator's
    server thread) until the test releases it: the run stays in its working state until then."""

    def __init__(self, inner: Policy) -> None:
        self.inner = inner
        self.reached = threading.Event()
        self.release = threading.Event()

    def respond(self, request: SimRequest) -> Any:
        reply = self.inner.respond(request)
        content = reply.content if isinstance(reply, Reply) else reply
        if any(b.get("type") == "tool_use" and b.get("name") == "escalate" for b in content):
            self.reached.set()
            self.release.wait(30)
        return reply


def test_states_menu_and_quit_text(
    controller: AppController, demo: DemoSession, qloop: QLoop, qtbot
) -> None:
    shell = TrayApp(controller)
    tray = shell.tray
    states: list[tuple[str, int]] = []
    tray.state_changed.connect(lambda s, n: states.append((s, n)))
    assert tray.state == "idle"
    tray.menu.aboutToShow.emit()
    assert tray.action_texts()[-1] == "Quit"
    hold = HoldTheQuestion(demo.simulator.policy)
    demo.simulator.policy = hold
    try:
        run_id = qloop.run(controller.start_run(demo.config()))
        # the orchestrator is about to ask the person: the run works, nothing waits for the person yet
        qloop.wait_until(lambda: hold.reached.is_set())
        qloop.wait_until(lambda: tray.state == "working" and tray.count >= 1)
        assert "Agentray" in tray.icon.toolTip() and "running" in tray.icon.toolTip()
        tray.menu.aboutToShow.emit()  # rebuilt when it opens
        texts = tray.action_texts()
        assert "Quit (stops 1 run)" in texts
        [run_item] = [t for t in texts if t.startswith("Make the textkit")]
        assert "running" in run_item and "waiting" in run_item and "$" in run_item
        assert "  Open" in texts and "  Stop" in texts
        assert "Pending approvals (0)" in texts
    finally:
        hold.release.set()

    qloop.wait_until(lambda: tray.state == "attention")  # until the person answers
    tray.menu.aboutToShow.emit()
    approvals = tray.find_action("Pending approvals (1)")
    assert approvals is not None and approvals.isEnabled()
    approvals.trigger()
    assert shell.escalations.isVisible()
    assert shell.escalations.counter.text() == "1 of 1"
    shell.escalations.option_buttons[0].click()

    qloop.wait_until(lambda: tray.state == "idle", timeout=40)
    assert controller.journal.get_run(run_id).status == "succeeded"  # type: ignore[union-attr]
    seen = [s for s, _ in states]
    assert seen.index("working") < seen.index("attention") < len(seen) - 1 and seen[-1] == "idle"
    tray.menu.aboutToShow.emit()
    assert tray.action_texts()[-1] == "Quit"


def test_error_state_after_a_failed_run(controller: AppController, qloop: QLoop) -> None:
    shell = TrayApp(controller)
    controller.run_finished.emit("r-x", "failed", "the build kept failing")
    assert shell.tray.state == "error"
    assert "failed" in shell.tray.icon.toolTip()


def test_preset_item_starts_a_run(
    controller: AppController, demo: DemoSession, qloop: QLoop, tmp_path: Path
) -> None:
    shell = TrayApp(controller)
    config = demo.config()
    workspace = demo_workspace(tmp_path, "preset")
    controller.settings.save_preset(
        "Fix textkit",
        config.goal,
        str(workspace),
        build_command=config.build_command,
        model=config.model,
    )
    shell.tray.menu.aboutToShow.emit()
    action = shell.tray.find_action("▶ Fix textkit")
    assert action is not None
    action.trigger()
    qloop.wait_until(lambda: bool(controller.active_runs()))
    [run] = controller.active_runs()
    assert run.workspace == str(workspace) and run.goal == config.goal
    controller.stop_all()
    qloop.wait_until(lambda: not controller.active_runs())


def test_a_recent_run_starts_again_in_one_click(
    controller: AppController, demo: DemoSession, qloop: QLoop, tmp_path: Path
) -> None:
    shell = TrayApp(controller)
    workspace = demo_workspace(tmp_path, "again")
    first = qloop.run(controller.start_run(demo.config(workspace=str(workspace), max_agents=7)))
    controller.stop_run(first)
    qloop.wait_until(lambda: not controller.active_runs())
    shell.tray.menu.aboutToShow.emit()
    from agentray.ui.tray import again_label

    row = controller.journal.get_run(first)
    action = shell.tray.find_action(again_label(row))  # "↻ goal — …/again — just now"
    assert row is not None and "/again — " in again_label(row)
    assert action is not None
    action.trigger()
    qloop.wait_until(lambda: bool(controller.active_runs()))
    [run] = controller.active_runs()
    assert run.run_id != first and run.workspace == str(workspace)
    again = controller.journal.get_run(run.run_id)
    assert again is not None and again.config["max_agents"] == 7  # the same limits as before
    controller.stop_all()
    qloop.wait_until(lambda: not controller.active_runs())
