"""The Timeline tab: fed engine events, it paints each state's colour where the model says; it
repaints at most ~10 times a second; in the dashboard it follows a live run of the real engine
without reading the journal per event, and shows a finished run from the journal."""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from PySide6.QtGui import QColor, QImage

from agentray import events as ev
from agentray.demo import DemoSession
from agentray.timeline import AgentStatus, Timeline, TimelineBuilder
from agentray.ui import dashboard as dashboard_module
from agentray.ui.controller import AppController
from agentray.ui.dashboard import DashboardWindow
from agentray.ui.timeline_view import (
    ESCALATION_COLOR,
    REPAINT_INTERVAL_MS,
    STATE_COLORS,
    TimelineView,
)

if TYPE_CHECKING:
    from conftest import QLoop

S = AgentStatus


@pytest.fixture(autouse=True)
def _collect_now() -> Iterator[None]:
    yield
    gc.collect()


def _spawn(agent_id: str, ts: float, **kw: Any) -> ev.AgentSpawned:
    fields: dict[str, Any] = {"parent_id": "a001", "role": "worker", "title": f"job {agent_id}"}
    fields.update(kw)
    return ev.AgentSpawned(run_id="r1", agent_id=agent_id, ts=ts, depth=1, **fields)


def _status(agent_id: str, ts: float, status: str, previous: str = "") -> ev.AgentStatusChanged:
    return ev.AgentStatusChanged(
        run_id="r1", agent_id=agent_id, ts=ts, status=status, previous=previous
    )


def _pixel(image: QImage, x: float, y: float) -> str:
    return image.pixelColor(round(x), round(y)).name()


def _center(view: TimelineView, agent_id: str, segment: int) -> tuple[float, float]:
    rect = view.segment_rect(agent_id, segment)
    return rect.center().x(), rect.center().y()


def _painted(image: QImage, view: TimelineView, agent_id: str, segment: int) -> str:
    """The colour most of a bar is painted in (a dependency line may cross one spot of it)."""
    rect = view.segment_rect(agent_id, segment)
    y = rect.center().y()
    colours = [_pixel(image, rect.left() + rect.width() * f, y) for f in (0.25, 0.5, 0.75)]
    return max(colours, key=colours.count)


def test_fed_events_are_painted_in_their_states_colours(qtbot) -> None:  # type: ignore[no-untyped-def]
    view = TimelineView()
    qtbot.addWidget(view)
    view.resize(900, 200)
    view.show()
    t0 = time.time() - 60
    view.set_builder(TimelineBuilder("r1", t0))
    assert view.timeline() is not None and view.timeline().agents == ()  # type: ignore[union-attr]
    for event in (
        _spawn("a001", t0, parent_id=None, role="orchestrator", title="Orchestrator"),
        _status("a001", t0 + 1, "running", "queued"),
        _spawn("a002", t0 + 2, title="Fix parser", depends_on=("a003",)),
        _spawn("a003", t0 + 2, title="Explore"),
        _status("a003", t0 + 3, "running", "queued"),
        _status("a001", t0 + 4, "waiting", "running"),
        _status("a003", t0 + 20, "done", "running"),
        _status("a002", t0 + 21, "running", "queued"),
        ev.EscalationRaised(
            run_id="r1", ts=t0 + 40, escalation_id="r1.e1", agent_id="a002", kind="question",
            question="Keep the API?", context="", options=("yes", "no"),
        ),
        _status("a002", t0 + 40, "waiting", "running"),
        ev.Notice(run_id="r2", level="info", message="another run's"),
    ):  # fmt: skip
        view.feed(event)
    qtbot.waitUntil(lambda: len(view.timeline().agents) == 3)  # type: ignore[union-attr]
    timeline = view.timeline()
    assert isinstance(timeline, Timeline) and timeline.live
    assert [a.agent_id for a in timeline.agents] == ["a001", "a002", "a003"]
    assert timeline.agent("a002").states() == [S.QUEUED, S.RUNNING, S.WAITING]
    assert timeline.agent("a003").states() == [S.QUEUED, S.RUNNING, S.DONE]
    assert [(d.agent_id, d.depends_on) for d in timeline.dependencies] == [("a002", "a003")]
    assert timeline.agent("a002").escalations[0].answered_at is None

    image = view.grab().toImage()
    running = STATE_COLORS[S.RUNNING]
    assert _pixel(image, *_center(view, "a002", 1)) == running
    assert _pixel(image, *_center(view, "a003", 1)) == running
    assert _pixel(image, *_center(view, "a001", 2)) == STATE_COLORS[S.WAITING]
    assert _pixel(image, *_center(view, "a002", 0)) == STATE_COLORS[S.QUEUED]
    # before a002 was spawned there is no bar
    blank = view.x_at(t0 + 1), _center(view, "a002", 0)[1]
    assert _pixel(image, *blank) != STATE_COLORS[S.QUEUED]
    # the escalation's mark over a002's bar where it was raised
    raised = view.x_at(t0 + 40), view.row_top(1) + 4
    assert QColor(_pixel(image, *raised)) == QColor(ESCALATION_COLOR)

    tip = view.tooltip_at(*_center(view, "a003", 1))
    assert tip.startswith("a003 Explore (worker)") and "running for 17s" in tip
    assert "depends on a003" in view.tooltip_at(*_center(view, "a002", 0))
    assert "escalation (question), waiting for an answer" in view.tooltip_at(*raised)

    # the run ends: no more "now", the open segments stop where it ended
    view.feed(_status("a002", t0 + 50, "failed", "waiting"))
    view.feed(_status("a001", t0 + 51, "done", "waiting"))
    view.feed(ev.RunFinished(run_id="r1", ts=t0 + 51, status="failed", summary="", cost_usd=0.0))
    qtbot.waitUntil(lambda: not view.timeline().live)  # type: ignore[union-attr]
    final = view.timeline()
    assert final is not None and final.end == t0 + 51
    assert final.agent("a002").status == S.FAILED and final.agent("a002").ended_at == t0 + 50
    image = view.grab().toImage()
    assert _pixel(image, *_center(view, "a002", 1)) == running


def test_bursts_of_events_repaint_at_most_ten_times_a_second(qtbot) -> None:  # type: ignore[no-untyped-def]
    view = TimelineView()
    qtbot.addWidget(view)
    view.resize(700, 400)
    view.show()
    t0 = time.time()
    view.set_builder(TimelineBuilder("r1", t0))
    before = view.snapshot_count
    states = ("running", "waiting")
    start = time.monotonic()
    fed = 0
    for batch in range(12):
        for i in range(200):
            n = batch * 200 + i
            agent = f"a{n % 12 + 1:03d}"
            view.feed(_spawn(agent, t0))
            view.feed(_status(agent, t0 + n * 0.001, states[(n // 12) % 2]))
            fed += 2
        last = n * 0.001

        def shows_batch(ts: float = last) -> bool:
            timeline = view.timeline()
            return timeline is not None and any(
                s.start >= t0 + ts for a in timeline.agents for s in a.segments
            )

        qtbot.waitUntil(shows_batch)
    elapsed = time.monotonic() - start
    snapshots = view.snapshot_count - before
    assert 12 <= snapshots <= elapsed / (REPAINT_INTERVAL_MS / 1000) + 3, (snapshots, elapsed)
    assert snapshots < fed / 100
    assert len(view.timeline().agents) == 12  # type: ignore[union-attr]


def test_dashboard_follows_a_live_run_then_reads_it_back_from_the_journal(
    qtbot,
    controller: AppController,
    demo: DemoSession,
    qloop: QLoop,
    monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    reads: list[str] = []
    real_load = dashboard_module.load_timeline

    def counting_load(journal: Any, run_id: str) -> TimelineBuilder:
        reads.append(run_id)
        return real_load(journal, run_id)

    monkeypatch.setattr(dashboard_module, "load_timeline", counting_load)
    dash = DashboardWindow(controller)
    qtbot.addWidget(dash)
    dash.resize(1180, 760)
    dash.show()
    assert dash.windowTitle() == "Dashboard — Agentray"
    run_id = qloop.run(controller.start_run(demo.config()))
    dash.show_run(run_id)
    dash.tabs.setCurrentWidget(dash.timeline_scroll)
    view = dash.timeline

    def live_workers_running() -> bool:
        timeline = view.timeline()
        return (
            timeline is not None
            and len(timeline.agents) >= 4
            and any(a.status == S.RUNNING for a in timeline.agents[1:])
        )

    qloop.wait_until(live_workers_running, timeout=30)
    def engine_agents() -> list[str]:  # from the engine's frozen view, as the UI reads it
        run_view = controller.engine().run_view(run_id)
        assert run_view is not None
        return sorted(a.agent_id for a in run_view.agents)

    # every agent the engine has is on the timeline, in spawn order (within a repaint)
    qloop.wait_until(
        lambda: [a.agent_id for a in view.timeline().agents] == engine_agents()  # type: ignore[union-attr]
    )
    assert view.timeline().live  # type: ignore[union-attr]

    def wide_running_bar() -> tuple[str, int] | None:
        timeline = view.timeline()
        assert timeline is not None
        for agent in timeline.agents[1:]:
            for i, segment in enumerate(agent.segments):
                wide = view.segment_rect(agent.agent_id, i).width() >= 12
                if segment.state == S.RUNNING and wide:
                    return agent.agent_id, i
        return None

    qloop.wait_until(lambda: wide_running_bar() is not None)
    found = wide_running_bar()  # and painted with no event in between
    image = view.grab().toImage()
    assert found is not None
    assert _painted(image, view, *found) == STATE_COLORS[S.RUNNING]

    # the demo asks a question; by then every worker event went through the view
    qloop.wait_until(lambda: bool(controller.pending_escalations()), timeout=60)
    qloop.wait_until(lambda: bool(view.timeline().escalations))  # type: ignore[union-attr]
    assert reads == [run_id]  # one journal read, when the run was selected; events did the rest
    controller.stop_run(run_id)
    qloop.wait_until(lambda: not controller.is_live(run_id), timeout=30)
    qloop.wait_until(lambda: not view.timeline().live and not view.pending)  # type: ignore[union-attr]
    live_view = view.timeline()
    assert live_view is not None

    # a fresh window, as after a restart: the timeline comes from the journal
    past = DashboardWindow(controller)
    qtbot.addWidget(past)
    past.resize(1180, 760)
    past.show()
    past.show_run(run_id)
    past.tabs.setCurrentWidget(past.timeline_scroll)
    assert reads == [run_id, run_id]
    again = past.timeline.timeline()
    assert again is not None and not again.live
    assert [a.agent_id for a in again.agents] == [a.agent_id for a in live_view.agents]
    for a, b in zip(again.agents, live_view.agents, strict=True):
        assert a.states() == b.states(), a.agent_id
    assert [m.escalation_id for m in again.escalations] == [
        m.escalation_id for m in live_view.escalations
    ]
    # the longest running stretch of a worker, painted in the running colour
    agent_id, index = max(
        ((a.agent_id, i) for a in again.agents[1:] for i, seg in enumerate(a.segments)
         if seg.state == S.RUNNING),
        key=lambda found: again.agent(found[0]).segments[found[1]].duration,
    )  # fmt: skip
    assert past.timeline.segment_rect(agent_id, index).width() >= 12
    qtbot.waitUntil(lambda: past.timeline.isVisible())
    image = past.timeline.grab().toImage()
    assert _painted(image, past.timeline, agent_id, index) == STATE_COLORS[S.RUNNING]


def test_a_run_going_on_in_another_process_is_reread_from_the_journal(
    qtbot, offline_controller: AppController
) -> None:  # type: ignore[no-untyped-def]
    journal = offline_controller.journal
    journal.create_run("r0101-e1se", goal="elsewhere", workspace="/tmp", config={}, pid=os.getpid())
    journal.create_agent(
        "r0101-e1se", "a001", parent_id=None, role="orchestrator", title="Orchestrator", task="t",
        depth=0, depends_on=[], mitigates=None, status="queued", model="m",
    )  # fmt: skip
    dash = DashboardWindow(offline_controller)
    qtbot.addWidget(dash)
    dash.show()
    dash.show_run("r0101-e1se")
    dash.tabs.setCurrentWidget(dash.timeline_scroll)
    first = dash.timeline.timeline()
    assert first is not None and first.live and first.agent("a001").states() == [S.QUEUED]

    # `agentray run` in another process: only the journal hears of it
    journal.update_agent("r0101-e1se", "a001", status="running", started_at=time.time())
    journal.add_event(
        "r0101-e1se",
        "agent_status",
        {"agent_id": "a001", "status": "running", "previous": "queued"},
    )
    qtbot.waitUntil(
        lambda: dash.timeline.timeline().agent("a001").status == S.RUNNING,  # type: ignore[union-attr]
        timeout=10_000,
    )
    assert dash.timeline.timeline().live  # type: ignore[union-attr]
