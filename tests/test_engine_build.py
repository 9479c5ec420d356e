"""The build gate: finish(success) needs a passing run_build after the last agent finished."""

from __future__ import annotations

from pathlib import Path

from agent_scripts import Recorder, complete, orchestrator, policy, recording, result_of, worker
from agentray import events as ev
from agentray.escalation import Answer, OptionId
from agentray.simulator import tool_use
from conftest import SimEngineFactory


def _finish(req):
    return [tool_use("finish", summary="built", outcome="success")]


async def test_finish_waits_for_a_passing_build_after_the_last_agent(
    sim_engine: SimEngineFactory, workspace: Path
) -> None:
    rec = Recorder()
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("finish", summary="nothing yet", outcome="success")],
                recording(rec, "t1", lambda req: [tool_use("run_build")]),
                recording(rec, "t2", _finish),
                recording(
                    rec, "t3", lambda req: [tool_use("spawn_agent", task="W-OK create ok.txt")]
                ),
                [tool_use("await_agents")],
                [tool_use("run_build")],
                recording(
                    rec,
                    "t6",
                    lambda req: [tool_use("spawn_agent", task="W-EXTRA create extra.txt")],
                ),
                [tool_use("await_agents")],
                _finish,
                recording(rec, "t9", lambda req: [tool_use("run_build")]),
                recording(rec, "t10", _finish),
            ),
            worker(
                "W-OK",
                [tool_use("write_file", path="ok.txt", content="ok")],
                complete("ok.txt written"),
            ),
            worker(
                "W-EXTRA",
                [tool_use("write_file", path="extra.txt", content="x")],
                complete("extra written"),
            ),
        )
    )
    run_id, outcome = await se.run(build_command="test -f ok.txt")
    assert outcome.status == "succeeded", outcome
    assert outcome.summary == "built"

    before_build = result_of(rec["t1"], "finish")
    assert before_build.is_error and "run the build first" in before_build.json["error"]
    failing = result_of(rec["t2"], "run_build").json
    assert failing["passed"] is False and failing["exit_code"] != 0
    assert set(failing) >= {"passed", "exit_code", "duration_s", "output_tail"}
    after_failure = result_of(rec["t3"], "finish")
    assert after_failure.is_error and "run the build first" in after_failure.json["error"]
    passing = result_of(rec["t6"], "run_build").json
    assert passing["passed"] is True and passing["exit_code"] == 0
    stale = result_of(rec["t9"], "finish")
    assert stale.is_error and "run the build again" in stale.json["error"]
    assert result_of(rec["t10"], "run_build").json["passed"] is True

    builds = se.events.of(ev.BuildFinished)
    assert [b.passed for b in builds] == [False, True, True]
    assert [e["passed"] for e in se.journal.list_events(run_id) if e["type"] == "build"] == [
        False,
        True,
        True,
    ]
    assert (workspace / "ok.txt").exists() and (workspace / "extra.txt").exists()


async def test_run_build_without_a_build_command_is_an_error(sim_engine: SimEngineFactory) -> None:
    rec = Recorder()
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("run_build")],
                recording(
                    rec,
                    "after",
                    lambda req: [tool_use("finish", summary="fine", outcome="success")],
                ),
            )
        )
    )
    _, outcome = await se.run()
    assert outcome.status == "succeeded"
    result = result_of(rec["after"], "run_build")
    assert result.is_error and "no build command" in result.json["error"]


async def test_failing_builds_escalate_after_max_fix_rounds(sim_engine: SimEngineFactory) -> None:
    rec = Recorder()
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("run_build")],
                [tool_use("run_build")],
                recording(
                    rec,
                    "after",
                    lambda req: [tool_use("finish", summary="gave up", outcome="failure")],
                ),
            )
        )
    )
    run_id = await se.start(build_command="false", max_fix_rounds=2)
    raised = await se.events.wait_for(ev.EscalationRaised)
    assert raised.kind == "build"
    assert raised.options == ("Keep fixing", "Finish as failure", "Stop the run")
    assert [b.failed_in_a_row for b in se.events.of(ev.BuildFinished)] == [1, 2]
    (pending,) = se.journal.pending_escalations(run_id)
    assert pending.kind == "build" and pending.escalation_id == raised.escalation_id
    assert se.engine.answer_escalation(raised.escalation_id, Answer(OptionId.FINISH_AS_FAILURE, "it is fine"))
    outcome = await se.wait(run_id)
    assert outcome.status == "failed" and outcome.summary == "gave up"
    second = result_of(rec["after"], "run_build").json
    assert second["passed"] is False
    assert second["escalation"] == {"answer": "it is fine", "choice": "Finish as failure"}
    first = result_of(rec["after"], "run_build", 0).json
    assert "escalation" not in first
    row = se.journal.get_escalation(raised.escalation_id)
    assert row is not None and row.answered_by == "human" and row.choice == "Finish as failure"
