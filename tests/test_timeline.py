"""The run timeline (agentray.timeline): built from live engine events and from the journal of a
real scripted run (the two agree), the fallback for runs journaled before ``agent_status``
events, and ``agentray show RUN --timeline`` through the real CLI."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agent_scripts import complete, spawned_ids, worker
from agentray import events as ev
from agentray.journal import Journal
from agentray.simulator import Rule, ScriptedPolicy, SimRequest, Simulator, text, tool_use
from agentray.timeline import (
    AgentStatus,
    Timeline,
    TimelineBuilder,
    axis_ticks,
    load_timeline,
    render_timeline,
)
from conftest import SimEngineFactory, cli_env

S = AgentStatus
KEY = "sk-ant-timeline-0123"
TITLES = {
    "a002": "Explore the parser",
    "a003": "Needs the spec",
    "a004": "Fix parser",
    "a005": "Broken reply",
}


# ------------------------------------------------------------------------------- the scripted run
def _orchestrate(req: SimRequest) -> list[dict[str, Any]]:
    """Two workers at once, a third that depends on the first, a fourth whose reply the API
    rejects; (with ASK in the goal) a question to the person; one blocker resumed; then finish."""
    ids = spawned_ids(req)
    if not ids:
        return [
            tool_use("spawn_agent", task="W-FIRST read the parser", title=TITLES["a002"]),
            tool_use("spawn_agent", task="W-BLOCK needs the spec", title=TITLES["a003"]),
        ]
    if len(ids) == 2:
        return [
            tool_use(
                "spawn_agent", task="W-SECOND fix it", title=TITLES["a004"], depends_on=[ids[0]]
            )
        ]
    if len(ids) == 3:
        return [tool_use("spawn_agent", task="W-BROKEN reply badly", title=TITLES["a005"])]
    if "ASK" in req.first_user_text and not req.tool_results_named("escalate"):
        return [
            tool_use(
                "escalate",
                question="Keep the old parser API?",
                context="Two callers use it.",
                options=["Keep it", "Drop it"],
            )
        ]
    last = req.last_tool_results[-1] if req.last_tool_results else None
    if last is not None and last.tool_name == "finish" and last.is_error:
        return [tool_use("finish", summary="the parser is fixed", outcome="failure")]
    if last is not None and last.tool_name == "await_agents" and not last.is_error:
        blocked = [a["agent_id"] for a in last.json["agents"] if a["status"] == "blocked"]
        if blocked and not req.tool_results_named("resume_agent"):
            return [tool_use("resume_agent", agent_id=blocked[0], message="use the v2 spec")]
        if not last.json["still_active"]:
            return [tool_use("finish", summary="the parser is fixed", outcome="failure")]
    return [tool_use("await_agents", agent_ids=ids)]


def scripted_policy() -> ScriptedPolicy:
    return ScriptedPolicy(
        [
            Rule(match="You are the orchestrator", turns=[_orchestrate] * 40),
            worker(
                "W-FIRST",
                [tool_use("report_progress", note="reading")],
                [tool_use("report_progress", note="still reading")],
                complete("the parser is a state machine"),
            ),
            worker(
                "W-BLOCK",
                [tool_use("report_blocker", description="the spec is missing")],
                complete("done with the v2 spec"),
            ),
            # slow: the orchestrator's last await_agents waits for it
            worker(
                "W-SECOND",
                *[[tool_use("report_progress", note=f"fixing, step {n}")] for n in range(6)],
                complete("fixed"),
            ),
            # a whitespace-only text block: the API rejects the next request (400), the agent fails
            worker("W-BROKEN", [text(" "), tool_use("report_progress", note="trying")]),
        ]
    )


def _check_scripted(timeline: Timeline) -> None:
    """What the scripted run must look like, whichever source the timeline came from."""
    ids = [a.agent_id for a in timeline.agents]
    assert ids == ["a001", "a002", "a003", "a004", "a005"]
    assert [a.title for a in timeline.agents[1:]] == list(TITLES.values())
    orchestrator, first, blocker, dependent, broken = timeline.agents
    assert orchestrator.role == "orchestrator" and orchestrator.parent_id is None
    assert {a.parent_id for a in timeline.agents[1:]} == {"a001"}
    assert orchestrator.states()[:2] == [S.QUEUED, S.RUNNING]
    assert S.WAITING in orchestrator.states() and orchestrator.status == S.FAILED
    assert first.states() == [S.QUEUED, S.RUNNING, S.DONE]
    assert blocker.states() == [S.QUEUED, S.RUNNING, S.BLOCKED, S.RUNNING, S.DONE]
    # queued until its dependency was done, then it ran
    assert dependent.depends_on == ("a002",)
    assert dependent.states() == [S.QUEUED, S.RUNNING, S.DONE]
    assert first.ended_at is not None
    assert dependent.segments[1].start >= first.ended_at - 0.01
    assert broken.states() == [S.QUEUED, S.RUNNING, S.FAILED] and broken.ended_at is not None
    assert [(d.agent_id, d.depends_on) for d in timeline.dependencies] == [("a004", "a002")]
    for agent in timeline.agents:
        for before, after in zip(agent.segments, agent.segments[1:], strict=False):
            assert before.end == after.start and before.state != after.state
        assert agent.segments[0].start == pytest.approx(agent.created_at)
    assert not timeline.live
    assert timeline.end >= max(a.ended_at or 0 for a in timeline.agents)


async def test_live_events_and_the_journal_give_the_same_timeline(
    sim_engine: SimEngineFactory,
) -> None:
    se = sim_engine(scripted_policy(), latency_s=0.03)
    run_id, outcome = await se.run(timeout=30)
    assert outcome.status == "failed", outcome

    started = se.events.of(ev.RunStarted)[0]
    live = TimelineBuilder(run_id, started.ts)
    changed = [live.feed(e) for e in se.events.events]
    assert any(changed)
    assert not live.feed(ev.Notice(run_id="another-run", level="info", message="not ours"))
    from_events = live.snapshot(time.time())
    from_journal = load_timeline(se.journal, run_id).snapshot(time.time())
    _check_scripted(from_events)
    _check_scripted(from_journal)
    # both sources tell the same story, to the few milliseconds between a journal write and
    # the event published after it
    for a, b in zip(from_events.agents, from_journal.agents, strict=True):
        assert a.agent_id == b.agent_id and a.states() == b.states()
        assert len(a.segments) == len(b.segments)
        for x, y in zip(a.segments, b.segments, strict=True):
            assert x.state == y.state
            assert x.start == pytest.approx(y.start, abs=0.05)
            assert x.end == pytest.approx(y.end, abs=0.05)
    # the journal path reads the status events past list_events' default limit of 500
    assert len(se.journal.list_events_of(run_id, ["agent_status"])) == sum(
        len(a.states()) - 1 for a in from_journal.agents
    )


def test_a_run_journaled_before_status_events_falls_back_to_row_times(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "old.sqlite3")
    journal.create_run("r0101-0ld1", goal="old", workspace=str(tmp_path), config={}, pid=1)
    for agent_id, depends in (("a001", []), ("a002", ["a001"]), ("a003", [])):
        journal.create_agent(
            "r0101-0ld1", agent_id, parent_id=None, role="worker", title=f"job {agent_id}",
            task="t", depth=1, depends_on=depends, mitigates=None, status="queued", model="m",
        )  # fmt: skip
    t0 = journal.get_run("r0101-0ld1").started_at  # type: ignore[union-attr]
    created = {a.agent_id: a.created_at for a in journal.list_agents("r0101-0ld1")}
    journal.update_agent("r0101-0ld1", "a001", status="done", started_at=t0 + 1, ended_at=t0 + 5)
    journal.update_agent("r0101-0ld1", "a002", status="failed", started_at=t0 + 6, ended_at=t0 + 9)
    # a003 never started: the run was stopped while it was queued
    journal.update_run("r0101-0ld1", status="cancelled", ended_at=t0 + 10)
    assert journal.list_events_of("r0101-0ld1", ["agent_status"]) == []

    timeline = load_timeline(journal, "r0101-0ld1").snapshot(time.time())
    one, two, three = timeline.agents
    assert [(s.state, s.start, s.end) for s in one.segments] == [
        (S.QUEUED, created["a001"], t0 + 1),
        (S.RUNNING, t0 + 1, t0 + 5),
    ]
    assert one.status == S.DONE and one.ended_at == t0 + 5
    assert [(s.state, s.end) for s in two.segments] == [(S.QUEUED, t0 + 6), (S.RUNNING, t0 + 9)]
    assert two.status == S.FAILED
    assert [(s.state, s.end) for s in three.segments] == [(S.QUEUED, t0 + 10)]
    assert three.status == S.QUEUED and three.ended_at is None
    assert timeline.end == t0 + 10 and not timeline.live
    with pytest.raises(KeyError):
        load_timeline(journal, "r0101-none")


def _spawn(agent_id: str, ts: float, **kw: Any) -> ev.AgentSpawned:
    fields: dict[str, Any] = {"parent_id": "a001", "role": "worker", "title": agent_id, "depth": 1}
    fields.update(kw)
    return ev.AgentSpawned(run_id="r1", agent_id=agent_id, ts=ts, **fields)


def _status(agent_id: str, ts: float, status: str, previous: str) -> ev.AgentStatusChanged:
    return ev.AgentStatusChanged(
        run_id="r1", agent_id=agent_id, ts=ts, status=status, previous=previous
    )


def test_fed_events_grow_the_open_segments_until_the_run_ends() -> None:
    builder = TimelineBuilder("r1", 100.0)
    assert builder.feed(_spawn("a001", 100.0, parent_id=None, role="orchestrator", depth=0))
    assert builder.feed(_status("a001", 100.5, "running", "queued"))
    assert builder.feed(_spawn("a002", 101.0, depends_on=("a001",)))
    assert not builder.feed(_spawn("a002", 101.0))  # known already
    assert not builder.feed(_status("a001", 100.6, "running", "queued"))  # a late duplicate
    assert builder.feed(
        ev.EscalationRaised(
            run_id="r1", ts=103.0, escalation_id="r1.e1", agent_id="a001", kind="question",
            question="?", context="", options=("a", "b"),
        )
    )  # fmt: skip
    assert builder.feed(_status("a001", 103.0, "waiting", "running"))

    at_110 = builder.snapshot(110.0)
    assert at_110.live and at_110.end == 110.0
    orchestrator = at_110.agent("a001")
    assert [(s.state, s.start, s.end) for s in orchestrator.segments] == [
        (S.QUEUED, 100.0, 100.5),
        (S.RUNNING, 100.5, 103.0),
        (S.WAITING, 103.0, 110.0),
    ]
    (mark,) = orchestrator.escalations
    assert (mark.escalation_id, mark.raised_at, mark.answered_at) == ("r1.e1", 103.0, None)
    assert builder.snapshot(120.0).agent("a001").segments[-1].end == 120.0  # still waiting
    assert at_110.agent("a002").segments == at_110.agent("a002").segments[:1]
    assert at_110.agent("a002").segment_at(105.0).state == S.QUEUED  # type: ignore[union-attr]

    assert builder.feed(
        ev.EscalationAnswered(
            run_id="r1", ts=121.0, escalation_id="r1.e1", agent_id="a001", answer="a",
            choice="a", answered_by="human",
        )
    )  # fmt: skip
    builder.feed(_status("a001", 121.0, "running", "waiting"))
    builder.feed(_status("a002", 122.0, "running", "queued"))
    builder.feed(_status("a002", 125.0, "blocked", "running"))
    builder.feed(_status("a002", 126.0, "cancelled", "blocked"))
    builder.feed(_status("a001", 127.0, "done", "running"))
    assert builder.feed(
        ev.RunFinished(run_id="r1", ts=127.5, status="succeeded", summary="", cost_usd=0.0)
    )

    final = builder.snapshot(999.0)
    assert not final.live and final.end == 127.5  # "now" no longer matters
    assert final.agent("a001").escalations[0].answered_at == 121.0
    assert final.agent("a001").ended_at == 127.0 and final.agent("a001").status == S.DONE
    assert final.agent("a002").states() == [S.QUEUED, S.RUNNING, S.BLOCKED, S.CANCELLED]
    assert final.agent("a002").time_in(S.BLOCKED) == 1.0
    assert [(d.agent_id, d.depends_on) for d in final.dependencies] == [("a002", "a001")]
    # a resume reopens it
    assert builder.feed(
        ev.RunStarted(run_id="r1", ts=200.0, goal="g", workspace="w", model="m",
                      build_command=None, resumed=True)
    )  # fmt: skip
    assert builder.snapshot(205.0).live


def test_the_text_fits_the_width_and_falls_back_to_ascii() -> None:
    builder = TimelineBuilder("r1", 0.0)
    builder.add_agent(
        "a001", role="orchestrator", title="Orchestrate the whole refactor of the parser",
        parent_id=None, depends_on=(), depth=0, created_at=0.0,
    )  # fmt: skip
    builder.change("a001", 1.0, "running")
    builder.add_agent(
        "a002", role="worker", title="Fix parser", parent_id="a001", depends_on=("a001",),
        depth=1, created_at=2.0,
    )  # fmt: skip
    builder.change("a002", 30.0, "running")
    builder.change("a002", 40.0, "waiting")
    builder.raise_escalation("e1", "a002", "question", 41.0)
    builder.change("a002", 50.0, "running")
    builder.change("a002", 60.0, "failed")
    builder.change("a001", 61.0, "done")
    builder.finish(61.0)
    timeline = builder.snapshot(61.0)
    for width in (20, 40, 57, 80, 132, 250):
        for unicode in (True, False):
            lines = render_timeline(timeline, width=width, unicode=unicode)
            rows = [line for line in lines if line.startswith(("a001", "a002"))]
            assert [r[:4] for r in rows] == ["a001", "a002"]
            assert all(len(line) <= max(width, 40) for line in lines), (width, lines)
            if not unicode:
                assert all(line.isascii() for line in lines)
    wide = render_timeline(timeline, width=132)
    row = next(line for line in wide if line.startswith("a002"))
    bar = row.split("Fix parser", 1)[1].strip().split(" ")[0]
    # queued, then running, waiting with its escalation, running again, and the failure mark
    assert bar.lstrip("░")[0] == "█" and "▒" in bar and "!" in bar and bar.endswith("✗")
    assert bar.index("░") < bar.index("█") < bar.index("▒") < bar.rindex("█")
    assert row.endswith("failed   ← a001")
    plain = render_timeline(timeline, width=132, unicode=False)
    row = next(line for line in plain if line.startswith("a002"))
    assert "." in row and "#" in row and "=" in row and "X" in row and row.endswith("<- a001")
    assert axis_ticks(61.0, 7) == [0, 10, 20, 30, 40, 50, 60]
    assert axis_ticks(0.4, 5) == [0, 0.1, 0.2, 0.3, 0.4]
    assert axis_ticks(4000, 3) == [0, 1800, 3600]


# -------------------------------------------------------------------------------------- the CLI
def _agentray(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentray.cli", *args], env=env, capture_output=True, text=True,
        stdin=subprocess.DEVNULL, timeout=90,
    )  # fmt: skip


def _bars(out: str, marker: str) -> dict[str, tuple[str, str]]:
    """agent id -> (its bar, the rest of the row after the bar)."""
    rows: dict[str, tuple[str, str]] = {}
    for line in out.splitlines():
        if line[:1] == "a" and line[1:4].isdigit():
            agent_id = line[:4]
            title = next(t for t in [*TITLES.values(), "Orchestrator"] if t in line)
            after = line.split(title, 1)[1].strip()
            bar, _, rest = after.partition(" ")
            rows[agent_id] = (bar, rest.strip())
    assert rows, out
    return rows


def test_show_timeline_of_a_real_run(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    env = cli_env(tmp_path, KEY)
    env["COLUMNS"] = "120"
    with Simulator(scripted_policy(), api_keys={KEY}, latency_s=0.05) as sim:
        run = _agentray(
            ["run", "GOAL: fix the parser, ASK first", "--dir", str(ws), "--base-url", sim.base_url,
             "--model", "sim-model", "--on-escalation", "deny", "--no-sandbox"],
            env,
        )  # fmt: skip
    assert run.returncode == 1, run.stderr  # the broken worker's failure fails the run
    run_id = Journal(tmp_path / "journal.sqlite3").list_runs()[0].run_id

    shown = _agentray(["show", run_id[:7], "--timeline"], env)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith(f"{run_id}  ended  ") and lines[0].endswith("5 agents")
    assert "█ running" in lines[1] and "! escalation" in lines[1]
    assert all(len(line) <= 120 for line in lines)
    rows = _bars(shown.stdout, "█")
    assert list(rows) == ["a001", "a002", "a003", "a004", "a005"]
    assert [line[:4] for line in lines if line[:4] in rows] == list(rows)  # one row each
    orchestrator, first, blocker, dependent, broken = (rows[a] for a in rows)
    assert orchestrator[1] == "failed" and "!" in orchestrator[0] and "▒" in orchestrator[0]
    assert first[1] == "done" and "█" in first[0]
    assert blocker[1] == "done" and "▓" in blocker[0]
    assert dependent[1].split() == ["done", "←", "a002"]
    bar = dependent[0]
    assert bar.index("░") < bar.index("█")  # queued until a002 was done
    assert broken[1] == "failed" and broken[0].endswith("✗")

    ascii_env = {**env, "PYTHONIOENCODING": "ascii"}
    plain = _agentray(["show", run_id, "--timeline"], ascii_env)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.isascii()
    rows = _bars(plain.stdout, "#")
    assert rows["a004"][1].split() == ["done", "<-", "a002"] and rows["a005"][0].endswith("X")
    assert "%" in rows["a003"][0] and "!" in rows["a001"][0]
