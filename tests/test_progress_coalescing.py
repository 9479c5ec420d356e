"""Coalesced progress-file rewrites: fewer rewrites, never a wrong file. Notes made in a burst land
in one rewrite; a terminal status is on disk before anyone hears of it; the run's end and a stop
leave every file complete; a crash and a resume keep what was written and finish the file."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from agent_scripts import complete, orchestrator, policy, spawned_ids, worker
from agentray import events as ev
from agentray.engine._progress import COALESCE_S, ProgressFile
from agentray.simulator import Rule, ScriptedPolicy, SimRequest, Simulator, tool_use
from conftest import SimEngineFactory, cli_env

KEY = "sk-ant-progress-0123456789"


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("- ")]


def _status(path: Path) -> str:
    found = re.search(r"^Status: (\w+)$", path.read_text(encoding="utf-8"), re.MULTILINE)
    assert found, path.read_text(encoding="utf-8")
    return found.group(1)


def _file(workspace: Path, agent_id: str = "a001", **header: Any) -> ProgressFile:
    fields: dict[str, Any] = {"title": "T", "parent_id": None, "role": "worker", "task": "do it"}
    return ProgressFile(workspace, agent_id, **{**fields, **header})


# ------------------------------------------------------------------------------- the file alone


async def test_a_burst_of_notes_is_one_rewrite_with_every_note(workspace: Path) -> None:
    progress = _file(workspace)
    progress.write()
    assert progress.writes == 1
    for i in range(50):
        progress.add("UPDATE", f"note {i}")
    assert progress.pending and len(_lines(progress.path)) == 0  # nothing written yet
    await asyncio.sleep(COALESCE_S * 3)
    assert not progress.pending
    assert progress.writes == 2  # the burst: one rewrite
    assert [line.split("] ", 1)[1] for line in _lines(progress.path)] == [
        f"note {i}" for i in range(50)
    ]


async def test_a_terminal_status_is_written_at_once_with_what_was_pending(
    workspace: Path,
) -> None:
    progress = _file(workspace)
    progress.write()
    progress.set_status("running")  # not terminal: waits for its rewrite
    progress.add("RESULT", "all done")
    assert _status(progress.path) == "queued"
    progress.set_status("done")
    assert not progress.pending
    assert _status(progress.path) == "done"
    assert _lines(progress.path)[-1].endswith("[RESULT] all done")
    for status in ("failed", "cancelled"):
        progress.set_status(status)
        assert _status(progress.path) == status


async def test_flush_writes_what_is_pending_and_reports_a_refused_write(workspace: Path) -> None:
    progress = _file(workspace)
    heard: list[str] = []
    progress.on_write_error = lambda _p, why: heard.append(why)
    progress.write()
    progress.add("UPDATE", "one")
    assert progress.flush() and _lines(progress.path)[-1].endswith("one")
    assert progress.flush()  # nothing pending: still current
    writes = progress.writes
    # the folder becomes a symlink: the next rewrite is refused, and said so once
    (workspace / "agent-responses").rename(workspace / "moved")
    (workspace / "agent-responses").symlink_to(workspace / "moved")
    progress.add("UPDATE", "two")
    assert not progress.flush()
    assert progress.write_error and "not a plain folder" in progress.write_error
    assert heard == [progress.write_error]  # said at the first refusal
    progress.add("UPDATE", "three")
    progress.flush()
    assert len(heard) == 1 and progress.writes == writes + 2  # not again while it lasts
    # the folder is back: the write succeeds and clears the error; a new refusal is said again
    (workspace / "agent-responses").unlink()
    (workspace / "moved").rename(workspace / "agent-responses")
    progress.add("UPDATE", "four")
    assert progress.flush() and progress.write_error is None
    assert [line.rsplit("] ", 1)[1] for line in _lines(progress.path)[-3:]] == ["two", "three", "four"]
    (workspace / "agent-responses").rename(workspace / "moved")
    (workspace / "agent-responses").symlink_to(workspace / "moved")
    progress.add("UPDATE", "five")
    assert not progress.flush() and len(heard) == 2


async def test_a_rewrite_on_demand_replaces_the_one_that_was_due(workspace: Path) -> None:
    """README: rewritten at most every 100 ms. A rewrite made on demand (before a model call)
    takes the pending notes along and replaces the timed rewrite that was due: the next note
    waits a whole COALESCE_S from it, not the rest of the old timer's wait."""
    loop = asyncio.get_running_loop()
    progress = _file(workspace)
    progress.write()
    progress.add("UPDATE", "one")  # a rewrite is due COALESCE_S from the write above
    # part of that wait passes (the scenario, not a synchronisation: nothing is waited for)
    await asyncio.sleep(COALESCE_S * 0.6)
    assert progress.write() and _lines(progress.path)[-1].endswith("one")
    on_demand = loop.time()
    progress.add("UPDATE", "two")
    deadline = on_demand + 10
    while not _lines(progress.path)[-1].endswith("two"):
        assert loop.time() < deadline, "the note was never written"
        await asyncio.sleep(0.002)
    assert loop.time() - on_demand >= COALESCE_S * 0.95
    assert progress.writes == 3


def test_the_header_shows_the_tasks_first_line_up_to_300_characters(workspace: Path) -> None:
    long_line = "".join(f"{i % 10}" for i in range(400))
    progress = _file(workspace, task=f"\n  \n{long_line}\nsecond line")
    fits = _file(workspace, agent_id="a002", task="x" * 300)
    for each in (progress, fits):
        each.write()
    assert f"Task: {long_line[:300]}\n" in progress.path.read_text(encoding="utf-8")
    assert f"Task: {'x' * 300}\n" in fits.path.read_text(encoding="utf-8")


def test_a_note_is_one_line_of_at_most_2000_characters(workspace: Path) -> None:
    """Whitespace runs (newlines too) become one space; the note is then cut at 2000 characters,
    and one of exactly 2000 is kept whole."""
    words = [f"w{i:03d}" for i in range(500)]  # 2499 characters once joined by single spaces
    long_note = "\n\t  ".join(words)
    exact = "x" * 1990 + " \n " + "y" * 9  # 2000 characters after the collapse
    progress = _file(workspace)  # no event loop: every note is written at once
    for note in (long_note, exact, "z" * 2001):
        progress.add("UPDATE", note)
    shown = [line.split("] ", 1)[1] for line in _lines(progress.path)]
    assert shown == [" ".join(words)[:2000], "x" * 1990 + " " + "y" * 9, "z" * 2000]
    assert [len(note) for note in shown] == [2000, 2000, 2000]


def test_a_resume_reads_no_lines_through_a_symlink(workspace: Path, tmp_path: Path) -> None:
    """reopen() keeps the log lines of the agent's own file; a file or a folder swapped for a
    symlink (to anywhere) gives none: nothing from outside the workspace is read into it."""
    fields: dict[str, Any] = {"title": "T", "parent_id": None, "role": "worker", "task": "do it"}
    folder = workspace / "agent-responses"
    folder.mkdir()
    (folder / "a001.md").write_text("# T\n- 10:00:00 [UPDATE] own note\n", encoding="utf-8")
    assert ProgressFile.reopen(workspace, "a001", **fields).lines == ["- 10:00:00 [UPDATE] own note"]
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("a001.md", "a002.md"):
        (outside / name).write_text("- 10:00:00 [UPDATE] not ours\n", encoding="utf-8")
    (folder / "a002.md").symlink_to(outside / "a002.md")
    assert ProgressFile.reopen(workspace, "a002", **fields).lines == []
    folder.rename(workspace / "moved")
    folder.symlink_to(outside)
    assert ProgressFile.reopen(workspace, "a001", **fields).lines == []


def test_without_an_event_loop_every_change_is_written_at_once(workspace: Path) -> None:
    progress = _file(workspace)
    progress.add("UPDATE", "first")
    progress.set_status("running")
    assert not progress.pending
    assert _status(progress.path) == "running"
    assert _lines(progress.path)[0].endswith("first")


def test_new_notes_are_appended_and_a_new_status_rewrites_the_file(workspace: Path) -> None:
    """Notes under an unchanged header go onto the same file (same inode); a status change writes
    a new file whole (a new inode, renamed over the old). Each time the file is exactly what the
    engine rendered."""
    progress = _file(workspace)  # no event loop: every change is written at once
    progress.set_status("running")
    first = progress.path.stat().st_ino
    for i in range(5):
        progress.add("UPDATE", f"note {i}")
        assert progress.path.read_text(encoding="utf-8") == progress.render()
        assert progress.path.stat().st_ino == first, "a note was not an append"
    progress.set_status("waiting")
    assert progress.path.stat().st_ino != first, "a new status was not a whole rewrite"
    assert progress.path.read_text(encoding="utf-8") == progress.render()
    assert _status(progress.path) == "waiting" and len(_lines(progress.path)) == 5
    assert not list(progress.path.parent.glob(".*.tmp"))


def test_a_file_changed_by_someone_else_is_rewritten_whole(workspace: Path) -> None:
    """An agent's command edits, truncates, replaces or removes the file: the engine's next note
    never appends to that; the file comes back as the engine's, whole."""
    progress = _file(workspace)
    progress.set_status("running")
    progress.add("UPDATE", "one")
    path = progress.path

    with path.open("a", encoding="utf-8") as handle:  # someone appends a line of their own
        handle.write("- 00:00:00 [RESULT] forged\n")
    progress.add("UPDATE", "two")
    assert path.read_text(encoding="utf-8") == progress.render()
    assert "forged" not in path.read_text(encoding="utf-8")

    path.write_text("", encoding="utf-8")  # truncated in place (same inode)
    progress.add("UPDATE", "three")
    assert path.read_text(encoding="utf-8") == progress.render()

    # replaced by another file of the very same size
    same_size = path.read_text(encoding="utf-8").replace("three", "THREE")
    replacement = path.with_name("other.md")
    replacement.write_text(same_size, encoding="utf-8")
    os.replace(replacement, path)
    progress.add("UPDATE", "four")
    assert path.read_text(encoding="utf-8") == progress.render()

    path.unlink()  # removed
    progress.add("UPDATE", "five")
    assert path.read_text(encoding="utf-8") == progress.render()
    assert [line.split("] ", 1)[1] for line in _lines(path)] == [
        "one", "two", "three", "four", "five"
    ]  # fmt: skip


def test_a_note_never_appends_through_a_symlink_put_in_the_files_place(
    workspace: Path, tmp_path: Path
) -> None:
    progress = _file(workspace)
    progress.set_status("running")
    outside = tmp_path / "outside.md"
    outside.write_text(progress.path.read_text(encoding="utf-8"), encoding="utf-8")
    before = outside.read_text(encoding="utf-8")
    progress.path.unlink()
    progress.path.symlink_to(outside)
    progress.add("UPDATE", "after the swap")
    assert outside.read_text(encoding="utf-8") == before  # untouched
    assert not progress.path.is_symlink()
    assert progress.path.read_text(encoding="utf-8") == progress.render()


async def test_several_files_keep_their_own_notes(workspace: Path) -> None:
    files = [_file(workspace, f"a{i:03d}", title=f"agent {i}") for i in range(1, 6)]
    for round_ in range(20):
        for i, progress in enumerate(files):
            progress.add("UPDATE", f"{i}:{round_}")
    files[2].set_status("done")
    await asyncio.sleep(COALESCE_S * 3)
    for i, progress in enumerate(files):
        assert [line.split("] ", 1)[1] for line in _lines(progress.path)] == [
            f"{i}:{r}" for r in range(20)
        ]
        assert progress.writes == 1
    assert _status(files[2].path) == "done" and _status(files[0].path) == "queued"


# ------------------------------------------------------------------------------- through the engine

NOTES_PER_TURN = 15


def _noisy(tag: str) -> list[Any]:
    """Two turns of NOTES_PER_TURN report_progress calls each, then complete."""
    turn = [
        [
            tool_use("report_progress", note=f"{tag} turn {t} note {n}")
            for n in range(NOTES_PER_TURN)
        ]
        for t in range(2)
    ]
    return [*turn, complete(f"{tag} finished")]


async def test_several_agents_rapid_notes_end_with_the_right_files(
    sim_engine: SimEngineFactory, workspace: Path
) -> None:
    tags = ["W-ONE", "W-TWO", "W-THREE"]
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task=f"{tag} works", title=tag) for tag in tags],
                lambda req: [tool_use("await_agents", agent_ids=spawned_ids(req))],
                [tool_use("finish", summary="all done", outcome="success")],
            ),
            *(worker(tag, *_noisy(tag)) for tag in tags),
        )
    )
    seen_at_done: dict[str, str] = {}

    def on_done(event: ev.Event) -> None:
        # read as the news arrives: the file must already say so
        if isinstance(event, ev.AgentStatusChanged) and event.status == "done":
            path = workspace / "agent-responses" / f"{event.agent_id}.md"
            seen_at_done[event.agent_id] = path.read_text(encoding="utf-8")

    se.engine.subscribe(on_done)
    run_id, outcome = await se.run(timeout=30)
    assert outcome.status == "succeeded", outcome

    run = se.engine.runs[run_id]
    for agent_id, agent in run.agents.items():
        path = workspace / "agent-responses" / f"{agent_id}.md"
        assert re.search(r"^Status: done$", seen_at_done[agent_id], re.MULTILINE)
        assert seen_at_done[agent_id] == path.read_text(encoding="utf-8")
        if agent.is_orchestrator:
            continue
        tag = agent.title
        expected = [f"{tag} turn {t} note {n}" for t in range(2) for n in range(NOTES_PER_TURN)]
        notes = [line.split("] ", 1)[1] for line in _lines(path)]
        assert notes == [*expected, f"{tag} finished"]
        # 31 notes and 3 statuses: a rewrite per burst, not per change
        assert agent.progress.writes <= 8, agent.progress.writes


async def test_a_stopped_run_leaves_complete_files(
    sim_engine: SimEngineFactory, workspace: Path
) -> None:
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-LONG works long", title="long")],
                [tool_use("await_agents")],
            ),
            worker(
                "W-LONG",
                [
                    *[tool_use("report_progress", note=f"step {n}") for n in range(10)],
                    tool_use("run_command", command="sleep 30"),
                ],
            ),
        )
    )
    run_id = await se.start()
    await se.events.wait_for(ev.ToolCallStarted, lambda e: e.tool == "run_command", timeout=15)
    se.engine.stop_run(run_id)
    outcome = await se.wait(run_id, timeout=15)
    assert outcome.status == "cancelled"
    worker_file = workspace / "agent-responses" / "a002.md"
    assert _status(worker_file) == "cancelled"
    assert [line.split("] ", 1)[1] for line in _lines(worker_file)] == [
        *(f"step {n}" for n in range(10)),
        "ran `sleep 30` (cancelled)",
    ][: len(_lines(worker_file))]
    assert len(_lines(worker_file)) >= 10
    assert _status(workspace / "agent-responses" / "a001.md") == "cancelled"


# ------------------------------------------------------------------------------- crash and resume


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _sleeping(token: str) -> bool:
    return any(
        (p.info.get("cmdline") or [])[:2] == ["sleep", token]
        for p in psutil.process_iter(["cmdline"])
    )


def test_a_crash_keeps_the_written_notes_and_resume_finishes_the_file(
    tmp_path: Path, workspace: Path
) -> None:
    token = f"{os.getpid() % 1000}.{time.monotonic_ns() % 10_000 + 7}"

    def orch(req: SimRequest) -> list[dict[str, Any]]:
        if not req.tool_results_named("spawn_agent"):
            return [tool_use("spawn_agent", task="W-CRASH notes, then a long command")]
        if not [r for r in req.tool_results_named("await_agents") if not r.is_error]:
            return [tool_use("await_agents")]
        return [tool_use("finish", summary="done", outcome="success")]

    def work(req: SimRequest) -> list[dict[str, Any]]:
        if not req.tool_results_named("run_command"):
            return [
                *[tool_use("report_progress", note=f"before {n}") for n in range(8)],
                tool_use("run_command", command=f"sleep {token}"),
            ]
        if not req.tool_results_named("complete"):
            return [
                *[tool_use("report_progress", note=f"after {n}") for n in range(8)],
                tool_use("complete", summary="finished after the crash"),
            ]
        return complete("again")

    script = ScriptedPolicy(
        [
            Rule(match="You are the orchestrator", turns=[orch] * 20),
            Rule(match="W-CRASH", turns=[work] * 20),
        ]
    )
    env = cli_env(tmp_path, KEY)
    worker_file = workspace / "agent-responses" / "a002.md"
    with Simulator(script, api_keys={KEY}) as sim:
        base = [sys.executable, "-m", "agentray.cli"]
        flags = ["--base-url", sim.base_url, "--on-escalation", "fail", "--json"]
        cli = subprocess.Popen(
            [*base, "run", "GOAL: crash", "--dir", str(workspace), "--model", "sim-model", *flags],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        _wait(lambda: _sleeping(token), 30, "the long command")
        # the burst before the command reaches the file within the coalescing delay, on its own
        _wait(lambda: len(_lines(worker_file)) >= 8, 5, "the notes on disk")
        cli.send_signal(signal.SIGKILL)
        out, _ = cli.communicate(timeout=10)
        run_id = json.loads(out.splitlines()[0])["run_id"]
        assert _status(worker_file) == "running"
        resumed = subprocess.run(
            [*base, "resume", run_id, *flags],
            env=env, capture_output=True, stdin=subprocess.DEVNULL, text=True, timeout=90,
        )  # fmt: skip
        assert resumed.returncode == 0, resumed.stderr
    notes = [line.split("] ", 1)[1] for line in _lines(worker_file)]
    assert notes[:8] == [f"before {n}" for n in range(8)]  # kept across the crash, once each
    assert [n for n in notes if n.startswith("after")] == [f"after {n}" for n in range(8)]
    assert notes[-1] == "finished after the crash"
    assert _status(worker_file) == "done"
    assert _status(workspace / "agent-responses" / "a001.md") == "done"
