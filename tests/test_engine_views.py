"""Engine.view() and Engine.run_view(): frozen copies of the live runs for the tray, which must
never hold engine objects. A view taken while an agent works does not change when it ends."""

from __future__ import annotations

import dataclasses
import json

from agent_scripts import complete, orchestrator, policy, worker
from agentray import events as ev
from agentray.engine._state import AgentRecord
from agentray.simulator import tool_use
from agentray.states import AgentStatus, Role
from conftest import SimEngineFactory
from edge_helpers import Gate, answer


async def test_views_are_frozen_copies_of_the_live_run(sim_engine: SimEngineFactory) -> None:
    gate = Gate()
    se = sim_engine(
        policy(
            orchestrator(
                [
                    tool_use("spawn_agent", task="W-VIEWED works"),
                    tool_use("escalate", question="Carry on?", options=["Yes", "No"]),
                ],
                [tool_use("await_agents")],
                [tool_use("finish", summary="seen", outcome="success")],
            ),
            worker("W-VIEWED", gate.hold(complete("viewed"))),
        )
    )
    run_id = await se.start()
    raised = await se.events.wait_for(ev.EscalationRaised)
    await se.events.wait_status("a002", "running")
    live = se.engine.run_view(run_id)
    assert live is not None and live.live and live.status == "running" and live.summary == ""
    assert [(a.agent_id, a.status, a.active) for a in live.agents] == [
        ("a001", "waiting", True),
        ("a002", "running", True),
    ]
    assert live.agent("a002") is not None and live.agent("a002").title == "W-VIEWED works"
    assert live.count("running", "waiting") == 2
    everything = se.engine.view()
    assert everything.run(run_id) == live and everything.live_runs == (live,)
    assert [e.escalation_id for e in everything.escalations] == [raised.escalation_id]

    gate.open()
    assert answer(se, raised, "Yes")
    # answered is no longer pending, at once (before the asking agent has even woken up)
    assert se.engine.pending_escalations() == [] and se.engine.view().escalations == ()
    outcome = await se.wait(run_id)
    assert outcome.status == "succeeded", outcome
    ended = se.engine.run_view(run_id)
    assert ended is not None and not ended.live
    assert (ended.status, ended.summary) == ("succeeded", "seen")
    assert [(a.agent_id, a.status, a.active) for a in ended.agents] == [
        ("a001", "done", False),
        ("a002", "done", False),
    ]
    assert se.engine.view().live_runs == () and se.engine.view().escalations == ()
    # the view taken earlier kept what it saw
    assert [a.status for a in live.agents] == ["waiting", "running"] and live.live
    assert se.engine.run_view("r-none") is None


async def test_the_view_says_the_network_is_open_whenever_commands_run_unconfined(
    sim_engine: SimEngineFactory,
) -> None:
    """allow_network in the view and in RunStarted: without a sandbox commands always reach the
    network (whatever allow_network says); in the sandbox only when allow_network is on."""
    se = sim_engine(
        policy(orchestrator(*[[tool_use("finish", summary="done", outcome="success")]] * 3))
    )
    cases = [
        # (sandbox, allow_network) -> (network shown, sandboxed)
        ((False, False), (True, False)),
        ((True, True), (True, True)),
        ((True, False), (False, True)),
    ]
    for (sandbox, allow_network), expected in cases:
        run_id, outcome = await se.run(sandbox=sandbox, allow_network=allow_network)
        assert outcome.status == "succeeded", outcome
        view = se.engine.run_view(run_id)
        assert view is not None
        assert (view.allow_network, view.sandboxed) == expected, (sandbox, allow_network)
        (started,) = [e for e in se.events.of(ev.RunStarted) if e.run_id == run_id]
        assert started.allow_network is expected[0], (sandbox, allow_network)
        assert (started.sandbox != "none") is expected[1]


async def test_an_agent_record_crosses_a_wire_as_plain_json(sim_engine: SimEngineFactory) -> None:
    """The record another executor would ship: every field, JSON-plain (enums as their values,
    tuples as lists), and back into an equal record."""
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-SHIPPED works", depends_on=[])],
                [tool_use("await_agents")],
                [tool_use("finish", summary="shipped", outcome="success")],
            ),
            worker("W-SHIPPED", complete("done and shipped")),
        )
    )
    run_id, outcome = await se.run()
    assert outcome.status == "succeeded"
    view = se.engine.run_view(run_id)
    assert view is not None
    record = view.agent("a002")
    assert record is not None
    wire = json.loads(json.dumps(record.to_dict()))
    assert list(wire) == [f.name for f in dataclasses.fields(AgentRecord)]
    assert wire["status"] == "done" and wire["role"] == "worker" and wire["depends_on"] == []
    assert wire["summary"] == "done and shipped" and wire["turns"] == 1 and wire["cost_usd"] > 0
    back = AgentRecord(
        **{
            **wire,
            "role": Role(wire["role"]),
            "status": AgentStatus(wire["status"]),
            "depends_on": tuple(wire["depends_on"]),
        }
    )
    assert back == record
