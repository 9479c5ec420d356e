"""Edges of crash-era rules: dependencies that can never be met, stop flags of ended runs, the run
lock inside one process, runs that cannot be resumed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from agent_scripts import Recorder, complete, orchestrator, policy, recording, result_of, worker
from agentray import events as ev
from agentray.engine._ownership import RunLock, lock_dir
from agentray.errors import BadInputError, RunBusyError, SandboxUnavailableError
from agentray.journal import Journal
from agentray.sandbox import BWRAP_ENV_VAR, NO_SANDBOX_HINT
from agentray.simulator import SimRequest, tool_use
from conftest import SimEngineFactory, make_engine


async def test_depends_on_the_caller_or_an_ancestor_is_refused(sim_engine: SimEngineFactory) -> None:
    rec = Recorder()
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-PARENT spawns helpers")],
                [tool_use("await_agents")],
                [tool_use("finish", summary="done", outcome="success")],
            ),
            worker(
                "W-PARENT",
                [tool_use("spawn_agent", task="H-SELF waits on its parent", depends_on=["a002"])],
                recording(rec, "self", lambda req: [tool_use("spawn_agent", task="H-ROOT", depends_on=["a001"])]),
                recording(rec, "root", lambda req: [tool_use("spawn_agent", task="H-SIB", depends_on=["a001x"])]),
                recording(rec, "unknown", lambda req: complete()),
            ),
        )
    )
    _, outcome = await se.run(timeout=20, max_depth=2)
    assert outcome.status == "succeeded"
    own = result_of(rec["self"], "spawn_agent")
    assert own.is_error and "names you" in own.text and "wait forever" in own.text
    root = result_of(rec["root"], "spawn_agent")
    assert root.is_error and "a001, an ancestor of yours" in root.text
    unknown = result_of(rec["unknown"], "spawn_agent")
    assert unknown.is_error and "unknown agent" in unknown.text
    assert len(se.journal.list_agents(se.journal.list_runs()[0].run_id)) == 2  # nothing was spawned


async def test_a_stop_request_does_not_outlive_its_run(sim_engine: SimEngineFactory) -> None:
    box: dict[str, Any] = {}

    def finish_after_a_late_stop(req: SimRequest) -> list[dict[str, Any]]:
        other = Journal(box["path"])  # `agentray stop` from another process, just before the end
        other.request_stop(other.list_runs()[0].run_id)
        other.close()
        return [tool_use("finish", summary="done", outcome="success")]

    se = sim_engine(policy(orchestrator(finish_after_a_late_stop)))
    box["path"] = se.journal_path
    run_id, outcome = await se.run(timeout=20)
    assert outcome.status in ("succeeded", "cancelled")
    assert se.journal.stop_requested(run_id) is False


async def test_one_process_two_engines_one_owner(sim_engine: SimEngineFactory, tmp_path: Path) -> None:
    se = sim_engine(policy(orchestrator([tool_use("sleep", seconds=30)])))
    run_id = await se.start()
    second = make_engine(se.sim, se.journal_path, se.workspace)
    try:
        se.engine.stop_run(run_id, status="interrupted", reason="test")
        # the stop has not finished yet: the first engine still owns the run
        with pytest.raises(RunBusyError, match=f"run {run_id} is being driven by process {os.getpid()}"):
            await second.engine.resume_run(run_id)
        await se.wait(run_id)
        # the owner let go: the lock is free and the run resumes here
        assert await second.engine.resume_run(run_id) == run_id
        second.engine.stop_run(run_id)
        await second.engine.wait(run_id)
    finally:
        await second.engine.aclose()


def test_a_stale_lock_file_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite3"
    folder = lock_dir(journal)
    folder.mkdir()
    (folder / "r1.lock").write_text("999999\n")  # left by a process that died holding it
    lock = RunLock.acquire(journal, "r1")
    try:
        assert lock.held
        assert (folder / "r1.lock").read_text() == f"{os.getpid()}\n"
        with pytest.raises(RunBusyError, match=f"process {os.getpid()}"):
            RunLock.acquire(journal, "r1")
    finally:
        lock.release()
    assert not lock.held
    assert (folder / "r1.lock").read_text() == ""  # a released lock names no owner
    again = RunLock.acquire(journal, "r1")  # released: free again
    again.release()


async def test_a_run_whose_orchestrator_spent_its_turns_is_not_offered_for_resume(
    sim_engine: SimEngineFactory,
) -> None:
    se = sim_engine(policy(orchestrator(*[[tool_use("check_agents")]] * 10)))
    run_id, outcome = await se.run(timeout=20, max_turns=3)
    assert outcome.status == "failed" and not outcome.resumable
    with pytest.raises(BadInputError, match="cannot be resumed: its orchestrator used all 3"):
        await se.engine.resume_run(run_id)


async def test_a_full_journal_ends_the_run_failed_and_resumable(sim_engine: SimEngineFactory) -> None:
    se = sim_engine(policy(orchestrator(*[[tool_use("check_agents")]] * 200)))
    run_id = await se.start(max_turns=150)
    await se.events.wait_for(ev.ToolCallFinished)
    # SQLite's own "database or disk is full": no more pages than the file has now
    pages = se.journal._db.execute("PRAGMA page_count").fetchone()[0]
    se.journal._db.execute(f"PRAGMA max_page_count = {pages}")
    outcome = await se.wait(run_id, timeout=20)
    assert outcome.status == "failed"
    assert "the journal cannot be written" in outcome.summary and "full" in outcome.summary
    assert outcome.resumable
    se.journal._db.execute("PRAGMA max_page_count = 1073741823")  # space again


def test_journal_errors_say_when_the_disk_is_full(tmp_path: Path) -> None:
    from agentray.errors import JournalError

    journal = Journal(tmp_path / "j.sqlite3")
    try:
        pages = journal._db.execute("PRAGMA page_count").fetchone()[0]
        journal._db.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(JournalError) as caught:
            for i in range(200):
                journal.create_run(f"r{i}", goal="g" * 2000, workspace=str(tmp_path), config={}, pid=1)
        assert caught.value.disk_full is True
        assert "full" in str(caught.value)
    finally:
        journal.close()
    with pytest.raises(JournalError) as other:
        Journal(tmp_path)  # a folder, not a database file
    assert other.value.disk_full is False


async def test_a_crash_in_the_finish_window_ends_the_run_as_finished(sim_engine: SimEngineFactory) -> None:
    """The state a kill -9 leaves between an accepted finish and the run's recorded end (staged in
    the journal: the window is microseconds wide): resume ends the run as it was finished, without
    asking the model again."""
    se = sim_engine(policy(orchestrator([tool_use("finish", summary="all done", outcome="success")])))
    run_id, outcome = await se.run(timeout=20)
    assert outcome.status == "succeeded"
    db = se.journal._db
    db.execute("DELETE FROM events WHERE run_id = ? AND type = 'run_finished'", (run_id,))
    db.execute("UPDATE runs SET status = 'running', pid = 999999, ended_at = NULL WHERE run_id = ?", (run_id,))
    db.execute("UPDATE agents SET status = 'running' WHERE run_id = ?", (run_id,))
    requests_before = len(se.sim.message_requests)
    await se.engine.resume_run(run_id)
    again = await se.wait(run_id)
    assert again.status == "succeeded" and again.summary == "all done"
    assert len(se.sim.message_requests) == requests_before  # the model was not asked again
    assert se.journal.get_run(run_id).status == "succeeded"


async def test_a_failed_finish_is_not_replayed_on_an_ordinary_resume(sim_engine: SimEngineFactory) -> None:
    def orch(req: SimRequest) -> list[dict[str, Any]]:
        finishes = req.tool_results_named("finish")
        outcome = "failure" if not finishes else "success"
        return [tool_use("finish", summary=outcome, outcome=outcome)]

    se = sim_engine(policy(orchestrator(*[orch] * 5)))
    run_id, outcome = await se.run(timeout=20)
    assert outcome.status == "failed"
    await se.engine.resume_run(run_id)  # the person retries: the model decides again
    again = await se.wait(run_id)
    assert again.status == "succeeded" and again.summary == "success"


async def test_a_sandboxed_run_without_a_sandbox_is_refused_before_it_is_journaled(
    sim_engine: SimEngineFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No bubblewrap (AGENTRAY_BWRAP names a missing program): a run that asks for the sandbox is
    refused with the hint, and leaves no run row, no event and no model call behind. Detection
    is cached per (platform, override): a path of this test's own is probed afresh."""
    monkeypatch.setenv(BWRAP_ENV_VAR, str(tmp_path / "no-bwrap-here"))
    se = sim_engine(policy(orchestrator([tool_use("finish", summary="done", outcome="success")])))
    with pytest.raises(SandboxUnavailableError) as refused:
        await se.start(sandbox=True)
    assert str(refused.value) == NO_SANDBOX_HINT
    assert se.journal.list_runs() == []
    assert se.events.events == [] and se.sim.message_requests == []
    # the same engine still runs without the sandbox when the person chose so
    run_id, outcome = await se.run(sandbox=False)
    assert outcome.status == "succeeded", outcome
    assert [r.run_id for r in se.journal.list_runs()] == [run_id]
