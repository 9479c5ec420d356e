"""The edges of the engine's rules, each driven end to end through the simulator.

Every test here fails when the edge it names is moved by one: a refusal that should come at
exactly the cap, a build that started a moment too early, a slot held one wait too long, an
escalation asked twice. Turns that must not happen too soon are held by a ``Gate`` (the
simulator's server thread waits on it) and released on an engine event, never after a sleep.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent_scripts import (
    Recorder,
    blocks,
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
from agentray.model.anthropic_client import STREAM_ABOVE_MAX_TOKENS
from agentray.simulator import SimRequest, text, tool_use
from conftest import SimEngine, SimEngineFactory
from edge_helpers import GATE_TIMEOUT_S, Gate, answer, model_fails, until


def finish(outcome: str = "success", summary: str | None = None) -> Callable[[SimRequest], Any]:
    return lambda req: [
        tool_use("finish", summary=summary or f"finished: {outcome}", outcome=outcome)
    ]


def tool_started(se: SimEngine, tool: str, count: int = 1) -> Callable[[], bool]:
    return lambda: sum(e.tool == tool for e in se.events.of(ev.ToolCallStarted)) >= count


def escalations_of(se: SimEngine, agent_id: str) -> list[ev.EscalationRaised]:
    return [e for e in se.events.of(ev.EscalationRaised) if e.agent_id == agent_id]


def counted_build(workspace: Path, passing: str) -> str:
    """A build command whose n-th run (from 0) passes when n matches the case pattern ``passing``."""
    (workspace / "build.sh").write_text(
        "n=$(cat .builds 2>/dev/null || echo 0)\n"
        "echo $((n + 1)) > .builds\n"
        f'case "$n" in {passing}) exit 0;; esac\n'
        "exit 1\n"
    )
    return "sh build.sh"


# ---------------------------------------------------------------------------- finish
async def test_finish_failure_is_refused_while_an_agent_runs(sim_engine: SimEngineFactory) -> None:
    rec, gate = Recorder(), Gate()

    def refused(req: SimRequest) -> list[dict[str, Any]]:
        rec.note("refused", result_of(req, "finish"))
        gate.open()
        return [tool_use("await_agents")]

    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-HELD works until the refusal")],
                [tool_use("finish", summary="giving up early", outcome="failure")],
                refused,
                finish("failure", "gave up"),
            ),
            worker("W-HELD", gate.hold(complete("held work done"))),
        )
    )
    # a build command is configured, yet finish(failure) needs no build: only the agent stands in the way
    run_id, outcome = await se.run(build_command="false")
    assert outcome.status == "failed" and outcome.summary.startswith("gave up"), outcome
    refusal = rec["refused"]
    assert refusal.is_error
    error = refusal.json["error"]
    assert error.startswith("finish refused: 1 agent is still active: a002 (")
    assert "await or cancel them first" in error
    assert "build" not in error
    assert se.journal.get_agent(run_id, "a002").status == "done"
    assert se.events.of(ev.BuildFinished) == []


async def test_finish_failure_is_refused_while_an_agent_is_blocked(
    sim_engine: SimEngineFactory,
) -> None:
    rec = Recorder()
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-STUCK blocks")],
                [tool_use("await_agents")],  # returns early: the blocker needs handling
                [tool_use("finish", summary="stop here", outcome="failure")],
                recording(rec, "refused", lambda req: [tool_use("cancel_agent", agent_id="a002")]),
                finish("failure", "cancelled the stuck one"),
            ),
            worker("W-STUCK", [tool_use("report_blocker", description="no credentials")]),
        )
    )
    run_id, outcome = await se.run()
    assert outcome.status == "failed" and outcome.summary.startswith("cancelled the stuck one")
    refusal = result_of(rec["refused"], "finish")
    assert refusal.is_error and "1 agent is still active: a002 (blocked)" in refusal.json["error"]
    assert se.journal.get_agent(run_id, "a002").status == "cancelled"


# ---------------------------------------------------------------------------- the build gate
async def test_a_build_that_started_before_the_last_agent_finished_does_not_count(
    sim_engine: SimEngineFactory, workspace: Path
) -> None:
    rec = Recorder()
    # The build starts, then waits until the worker's progress file says it is done: it passes,
    # but it began before the last agent finished.
    build = (
        "echo started > .build-started; "
        "until grep -qx 'Status: done' agent-responses/a002.md 2>/dev/null; do sleep 0.01; done"
    )

    def after_build_started(req: SimRequest) -> list[dict[str, Any]]:
        assert wait_for_files([workspace / ".build-started"], timeout=GATE_TIMEOUT_S)
        return complete("finished while the build ran")

    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-LATE finishes during the build")],
                [tool_use("run_build")],
                recording(rec, "built", finish()),
                recording(rec, "stale", lambda req: [tool_use("run_build")]),
                recording(rec, "rebuilt", finish(summary="built after the last agent")),
            ),
            worker("W-LATE", after_build_started),
        )
    )
    _, outcome = await se.run(build_command=build, build_timeout_s=30, timeout=30)
    assert outcome.status == "succeeded" and outcome.summary == "built after the last agent", (
        outcome
    )
    first = result_of(rec["built"], "run_build").json
    assert first["passed"] is True
    build_started = next(e for e in se.events.of(ev.ToolCallStarted) if e.tool == "run_build")
    worker_done = se.events.status_event("a002", "done")
    first_build = se.events.of(ev.BuildFinished)[0]
    assert build_started.ts < worker_done.ts < first_build.ts  # the agent finished during the build
    stale = result_of(rec["stale"], "finish")
    assert stale.is_error
    assert (
        "an agent finished after the last passing build; run the build again" in stale.json["error"]
    )
    assert result_of(rec["rebuilt"], "run_build").json["passed"] is True


async def test_a_failing_build_after_a_passing_one_closes_the_gate_again(
    sim_engine: SimEngineFactory, workspace: Path
) -> None:
    rec = Recorder()
    # the first build passes, every later one fails
    build = counted_build(workspace, passing="0")
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("run_build")],
                [tool_use("run_build")],
                recording(rec, "after_two", finish()),
                recording(rec, "refused", finish("failure", "the build broke")),
            )
        )
    )
    _, outcome = await se.run(build_command=build, max_fix_rounds=5)
    assert outcome.status == "failed" and outcome.summary == "the build broke"
    assert [b.passed for b in se.events.of(ev.BuildFinished)] == [True, False]
    refusal = result_of(rec["refused"], "finish")
    assert (
        refusal.is_error and "no passing run_build since the last change" in refusal.json["error"]
    )


# ---------------------------------------------------------------------------- fix rounds
async def test_a_passing_build_resets_the_fix_round_count(
    sim_engine: SimEngineFactory, workspace: Path
) -> None:
    # fail, pass, fail, fail: only the fourth build makes two failures in a row
    se = sim_engine(
        policy(orchestrator(*[[tool_use("run_build")]] * 4, finish("failure", "stopped fixing")))
    )
    run_id = await se.start(build_command=counted_build(workspace, passing="1"), max_fix_rounds=2)
    raised = await se.events.wait_for(ev.EscalationRaised)
    assert raised.kind == "build"
    builds = se.events.of(ev.BuildFinished)
    assert [(b.passed, b.failed_in_a_row) for b in builds] == [
        (False, 1),
        (True, 0),
        (False, 1),
        (False, 2),
    ]
    assert raised.ts > builds[3].ts
    assert answer(se, raised, "Finish as failure")
    outcome = await se.wait(run_id)
    assert outcome.status == "failed"
    assert len(se.events.of(ev.EscalationRaised)) == 1


async def test_keep_fixing_resets_the_fix_round_count(sim_engine: SimEngineFactory) -> None:
    se = sim_engine(
        policy(orchestrator(*[[tool_use("run_build")]] * 4, finish("failure", "stopped fixing")))
    )
    run_id = await se.start(build_command="false", max_fix_rounds=2)
    first = await se.events.wait_for(ev.EscalationRaised)
    assert [b.failed_in_a_row for b in se.events.of(ev.BuildFinished)] == [1, 2]
    assert answer(se, first, "Keep fixing", "try once more")
    second = await se.events.wait_for(
        ev.EscalationRaised, lambda e: e.escalation_id != first.escalation_id, timeout=10
    )
    # after "keep fixing" the count starts again: one failure is not enough to ask again
    assert [b.failed_in_a_row for b in se.events.of(ev.BuildFinished)] == [1, 2, 1, 2]
    assert second.kind == "build" and "2 times in a row" in second.question
    assert answer(se, second, "Finish as failure")
    outcome = await se.wait(run_id)
    assert outcome.status == "failed"
    assert len(se.events.of(ev.EscalationRaised)) == 2


# ---------------------------------------------------------------------------- slots
async def test_a_question_to_the_person_holds_no_slot(sim_engine: SimEngineFactory) -> None:
    se = sim_engine(
        policy(
            orchestrator(
                [
                    tool_use("spawn_agent", task="W-MEANWHILE works while the person thinks"),
                    tool_use("escalate", question="Ship on Friday?", options=["Yes", "No"]),
                ],
                [tool_use("await_agents")],
                finish(),
            ),
            worker(
                "W-MEANWHILE", [tool_use("report_progress", note="working")], complete("worked")
            ),
        )
    )
    run_id = await se.start(max_concurrent=1)
    raised = await se.events.wait_for(ev.EscalationRaised)
    assert raised.agent_id == "a001"
    # with one slot, the worker can only run if the orchestrator, waiting for the person, holds none
    await se.events.wait_status("a002", "done", timeout=10)
    assert [e.escalation_id for e in se.engine.pending_escalations()] == [raised.escalation_id]
    assert answer(se, raised, "Yes")
    outcome = await se.wait(run_id)
    assert outcome.status == "succeeded", outcome


async def test_a_build_escalation_holds_no_slot(sim_engine: SimEngineFactory) -> None:
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-MEANWHILE works"), tool_use("run_build")],
                [tool_use("await_agents")],
                finish("failure", "the build fails"),
            ),
            worker(
                "W-MEANWHILE", [tool_use("report_progress", note="working")], complete("worked")
            ),
        )
    )
    run_id = await se.start(max_concurrent=1, build_command="false", max_fix_rounds=1)
    raised = await se.events.wait_for(ev.EscalationRaised)
    assert raised.kind == "build"
    await se.events.wait_status("a002", "done", timeout=10)
    assert [e.escalation_id for e in se.engine.pending_escalations()] == [raised.escalation_id]
    assert answer(se, raised, "Finish as failure")
    outcome = await se.wait(run_id)
    assert outcome.status == "failed" and outcome.summary.startswith("the build fails")


async def test_a_worker_waiting_on_the_person_holds_no_slot(sim_engine: SimEngineFactory) -> None:
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-TWICE blocks twice")],
                [tool_use("await_agents")],
                [tool_use("resume_agent", agent_id="a002", message="try the mirror")],
                # wakes when a002 is escalated; if that came before the sleep began, 2 s end it
                [tool_use("sleep", seconds=2)],
                [tool_use("spawn_agent", task="W-OTHER works meanwhile")],
                [tool_use("await_agents", agent_ids=["a003"])],
                [tool_use("await_agents", agent_ids=["a002"])],
                finish(),
            ),
            worker(
                "W-TWICE",
                [tool_use("report_blocker", description="download fails")],
                [tool_use("report_blocker", description="the mirror fails too")],
                complete("never"),
            ),
            worker(
                "W-OTHER", [tool_use("report_progress", note="working")], complete("other done")
            ),
        )
    )
    run_id = await se.start(max_concurrent=1)
    raised = await se.events.wait_for(ev.EscalationRaised)
    assert (raised.kind, raised.agent_id) == ("blocker", "a002")
    await se.events.wait_status("a003", "done", timeout=10)
    assert [e.escalation_id for e in se.engine.pending_escalations()] == [raised.escalation_id]
    assert answer(se, raised, "Cancel the agent")
    outcome = await se.wait(run_id)
    assert outcome.status == "succeeded", outcome
    assert se.journal.get_agent(run_id, "a002").status == "cancelled"


# ---------------------------------------------------------------------------- recovery
async def test_failing_again_after_the_one_mitigation_escalates_exactly_once(
    sim_engine: SimEngineFactory,
) -> None:
    gate = Gate()
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-FLAKY always fails")],
                [tool_use("await_agents", agent_ids=["a002"])],
                [tool_use("resume_agent", agent_id="a002", message="try again")],
                [tool_use("await_agents", agent_ids=["a002"])],
                gate.hold(finish("success", "done without a002")),
            ),
            worker("W-FLAKY", model_fails),
        )
    )
    run_id = await se.start()
    raised = await se.events.wait_for(ev.EscalationRaised, timeout=20)
    assert (raised.kind, raised.agent_id) == ("blocker", "a002")
    assert "failed again after its one mitigation" in raised.question
    assert raised.options == ("Retry with my answer", "Skip it", "Stop the run")
    assert se.events.statuses("a002").count("failed") == 2
    assert answer(se, raised, "Retry with my answer", "use the cache")
    # the person's retry fails too: that is not a new blocker to ask about
    await until(lambda: se.events.statuses("a002").count("failed") == 3, "the third failure", 20)
    gate.open()
    outcome = await se.wait(run_id, timeout=20)
    assert len(escalations_of(se, "a002")) == 1
    row = se.journal.get_agent(run_id, "a002")
    assert row is not None and row.escalated and row.mitigation_count == 1
    # mitigated and decided by the person: a success may go on without it, and says so
    assert outcome.status == "succeeded", outcome
    assert outcome.summary.startswith("done without a002\n\nNot everything went to plan (1 agent):")
    assert outcome.summary.endswith("; mitigated by resume:a001; the person decided")


async def test_a_mitigator_that_fails_twice_escalates_its_blocker_once(
    sim_engine: SimEngineFactory,
) -> None:
    """The blocker goes to the person when its mitigator fails; the mitigator, restarted with
    guidance, fails again: the blocker is already with the person and is not asked about twice."""
    gate = Gate()
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-STUCK needs a fix")],
                [tool_use("await_agents", agent_ids=["a002"])],  # returns on the blocker
                [tool_use("spawn_agent", task="W-MEND fixes it", mitigates="a002")],
                [tool_use("await_agents", agent_ids=["a003"])],
                [tool_use("resume_agent", agent_id="a003", message="try the other way")],
                [tool_use("await_agents", agent_ids=["a003"])],
                gate.hold([tool_use("await_agents", agent_ids=["a002"])]),
                finish("failure", "nobody could fix it"),
            ),
            worker("W-STUCK", [tool_use("report_blocker", description="a broken lock file")]),
            worker("W-MEND", model_fails),
        )
    )
    run_id = await se.start()
    raised = await se.events.wait_for(ev.EscalationRaised, timeout=20)
    assert (raised.kind, raised.agent_id) == ("blocker", "a002")
    assert "its mitigation a003 failed" in raised.question
    await until(lambda: se.events.statuses("a003").count("failed") == 2, "a003 failing twice", 20)
    assert len(escalations_of(se, "a002")) == 1
    assert [e.escalation_id for e in se.engine.pending_escalations()] == [raised.escalation_id]
    assert answer(se, raised, "Cancel the agent")
    gate.open()
    outcome = await se.wait(run_id, timeout=20)
    assert outcome.status == "failed", outcome
    assert se.journal.get_agent(run_id, "a002").status == "cancelled"
    assert len(escalations_of(se, "a002")) == 1


async def test_cancelling_an_agent_mid_model_call_frees_its_slot_at_once(
    sim_engine: SimEngineFactory,
) -> None:
    """The one slot is held by a worker waiting on its model call; cancelling that worker ends
    its call there and then, so the next worker gets the slot without waiting for the reply."""
    held, go_on = Gate(), Gate()
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-HELD thinks for long")],
                go_on.hold([tool_use("cancel_agent", agent_id="a002", reason="not needed")]),
                [tool_use("spawn_agent", task="W-NEXT needs the slot")],
                [tool_use("await_agents", agent_ids=["a003"])],
                finish(),
            ),
            worker("W-HELD", held.hold(complete("too late"))),
            worker("W-NEXT", complete("next done")),
        )
    )
    run_id = await se.start(max_concurrent=1)
    await until(lambda: len(se.requests_of("W-HELD")) == 1, "a002's model call")
    go_on.open()
    try:
        outcome = await se.wait(run_id)
    finally:
        held.open()  # the reply nobody waits for any more
    assert outcome.status == "succeeded", outcome
    assert se.journal.get_agent(run_id, "a002").status == "cancelled"
    assert se.journal.get_agent(run_id, "a003").summary == "next done"
    assert se.events.statuses("a002")[-1] == "cancelled"


# ---------------------------------------------------------------------------- budget
BIG_SUMMARY = "x" * 24_000  # about 6,000 output tokens: $0.09 at the simulator's prices


async def test_the_budget_counts_every_agent_and_refuses_spawns_at_it(
    sim_engine: SimEngineFactory,
) -> None:
    rec, gate = Recorder(), Gate()
    budget = 0.2

    def await_then_spawn(req: SimRequest) -> list[dict[str, Any]]:
        gate.open()  # this call passed the budget check: the workers may answer now
        return [
            tool_use("await_agents", agent_ids=spawned_ids(req)),
            tool_use("spawn_agent", task="W-LATE one more"),
        ]

    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task=f"W-COSTLY number {i}") for i in range(3)],
                await_then_spawn,
                recording(rec, "after", finish()),
            ),
            worker("W-COSTLY", gate.hold(complete(BIG_SUMMARY))),
            worker("W-LATE", complete("never")),
        )
    )
    run_id = await se.start(budget_usd=budget)
    raised = await se.events.wait_for(ev.EscalationRaised, timeout=20)
    assert raised.kind == "budget" and raised.agent_id == "a001"
    calls = [c for c in se.journal.list_tool_calls(run_id, "a001") if c.name == "spawn_agent"]
    assert [c.is_error for c in calls] == [False, False, False, True]
    refusal = calls[-1].result
    assert (
        refusal is not None and f"spawn refused by cap budget_usd={budget:.2f}" in refusal["error"]
    )
    # no agent reached the budget alone; together they did
    costs = {a.agent_id: a.cost_usd for a in se.journal.list_agents(run_id)}
    assert len(costs) == 4 and all(0 < cost < budget for cost in costs.values()), costs
    assert sum(costs.values()) >= budget
    assert se.requests_of("W-LATE") == []
    assert answer(se, raised, "Stop the run")
    outcome = await se.wait(run_id)
    assert outcome.status == "failed" and "budget" in outcome.summary
    assert "after" not in rec  # no model call past the budget


async def test_agents_that_reach_the_budget_together_ask_once(
    sim_engine: SimEngineFactory,
) -> None:
    """Two workers cross the budget in the same moment: one asks the person, the other waits
    for that answer (not a second question) and goes on under the raised budget."""
    gate = Gate()
    costly = blocks(text(BIG_SUMMARY), tool_use("report_progress", note="spent a lot"))
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task=f"W-PAIR number {i}") for i in range(2)],
                [tool_use("await_agents")],
                finish(),
            ),
            worker("W-PAIR", gate.hold(costly), complete("paired")),
        )
    )
    run_id = await se.start(budget_usd=0.05)
    await until(lambda: len(se.requests_of("W-PAIR")) == 2, "both workers' first calls")
    gate.open()
    raised = await se.events.wait_for(ev.EscalationRaised, timeout=20)
    assert raised.kind == "budget" and raised.agent_id in ("a002", "a003")
    # both turns are done: the other worker now waits at the budget for the same answer
    await until(tool_started(se, "report_progress", 2), "both workers' notes")
    assert answer(se, raised, "Raise the budget", "5")
    outcome = await se.wait(run_id, timeout=20)
    assert outcome.status == "succeeded", outcome
    assert [e.kind for e in se.events.of(ev.EscalationRaised)] == ["budget"]
    assert [se.journal.get_agent(run_id, a).summary for a in ("a002", "a003")] == ["paired"] * 2


# ---------------------------------------------------------------------------- caps
async def test_max_agents_counts_helpers_and_allows_exactly_the_cap(
    sim_engine: SimEngineFactory,
) -> None:
    rec = Recorder()
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-BOSS delegates")],
                [tool_use("await_agents")],
                [tool_use("spawn_agent", task="W-EXTRA")],
                recording(rec, "orch", finish()),
            ),
            worker(
                "W-BOSS",
                [tool_use("spawn_agent", task="H-ONE helps")],
                recording(rec, "boss", lambda req: [tool_use("spawn_agent", task="H-TWO helps")]),
                recording(rec, "boss_refused", lambda req: [tool_use("await_agents")]),
                complete("delegated"),
            ),
            worker("H-ONE", complete("helped")),
            worker("W-EXTRA", complete("never")),
        )
    )
    run_id, outcome = await se.run(max_agents=2, max_depth=2)
    assert outcome.status == "succeeded", outcome
    at_cap = result_of(rec["boss"], "spawn_agent", 0)
    assert not at_cap.is_error and at_cap.json["agent_id"] == "a003"  # the second agent: at the cap
    over = result_of(rec["boss_refused"], "spawn_agent")
    assert over.is_error
    assert "spawn refused by cap max_agents=2: this run has spawned 2 agents" in over.json["error"]
    orch = result_of(rec["orch"], "spawn_agent")
    assert orch.is_error and "max_agents=2" in orch.json["error"]
    assert [a.agent_id for a in se.journal.list_agents(run_id)] == ["a001", "a002", "a003"]


async def test_max_depth_allows_exactly_the_cap(sim_engine: SimEngineFactory) -> None:
    rec = Recorder()

    def delegate(marker: str, child_task: str):  # type: ignore[no-untyped-def]
        return worker(
            marker,
            recording(rec, marker, lambda req: [tool_use("spawn_agent", task=child_task)]),
            lambda req: [tool_use("await_agents", agent_ids=spawned_ids(req))],
            lambda req: complete(
                f"{marker} got: {result_of(req, 'await_agents').json['agents'][0]['summary']}"
            ),
        )

    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="D-ONE")], [tool_use("await_agents")], finish()
            ),
            delegate("D-ONE", "D-TWO"),
            delegate("D-TWO", "D-THREE"),
            worker(
                "D-THREE",
                recording(rec, "D-THREE", lambda req: [tool_use("spawn_agent", task="D-FOUR")]),
                recording(rec, "refused", lambda req: complete("bottom")),
            ),
        )
    )
    run_id, outcome = await se.run(max_depth=3, timeout=20)
    assert outcome.status == "succeeded", outcome
    depths = {a.agent_id: a.depth for a in se.journal.list_agents(run_id)}
    assert depths == {"a001": 0, "a002": 1, "a003": 2, "a004": 3}  # depth 3: exactly the cap
    assert "spawn_agent" in rec["D-TWO"].tools
    assert "spawn_agent" not in rec["D-THREE"].tools
    refusal = result_of(rec["refused"], "spawn_agent")
    assert refusal.is_error and "max_depth=3" in refusal.json["error"]
    assert "agents at depth 3 may not spawn" in refusal.json["error"]
    assert se.journal.get_agent(run_id, "a002").summary == "D-ONE got: D-TWO got: bottom"


# ---------------------------------------------------------------------------- monitors
async def test_await_any_and_all_with_reordered_and_repeated_ids(
    sim_engine: SimEngineFactory,
) -> None:
    rec = Recorder()
    quick, slow = Gate(), Gate()
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-QUICK"), tool_use("spawn_agent", task="W-SLOW")],
                [
                    tool_use(
                        "await_agents", agent_ids=["a003", "a002", "a003"], mode="any", timeout_s=10
                    )
                ],
                recording(
                    rec,
                    "any",
                    lambda req: [
                        tool_use(
                            "await_agents",
                            agent_ids=["a003", "a002", "a002", "a003"],
                            mode="all",
                            timeout_s=10,
                        )
                    ],
                ),
                recording(rec, "all", finish()),
            ),
            worker("W-QUICK", quick.hold(complete("quick"))),
            worker("W-SLOW", slow.hold(complete("slow"))),
        )
    )
    run_id = await se.start()
    # neither is done when the first await starts: "any" must wait for one
    await until(tool_started(se, "await_agents"), "the first await")
    quick.open()
    await until(tool_started(se, "await_agents", 2), "the second await")
    slow.open()
    outcome = await se.wait(run_id)
    assert outcome.status == "succeeded", outcome

    first = result_of(rec["any"], "await_agents").json
    assert first["timed_out"] is False
    assert [a["agent_id"] for a in first["agents"]] == ["a003", "a002"]  # as asked, once each
    assert {a["agent_id"]: a["status"] for a in first["agents"]}["a002"] == "done"
    assert first["still_active"] == ["a003"]
    second = result_of(rec["all"], "await_agents").json
    assert second["timed_out"] is False
    assert second["agents"] == [
        {"agent_id": "a003", "status": "done", "summary": "slow"},
        {"agent_id": "a002", "status": "done", "summary": "quick"},
    ]
    assert second["still_active"] == []
    second_started = [e for e in se.events.of(ev.ToolCallStarted) if e.tool == "await_agents"][1]
    assert se.events.status_event("a003", "done").ts > second_started.ts  # "all" waited for it


def _sleep_case(kind: str) -> tuple[list[Any], str]:
    """The worker's turns for each way an agent can settle, and the status it settles in."""
    if kind == "done":
        return [complete("finished")], "done"
    if kind == "failed":
        return [model_fails], "failed"
    return [[tool_use("report_blocker", description="stuck on a decision")]], "blocked"


@pytest.mark.parametrize("kind", ["done", "failed", "blocked"])
async def test_sleep_wakes_when_an_agent_settles(sim_engine: SimEngineFactory, kind: str) -> None:
    rec, gate = Recorder(), Gate()
    turns, status = _sleep_case(kind)
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-SETTLES")],
                [tool_use("sleep", seconds=60)],
                recording(
                    rec,
                    "woke",
                    lambda req: [
                        *([tool_use("cancel_agent", agent_id="a002")] if kind == "blocked" else []),
                        tool_use("finish", summary="seen", outcome="failure"),
                    ],
                ),
            ),
            worker("W-SETTLES", gate.hold(turns[0])),
        )
    )
    run_id = await se.start()
    await until(tool_started(se, "sleep"), "the orchestrator's sleep")
    gate.open()
    outcome = await se.wait(run_id, timeout=20)
    assert outcome.status == "failed" and outcome.summary.startswith("seen"), outcome
    slept = result_of(rec["woke"], "sleep").json
    assert slept["woke_early"] is True and slept["slept_s"] < 10
    assert [(c["agent_id"], c["status"]) for c in slept["changes"]] == [("a002", status)]


async def test_sleep_wakes_when_a_helper_of_a_worker_finishes(sim_engine: SimEngineFactory) -> None:
    rec, helper, parent = Recorder(), Gate(), Gate()

    def woke(req: SimRequest) -> list[dict[str, Any]]:
        rec.note("woke", req)
        parent.open()
        return [tool_use("await_agents")]

    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-PARENT delegates")],
                [tool_use("sleep", seconds=60)],
                woke,
                finish(),
            ),
            worker(
                "W-PARENT",
                [tool_use("spawn_agent", task="H-CHILD helps")],
                [tool_use("await_agents")],
                parent.hold(complete("parent done")),
            ),
            worker("H-CHILD", helper.hold(complete("child done"))),
        )
    )
    run_id = await se.start()
    await until(tool_started(se, "sleep"), "the orchestrator's sleep")
    await until(tool_started(se, "await_agents"), "the parent's await")
    helper.open()
    outcome = await se.wait(run_id, timeout=20)
    assert outcome.status == "succeeded", outcome
    slept = result_of(rec["woke"], "sleep").json
    assert slept["woke_early"] is True
    assert slept["changes"] == [{"agent_id": "a003", "status": "done", "summary": "child done"}]
    assert slept["active"] == ["a002"]


# ---------------------------------------------------------------------------- the person and cancel
async def test_a_second_answer_to_one_escalation_is_refused(sim_engine: SimEngineFactory) -> None:
    rec = Recorder()
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("escalate", question="Which database?", options=["Postgres", "SQLite"])],
                recording(rec, "answered", finish()),
            )
        )
    )
    run_id = await se.start()
    raised = await se.events.wait_for(ev.EscalationRaised)
    assert answer(se, raised, "SQLite", "keep it simple")
    # at once, before the agent has even seen the first answer, and again later
    assert answer(se, raised, "Postgres", "changed my mind") is False
    outcome = await se.wait(run_id)
    assert outcome.status == "succeeded", outcome
    assert answer(se, raised, "Postgres", "too late") is False
    assert result_of(rec["answered"], "escalate").json == {
        "answer": "keep it simple",
        "choice": "SQLite",
    }
    row = se.journal.get_escalation(raised.escalation_id)
    assert row is not None and (row.answer, row.choice) == ("keep it simple", "SQLite")
    answered = se.events.of(ev.EscalationAnswered)
    assert [(a.escalation_id, a.choice) for a in answered] == [(raised.escalation_id, "SQLite")]
    assert se.journal.pending_escalations(run_id) == []


async def test_cancelling_an_agent_that_is_already_done(sim_engine: SimEngineFactory) -> None:
    rec, gate = Recorder(), Gate()
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-DONE finishes first")],
                [tool_use("await_agents")],
                [tool_use("cancel_agent", agent_id="a002", reason="too late")],
                recording(rec, "refused", gate.hold(finish())),
            ),
            worker("W-DONE", complete("already finished")),
        )
    )
    run_id = await se.start()
    await se.events.wait_for(ev.ToolCallFinished, lambda e: e.tool == "cancel_agent")
    # the person's cancel (the tray's) of the same finished agent: nothing to kill, nothing changes
    assert await se.engine.cancel_agent(run_id, "a002", "the person changed plans") == 0
    gate.open()
    outcome = await se.wait(run_id)
    assert outcome.status == "succeeded", outcome
    refusal = result_of(rec["refused"], "cancel_agent")
    assert refusal.is_error and refusal.json["error"] == "a002 has already ended (done)"
    row = se.journal.get_agent(run_id, "a002")
    assert row is not None and row.status == "done" and row.summary == "already finished"
    assert se.events.statuses("a002") == ["running", "done"]


# ---------------------------------------------------------------------------- the active orchestrator
def _idle(n: int) -> list[Any]:
    return [[text(f"thinking, {i + 1} of {n}")] for i in range(n)]


async def test_the_orchestrator_may_idle_eight_turns_after_each_tool_call(
    sim_engine: SimEngineFactory,
) -> None:
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("report_progress", note="planning")],
                *_idle(8),
                [
                    tool_use("report_progress", note="still planning")
                ],  # a tool call: the count starts again
                *_idle(8),
                finish(summary="decided"),
            )
        )
    )
    _, outcome = await se.run(timeout=20)
    assert outcome.status == "succeeded" and outcome.summary == "decided", outcome
    nudged = se.requests_of("GOAL")[-1]
    assert nudged.last_user_text.startswith("[engine] All agents have settled. Call finish")


async def test_a_ninth_idle_turn_in_a_row_fails_the_run(sim_engine: SimEngineFactory) -> None:
    se = sim_engine(
        policy(orchestrator([tool_use("report_progress", note="planning")], *_idle(9), finish()))
    )
    _, outcome = await se.run(timeout=20)
    assert outcome.status == "failed" and not outcome.resumable
    assert "the orchestrator ended 9 turns in a row without calling a tool" in outcome.summary
    assert len(se.requests_of("GOAL")) == 10


# ---------------------------------------------------------------------------- mitigations
async def test_a_mitigator_runs_while_its_blocker_waits_and_is_told_the_blocker(
    sim_engine: SimEngineFactory,
) -> None:
    rec = Recorder()

    def use_resolution(req: SimRequest) -> list[dict[str, Any]]:
        rec.note("unblocked", result_of(req, "report_blocker").json)
        return complete("used the restarted database")

    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-DB needs a database")],
                [tool_use("await_agents")],  # returns on the blocker
                [tool_use("spawn_agent", task="W-MEND start the database", mitigates="a002")],
                [tool_use("await_agents", agent_ids=["a002", "a003"])],
                finish(),
            ),
            worker(
                "W-DB", [tool_use("report_blocker", description="database is down")], use_resolution
            ),
            worker(
                "W-MEND",
                recording(rec, "mender", lambda req: complete("restarted it on port 5433")),
            ),
        )
    )
    # one slot: the mender can only run if the blocked agent, waiting for it, holds none
    run_id, outcome = await se.run(max_concurrent=1)
    assert outcome.status == "succeeded", outcome
    assert "You mitigate the blocker of a002: database is down" in rec["mender"].first_user_text
    assert rec["unblocked"] == {
        "resolution": "restarted it on port 5433",
        "from": "a003",
        "mitigated_by": "a003",
    }
    row = se.journal.get_agent(run_id, "a002")
    assert row is not None and row.status == "done" and row.mitigated_by == "a003"
    assert row.mitigation_count == 1 and not row.escalated


async def test_resume_agent_restarts_a_failed_agent_with_its_guidance(
    sim_engine: SimEngineFactory,
) -> None:
    rec = Recorder()

    def fails_until_guided(req: SimRequest) -> list[dict[str, Any]]:
        if "[guidance from a001]" not in req.last_user_text:
            raise RuntimeError("scripted model failure")
        rec.note("guided", req)
        return complete("done with the mirror")

    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-FAILS until guided")],
                [tool_use("await_agents")],
                [tool_use("resume_agent", agent_id="a002", message="use the mirror")],
                [tool_use("await_agents", agent_ids=["a002"])],
                finish(),
            ),
            # one turn of work, then its next model call fails until the guidance is there
            worker("W-FAILS", [tool_use("report_progress", note="half way")], fails_until_guided),
        )
    )
    run_id, outcome = await se.run(timeout=20)
    assert outcome.status == "succeeded", outcome
    guided = rec["guided"]
    # The guidance joins the last user message (the tool result it failed after): roles still
    # alternate, the result keeps its tool_use, the guidance is there once.
    assert [m["role"] for m in guided.messages] == ["user", "assistant", "user"]
    assert [r.tool_name for r in guided.last_tool_results] == ["report_progress"]
    assert guided.last_user_text.count("[guidance from a001] use the mirror") == 1
    assert "[guidance from" not in guided.first_user_text
    # and so does the journal's transcript, which a resume would replay
    transcript = se.journal.load_transcript(run_id, "a002")
    assert "[guidance from a001] use the mirror" in json.dumps(transcript[2])
    row = se.journal.get_agent(run_id, "a002")
    assert row is not None and row.status == "done" and row.summary == "done with the mirror"
    assert (row.mitigation_count, row.mitigated_by) == (1, "resume:a001")
    assert se.events.statuses("a002")[:3] == ["running", "failed", "queued"]


async def test_an_agent_that_completes_as_its_progress_folder_breaks_is_done(
    sim_engine: SimEngineFactory, workspace: Path
) -> None:
    """Its result is in the journal: the folder it can no longer write fails the agents that go on
    working (here the orchestrator), not the one that already finished."""
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-LAST breaks the folder as it finishes")],
                [tool_use("await_agents")],
                finish(),
            ),
            worker(
                "W-LAST",
                [
                    tool_use(
                        "run_command",
                        command="mv agent-responses moved && ln -s /tmp agent-responses",
                    ),
                    tool_use("complete", summary="finished anyway"),
                ],
            ),
        )
    )
    run_id, outcome = await se.run(timeout=20)
    row = se.journal.get_agent(run_id, "a002")
    assert row is not None and (row.status, row.summary) == ("done", "finished anyway")
    assert outcome.status == "failed" and "progress file" in outcome.summary
    assert se.journal.get_agent(run_id, "a001").status == "failed"
    assert (workspace / "agent-responses").is_symlink()


async def test_finish_success_needs_each_failed_worker_mitigated(
    sim_engine: SimEngineFactory,
) -> None:
    rec = Recorder()
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-BROKEN fails")],
                [tool_use("await_agents")],
                [tool_use("finish", summary="too soon", outcome="success")],
                recording(
                    rec,
                    "refused",
                    lambda req: [tool_use("spawn_agent", task="W-FIX redo it", mitigates="a002")],
                ),
                [tool_use("await_agents", agent_ids=["a003"])],
                recording(rec, "mitigated", finish(summary="redone by a003")),
            ),
            worker("W-BROKEN", model_fails),
            worker("W-FIX", complete("redone")),
        )
    )
    run_id, outcome = await se.run(timeout=20)
    assert outcome.status == "succeeded" and outcome.summary.startswith("redone by a003"), outcome
    refusal = result_of(rec["refused"], "finish")
    assert (
        refusal.is_error
        and "a002 (W-BROKEN fails) failed and nobody mitigated it" in refusal.json["error"]
    )
    # its one mitigation done, the failed worker no longer stands in the way
    row = se.journal.get_agent(run_id, "a002")
    assert row is not None and row.status == "failed" and row.mitigation_count == 1


# ---------------------------------------------------------------------------- model calls and statuses
async def test_default_model_calls_are_plain_posts_not_streams(
    sim_engine: SimEngineFactory,
) -> None:
    """README: a model call is one plain POST; it streams only when max_tokens is above the
    client's threshold, so the default max_tokens must stay at or under it."""
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-ONE works")], [tool_use("await_agents")], finish()
            ),
            worker("W-ONE", complete("worked")),
        )
    )
    _, outcome = await se.run()
    assert outcome.status == "succeeded", outcome
    bodies = [r.body for r in se.sim.message_requests]
    assert len(bodies) == 4
    assert all(0 < b["max_tokens"] <= STREAM_ABOVE_MAX_TOKENS for b in bodies), bodies
    assert not any(b.get("stream") for b in bodies)


async def test_an_agent_runs_again_as_soon_as_its_waiting_tool_returns(
    sim_engine: SimEngineFactory, workspace: Path
) -> None:
    """A waiting tool (await_agents on a helper) makes the agent "waiting"; once it returns, the
    rest of the same turn (a command) runs with the agent "running", not only from its next model
    call on."""
    gate = Gate()
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-LEAD waits for a helper, then builds")],
                [tool_use("await_agents")],
                finish(),
            ),
            worker(
                "W-LEAD",
                [
                    tool_use("spawn_agent", task="H-HELPER helps"),
                    tool_use("await_agents"),
                    tool_use("run_command", command="while [ ! -e go ]; do sleep 0.01; done"),
                ],
                complete("helped, then built"),
            ),
            worker("H-HELPER", gate.hold(complete("helped"))),
        )
    )
    run_id = await se.start()
    await until(tool_started(se, "await_agents", 2), "the lead waiting on its helper")
    await until(lambda: se.journal.get_agent(run_id, "a002").status == "waiting", "a002 waiting")
    gate.open()
    await until(tool_started(se, "run_command"), "the command after the wait")
    view = se.engine.run_view(run_id)
    assert view is not None and view.agent("a003").status == "done"
    assert view.agent("a002").status == "running"
    assert se.journal.get_agent(run_id, "a002").status == "running"
    (workspace / "go").touch()
    outcome = await se.wait(run_id)
    assert outcome.status == "succeeded", outcome
    assert se.events.statuses("a002")[-3:] == ["waiting", "running", "done"]


async def test_the_budget_is_reached_at_exactly_its_amount(sim_engine: SimEngineFactory) -> None:
    """A cost a hair under the budget lets the next call go; a cost equal to it asks first."""
    gate = Gate()
    se = sim_engine(
        policy(
            orchestrator([tool_use("spawn_agent", task="W-HELD waits")], [tool_use("await_agents")]),
            worker("W-HELD", gate.hold(complete("held"))),
        )
    )
    run_id = await se.start(budget_usd=100.0)
    try:
        await until(tool_started(se, "await_agents"), "the orchestrator waits")
        run = se.engine.runs[run_id]
        agent = run.agents["a002"]
        run.budget_usd = 1.0
        run.cost_usd = 1.0 - 1e-9
        await run.ensure_budget(agent)  # under it: returns at once, nothing asked
        assert se.events.of(ev.EscalationRaised) == []
        run.cost_usd = 1.0
        asking = asyncio.create_task(run.ensure_budget(agent))
        raised = await se.events.wait_for(ev.EscalationRaised)
        assert (raised.kind, raised.agent_id) == ("budget", "a002")
        assert not asking.done()
        assert answer(se, raised, "Stop the run")
        await asyncio.wait_for(asyncio.gather(asking, return_exceptions=True), GATE_TIMEOUT_S)
    finally:
        gate.open()
    assert (await se.wait(run_id)).status == "failed"


async def test_the_scheduler_measures_each_agents_chain_of_dependents(
    sim_engine: SimEngineFactory,
) -> None:
    """A diamond a002 -> (a003, a004) -> a005 beside a lone a006: the chain behind each agent is
    its longest line of active dependents; a dependent that ended no longer counts."""
    gate = Gate()
    se = sim_engine(
        policy(
            orchestrator(
                [
                    tool_use("spawn_agent", task="W-ROOT first"),
                    tool_use("spawn_agent", task="W-MID left", depends_on=["a002"]),
                    tool_use("spawn_agent", task="W-MID right", depends_on=["a002"]),
                    tool_use("spawn_agent", task="W-LAST join", depends_on=["a003", "a004"]),
                    tool_use("spawn_agent", task="W-ALONE lone"),
                ],
                [tool_use("await_agents")],
            ),
            worker("W-ROOT", gate.hold(complete("root"))),
            worker("W-ALONE", gate.hold(complete("alone"))),
            worker("W-MID", complete("mid")),
            worker("W-LAST", complete("last")),
        )
    )
    run_id = await se.start()
    try:
        await until(tool_started(se, "await_agents"), "all five spawned")
        run = se.engine.runs[run_id]
        chains = {a: run.dependents_chain(a) for a in ("a002", "a003", "a004", "a005", "a006")}
        assert chains == {"a002": 2, "a003": 1, "a004": 1, "a005": 0, "a006": 0}
        await se.engine.cancel_agent(run_id, "a005")
        assert [run.dependents_chain(a) for a in ("a002", "a003", "a004")] == [1, 0, 0]
        se.engine.stop_run(run_id)
    finally:
        gate.open()
    await se.wait(run_id)
