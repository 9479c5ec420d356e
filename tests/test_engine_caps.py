"""Caps the model cannot talk its way past, and bad model input turned into is_error results."""

from __future__ import annotations

import threading
import time

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
    worker,
)
from agentray import events as ev
from agentray.engine._toolkit import validate_input
from agentray.engine._tools import WORKER_TOOLS
from agentray.errors import ToolError
from agentray.escalation import Answer, OptionId
from agentray.simulator import Reply, Rule, ScriptedPolicy, SimRequest, tool_use
from conftest import SimEngineFactory


def _finish(outcome: str = "success"):
    return lambda req: [tool_use("finish", summary=f"finished: {outcome}", outcome=outcome)]


async def test_max_agents_refuses_the_extra_spawn(sim_engine: SimEngineFactory) -> None:
    rec = Recorder()
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task=f"W-MANY number {i}") for i in range(3)],
                recording(
                    rec,
                    "spawned",
                    lambda req: [tool_use("await_agents", agent_ids=spawned_ids(req))],
                ),
                _finish(),
            ),
            worker("W-MANY", complete("one of many")),
        )
    )
    run_id, outcome = await se.run(max_agents=2)
    assert outcome.status == "succeeded"
    results = rec["spawned"].last_tool_results
    assert [r.is_error for r in results] == [False, False, True]
    assert "max_agents=2" in results[2].json["error"]
    assert len(se.journal.list_agents(run_id)) == 3  # the orchestrator and two workers


async def test_max_depth_1_worker_has_no_spawn_tool(sim_engine: SimEngineFactory) -> None:
    rec = Recorder()
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-FLAT no helpers")],
                [tool_use("await_agents")],
                _finish(),
            ),
            worker(
                "W-FLAT",
                recording(
                    rec, "tools", lambda req: [tool_use("spawn_agent", task="W-NOPE helper")]
                ),
                recording(rec, "refused", lambda req: complete("did it myself")),
            ),
        )
    )
    run_id, outcome = await se.run(max_depth=1)
    assert outcome.status == "succeeded"
    assert "spawn_agent" not in rec["tools"].tools and "write_file" in rec["tools"].tools
    refusal = result_of(rec["refused"], "spawn_agent")
    assert refusal.is_error and "max_depth=1" in refusal.json["error"]
    assert len(se.journal.list_agents(run_id)) == 2


def _helper_parent(marker: str, helper_task: str):
    return worker(
        marker,
        [tool_use("spawn_agent", task=helper_task)],
        lambda req: [tool_use("await_agents", agent_ids=spawned_ids(req))],
        lambda req: complete(
            "helper said: " + result_of(req, "await_agents").json["agents"][0]["summary"]
        ),
    )


async def test_max_depth_2_helpers_may_not_spawn(sim_engine: SimEngineFactory) -> None:
    rec = Recorder()
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-PARENT delegates")],
                [tool_use("await_agents")],
                _finish(),
            ),
            _helper_parent("W-PARENT", "W-HELPER helps"),
            worker(
                "W-HELPER",
                recording(
                    rec, "helper_tools", lambda req: [tool_use("spawn_agent", task="W-GRANDCHILD")]
                ),
                recording(rec, "refused", lambda req: complete("helped")),
            ),
        )
    )
    run_id, outcome = await se.run(max_depth=2)
    assert outcome.status == "succeeded"
    rows = {a.agent_id: a for a in se.journal.list_agents(run_id)}
    assert (rows["a003"].depth, rows["a003"].parent_id) == (2, "a002")
    assert rows["a002"].summary == "helper said: helped"
    refusal = result_of(rec["refused"], "spawn_agent")
    assert refusal.is_error and "max_depth=2" in refusal.json["error"]
    assert "spawn_agent" not in rec["helper_tools"].tools
    assert len(rows) == 3


class InFlight:
    """Counts model requests being answered at once (policy calls run on server threads)."""

    def __init__(self, inner: ScriptedPolicy, hold_s: float = 0.03) -> None:
        self.inner, self.hold_s = inner, hold_s
        self.lock = threading.Lock()
        self.now = self.peak = self.total = 0
        self.workers_now = self.workers_peak = 0

    def respond(self, request: SimRequest) -> Reply | list[dict[str, object]]:
        # the orchestrator takes no worker slot: count the workers' calls apart
        is_worker = "finish" not in request.tools
        with self.lock:
            self.now += 1
            self.total += 1
            self.peak = max(self.peak, self.now)
            self.workers_now += is_worker
            self.workers_peak = max(self.workers_peak, self.workers_now)
        try:
            time.sleep(self.hold_s)
            return self.inner.respond(request)
        finally:
            with self.lock:
                self.now -= 1
                self.workers_now -= is_worker


async def test_max_concurrent_1_serialises_model_calls(sim_engine: SimEngineFactory) -> None:
    counter = InFlight(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task=f"W-CONC number {i}") for i in range(3)],
                [tool_use("await_agents")],
                _finish(),
            ),
            worker("W-CONC", [tool_use("report_progress", note="working")], complete("done")),
        )
    )
    se = sim_engine(counter)
    run_id, outcome = await se.run(max_concurrent=1)
    assert outcome.status == "succeeded"
    assert counter.total == 3 + 3 * 2
    assert counter.workers_peak == 1
    assert counter.peak <= 2  # plus the orchestrator, which needs no slot
    assert all(a.status == "done" for a in se.journal.list_agents(run_id))


async def test_nested_await_under_max_concurrent_1_does_not_deadlock(
    sim_engine: SimEngineFactory,
) -> None:
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-NEST delegates")],
                [tool_use("await_agents")],
                _finish(),
            ),
            _helper_parent("W-NEST", "W-INNER helps"),
            worker(
                "W-INNER", [tool_use("report_progress", note="helping")], complete("inner done")
            ),
        )
    )
    run_id, outcome = await se.run(max_concurrent=1, timeout=8)
    assert outcome.status == "succeeded"
    rows = {a.agent_id: a for a in se.journal.list_agents(run_id)}
    assert rows["a002"].summary == "helper said: inner done"
    assert rows["a003"].status == "done"


def _budget_policy() -> ScriptedPolicy:
    return policy(orchestrator([tool_use("check_agents")], _finish()))


async def test_budget_escalates_and_raising_it_lets_the_run_finish(
    sim_engine: SimEngineFactory,
) -> None:
    se = sim_engine(_budget_policy())
    run_id = await se.start(budget_usd=0.0001)
    raised = await se.events.wait_for(ev.EscalationRaised)
    assert raised.kind == "budget"
    assert raised.options == ("Raise the budget", "Stop the run")
    assert se.engine.answer_escalation(raised.escalation_id, Answer(OptionId.RAISE_BUDGET, "100"))
    outcome = await se.wait(run_id)
    assert outcome.status == "succeeded", outcome
    run = se.journal.get_run(run_id)
    assert run is not None and run.config["budget_usd"] == 100.0
    assert any("budget raised to $100.00" in n.message for n in se.events.of(ev.Notice))


async def test_budget_stop_fails_the_run(sim_engine: SimEngineFactory) -> None:
    se = sim_engine(_budget_policy())
    run_id = await se.start(budget_usd=0.0001)
    raised = await se.events.wait_for(ev.EscalationRaised)
    assert se.engine.answer_escalation(raised.escalation_id, Answer(OptionId.STOP_RUN, "no"))
    outcome = await se.wait(run_id)
    assert outcome.status == "failed"
    assert "budget" in outcome.summary
    assert se.journal.get_run(run_id).status == "failed"
    assert len(se.sim.message_requests) == 1  # no model call past the budget


async def test_per_agent_turn_limit_fails_the_agent(sim_engine: SimEngineFactory) -> None:
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-LOOP forever")],
                [tool_use("await_agents")],
                _finish("failure"),
            ),
            worker("W-LOOP", *[[tool_use("report_progress", note="still going")]] * 20),
        )
    )
    run_id, outcome = await se.run(max_turns=4)
    assert outcome.status == "failed" and outcome.summary == "finished: failure"
    row = se.journal.get_agent(run_id, "a002")
    assert row is not None and row.status == "failed"
    assert "turn limit" in (row.status_reason or "")
    assert row.turns == 4
    assert len(se.requests_of("W-LOOP")) == 4


# ---------------------------------------------------------------------------- bad model input
async def test_bad_tool_input_becomes_is_error_and_the_agent_carries_on(
    sim_engine: SimEngineFactory,
) -> None:
    rec = Recorder()
    se = sim_engine(
        ScriptedPolicy(
            [
                Rule(
                    ORCH,
                    [
                        [
                            tool_use("frobnicate", x=1),
                            tool_use("spawn_agent", task=123),
                            tool_use("spawn_agent", title="no task"),
                            tool_use("spawn_agent", task="W-OK fine", colour="red"),
                            tool_use("await_agents", mode="sometimes"),
                            tool_use("write_file", path="x.txt", content="y"),
                        ],
                        recording(
                            rec, "orch", lambda req: [tool_use("spawn_agent", task="W-OK fine")]
                        ),
                        [tool_use("await_agents")],
                        _finish(),
                    ],
                ),
                Rule(
                    "W-OK",
                    [
                        [
                            tool_use("write_file", path=5, content="x"),
                            tool_use("finish", summary="x", outcome="success"),
                        ],
                        recording(rec, "worker", lambda req: complete("recovered")),
                    ],
                ),
            ]
        )
    )
    run_id, outcome = await se.run()
    assert outcome.status == "succeeded", outcome
    errors = [r.json["error"] for r in rec["orch"].last_tool_results]
    assert all(r.is_error for r in rec["orch"].last_tool_results)
    assert "unknown tool 'frobnicate'" in errors[0] and "spawn_agent" in errors[0]
    assert "task must be a string, got int" in errors[1]
    assert "missing required input task" in errors[2]
    assert "unknown input colour" in errors[3]
    assert "mode must be one of all, any" in errors[4]
    assert errors[5] == (
        "write_file is a worker tool; the orchestrator delegates work with spawn_agent"
    )
    worker_errors = rec["worker"].last_tool_results
    assert all(r.is_error for r in worker_errors)
    assert "path must be a string" in worker_errors[0].json["error"]
    assert "only the orchestrator can finish" in worker_errors[1].json["error"]
    rows = {a.agent_id: a for a in se.journal.list_agents(run_id)}
    assert list(rows) == ["a001", "a002"] and rows["a002"].summary == "recovered"
    failed_calls = [c for c in se.journal.list_tool_calls(run_id) if c.is_error]
    assert len(failed_calls) == 8


@pytest.mark.parametrize("raw", [["a", "list"], "text", 5, None])
def test_a_tool_input_that_is_not_an_object_is_refused(raw: object) -> None:
    """The API always sends an object; anything else (a replayed or hand-made call) is refused
    with what is wrong, never taken apart as if it were one."""
    with pytest.raises(ToolError, match=r"^complete: input must be a JSON object$"):
        validate_input(WORKER_TOOLS["complete"], raw)
