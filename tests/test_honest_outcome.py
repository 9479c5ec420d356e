"""An honest outcome: finish(success) is refused while a failed worker had neither a mitigation
nor the person's decision, and a success with failed or cancelled workers says so."""

from __future__ import annotations

from agent_scripts import Recorder, complete, orchestrator, policy, recording, result_of, worker
from agentray.simulator import SimRequest, tool_use
from conftest import SimEngineFactory

LOOPING = [[tool_use("report_progress", note="still going")]] * 20


def _success(req: SimRequest) -> list[dict[str, object]]:
    return [tool_use("finish", summary="all good", outcome="success")]


async def test_success_refused_until_the_failure_is_mitigated_then_the_summary_lists_it(
    sim_engine: SimEngineFactory,
) -> None:
    rec = Recorder()
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-LOOP never completes", title="Loop")],
                [tool_use("await_agents")],
                _success,  # refused: a002 failed and nobody mitigated it
                recording(
                    rec,
                    "refused",
                    lambda req: [tool_use("spawn_agent", task="W-FIX repair it", mitigates="a002")],
                ),
                [tool_use("await_agents", agent_ids=["a003"])],
                recording(rec, "accepted", _success),
            ),
            worker("W-LOOP", *LOOPING),
            worker("W-FIX", complete("repaired")),
        )
    )
    run_id, outcome = await se.run(max_turns=6)  # the orchestrator needs all six of its turns
    refusal = result_of(rec["refused"], "finish")
    assert refusal.is_error
    assert "a002 (Loop) failed and nobody mitigated it" in refusal.json["error"]
    assert outcome.status == "succeeded"
    # the person reads what did not go to plan, and that it was mitigated
    assert outcome.summary.startswith("all good\n\nNot everything went to plan (1 agent):")
    assert "a002 (Loop) failed: turn limit reached" in outcome.summary
    assert "mitigated by a003" in outcome.summary
    row = se.journal.get_run(run_id)
    assert (
        row is not None
        and row.status == "succeeded"
        and "a002 (Loop) failed" in (row.summary or "")
    )


async def test_failure_outcome_is_not_refused_and_keeps_its_own_summary(
    sim_engine: SimEngineFactory,
) -> None:
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-LOOP never completes")],
                [tool_use("await_agents")],
                [tool_use("finish", summary="gave up", outcome="failure")],
            ),
            worker("W-LOOP", *LOOPING),
        )
    )
    _, outcome = await se.run(max_turns=4)
    assert outcome.status == "failed" and outcome.summary == "gave up"


async def test_cancelled_workers_are_listed_but_do_not_block_success(
    sim_engine: SimEngineFactory,
) -> None:
    se = sim_engine(
        policy(
            orchestrator(
                [
                    tool_use("spawn_agent", task="W-SLOW takes long", title="Slow"),
                    tool_use("spawn_agent", task="W-QUICK done at once", title="Quick"),
                ],
                [tool_use("await_agents", agent_ids=["a003"])],
                [tool_use("cancel_agent", agent_id="a002", reason="not needed after all")],
                _success,
            ),
            worker("W-SLOW", [tool_use("run_command", command="sleep 30")], complete("slow")),
            worker("W-QUICK", complete("quick")),
        )
    )
    _, outcome = await se.run()
    assert outcome.status == "succeeded", outcome
    assert "a002 (Slow) cancelled: not needed after all" in outcome.summary
    assert "Quick" not in outcome.summary  # done agents are not listed


async def test_clean_success_keeps_the_orchestrators_summary_exactly(
    sim_engine: SimEngineFactory,
) -> None:
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-OK fine")], [tool_use("await_agents")], _success
            ),
            worker("W-OK", complete("fine")),
        )
    )
    _, outcome = await se.run()
    assert outcome.status == "succeeded" and outcome.summary == "all good"
