"""Dashboard: the agent tree of a live run (real engine + simulator), the progress view, the
coalesced refresh bound, Stop run, and a past run read back from the journal."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QStyle, QTreeWidgetItem

from agentray import events as ev
from agentray.demo import DemoSession
from agentray.states import Role
from agentray.ui.controller import AppController
from agentray.ui.dashboard import (
    COL_AGENTS,
    COL_GOAL,
    COL_RUN,
    EVENTS_KEPT,
    REFRESH_INTERVAL_MS,
    DashboardWindow,
)

if TYPE_CHECKING:
    from conftest import QLoop


@pytest.fixture(autouse=True)
def _collect_now() -> Iterator[None]:
    # Collect the windows' Python cycles now, not in the middle of a later test's event loop.
    yield
    gc.collect()


def _item_for(dash: DashboardWindow, agent_id: str) -> QTreeWidgetItem:
    return dash._agent_items[agent_id]


def test_live_run_tree_progress_and_stop(
    qtbot,
    controller: AppController,
    demo: DemoSession,
    qloop: QLoop,  # type: ignore[no-untyped-def]
) -> None:
    dash = DashboardWindow(controller)
    qtbot.addWidget(dash)
    run_id = qloop.run(controller.start_run(demo.config()))
    dash.show_run(run_id)
    assert dash.selected_run == run_id

    # The demo spawns three workers under the orchestrator (C only after A is done).
    qloop.wait_until(lambda: len(dash._agent_items) >= 4, timeout=30)
    view = controller.engine().run_view(run_id)  # the engine's frozen view, as the UI reads it
    assert view is not None
    orchestrator = next(a for a in view.agents if a.role == Role.ORCHESTRATOR)
    top = dash.agents.topLevelItem(0)
    assert top is not None and orchestrator.agent_id in top.text(0)
    assert dash.agents.topLevelItemCount() == 1
    assert top.childCount() >= 3
    workers = [a for a in view.agents if a.parent_id == orchestrator.agent_id]
    child_ids = {
        top.child(i).text(0).rsplit("(", 1)[1].rstrip(")") for i in range(top.childCount())
    }
    assert {w.agent_id for w in workers} <= child_ids
    assert top.text(1) == orchestrator.status or top.text(1) in ("running", "waiting")

    # Select a worker: its progress file is shown (and re-read as it changes).
    worker = workers[0]
    dash.agents.setCurrentItem(_item_for(dash, worker.agent_id))
    assert dash.selected_agent == worker.agent_id
    qloop.wait_until(lambda: "Status:" in dash.progress_text())
    progress_path = Path(view.workspace) / worker.progress_file
    on_disk = progress_path.read_text(encoding="utf-8")
    assert dash.progress_text().splitlines()[0] == on_disk.splitlines()[0] == f"# {worker.title}"
    assert worker.title in dash.progress.toPlainText()
    qloop.wait_until(
        lambda: dash.progress_text() == progress_path.read_text(encoding="utf-8")
    )

    # Events of the run are listed; the machine load line is there.
    qloop.wait_until(lambda: dash.events.count() > 3)
    lines = [dash.events.item(i).text() for i in range(dash.events.count())]
    assert any("agent_spawned" in line for line in lines)
    assert dash.load_label.text().startswith("CPU ")
    assert dash.guard_label.text().startswith("Guard:")

    # Stop run: the run ends cancelled, in the engine and in the journal.
    assert dash.stop_run_button.isEnabled()
    dash.stop_run_button.click()
    qloop.wait_until(lambda: controller.journal.get_run(run_id).status == "cancelled", timeout=20)  # type: ignore[union-attr]
    qloop.wait_until(lambda: not controller.is_live(run_id))
    qloop.wait_until(lambda: not dash.stop_run_button.isEnabled())
    assert dash.resume_run_button.isEnabled()

    # A fresh window (e.g. after a restart) shows the same run from the journal.
    past = DashboardWindow(controller)
    qtbot.addWidget(past)
    past.show_run(run_id)
    assert past.selected_run == run_id
    ids = set(past._agent_items)
    assert {orchestrator.agent_id, worker.agent_id} <= ids
    run_item = past.runs.currentItem()
    assert run_item is not None and run_item.text(1) == "cancelled"


def test_refreshes_are_coalesced(qtbot, controller: AppController, qloop: QLoop) -> None:  # type: ignore[no-untyped-def]
    dash = DashboardWindow(controller)
    qtbot.addWidget(dash)
    dash.show_run("run-flood")
    before = dash.refresh_count
    total, batches = 6000, 40

    async def flood() -> float:
        start = time.monotonic()
        for batch in range(batches):
            for i in range(total // batches):
                n = batch * (total // batches) + i
                controller.event.emit(
                    ev.AgentProgress(
                        run_id="run-flood", agent_id=f"a{n % 60}", kind="UPDATE", note=f"step {n}"
                    )
                )
            await asyncio.sleep(0.01)  # let the loop breathe, as real event bursts do
        return time.monotonic() - start

    elapsed = qloop.run(flood())
    # the last coalesced refresh: the newest event is on screen
    qloop.wait_until(
        lambda: (
            dash.events.count() > 0
            and dash.events.item(dash.events.count() - 1).text().endswith(f"step {total - 1}")
        )
    )
    refreshes = dash.refresh_count - before
    # At most one refresh per interval (plus slack for timer jitter), never one per event.
    bound = (elapsed + 0.3) / (REFRESH_INTERVAL_MS / 1000) + 3
    assert 1 <= refreshes <= bound, (refreshes, bound, elapsed)
    assert refreshes < total / 100
    # Every event reached the list, in order; only the newest EVENTS_KEPT are kept.
    assert total > EVENTS_KEPT and dash.events.count() == EVENTS_KEPT
    assert dash.events.item(EVENTS_KEPT - 1).text().endswith(f"step {total - 1}")
    assert dash.events.item(0).text().endswith(f"step {total - EVENTS_KEPT}")


def test_events_of_other_runs_do_not_touch_the_selected_run(
    qtbot,
    controller: AppController,
    qloop: QLoop,  # type: ignore[no-untyped-def]
) -> None:
    dash = DashboardWindow(controller)
    qtbot.addWidget(dash)
    dash.show_run("run-a")
    for n in range(50):
        controller.event.emit(ev.Notice(run_id="run-b", level="info", message=f"b{n}"))
    # an event of run-a after them: once it is on screen, the refresh has seen run-b's too
    controller.event.emit(ev.Notice(run_id="run-a", level="info", message="a0"))
    qloop.wait_until(lambda: dash.events.count() > 0)
    assert dash.events.count() == 1 and dash.events.item(0).text().endswith("a0")
    dash.show_run("run-b")  # switching shows what arrived for run-b meanwhile
    assert dash.events.count() == 50


def test_past_runs_show_their_goal_and_agents_at_the_default_size(
    qtbot, offline_controller: AppController
) -> None:  # type: ignore[no-untyped-def]
    journal = offline_controller.journal
    goal = "Make the parser handle nested quotes, then fix the three failing tests\nand more"
    journal.create_run("r0521-ab12", goal=goal, workspace="/tmp", config={}, pid=1)
    for n in range(1, 5):
        journal.create_agent(
            "r0521-ab12", f"a00{n}", parent_id=None if n == 1 else "a001", role="worker",
            title=f"job {n}", task="t", depth=1, depends_on=[], mitigates=None, status="done",
            model="m",
        )  # fmt: skip
    journal.update_run("r0521-ab12", status="succeeded", ended_at=time.time())
    journal.create_run("r0521-cd34", goal="One agent", workspace="/tmp", config={}, pid=1)
    journal.create_agent(
        "r0521-cd34", "a001", parent_id=None, role="orchestrator", title="o", task="t", depth=0,
        depends_on=[], mitigates=None, status="failed", model="m",
    )  # fmt: skip
    journal.update_run("r0521-cd34", status="failed", ended_at=time.time())

    dash = DashboardWindow(offline_controller)
    qtbot.addWidget(dash)
    dash.show()
    assert dash.windowTitle() == "Dashboard — Agentray"  # Qt adds no second "Agentray"
    qtbot.waitUntil(lambda: dash.runs.topLevelItemCount() == 2)
    items = {
        str(
            dash.runs.topLevelItem(i).data(COL_RUN, Qt.ItemDataRole.UserRole)
        ): dash.runs.topLevelItem(i)
        for i in range(2)
    }
    assert items["r0521-ab12"].text(COL_AGENTS) == "4 agents"
    assert items["r0521-cd34"].text(COL_AGENTS) == "1 agent"
    item = items["r0521-ab12"]
    assert item.toolTip(COL_GOAL) == goal
    # what the view draws in the Goal column at the default window size: a readable start of it
    width = dash.runs.header().sectionSize(COL_GOAL)
    margin = dash.runs.style().pixelMetric(QStyle.PixelMetric.PM_FocusFrameHMargin) + 1
    shown = dash.runs.fontMetrics().elidedText(
        item.text(COL_GOAL), Qt.TextElideMode.ElideRight, width - 2 * margin
    )
    assert shown.startswith("Make the parser handle nested"), shown
    assert item.text(COL_GOAL) == goal.splitlines()[0]
