"""Faults of the model endpoint through the engine, confinement, and keeping the key secret."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent_scripts import Recorder, complete, orchestrator, policy, recording, result_of, worker
from agentray import events as ev
from agentray.errors import ModelAuthError, ModelNotFoundError
from agentray.simulator import Fault, tool_use
from conftest import API_KEY, SimEngineFactory


def _simple_policy():
    return policy(
        orchestrator(
            [tool_use("spawn_agent", task="W-FILE write a file")],
            [tool_use("await_agents")],
            [tool_use("finish", summary="ok", outcome="success")],
        ),
        worker(
            "W-FILE",
            [tool_use("run_command", command="sleep 0.3")],
            [tool_use("write_file", path="out.txt", content="written")],
            complete("wrote out.txt"),
        ),
    )


async def test_transient_faults_mid_run_are_retried(
    sim_engine: SimEngineFactory, workspace: Path
) -> None:
    se = sim_engine(_simple_policy())
    run_id = await se.start()
    # mid-run: the worker sleeps in run_command, its next model call meets every fault in turn
    await se.events.wait_for(ev.ToolCallStarted, lambda e: e.tool == "run_command")
    faults = [
        Fault.rate_limit(retry_after=0.5),
        Fault.overloaded(),
        Fault.server_error(),
        Fault.mid_stream_error(),
        Fault.truncated_stream(),
    ]
    for fault in faults:
        se.sim.inject(fault)
    outcome = await se.wait(run_id)
    assert outcome.status == "succeeded", outcome
    assert se.sim.faults_fired == [
        "rate_limit",
        "overloaded",
        "server_error",
        "mid_stream_error",
        "truncated_stream",
    ]
    retries = se.events.of(ev.ModelRetrying)
    assert len(retries) == 5
    assert all(r.run_id == run_id and r.agent_id in ("a001", "a002") for r in retries)
    assert retries[0].delay_s == pytest.approx(0.5, abs=0.05)  # Retry-After honoured
    assert (workspace / "out.txt").read_text() == "written"


async def test_invalid_key_fails_the_run_quickly(sim_engine: SimEngineFactory) -> None:
    se = sim_engine(_simple_policy(), api_keys={"other"})
    started = time.monotonic()
    run_id, outcome = await se.run()
    assert time.monotonic() - started < 3
    assert outcome.status == "failed"
    assert isinstance(outcome.fatal_error, ModelAuthError)
    assert API_KEY not in str(outcome.fatal_error) and API_KEY not in outcome.summary
    assert len(se.sim.message_requests) == 1  # never retried
    assert se.journal.get_run(run_id).status == "failed"


async def test_unknown_model_fails_the_run(sim_engine: SimEngineFactory) -> None:
    se = sim_engine(_simple_policy())
    _, outcome = await se.run(model="claude-no-such-model")
    assert outcome.status == "failed"
    assert isinstance(outcome.fatal_error, ModelNotFoundError)


async def test_confinement_and_no_key_reaches_commands_or_disk(
    sim_engine: SimEngineFactory, workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    rec = Recorder()
    outside = tmp_path / "outside-abs.txt"
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-SNEAK tries to escape")],
                [tool_use("await_agents")],
                [tool_use("finish", summary="ok", outcome="success")],
            ),
            worker(
                "W-SNEAK",
                [
                    tool_use("write_file", path="../escape.txt", content="out"),
                    tool_use("write_file", path=str(outside), content="out"),
                ],
                recording(rec, "escape", lambda req: [tool_use("run_command", command="env")]),
                recording(rec, "env", lambda req: complete("looked around")),
            ),
        )
    )
    run_id, outcome = await se.run()
    assert outcome.status == "succeeded", outcome
    refusals = rec["escape"].last_tool_results
    assert [r.is_error for r in refusals] == [True, True]
    assert not (tmp_path / "escape.txt").exists() and not outside.exists()
    env = result_of(rec["env"], "run_command")
    assert not env.is_error and "PATH=" in env.text  # the command did run
    assert API_KEY not in env.text and "ANTHROPIC_API_KEY" not in env.text
    for request in se.sim.message_requests:  # nothing sent to the model carries the key
        assert API_KEY not in str(request.body)
    journal_bytes = b"".join(
        p.read_bytes()
        for p in se.journal_path.parent.glob(se.journal_path.name + "*")
        if p.is_file()
    )
    (env_call,) = [c for c in se.journal.list_tool_calls(run_id) if c.name == "run_command"]
    assert "PATH=" in str(
        env_call.result
    )  # the env output was journaled, so the bytes check covers it
    assert API_KEY.encode() not in journal_bytes
    for progress in (workspace / "agent-responses").glob("*.md"):
        assert API_KEY not in progress.read_text()
