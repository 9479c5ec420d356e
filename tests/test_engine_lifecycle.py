"""Stopping, cancelling, compacting and resuming runs, with real process trees."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from pathlib import Path

import psutil
import pytest

from agent_scripts import (
    ORCH,
    Recorder,
    complete,
    orchestrator,
    policy,
    recording,
    result_of,
    spawned_ids,
    wait_for_files,
    worker,
)
from agentray import events as ev
from agentray.engine._context import run_digest
from agentray.errors import BadInputError
from agentray.journal import Journal
from agentray.simulator import Rule, ScriptedPolicy, SimRequest, tool_use
from agentray.states import AgentStatus
from conftest import SimEngine, SimEngineFactory
from edge_helpers import Gate, answer, until

# top shell -> inner shell -> two sleeps (one in the background)
TREE = "echo $$ > {p}top.pid; sh -c 'echo $$ > {p}inner.pid; sleep 30 & echo $! > {p}bg.pid; sleep 30; wait'"


def _dead(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def _all_dead(pids: list[int], within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if all(_dead(p) for p in pids):
            return True
        await asyncio.sleep(0.02)
    return all(_dead(p) for p in pids)


def _host_tree(roots: list[int]) -> list[int]:
    """The tracked command roots and every descendant, as host pids (inside the sandbox ``$$`` is
    a pid of the command's own PID namespace, so the pid files cannot name them)."""
    found = set(roots)
    for pid in roots:
        try:
            found.update(c.pid for c in psutil.Process(pid).children(recursive=True))
        except psutil.NoSuchProcess:
            pass
    return sorted(found)


async def _tree_pids(
    se: SimEngine, run_id: str, ws: Path, prefix: str = "", timeout: float = 5.0
) -> list[int]:
    files = [ws / f"{prefix}{name}.pid" for name in ("top", "inner", "bg")]
    deadline = time.monotonic() + timeout
    while not all(f.exists() and f.read_text().strip() for f in files):
        assert time.monotonic() < deadline, "the worker's command never started"
        await asyncio.sleep(0.02)
    await _tracked(se, run_id)
    found = _host_tree(se.engine.runs[run_id].processes.pids())
    assert len(found) >= 4  # sh -> sh -> sleep + sleep (and bwrap with its init when sandboxed)
    assert not any(_dead(p) for p in found)
    return found


async def _tracked(se: SimEngine, run_id: str, count: int = 1, timeout: float = 5.0) -> None:
    """Wait until the run's process registry holds ``count`` command trees."""
    deadline = time.monotonic() + timeout
    while len(se.engine.runs[run_id].processes.pids()) < count:
        assert time.monotonic() < deadline, "the command was never tracked"
        await asyncio.sleep(0.01)


def _sleeper_policy(prefix: str = "") -> ScriptedPolicy:
    return policy(
        orchestrator(
            [tool_use("spawn_agent", task="W-TREE runs a process tree")], [tool_use("await_agents")]
        ),
        worker(
            "W-TREE", [tool_use("run_command", command=TREE.format(p=prefix))], complete("never")
        ),
    )


# ---------------------------------------------------------------------------- stop
async def test_stop_run_kills_the_process_tree(
    sim_engine: SimEngineFactory, workspace: Path
) -> None:
    se = sim_engine(_sleeper_policy())
    run_id = await se.start()
    pids = await _tree_pids(se, run_id, workspace)
    stopped_at = time.monotonic()
    assert se.engine.stop_run(run_id)
    outcome = await se.wait(run_id, timeout=5)
    assert time.monotonic() - stopped_at < 3
    assert outcome.status == "cancelled"
    assert await _all_dead(pids), [p for p in pids if not _dead(p)]
    assert se.journal.get_run(run_id).status == "cancelled"
    rows = {a.agent_id: a for a in se.journal.list_agents(run_id)}
    assert rows["a002"].status == "cancelled" and rows["a002"].status_reason == "run stopped"
    assert "Status: cancelled" in (workspace / "agent-responses" / "a002.md").read_text()
    assert se.events.of(ev.RunFinished)[-1].status == "cancelled"


async def test_stop_all_stops_every_run(
    sim_engine: SimEngineFactory, workspace: Path, tmp_path: Path
) -> None:
    ws2 = tmp_path / "ws2"
    ws2.mkdir()
    se = sim_engine(_sleeper_policy())
    run1 = await se.start()
    run2 = await se.start(workspace=str(ws2))
    pids = await _tree_pids(se, run1, workspace) + await _tree_pids(se, run2, ws2)
    assert sorted(se.engine.stop_all()) == sorted([run1, run2])
    outcomes = [await se.wait(run1, 5), await se.wait(run2, 5)]
    assert [o.status for o in outcomes] == ["cancelled", "cancelled"]
    assert await _all_dead(pids)
    assert se.engine.active_runs() == []


async def test_stop_requested_from_another_journal_connection(
    sim_engine: SimEngineFactory, workspace: Path
) -> None:
    se = sim_engine(_sleeper_policy())
    run_id = await se.start()
    pids = await _tree_pids(se, run_id, workspace)
    other = Journal(se.journal_path)  # what `agentray stop RUN` in another process does
    try:
        requested_at = time.monotonic()
        assert other.request_stop(run_id)
        outcome = await se.wait(run_id, timeout=5)
        assert time.monotonic() - requested_at < 1.5
    finally:
        other.close()
    assert outcome.status == "cancelled"
    assert await _all_dead(pids)


# ---------------------------------------------------------------------------- cancel
async def test_cancel_agent_kills_its_tree_and_its_helpers(
    sim_engine: SimEngineFactory, workspace: Path
) -> None:
    rec = Recorder()
    box: dict[str, SimEngine] = {}

    def cancel_when_started(req: SimRequest) -> list[dict[str, object]]:
        assert wait_for_files(
            [
                workspace / "top.pid",
                workspace / "inner.pid",
                workspace / "bg.pid",
                workspace / "child.pid",
            ]
        )
        run = next(iter(box["se"].engine.runs.values()))
        deadline = time.monotonic() + 5
        while len(run.processes.pids()) < 2 and time.monotonic() < deadline:  # both trees tracked
            time.sleep(0.01)
        rec.note("pids", _host_tree(run.processes.pids()))
        return [tool_use("cancel_agent", agent_id="a002", reason="changed plans")]

    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-BOSS runs things and has a helper")],
                cancel_when_started,
                recording(
                    rec,
                    "cancelled",
                    lambda req: [tool_use("finish", summary="ok", outcome="success")],
                ),
            ),
            worker(
                "W-BOSS",
                [tool_use("spawn_agent", task="W-MINION sleeps")],
                [tool_use("run_command", command=TREE.format(p=""))],
                complete("never"),
            ),
            worker(
                "W-MINION",
                [tool_use("run_command", command="echo $$ > child.pid; sleep 30")],
                complete("never"),
            ),
        )
    )
    box["se"] = se
    run_id, outcome = await se.run()
    assert outcome.status == "succeeded", outcome
    result = result_of(rec["cancelled"], "cancel_agent")
    assert not result.is_error
    assert result.json["status"] == "cancelled" and result.json["also_cancelled"] == ["a003"]
    # (processes_killed is not asserted: the cancelled run_command may kill its own tree first,
    # so the count the tool reports races with it; the pids below are what matters)
    assert isinstance(result.json["processes_killed"], int)
    assert await _all_dead(rec["pids"])
    rows = {a.agent_id: a for a in se.journal.list_agents(run_id)}
    assert rows["a002"].status == "cancelled" and rows["a002"].status_reason == "changed plans"
    assert rows["a003"].status == "cancelled"


# ---------------------------------------------------------------------------- compaction
def _generations(journal_path: Path, run_id: str) -> list[tuple[str, str]]:
    with sqlite3.connect(journal_path) as db:
        return db.execute(
            "SELECT agent_id, reason FROM transcript_generations WHERE run_id = ? ORDER BY generation",
            (run_id,),
        ).fetchall()


BIG = "".join(f"line {i:03d} " + "x" * 60 + "\n" for i in range(40))  # ~700 tokens a read
SMALL = BIG[: len(BIG) // 4]  # ~180 tokens a read: several turns fit before the window fills


async def test_worker_transcript_is_compacted_and_the_worker_completes(
    sim_engine: SimEngineFactory, workspace: Path
) -> None:
    (workspace / "big.txt").write_text(SMALL)

    def reader(req: SimRequest) -> list[dict[str, object]]:
        if "compacted" in req.first_user_text or req.turn_index >= 12:
            return complete(
                f"read it {len(req.tool_results_named('read_file'))} times since compaction"
            )
        return [tool_use("read_file", path="big.txt")]

    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-READER reads a big file")],
                [tool_use("await_agents")],
                [tool_use("finish", summary="ok", outcome="success")],
            ),
            worker("W-READER", *[reader] * 20),
        )
    )
    run_id, outcome = await se.run(context_window=4000)
    assert outcome.status == "succeeded", outcome
    compacted = [n for n in se.events.of(ev.Notice) if "context compacted" in n.message]
    assert compacted and compacted[0].agent_id == "a002"
    before, after = map(int, re.findall(r"\((\d+) -> (\d+) messages\)", compacted[0].message)[0])
    assert after < before
    assert ("a002", "compaction") in _generations(se.journal_path, run_id)
    transcript = se.journal.load_transcript(run_id, "a002")
    assert "compacted" in str(transcript[0]["content"])
    assert "earlier messages were compacted" in str(transcript[0]["content"])
    requests = se.requests_of("W-READER")
    assert len(transcript) < 1 + 2 * len(requests)  # shorter than the uncompacted conversation
    row = se.journal.get_agent(run_id, "a002")
    assert row is not None and row.status == "done" and row.summary is not None
    # the compacted request kept the first message and stayed well-formed (the simulator validates it)
    last = se.requests_of("W-READER")[-1]
    assert "compacted" in last.first_user_text


async def test_a_compacted_worker_is_given_its_last_20_notes_and_its_calls_in_short(
    sim_engine: SimEngineFactory, workspace: Path
) -> None:
    """The digest that replaces the dropped messages lists the worker's latest 20 progress
    notes, oldest first (the ones before them are left out), and the calls it made, each one's
    input shown whole up to 80 characters, else cut to 77 and "..."."""
    (workspace / "big.txt").write_text(SMALL)
    rec = Recorder()
    notes = [tool_use("report_progress", note=f"NOTE-{i:02d} done") for i in range(1, 26)]
    fits, over = "f" * 68, "o" * 69  # {"path": "..."}: 80 and 81 characters
    notes += [tool_use("read_file", path=fits), tool_use("read_file", path=over)]

    def reader(req: SimRequest) -> list[dict[str, object]]:
        if "earlier messages were compacted" in req.first_user_text:
            rec.note("compacted", req)
            return complete("read enough")
        if req.turn_index >= 15:
            return complete("never compacted")
        return [tool_use("read_file", path="big.txt")]

    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-NOTES takes notes, then reads")],
                [tool_use("await_agents")],
                [tool_use("finish", summary="ok", outcome="success")],
            ),
            worker("W-NOTES", notes, *[reader] * 20),
        )
    )
    _, outcome = await se.run(context_window=4000)
    assert outcome.status == "succeeded", outcome
    first = rec["compacted"].messages[0]["content"]
    digest = "\n".join(block["text"] for block in first if block["type"] == "text")
    listed = digest.split("Your progress notes so far:\n", 1)[1].split("\nTool calls made:", 1)[0]
    shown = re.findall(r"\[UPDATE\] (NOTE-\d\d) done", listed)
    assert shown == [f"NOTE-{i:02d}" for i in range(6, 26)]
    assert len(listed.splitlines()) == 20
    calls = digest.split("\nTool calls made: ", 1)[1].split("; ")
    assert f'read_file({{"path": "{fits}"}})' in calls
    assert f'read_file({{"path": "{over[:67]}...)' in calls


async def test_compaction_clips_a_long_result_it_keeps_to_its_head_and_tail(
    sim_engine: SimEngineFactory, workspace: Path
) -> None:
    """A kept message too big even alone is clipped: its first and last 1,000 characters stay,
    and a note counts the characters dropped between them."""
    (workspace / "huge.txt").write_text(
        "".join(f"row {i:03d} " + "y" * 80 + "\n" for i in range(90))
    )
    rec = Recorder()

    def reader(req: SimRequest) -> list[dict[str, object]]:
        if "earlier messages were compacted" in req.first_user_text:
            rec.note("compacted", req)
            return complete("read it whole")
        if req.last_tool_results:
            rec.note("full", req.last_tool_results[0].text)
        if req.turn_index >= 15:
            return complete("never compacted")
        return [tool_use("read_file", path="huge.txt")]

    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-HUGE reads a huge file")],
                [tool_use("await_agents")],
                [tool_use("finish", summary="ok", outcome="success")],
            ),
            worker("W-HUGE", *[reader] * 20),
        )
    )
    _, outcome = await se.run(context_window=4000)
    assert outcome.status == "succeeded", outcome
    full = rec["full"]
    assert len(full) > 6000  # more than the budget of the kept messages: it must be clipped
    kept = rec["compacted"].messages[-1]["content"]
    (clipped,) = [b["content"] for b in kept if b.get("type") == "tool_result"]
    note = f"\n…[{len(full) - 2000} characters dropped by compaction]…\n"
    assert clipped == full[:1000] + note + full[-1000:]


async def test_compaction_keeps_a_short_transcript_that_fits_whole(
    sim_engine: SimEngineFactory, workspace: Path
) -> None:
    """The prompt nears the window (the system prompt and tools are most of it) while the
    transcript itself fits the budget of kept messages: nothing of it is dropped, the first
    tool call and its result included."""
    (workspace / "mid.txt").write_text(
        "".join(f"row {i:03d} " + "z" * 60 + "\n" for i in range(60))
    )
    rec = Recorder()
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-SHORT reads once")],
                [tool_use("await_agents")],
                [tool_use("finish", summary="ok", outcome="success")],
            ),
            worker(
                "W-SHORT",
                [tool_use("read_file", path="mid.txt")],
                [tool_use("report_progress", note="read it")],
                recording(rec, "after", lambda req: complete("done")),
            ),
        )
    )
    _, outcome = await se.run(context_window=4000)
    assert outcome.status == "succeeded", outcome
    after = rec["after"]
    assert [m["role"] for m in after.messages] == ["user", "assistant", "user", "assistant", "user"]
    (read,) = after.tool_results_named("read_file")
    assert "row 000" in read.text and "row 059" in read.text


async def test_orchestrator_restarts_from_a_digest(
    sim_engine: SimEngineFactory, workspace: Path
) -> None:
    (workspace / "big.txt").write_text(BIG)
    rec = Recorder()

    def orch(req: SimRequest) -> list[dict[str, object]]:
        if "restarted" in req.first_user_text:
            rec.note("restart", req)
            return [tool_use("finish", summary="finished after restart", outcome="success")]
        if not spawned_ids(req):
            return [tool_use("spawn_agent", task="W-QUICK quick job")]
        if not req.tool_results_named("await_agents"):
            return [tool_use("await_agents")]
        if req.turn_index >= 15:
            return [tool_use("finish", summary="never compacted", outcome="failure")]
        return [tool_use("read_file", path="big.txt")]

    se = sim_engine(
        ScriptedPolicy([Rule(ORCH, [orch] * 30), Rule("W-QUICK", [complete("quick result 42")])])
    )
    run_id, outcome = await se.run(context_window=4000)
    assert outcome.status == "succeeded" and outcome.summary == "finished after restart", outcome
    restarted = rec["restart"]
    assert len(restarted.messages) == 1 and restarted.messages[0]["role"] == "user"
    digest = restarted.first_user_text
    assert "restarted" in digest and "a002" in digest and "quick result 42" in digest
    assert "GOAL: do the work" in digest
    assert ("a001", "compaction") in _generations(se.journal_path, run_id)


# ---------------------------------------------------------------------------- resume
async def test_resume_changes_only_the_sandbox_settings_it_is_given(
    sim_engine: SimEngineFactory,
) -> None:
    """resume_run(allow_network=True) turns the network on from here on (journaled) and leaves
    the sandbox as it was; a resume given nothing changes nothing. The last resume, with a
    worker that ended before it (never restarted), runs to a normal end."""
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-EARLY done before the stop")],
                [tool_use("await_agents")],
                [tool_use("escalate", question="Go on?", options=["Yes", "No"])],
                [tool_use("finish", summary="done", outcome="success")],
            ),
            worker("W-EARLY", complete("early")),
        )
    )

    async def stopped() -> dict[str, object]:
        await until(lambda: bool(se.engine.pending_escalations()), "the question asked")
        assert se.engine.stop_run(run_id)
        assert (await se.wait(run_id)).status == "cancelled"
        row = se.journal.get_run(run_id)
        assert row is not None
        return row.config

    run_id = await se.start()
    before = await stopped()
    assert (before["sandbox"], before["allow_network"]) == (True, False)
    assert await se.engine.resume_run(run_id, allow_network=True) == run_id
    after = await stopped()
    assert after == {**before, "allow_network": True}
    assert await se.engine.resume_run(run_id) == run_id
    await until(lambda: bool(se.engine.pending_escalations()), "the question asked again")
    assert se.journal.get_run(run_id).config == after
    assert answer(se, se.events.of(ev.EscalationRaised)[-1], "Yes")
    outcome = await se.wait(run_id)
    assert (outcome.status, outcome.summary) == ("succeeded", "done"), outcome
    assert [e.resumed for e in se.events.of(ev.RunStarted)] == [False, True, True]
    assert se.events.statuses("a002") == ["running", "done"]  # never restarted


async def test_a_succeeded_run_is_not_resumed(sim_engine: SimEngineFactory) -> None:
    se = sim_engine(policy(orchestrator([tool_use("finish", summary="done", outcome="success")])))
    run_id, outcome = await se.run()
    assert outcome.status == "succeeded", outcome
    with pytest.raises(BadInputError, match=rf"run {run_id} already succeeded; nothing to resume"):
        await se.engine.resume_run(run_id)
    assert len(se.events.of(ev.RunStarted)) == 1
    assert len(se.requests_of("GOAL")) == 1  # no model call after the refusal
    row = se.journal.get_run(run_id)
    assert row is not None and row.status == "succeeded"


async def test_resume_after_stop_reports_the_interrupted_call(
    sim_engine: SimEngineFactory, workspace: Path
) -> None:
    rec = Recorder()

    def after_interruption(req: SimRequest) -> list[dict[str, object]]:
        rec.note("worker_resumed", req.last_tool_results)
        return complete("recovered after resume")

    def orch_resumed(req: SimRequest) -> list[dict[str, object]]:
        rec.note("orch_resumed", req.last_tool_results)
        return [tool_use("spawn_agent", task="W-AFTER new work after resume")]

    resume_policy = policy(
        orchestrator(
            [tool_use("spawn_agent", task="W-MIDWAY long command")],
            [tool_use("await_agents")],
            orch_resumed,
            lambda req: [tool_use("await_agents", agent_ids=["a002", *spawned_ids(req)[1:]])],
            lambda req: [tool_use("finish", summary="resumed and finished", outcome="success")],
        ),
        worker("W-MIDWAY", [tool_use("run_command", command="sleep 30")], after_interruption),
        worker("W-AFTER", complete("after done")),
    )
    first = sim_engine(resume_policy)
    run_id = await first.start()
    await first.events.wait_for(ev.ToolCallStarted, lambda e: e.tool == "run_command")
    await _tracked(first, run_id)  # mid-way: the command runs
    assert first.engine.stop_run(run_id)
    assert (await first.wait(run_id)).status == "cancelled"
    await first.engine.aclose()

    second = sim_engine(sim=first.sim)  # a new engine on the same journal file
    assert await second.engine.resume_run(run_id) == run_id
    outcome = await second.wait(run_id)
    assert outcome.status == "succeeded", outcome
    assert second.events.of(ev.RunStarted)[0].resumed is True

    (interrupted,) = rec["worker_resumed"]
    assert interrupted.is_error and "interrupted" in interrupted.json["error"]
    # the orchestrator's await_agents was cut too: it re-attaches (a monitor is safe to repeat) or is
    # reported interrupted; either way its transcript stays well-formed and it carries on
    (awaited,) = rec["orch_resumed"]
    assert awaited.tool_name == "await_agents"
    assert (
        "interrupted" in awaited.json["error"]
        if awaited.is_error
        else awaited.json["agents"][0]["agent_id"] == "a002"
    )
    rows = {a.agent_id: a for a in second.journal.list_agents(run_id)}
    assert list(rows) == ["a001", "a002", "a003"]  # the new spawn got a fresh id
    assert rows["a002"].summary == "recovered after resume" and rows["a003"].status == "done"
    call = next(c for c in second.journal.list_tool_calls(run_id) if c.name == "run_command")
    assert call.is_error and "interrupted" in str(call.result)
    assert second.journal.get_run(run_id).status == "succeeded"
    # the result made up for the cut call is journaled too, in its place: another resume would
    # replay a well-formed transcript
    transcript = second.journal.load_transcript(run_id, "a002")
    assert [m["role"] for m in transcript][:4] == ["user", "assistant", "user", "assistant"]
    (made_up,) = transcript[2]["content"]
    assert made_up["type"] == "tool_result" and made_up["tool_use_id"] == call.call_id
    assert made_up["is_error"] and "interrupted" in made_up["content"]


@pytest.mark.parametrize("how", ["the run's task", "every task of the run at once", "a worker's task"])
async def test_a_run_cancelled_from_outside_is_interrupted_and_its_workers_resume(
    sim_engine: SimEngineFactory, how: str
) -> None:
    """Not through Stop: the run's task cancelled by its caller, every task cancelled at once as
    when the event loop shuts down, or one worker's task. The run is interrupted (never left
    waiting on a worker that is gone) and a resume restarts its workers."""
    rec = Recorder()

    def after_interruption(req: SimRequest) -> list[dict[str, object]]:
        rec.note("worker_resumed", req.last_tool_results)
        return complete("recovered after resume")

    resume_policy = policy(
        orchestrator(
            [tool_use("spawn_agent", task="W-CUT long command")],
            [tool_use("await_agents")],
            lambda req: [tool_use("await_agents", agent_ids=["a002"])],
            [tool_use("finish", summary="resumed and finished", outcome="success")],
        ),
        worker("W-CUT", [tool_use("run_command", command="sleep 30")], after_interruption),
    )
    first = sim_engine(resume_policy)
    run_id = await first.start()
    await first.events.wait_for(ev.ToolCallStarted, lambda e: e.tool == "run_command")
    await _tracked(first, run_id)
    run = first.engine.runs[run_id]
    (sleeper,) = run.processes.pids()
    handles = {a.agent_id: a.runtime.task_handle for a in run.agents.values()}
    if how == "the run's task":
        tasks = [first.engine.tasks[run_id]]
    elif how == "a worker's task":  # no command of the engine ends one agent that way
        tasks = [handles["a002"]]
    else:
        tasks = [first.engine.tasks[run_id], *handles.values()]
    for task in tasks:
        task.cancel()
    outcome = await first.wait(run_id)
    assert outcome.status == "interrupted", outcome
    assert not psutil.pid_exists(sleeper) or _dead(sleeper)
    # cut by the run's end, as by Stop (the reason resume looks for), not cancelled one by one
    rows = {a.agent_id: (a.status, a.status_reason) for a in first.journal.list_agents(run_id)}
    assert rows == {a: ("cancelled", "run interrupted") for a in ("a001", "a002")}
    assert first.journal.get_run(run_id).status == "interrupted"
    await first.engine.aclose()

    second = sim_engine(sim=first.sim)
    assert await second.engine.resume_run(run_id) == run_id
    outcome = await second.wait(run_id)
    assert (outcome.status, outcome.summary) == ("succeeded", "resumed and finished"), outcome
    (cut,) = rec["worker_resumed"]
    assert cut.is_error and "interrupted" in cut.json["error"]
    assert {a.agent_id: a.status for a in second.journal.list_agents(run_id)} == {
        "a001": "done",
        "a002": "done",
    }


async def test_a_crashing_helper_task_fails_its_run_not_the_process(
    sim_engine: SimEngineFactory,
) -> None:
    """A bug in one of the run's helper tasks ends that run failed, with the error said; its
    agents are cut on the way (they must not turn it into an interrupted run) and their commands
    killed; the engine goes on."""
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-BUSY long command")], [tool_use("await_agents")]
            ),
            worker("W-BUSY", [tool_use("run_command", command="sleep 30")], complete("never")),
        )
    )
    run_id = await se.start()
    await se.events.wait_for(ev.ToolCallStarted, lambda e: e.tool == "run_command")
    await _tracked(se, run_id)
    run = se.engine.runs[run_id]
    (sleeper,) = run.processes.pids()

    async def broken() -> None:
        raise RuntimeError("a bug")

    run.in_background(broken(), "broken-helper")
    outcome = await se.wait(run_id)
    assert (outcome.status, outcome.summary) == ("failed", "internal error: RuntimeError: a bug")
    assert not psutil.pid_exists(sleeper) or _dead(sleeper)
    assert se.journal.get_run(run_id).status == "failed"
    # the engine still runs others
    se.sim.policy = policy(orchestrator([tool_use("finish", summary="fine", outcome="success")]))
    _, again = await se.run()
    assert again.status == "succeeded", again


async def test_a_waiter_cancelled_in_the_moment_its_run_ends_is_cancelled(
    sim_engine: SimEngineFactory,
) -> None:
    """Engine.wait passes on its own cancellation even when it comes together with the run's end
    (it must not return the outcome to a caller that is being cancelled); the run's own
    cancellation is an outcome, not an error."""
    se = sim_engine(policy(orchestrator([tool_use("finish", summary="done", outcome="success")])))
    run_id = await se.start()
    waiter = asyncio.create_task(se.engine.wait(run_id))
    await asyncio.sleep(0)  # the waiter reaches its wait (no time passes)
    se.engine.tasks[run_id].add_done_callback(lambda _: waiter.cancel())
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert (await se.engine.wait(run_id)).status == "succeeded"


async def test_the_digest_lists_the_workers_open_blockers_only(
    sim_engine: SimEngineFactory,
) -> None:
    """What an orchestrator restarted fresh is told: each worker with its state, and as open
    blockers the blocked and failed workers, never the orchestrator itself."""
    gate = Gate()
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task=f"W-HELD number {i}") for i in range(3)],
                [tool_use("await_agents")],
            ),
            worker("W-HELD", gate.hold(complete("held"))),
        )
    )
    run_id = await se.start()
    try:
        await se.events.wait_for(ev.ToolCallStarted, lambda e: e.tool == "await_agents")
        run = se.engine.runs[run_id]
        assert "Open blockers: none" in run_digest(run).splitlines()
        blocked, failed, orch = run.agents["a002"], run.agents["a003"], run.agents["a001"]
        blocked.status, blocked.blocker = AgentStatus.BLOCKED, "no database"
        failed.status, failed.blocker = AgentStatus.FAILED, "tests crash"
        orch.status, orch.blocker = AgentStatus.FAILED, "the orchestrator's own"
        digest = run_digest(run)
        assert "Open blockers: a002 (no database), a003 (tests crash)" in digest.splitlines()
        assert "- a004 [worker] running: " in digest and "a001" not in digest
        assert digest.splitlines()[-3:-1] == ["Pending escalations: none", "Build: none configured"]
    finally:
        gate.open()
        se.engine.stop_run(run_id)
    await se.wait(run_id)
