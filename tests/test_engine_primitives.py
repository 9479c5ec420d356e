"""The seed's primitives end to end: progress files, non-blocking spawn, event-driven monitors,
the active orchestrator, and agent ids unique within a workspace."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from agent_scripts import (
    Recorder,
    complete,
    orchestrator,
    policy,
    recording,
    result_of,
    say,
    spawned_ids,
    worker,
)
from agentray import events as ev
from agentray.simulator import tool_use
from conftest import SimEngineFactory
from edge_helpers import Gate

LOG_LINE = re.compile(r"^- \d\d:\d\d:\d\d \[(UPDATE|BLOCKER|RESULT)\] \S.*$")


def _header(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _log_lines(path: Path) -> list[str]:
    return [line for line in _header(path) if line.startswith("- ")]


async def test_progress_files_and_spawn_returns_at_once(
    sim_engine: SimEngineFactory, workspace: Path
) -> None:
    rec = Recorder()

    def orch_await(req):  # the spawn result is back while the worker still sleeps
        rec.note("spawn_result", result_of(req, "spawn_agent"))
        progress = workspace / "agent-responses" / f"{spawned_ids(req)[0]}.md"
        rec.note("worker_status_line", _header(progress)[2])
        return [tool_use("await_agents", agent_ids=spawned_ids(req))]

    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-SLEEP sleep one second", title="Sleeper")],
                orch_await,
                [tool_use("finish", summary="all slept", outcome="success")],
            ),
            worker(
                "W-SLEEP",
                [tool_use("report_progress", note="starting the nap")],
                [tool_use("run_command", command="sleep 1")],
                complete("slept one second"),
            ),
        )
    )
    run_id, outcome = await se.run()
    assert outcome.status == "succeeded", outcome

    spawn = rec["spawn_result"]
    assert not spawn.is_error
    assert set(spawn.json) == {"agent_id", "status", "progress_file"}
    assert spawn.json["agent_id"] == "a002"
    assert spawn.json["progress_file"] == "agent-responses/a002.md"
    assert spawn.json["status"] in ("queued", "running")
    # spawn never waits: the orchestrator's next request came while the worker was still sleeping
    worker_done = se.events.status_event("a002", "done").ts
    assert rec.times["spawn_result"] < worker_done - 0.5
    assert rec["worker_status_line"] in ("Status: queued", "Status: running")

    orch_file = workspace / "agent-responses" / "a001.md"
    work_file = workspace / "agent-responses" / "a002.md"
    orch_lines, work_lines = _header(orch_file), _header(work_file)
    assert orch_lines[0] == "# Orchestrator"
    assert orch_lines[1] == "Agent: a001   Parent: -   Role: orchestrator"
    assert orch_lines[2] == "Status: done"
    assert orch_lines[3] == "Task: GOAL: do the work"
    assert work_lines[:4] == [
        "# Sleeper",
        "Agent: a002   Parent: a001   Role: worker",
        "Status: done",
        "Task: W-SLEEP sleep one second",
    ]
    for path in (orch_file, work_file):
        assert re.search(r"^Status: done$", path.read_text(), re.MULTILINE)
        logs = _log_lines(path)
        assert logs and all(LOG_LINE.match(line) for line in logs), logs
    work_logs = _log_lines(work_file)
    assert "[UPDATE] starting the nap" in work_logs[0]
    assert "[UPDATE] ran `sleep 1` (exit 0)" in work_logs[1]
    assert work_logs[-1].endswith("[RESULT] slept one second")
    assert _log_lines(orch_file)[-1].endswith("[RESULT] all slept")

    rows = {a.agent_id: a for a in se.journal.list_agents(run_id)}
    assert rows["a002"].status == "done" and rows["a002"].summary == "slept one second"
    assert se.journal.get_run(run_id).status == "succeeded"
    # the status file went through the states in order
    assert se.events.statuses("a002") == ["running", "done"]


async def test_await_agents_wakes_within_milliseconds(sim_engine: SimEngineFactory) -> None:
    """Three rounds of spawn and await: each await returns within 50 ms of the agent's "done"
    event (a 250 ms poll would pass all three with a chance of 1 in 125)."""
    rec = Recorder()
    rounds = 3
    turns = []
    for i in range(rounds):
        turns.append([tool_use("spawn_agent", task=f"W-NAP {i} nap")])
        turns.append(lambda req: [tool_use("await_agents", agent_ids=spawned_ids(req)[-1:])])
    se = sim_engine(
        policy(
            orchestrator(
                *turns,
                recording(
                    rec,
                    "after_await",
                    lambda req: [tool_use("finish", summary="ok", outcome="success")],
                ),
            ),
            worker("W-NAP", [tool_use("run_command", command="sleep 0.3")], complete("napped")),
        )
    )
    _, outcome = await se.run()
    assert outcome.status == "succeeded"
    awaited = result_of(rec["after_await"], "await_agents").json
    assert awaited["timed_out"] is False
    assert awaited["agents"] == [{"agent_id": "a004", "status": "done", "summary": "napped"}]
    returned = [e for e in se.events.of(ev.ToolCallFinished) if e.tool == "await_agents"]
    gaps = [
        ended.ts - se.events.status_event(f"a00{i + 2}", "done").ts
        for i, ended in enumerate(returned)
    ]
    assert len(gaps) == rounds and all(0 <= gap <= 0.05 for gap in gaps), gaps


async def test_await_any_returns_on_first_and_blocker_returns_early(
    sim_engine: SimEngineFactory,
) -> None:
    rec = Recorder()

    def after_any(req):
        rec.note("any", result_of(req, "await_agents").json)
        # W-BLOCK is spawned now, so it blocks while W-SLOW still sleeps
        return [tool_use("spawn_agent", task="W-BLOCK blocks")]

    def after_all(req):
        rec.note("blocked", result_of(req, "await_agents").json)
        return [tool_use("resume_agent", agent_id="a004", message="use the defaults")]

    se = sim_engine(
        policy(
            orchestrator(
                [
                    tool_use("spawn_agent", task="W-FAST quick"),
                    tool_use("spawn_agent", task="W-SLOW slow"),
                ],
                lambda req: [tool_use("await_agents", agent_ids=spawned_ids(req), mode="any")],
                after_any,
                lambda req: [tool_use("await_agents", agent_ids=spawned_ids(req))],
                after_all,
                lambda req: [tool_use("await_agents", agent_ids=spawned_ids(req))],
                [tool_use("finish", summary="ok", outcome="success")],
            ),
            worker("W-FAST", complete("fast done")),
            worker("W-SLOW", [tool_use("run_command", command="sleep 1.5")], complete("slow done")),
            worker(
                "W-BLOCK",
                [tool_use("report_blocker", description="no config file")],
                complete("unblocked"),
            ),
        )
    )
    _, outcome = await se.run()
    assert outcome.status == "succeeded", outcome
    first = rec["any"]
    by_id = {a["agent_id"]: a for a in first["agents"]}
    assert by_id["a002"]["status"] == "done"
    assert first["still_active"] == ["a003"]
    blocked = {a["agent_id"]: a for a in rec["blocked"]["agents"]}
    assert blocked["a004"] == {"agent_id": "a004", "status": "blocked", "blocker": "no config file"}
    assert "a003" in rec["blocked"]["still_active"]  # returned early: the slow one still runs
    assert rec.times["blocked"] < se.events.status_event("a003", "done").ts


async def test_check_agents_returns_tails_without_waiting(sim_engine: SimEngineFactory) -> None:
    rec = Recorder()
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-STEPS steps")],
                [tool_use("sleep", seconds=0.4)],
                [tool_use("check_agents", tail_lines=2)],
                recording(rec, "checked", lambda req: [tool_use("await_agents")]),
                [tool_use("finish", summary="ok", outcome="success")],
            ),
            worker(
                "W-STEPS",
                [tool_use("report_progress", note="step one")],
                [tool_use("report_progress", note="step two")],
                [tool_use("run_command", command="sleep 1.5")],
                complete("steps done"),
            ),
        )
    )
    _, outcome = await se.run()
    assert outcome.status == "succeeded"
    checked = result_of(rec["checked"], "check_agents").json
    (row,) = checked["agents"]
    assert row["agent_id"] == "a002" and row["status"] in ("running", "waiting")
    assert len(row["progress_tail"]) == 2
    # the run_command line is only written when the command ends: it is not there yet
    assert row["progress_tail"][0].endswith("[UPDATE] step one")
    assert row["progress_tail"][1].endswith("[UPDATE] step two")
    assert checked["counts"] == {row["status"]: 1}
    check_call = next(e for e in se.events.of(ev.ToolCallFinished) if e.tool == "check_agents")
    assert check_call.duration_s < 0.2
    assert rec.times["checked"] < se.events.status_event("a002", "done").ts


async def test_check_agents_takes_0_to_200_progress_lines(sim_engine: SimEngineFactory) -> None:
    rec = Recorder()

    def check(key: str, tail_lines: int) -> Any:
        return recording(rec, key, lambda req: [tool_use("check_agents", tail_lines=tail_lines)])

    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-NOTES takes notes"), tool_use("await_agents")],
                [tool_use("check_agents", tail_lines=201)],
                check("201", 200),
                check("200", 0),
                check("0", -1),
                recording(rec, "-1", lambda req: [tool_use("finish", summary="ok", outcome="success")]),
            ),
            worker("W-NOTES", [tool_use("report_progress", note="a note")], complete("noted")),
        )
    )
    _, outcome = await se.run()
    assert outcome.status == "succeeded", outcome
    for over, message in (("201", "tail_lines must be <= 200"), ("-1", "tail_lines must be >= 0")):
        refused = result_of(rec[over], "check_agents")
        assert refused.is_error and message in refused.json["error"]
    (most,) = result_of(rec["200"], "check_agents").json["agents"]
    assert [line.split("] ", 1)[1] for line in most["progress_tail"]] == ["a note", "noted"]
    (none,) = result_of(rec["0"], "check_agents").json["agents"]
    assert none["agent_id"] == "a002" and none["progress_tail"] == []


async def test_a_full_sleep_reports_the_time_slept_in_milliseconds(
    sim_engine: SimEngineFactory,
) -> None:
    """Nothing happens, so the sleep lasts the time asked; slept_s says so to the millisecond
    (never less than what was asked), and woke_early is false."""
    rec = Recorder()
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("sleep", seconds=0.123)],
                recording(rec, "slept", lambda req: [tool_use("finish", summary="ok", outcome="success")]),
            )
        )
    )
    _, outcome = await se.run()
    assert outcome.status == "succeeded", outcome
    slept = result_of(rec["slept"], "sleep").json
    assert slept["woke_early"] is False
    assert slept["slept_s"] >= 0.123 and slept["slept_s"] == round(slept["slept_s"], 3)


async def test_sleep_wakes_early_and_reports_changes(sim_engine: SimEngineFactory) -> None:
    rec = Recorder()
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-NAP nap")],
                [tool_use("sleep", seconds=30)],
                recording(
                    rec, "woke", lambda req: [tool_use("finish", summary="ok", outcome="success")]
                ),
            ),
            worker("W-NAP", [tool_use("run_command", command="sleep 0.3")], complete("napped")),
        )
    )
    _, outcome = await se.run(timeout=8)
    assert outcome.status == "succeeded"
    slept = result_of(rec["woke"], "sleep").json
    assert slept["woke_early"] is True
    assert slept["slept_s"] < 5
    assert {"agent_id": "a002", "status": "done", "summary": "napped"} in slept["changes"]
    assert slept["active"] == []


async def test_orchestrator_ending_its_turn_is_kept_going(sim_engine: SimEngineFactory) -> None:
    rec = Recorder()

    def after_nudge(req):
        rec.note("nudge", req.last_user_text)
        return [tool_use("finish", summary="too early", outcome="success")]

    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-NAP nap")],
                say("I think we are done here."),
                after_nudge,
                recording(rec, "refused", lambda req: [tool_use("await_agents")]),
                [tool_use("finish", summary="all done", outcome="success")],
            ),
            worker("W-NAP", [tool_use("run_command", command="sleep 1")], complete("napped")),
        )
    )
    run_id, outcome = await se.run()
    assert outcome.status == "succeeded" and outcome.summary == "all done"
    assert "[engine]" in rec["nudge"]
    assert "a002" in rec["nudge"]
    refused = result_of(rec["refused"], "finish")
    assert refused.is_error
    assert "active" in refused.json["error"] and "a002" in refused.json["error"]
    assert se.journal.get_run(run_id).status == "succeeded"


async def test_agent_ids_unique_across_runs_in_one_workspace(
    sim_engine: SimEngineFactory, workspace: Path
) -> None:
    rec = Recorder()

    def finish(req):
        rec.data.setdefault("ids", []).extend(spawned_ids(req))
        return [tool_use("finish", summary="ok", outcome="success")]

    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-ONE write")],
                [tool_use("await_agents")],
                finish,
            ),
            worker("W-ONE", complete("wrote")),
        )
    )
    run1, first = await se.run()
    run2, second = await se.run()
    assert first.status == second.status == "succeeded"
    ids1 = sorted(a.agent_id for a in se.journal.list_agents(run1))
    ids2 = sorted(a.agent_id for a in se.journal.list_agents(run2))
    assert ids1 == ["a001", "a002"]
    assert ids2 == ["a003", "a004"]
    assert rec["ids"] == ["a002", "a004"]
    files = sorted(p.name for p in (workspace / "agent-responses").glob("*.md"))
    assert files == ["a001.md", "a002.md", "a003.md", "a004.md"]


async def test_a_notice_made_while_the_orchestrator_waits_comes_back_with_its_monitor(
    sim_engine: SimEngineFactory,
) -> None:
    """Engine news (a notice) reaches the orchestrator once, in the result of the monitor it was
    waiting in, not lost and not again as text in the next turn."""
    rec, gate = Recorder(), Gate()

    def after_await(req: Any) -> list[dict[str, Any]]:
        rec.note("awaited", req.last_tool_results)
        rec.note("texts", [b.get("text", "") for b in req.messages[-1]["content"] if b.get("type") == "text"])
        return [tool_use("finish", summary="done", outcome="success")]

    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-HELD waits")],
                [tool_use("await_agents")],
                after_await,
            ),
            worker("W-HELD", gate.hold(complete("held"))),
        )
    )
    run_id = await se.start()
    try:
        await se.events.wait_for(ev.ToolCallStarted, lambda e: e.tool == "await_agents")
        se.engine.runs[run_id].notice("the machine is busy")
    finally:
        gate.open()
    assert (await se.wait(run_id)).status == "succeeded"
    (awaited,) = rec["awaited"]
    assert awaited.tool_name == "await_agents" and awaited.json["notices"] == ["the machine is busy"]
    assert rec["texts"] == []  # said once: no "[engine]" text repeats it
