"""Dependencies, the error-recovery protocol (one mitigation per blocker, then the human) and
the escalation round trip."""

from __future__ import annotations

from agent_scripts import (
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
from agentray.escalation import Answer, OptionId
from agentray.simulator import SimRequest, tool_use
from conftest import SimEngineFactory


def model_fails(req: SimRequest) -> list[dict[str, object]]:
    """The simulator answers a raising turn with a 500; after the client's retries the agent fails."""
    raise RuntimeError("scripted model failure")


def _finish(outcome: str = "success"):
    return lambda req: [tool_use("finish", summary=f"finished: {outcome}", outcome=outcome)]


def _complete_with_resolution(req: SimRequest) -> list[dict[str, object]]:
    resolution = req.last_tool_results[0].json["resolution"]
    return complete(f"done using: {resolution}")


def _complete_with_the_persons_answer(req: SimRequest) -> list[dict[str, object]]:
    """What report_blocker returned after the person answered: their text, and the option."""
    got = req.last_tool_results[0].json
    return complete(f"done using: {got['resolution']} (from {got['from']}: {got['choice']})")


# ---------------------------------------------------------------------------- dependencies
async def test_depends_on_starts_after_the_dependency_is_done(sim_engine: SimEngineFactory) -> None:
    rec = Recorder()
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-FIRST make the schema")],
                lambda req: [
                    tool_use(
                        "spawn_agent", task="W-SECOND use the schema", depends_on=spawned_ids(req)
                    )
                ],
                recording(
                    rec,
                    "spawned",
                    lambda req: [tool_use("await_agents", agent_ids=spawned_ids(req))],
                ),
                _finish(),
            ),
            worker(
                "W-FIRST",
                [tool_use("run_command", command="sleep 0.5")],
                complete("schema v3 ready"),
            ),
            worker("W-SECOND", complete("used it")),
        )
    )
    run_id, outcome = await se.run()
    assert outcome.status == "succeeded", outcome
    assert result_of(rec["spawned"], "spawn_agent").json["status"] == "queued"
    running = [
        e.agent_id
        for e in se.events.of(ev.AgentStatusChanged)
        if e.status == "running" and e.agent_id != "a001"
    ]
    assert running == ["a002", "a003"]
    assert se.events.status_event("a003", "running").ts >= se.events.status_event("a002", "done").ts
    (first_request, *_) = se.requests_of("W-SECOND")
    assert "Result of a002: schema v3 ready" in first_request.first_user_text
    rows = {a.agent_id: a for a in se.journal.list_agents(run_id)}
    assert rows["a003"].depends_on == ("a002",)
    assert rows["a003"].status == "done"


async def test_failed_dependency_cancels_the_dependent(sim_engine: SimEngineFactory) -> None:
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-BROKEN fails")],
                lambda req: [
                    tool_use("spawn_agent", task="W-AFTER never runs", depends_on=spawned_ids(req))
                ],
                lambda req: [tool_use("await_agents", agent_ids=spawned_ids(req))],
                _finish("failure"),
            ),
            worker("W-BROKEN", model_fails),
            worker("W-AFTER", complete("impossible")),
        )
    )
    run_id, outcome = await se.run()
    assert outcome.status == "failed"
    rows = {a.agent_id: a for a in se.journal.list_agents(run_id)}
    assert rows["a002"].status == "failed"
    assert rows["a003"].status == "cancelled"
    assert "a002" in (rows["a003"].status_reason or "") and "failed" in (
        rows["a003"].status_reason or ""
    )
    assert se.requests_of("W-AFTER") == []
    assert "running" not in se.events.statuses("a003")


async def test_cancelled_dependency_cancels_the_dependent(sim_engine: SimEngineFactory) -> None:
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-LONG sleeps")],
                lambda req: [
                    tool_use("spawn_agent", task="W-NEXT waits", depends_on=spawned_ids(req))
                ],
                lambda req: [
                    tool_use("cancel_agent", agent_id=spawned_ids(req)[0], reason="not needed")
                ],
                lambda req: [tool_use("await_agents", agent_ids=spawned_ids(req))],
                _finish(),
            ),
            worker("W-LONG", [tool_use("run_command", command="sleep 30")], complete("slept")),
            worker("W-NEXT", complete("impossible")),
        )
    )
    run_id, outcome = await se.run()
    assert outcome.status == "succeeded"
    rows = {a.agent_id: a for a in se.journal.list_agents(run_id)}
    assert rows["a002"].status == "cancelled" and rows["a002"].status_reason == "not needed"
    assert rows["a003"].status == "cancelled"
    assert "dependency a002 cancelled" in (rows["a003"].status_reason or "")
    assert se.requests_of("W-NEXT") == []


# ---------------------------------------------------------------------------- error recovery
async def test_resume_agent_unblocks_and_a_second_mitigation_is_refused(
    sim_engine: SimEngineFactory,
) -> None:
    rec = Recorder()
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-BLOCKY needs a spec")],
                [tool_use("await_agents")],
                recording(
                    rec,
                    "blocked",
                    lambda req: [
                        tool_use("resume_agent", agent_id="a002", message="use the v2 spec")
                    ],
                ),
                [tool_use("resume_agent", agent_id="a002", message="again")],
                recording(
                    rec,
                    "second",
                    lambda req: [
                        tool_use("spawn_agent", task="W-FIXER another try", mitigates="a002")
                    ],
                ),
                recording(rec, "third", lambda req: [tool_use("await_agents", agent_ids=["a002"])]),
                _finish(),
            ),
            worker(
                "W-BLOCKY",
                [tool_use("report_blocker", description="missing API spec")],
                _complete_with_resolution,
            ),
            worker("W-FIXER", complete("should never run")),
        )
    )
    run_id, outcome = await se.run()
    assert outcome.status == "succeeded", outcome
    awaited = result_of(rec["blocked"], "await_agents").json
    assert awaited["agents"] == [
        {"agent_id": "a002", "status": "blocked", "blocker": "missing API spec"}
    ]
    for key, tool in (("second", "resume_agent"), ("third", "spawn_agent")):
        refusal = result_of(rec[key], tool)
        assert refusal.is_error and "second mitigation" in refusal.json["error"], refusal
    row = se.journal.get_agent(run_id, "a002")
    assert row is not None and row.status == "done"
    assert row.summary == "done using: use the v2 spec"
    assert row.mitigation_count == 1 and row.mitigated_by == "resume:a001"
    assert se.requests_of("W-FIXER") == []
    assert len(se.journal.list_agents(run_id)) == 2
    assert se.events.of(ev.EscalationRaised) == []
    progress = (se.workspace / "agent-responses" / "a002.md").read_text()
    assert "[BLOCKER] missing API spec" in progress and "unblocked by a001" in progress


async def test_failed_mitigator_escalates_and_the_answer_reaches_the_blocker(
    sim_engine: SimEngineFactory,
) -> None:
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-DB needs a database")],
                [tool_use("await_agents")],
                [tool_use("spawn_agent", task="W-MEND start the database", mitigates="a002")],
                [tool_use("await_agents", agent_ids=["a002", "a003"])],
                _finish(),
            ),
            worker(
                "W-DB",
                [tool_use("report_blocker", description="database is down")],
                _complete_with_resolution,
            ),
            worker("W-MEND", model_fails),
        )
    )
    run_id = await se.start()
    raised = await se.events.wait_for(ev.EscalationRaised)
    assert raised.kind == "blocker" and raised.agent_id == "a002"
    assert "a003" in raised.question and "Continue with my answer" in raised.options
    assert se.journal.get_agent(run_id, "a003").status == "failed"
    assert se.engine.answer_escalation(
        raised.escalation_id, Answer(OptionId.CONTINUE, "use sqlite instead")
    )
    outcome = await se.wait(run_id)
    assert outcome.status == "succeeded", outcome
    row = se.journal.get_agent(run_id, "a002")
    assert (
        row is not None and row.status == "done" and row.summary == "done using: use sqlite instead"
    )
    assert row.escalated and row.mitigated_by == "a003"
    answered = se.journal.get_escalation(raised.escalation_id)
    assert (
        answered is not None
        and answered.answered_by == "human"
        and answered.answer == "use sqlite instead"
    )


async def test_a_blockers_status_shows_its_first_200_characters(
    sim_engine: SimEngineFactory,
) -> None:
    """The status reason (what the tray shows) is the description's first 200 characters; the
    blocker itself is kept whole."""
    description = "".join(f"{i % 10}" for i in range(250))
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-WORDY blocks at length")],
                [tool_use("await_agents")],  # returns on the blocker
                [tool_use("cancel_agent", agent_id="a002", reason="no longer needed")],
                _finish(),
            ),
            worker("W-WORDY", [tool_use("report_blocker", description=description)]),
        )
    )
    run_id = await se.start()
    blocked = await se.events.wait_status("a002", "blocked")
    assert blocked.reason == description[:200]
    outcome = await se.wait(run_id)
    assert outcome.status == "succeeded", outcome
    row = se.journal.get_agent(run_id, "a002")
    assert row is not None and row.blocker == description


async def test_blocking_again_after_resume_escalates(sim_engine: SimEngineFactory) -> None:
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-TWICE blocks twice")],
                [tool_use("await_agents")],
                [tool_use("resume_agent", agent_id="a002", message="try the mirror")],
                [tool_use("await_agents", agent_ids=["a002"])],
                _finish(),
            ),
            worker(
                "W-TWICE",
                [tool_use("report_blocker", description="download fails")],
                [tool_use("report_blocker", description="the mirror fails too")],
                _complete_with_the_persons_answer,
            ),
        )
    )
    run_id = await se.start()
    raised = await se.events.wait_for(ev.EscalationRaised)
    assert raised.kind == "blocker" and raised.agent_id == "a002"
    assert "the mirror fails too" in raised.question
    assert raised.options[0] == "Continue with my answer"
    assert se.engine.answer_escalation(
        raised.escalation_id, Answer(OptionId.CONTINUE, "vendor the file")
    )
    outcome = await se.wait(run_id)
    assert outcome.status == "succeeded", outcome
    row = se.journal.get_agent(run_id, "a002")
    assert row is not None and row.escalated
    assert row.summary == "done using: vendor the file (from human: Continue with my answer)"


# ---------------------------------------------------------------------------- escalation
async def test_escalation_round_trip_while_others_work(sim_engine: SimEngineFactory) -> None:
    rec = Recorder()
    se = sim_engine(
        policy(
            orchestrator(
                [
                    tool_use("spawn_agent", task="W-BUSY keeps working"),
                    tool_use(
                        "escalate",
                        question="Postgres or SQLite?",
                        context="Both work; SQLite is simpler.",
                        options=["Postgres", "SQLite"],
                    ),
                ],
                recording(rec, "answered", lambda req: [tool_use("await_agents")]),
                _finish(),
            ),
            worker(
                "W-BUSY", [tool_use("run_command", command="sleep 0.3")], complete("busy work done")
            ),
        )
    )
    run_id = await se.start()
    raised = await se.events.wait_for(ev.EscalationRaised)
    assert raised.kind == "question" and raised.agent_id == "a001"
    assert raised.question == "Postgres or SQLite?"
    assert raised.context == "Both work; SQLite is simpler."
    assert raised.options == ("Postgres", "SQLite")
    (pending,) = se.journal.pending_escalations(run_id)
    assert pending.escalation_id == raised.escalation_id and pending.answered_at is None
    assert pending.escalation().labels == ("Postgres", "SQLite")
    # the worker finishes while the question waits
    await se.events.wait_status("a002", "done")
    assert se.journal.pending_escalations(run_id) != []
    sqlite = next(o for o in raised.choices if o.label == "SQLite")
    assert se.engine.answer_escalation(
        raised.escalation_id, Answer(sqlite.option_id, "SQLite, keep it simple")
    )
    outcome = await se.wait(run_id)
    assert outcome.status == "succeeded", outcome
    reply = result_of(rec["answered"], "escalate")
    assert not reply.is_error
    assert reply.json == {"answer": "SQLite, keep it simple", "choice": "SQLite"}
    row = se.journal.get_escalation(raised.escalation_id)
    assert row is not None and row.answered_at is not None
    assert row.answered_by == "human" and row.choice == "SQLite"
    assert se.journal.pending_escalations(run_id) == []
    answered = se.events.of(ev.EscalationAnswered)
    assert [(a.escalation_id, a.answered_by) for a in answered] == [(raised.escalation_id, "human")]


async def test_an_answer_journaled_before_a_stop_is_replayed_on_resume(
    sim_engine: SimEngineFactory,
) -> None:
    """The person's answer reached the journal but the run stopped before escalate returned it
    (a crash between the two): the resumed escalate call gives the model that answer and choice
    from the journal; the question is not raised again."""
    rec = Recorder()
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("escalate", question="Ship it?", options=["Yes", "No"])],
                recording(rec, "replayed", _finish()),
            )
        )
    )
    run_id = await se.start()
    raised = await se.events.wait_for(ev.EscalationRaised)
    assert se.engine.stop_run(run_id)
    assert (await se.wait(run_id)).status == "cancelled"
    (call,) = [c for c in se.journal.list_tool_calls(run_id) if c.name == "escalate"]
    assert call.finished_at is None  # the call was cut mid-way
    se.journal.answer_escalation(
        raised.escalation_id, answer="Yes, ship on Friday", choice="Yes", answered_by="human"
    )
    assert await se.engine.resume_run(run_id) == run_id
    outcome = await se.wait(run_id)
    assert outcome.status == "succeeded", outcome
    reply = result_of(rec["replayed"], "escalate")
    assert not reply.is_error
    assert reply.json == {"answer": "Yes, ship on Friday", "choice": "Yes"}
    assert [e.escalation_id for e in se.events.of(ev.EscalationRaised)] == [raised.escalation_id]
    (row,) = se.journal.list_escalations(run_id)
    assert (row.escalation_id, row.answered_by) == (raised.escalation_id, "human")
    (call,) = [c for c in se.journal.list_tool_calls(run_id) if c.name == "escalate"]
    assert call.result == {"answer": "Yes, ship on Friday", "choice": "Yes"}
