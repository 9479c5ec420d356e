"""Checkpoints, review and undo with real git, real files, the real engine and simulator."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent_scripts import complete, orchestrator, policy, worker
from agentray.checkpoints import Checkpoints
from agentray.simulator import SimRequest, tool_use
from conftest import SimEngine, SimEngineFactory

PY = sys.executable
GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "P", "GIT_AUTHOR_EMAIL": "p@x", "GIT_COMMITTER_NAME": "P",
           "GIT_COMMITTER_EMAIL": "p@x", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def _git(ws: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=ws, env=GIT_ENV, capture_output=True, text=True, check=True).stdout


def _person_repo(ws: Path) -> None:
    _git(ws, "init", "-q")
    (ws / "keep.txt").write_text("one\ntwo\n")
    (ws / "old.txt").write_text("old\n")
    (ws / "shared.txt").write_text("shared\n")
    (ws / ".gitignore").write_text("build/\n")
    _git(ws, "add", "-A")
    _git(ws, "commit", "-qm", "init")
    (ws / "keep.txt").write_text("one\ntwo\nstashed\n")
    _git(ws, "stash", "-q")
    (ws / "staged.txt").write_text("in the index\n")
    _git(ws, "add", "staged.txt")


def _git_state(ws: Path) -> dict[str, str]:
    """The person's repository, byte for byte where it matters."""
    state = {}
    for name in ("HEAD", "index", "config", "refs/stash"):
        path = ws / ".git" / name
        state[name] = hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "-"
    state["refs"] = _git(ws, "for-each-ref")
    state["hooks"] = " ".join(sorted(p.name for p in (ws / ".git" / "hooks").iterdir()))
    return state


def _two_workers(sequential: bool = False) -> Any:
    """W-FILES (a002) and W-SHELL (a003), in parallel or one after the other."""
    after = {"depends_on": ["a002"]} if sequential else {}

    def orch(req: SimRequest) -> list[dict[str, Any]]:
        if not req.tool_results_named("spawn_agent"):
            return [tool_use("spawn_agent", task="W-FILES uses the file tools"),
                    tool_use("spawn_agent", task="W-SHELL uses the shell", **after)]
        awaited = [r for r in req.tool_results_named("await_agents") if not r.is_error]
        if not awaited:
            return [tool_use("await_agents")]
        return [tool_use("finish", summary="done", outcome="success")]

    return policy(
        orchestrator(*[orch] * 6),
        worker(
            "W-FILES",
            [tool_use("write_file", path="a.txt", content="new file\n")],
            [tool_use("edit_file", path="keep.txt", old_string="two", new_string="TWO")],
            [tool_use("edit_file", path="shared.txt", old_string="shared", new_string="shared by files")],
            complete(),
        ),
        worker(
            "W-SHELL",
            [tool_use("run_command", command="mkdir -p gen build && echo made > gen/out.txt && rm old.txt && echo bin > build/x.o")],
            [tool_use("run_command", command="echo shell >> shared.txt")],
            complete(),
        ),
    )


async def _run(se: SimEngine) -> tuple[str, Checkpoints]:
    run_id, outcome = await se.run(timeout=30)
    assert outcome.status == "succeeded", outcome
    return run_id, Checkpoints(se.journal, run_id, se.workspace)


@pytest.mark.parametrize("person_repo", [True, False], ids=["git repo", "plain folder"])
async def test_every_change_is_attributed_and_the_persons_repo_is_untouched(
    sim_engine: SimEngineFactory, workspace: Path, person_repo: bool
) -> None:
    if person_repo:
        _person_repo(workspace)
        before = _git_state(workspace)
    else:
        (workspace / "keep.txt").write_text("one\ntwo\n")
        (workspace / "old.txt").write_text("old\n")
        (workspace / "shared.txt").write_text("shared\n")
        (workspace / ".gitignore").write_text("build/\n")
    _, points = await _run(sim_engine(_two_workers()))
    snapshots = points.snapshots()
    assert snapshots[0].tool == "base" and snapshots[0].agent_id is None
    assert {s.tool for s in snapshots[1:]} <= {"write_file", "edit_file", "run_command", "claimed", "end"}
    changes = {c.path: c for c in points.changes()}
    assert set(changes) == {"a.txt", "keep.txt", "shared.txt", "gen/out.txt", "old.txt"}  # build/ ignored
    assert changes["a.txt"].status == "added" and changes["a.txt"].agents == ("a002",)
    assert changes["old.txt"].status == "deleted" and changes["old.txt"].agents == ("a003",)
    assert (changes["keep.txt"].added, changes["keep.txt"].removed) == (1, 1)
    # The two agents change shared.txt at the same time: a file tool's snapshot (of its own path)
    # that comes while the command runs takes the command's line along, so the file is the file
    # agent's, or both agents' — never neither's. (Run one after the other, both: the undo test.)
    assert "a002" in changes["shared.txt"].agents
    assert set(changes["shared.txt"].agents) <= {"a002", "a003"}
    assert not any(p.startswith("agent-responses") for p in changes)
    text = points.diff()
    assert "--- /dev/null\n+++ b/a.txt\n" in text and "--- a/old.txt\n+++ /dev/null\n" in text
    assert "-two\n+TWO\n" in text
    # the shell agent's own changes; a file the other agent wrote while the command ran may be
    # counted as both agents' (never as neither)
    only_shell = {c.path for c in points.changes("a003")}
    assert {"gen/out.txt", "old.txt"} <= only_shell <= {"gen/out.txt", "old.txt", "shared.txt", "a.txt", "keep.txt"}
    assert {c.path for c in points.changes("a002")} >= {"a.txt", "keep.txt", "shared.txt"}
    if person_repo:
        assert _git_state(workspace) == before
        assert _git(workspace, "stash", "list").count("stash@") == 1


async def test_undo_per_agent_per_run_refusals_and_force(sim_engine: SimEngineFactory, workspace: Path) -> None:
    _person_repo(workspace)
    before = _git_state(workspace)
    status_before = _git(workspace, "status", "--porcelain", "--untracked-files=all")
    _, points = await _run(sim_engine(_two_workers(sequential=True)))
    # one agent whose file another agent changed too: refused, nothing changed
    refused = points.undo("a003")
    assert not refused.ok and refused.shared == {"shared.txt": ("a002",)} and refused.restored == ()
    assert (workspace / "gen" / "out.txt").exists() and not (workspace / "old.txt").exists()
    # the person edits a file after the run: undo of the run names it and changes nothing
    (workspace / "a.txt").write_text("the person's words\n")
    refused = points.undo()
    assert refused.changed_since == ("a.txt",) and refused.restored == ()
    assert (workspace / "keep.txt").read_text() == "one\nTWO\n"
    # forced undo of one agent restores only its files
    forced = points.undo("a003", force=True)
    assert set(forced.restored) == {"gen/out.txt", "old.txt", "shared.txt"}
    assert not (workspace / "gen" / "out.txt").exists() and (workspace / "old.txt").read_text() == "old\n"
    assert (workspace / "shared.txt").read_text() == "shared by files\n"  # as before that agent's change
    assert (workspace / "keep.txt").read_text() == "one\nTWO\n"  # the other agent's change stays
    # forced undo of the run puts everything back, the person's edit included
    points.undo(force=True)
    assert not (workspace / "a.txt").exists()
    assert (workspace / "keep.txt").read_text() == "one\ntwo\n"
    assert _git_state(workspace) == before
    # the person's `git status` is as before the run (agent-responses/ aside, the run's own record)
    status_after = _git(workspace, "status", "--porcelain", "--untracked-files=all")
    assert [line for line in status_after.splitlines() if "agent-responses/" not in line] == status_before.splitlines()
    assert points.undo().restored == ()  # nothing left to undo


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "agentray.cli", *args], env=env, capture_output=True, text=True, timeout=60)


async def test_diff_and_undo_commands(sim_engine: SimEngineFactory, workspace: Path) -> None:
    for name, text in (("keep.txt", "one\ntwo\n"), ("old.txt", "old\n"), ("shared.txt", "shared\n"),
                       (".gitignore", "build/\n")):
        (workspace / name).write_text(text)
    se = sim_engine(_two_workers(sequential=True))
    run_id, _ = await _run(se)
    env = {**os.environ, "AGENTRAY_JOURNAL": str(se.journal_path)}
    diff = _cli(["diff", run_id], env)
    assert diff.returncode == 0 and "+++ b/a.txt" in diff.stdout and "+++ /dev/null" in diff.stdout
    agent = _cli(["diff", run_id, "--agent", "a002"], env)
    assert "+++ b/a.txt" in agent.stdout and "gen/out.txt" not in agent.stdout
    stat = _cli(["diff", run_id, "--stat"], env)
    assert "added    +1     -0     a.txt  (a002)" in stat.stdout and stat.stdout.endswith("5 files changed\n")
    refused = _cli(["undo", run_id, "--agent", "a002"], env)
    assert refused.returncode == 1 and refused.stdout == ""
    assert "shared.txt: also changed by a003" in refused.stderr and "nothing was changed" in refused.stderr
    assert (workspace / "a.txt").exists()
    done = _cli(["undo", run_id, "--agent", "a002", "--force"], env)
    assert done.returncode == 0 and "restored a.txt" in done.stdout
    assert not (workspace / "a.txt").exists()
    for bad in (["diff", "nope"], ["undo", run_id, "--agent", "a999"], ["runs", "--prune", "-1"]):
        result = _cli(bad, env)
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    pruned = _cli(["runs", "--prune", "0"], env)
    assert pruned.returncode == 0 and pruned.stdout == f"forgot 1 run that ended more than 0 days ago: {run_id}\n"


async def test_pruning_forgets_old_runs_and_their_snapshots(sim_engine: SimEngineFactory, workspace: Path) -> None:
    import time

    from agentray.checkpoints import prune_runs

    (workspace / "keep.txt").write_text("one\ntwo\n")
    se = sim_engine(_two_workers(sequential=True))
    old_run, points = await _run(se)
    new_run, _ = await _run(se)
    commit = points.snapshots()[-1].commit_id
    assert points.repo.run("cat-file", "-t", commit).strip() == b"commit"
    se.journal._db.execute("UPDATE runs SET ended_at = ? WHERE run_id = ?", (time.time() - 40 * 86400, old_run))
    assert prune_runs(se.journal, 30) == [old_run]
    assert se.journal.get_run(old_run) is None and se.journal.get_run(new_run) is not None
    assert se.journal.list_snapshots(old_run) == []
    assert se.journal.list_snapshots(new_run) != []
    # git let go of the old run's commits that no other run shares
    assert points.repo.run("rev-parse", "--verify", "--quiet", f"refs/agentray/{old_run}", check=False) == b""
    assert prune_runs(se.journal, 30) == []  # nothing older left


async def test_without_git_the_run_goes_on_and_warns_once(
    sim_engine: SimEngineFactory,
    workspace: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No git on the machine: nothing can be snapshotted and nothing is tried (no snapshot
    "fails" in the log); the person is told once, as a warning, and the agents' file changes
    still happen."""
    from agentray import events as ev
    from agentray.engine import _snapshots

    monkeypatch.setattr(_snapshots, "git_available", lambda: False)
    se = sim_engine(_two_workers())
    run_id, outcome = await se.run()
    assert outcome.status == "succeeded", outcome
    warned = [n for n in se.events.of(ev.Notice) if "git is not installed" in n.message]
    assert len(warned) == 1 and warned[0].level == "warning"
    assert "cannot be reviewed or undone" in warned[0].message
    assert se.journal.list_snapshots(run_id) == []
    assert (workspace / "a.txt").read_text() == "new file\n"
    assert [r.getMessage() for r in caplog.records if "snapshot" in r.getMessage()] == []
