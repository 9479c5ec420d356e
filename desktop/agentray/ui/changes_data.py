"""What the Changes view shows, read from a run's checkpoints (PRODUCT.md, "Checkpoints, review
and undo"), as frozen data the widgets only display.

Every function here is blocking (git, the journal): call it off the Qt thread
(``asyncio.to_thread``). Each call opens its own ``Journal`` on the same file, because a journal
object belongs to the thread that opened it; the widgets never touch a live engine object.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentray.checkpoints import Checkpoints, FileChange, UndoResult
from agentray.journal import Journal, SnapshotRow

__all__ = [
    "AgentLabel",
    "ChangesData",
    "FileDiff",
    "Touch",
    "agent_text",
    "load_changes",
    "load_file_diff",
    "refusal_text",
    "restored_text",
    "run_undo",
]

log = logging.getLogger(__name__)

MAX_LISTED = 12  # files named in a result line; the rest are counted
MAX_COMMAND = 90  # characters of a command shown beside the change it made
# What a listed file is like on disk now, when not as the run (that agent) left it:
NOW_UNDONE = "undone"  # as before the run (that agent): put back
NOW_CHANGED = "changed since"  # something else: the person, another run, a partial undo


@dataclass(frozen=True)
class AgentLabel:
    agent_id: str
    title: str  # "" when the journal has no such agent (the person's undo, "-")


@dataclass(frozen=True)
class ChangesData:
    """One run's changes, as of when they were read."""

    run_id: str
    agent_filter: str | None  # None: every agent
    workspace: str
    files: tuple[FileChange, ...]
    agents: tuple[AgentLabel, ...]  # every agent with a change in the run, first change first
    snapshots: int  # how many the journal holds (0: nothing can be reviewed or undone)
    run_status: str  # the journal's: running | succeeded | failed | cancelled | interrupted
    now: dict[str, str] = field(default_factory=dict)  # path -> NOW_UNDONE | NOW_CHANGED

    def title_of(self, agent_id: str) -> str:
        return next((a.title for a in self.agents if a.agent_id == agent_id), "")


@dataclass(frozen=True)
class Touch:
    """One tool call of one agent that changed the file ("-": no agent's call, e.g. a change
    first seen at the run's end snapshot)."""

    agent_id: str
    tool: str  # write_file | edit_file | run_command | run_build | end | resume …
    created_at: float
    detail: str = ""  # the command, for run_command / run_build


@dataclass(frozen=True)
class FileDiff:
    path: str
    agent_filter: str | None
    diff: str  # the whole change (the filter agent's, or the run's)
    touches: tuple[Touch, ...]  # who changed it and with what, in order
    by_agent: tuple[tuple[str, str], ...] = field(default=())  # (agent, its diff) when several


def agent_text(agent_id: str, title: str) -> str:
    return f"{agent_id} “{title}”" if title else agent_id


def _run_row(journal: Journal, run_id: str) -> tuple[str, str]:
    row = journal.get_run(run_id)
    if row is None:
        raise LookupError(f"no run {run_id} in the journal")
    return row.workspace, row.status


def _titles(journal: Journal, run_id: str) -> dict[str, str]:
    return {a.agent_id: a.title for a in journal.list_agents(run_id)}


def _changers(snapshots: list[SnapshotRow]) -> list[str]:
    """Agents whose calls changed something, in the order of their first change."""
    seen: dict[str, None] = {}
    for snap in snapshots[1:]:
        if snap.tool != "undo" and snap.paths and snap.agent_id:
            seen.setdefault(snap.agent_id, None)
    return list(seen)


def _on_disk(path: Path) -> bytes | None:
    try:
        if path.is_symlink():
            return os.readlink(path).encode(errors="surrogateescape")
        return path.read_bytes() if path.is_file() else None
    except OSError:
        return None


def _now(
    checkpoints: Checkpoints,
    snapshots: list[SnapshotRow],
    files: list[FileChange],
    agent_id: str | None,
) -> dict[str, str]:
    """Each listed file that is no longer as the run (that agent) left it: undone, or changed."""
    spans: dict[str, tuple[str, str]] = {}
    for snap in snapshots[1:]:
        if snap.tool == "undo" or (agent_id is not None and snap.agent_id != agent_id):
            continue
        for path in snap.paths:
            before = spans.get(path, (snap.parent_id or snap.commit_id, ""))[0]
            spans[path] = (before, snap.commit_id)
    now: dict[str, str] = {}
    for change in files:
        if change.path not in spans:
            continue
        before, after = spans[change.path]
        current = _on_disk(checkpoints.workspace / change.path)
        try:
            if current == checkpoints.repo.blob(after, change.path):
                continue
            undone = current == checkpoints.repo.blob(before, change.path)
        except (
            Exception
        ) as error:  # the shadow repository failed meanwhile: no mark rather than no view
            log.warning("cannot compare %s with its snapshots: %s", change.path, error)
            continue
        now[change.path] = NOW_UNDONE if undone else NOW_CHANGED
    return now


def load_changes(journal_path: Path, run_id: str, agent_id: str | None = None) -> ChangesData:
    """The files the run (that agent) changed, with +/- counts and who changed each, and which
    of them are no longer as it left them."""
    with Journal(journal_path) as journal:
        workspace, status = _run_row(journal, run_id)
        snapshots = journal.list_snapshots(run_id)
        titles = _titles(journal, run_id)
        files: list[FileChange] = []
        now: dict[str, str] = {}
        if snapshots:
            checkpoints = Checkpoints(journal, run_id, workspace)
            files = checkpoints.changes(agent_id)
            now = _now(checkpoints, snapshots, files, agent_id)
    agents = tuple(AgentLabel(a, titles.get(a, "")) for a in _changers(snapshots))
    return ChangesData(
        run_id, agent_id, workspace, tuple(files), agents, len(snapshots), status, now
    )


def _touch(snap: SnapshotRow, call: Any) -> Touch:
    tool = call.name if call is not None else snap.tool  # "claimed": the file tool's own call
    detail = ""
    if call is not None and tool in ("run_command", "run_build"):
        command = " ".join(str(call.input.get("command", "")).split())
        detail = command if len(command) <= MAX_COMMAND else command[: MAX_COMMAND - 1] + "…"
    return Touch(snap.agent_id or "-", tool, snap.created_at, detail)


def load_file_diff(
    journal_path: Path, run_id: str, path: str, agent_id: str | None = None
) -> FileDiff:
    """One file's diff; when several agents changed it (and no filter), each one's part too."""
    with Journal(journal_path) as journal:
        workspace, _status = _run_row(journal, run_id)
        checkpoints = Checkpoints(journal, run_id, workspace)
        diff = checkpoints.diff(agent_id, path)
        calls = {c.call_id: c for c in journal.list_tool_calls(run_id)}
        touches = tuple(
            _touch(s, calls.get(s.call_id or ""))
            for s in journal.list_snapshots(run_id)[1:]
            if path in s.paths and s.tool != "undo" and (agent_id is None or s.agent_id == agent_id)
        )
        agents = list(dict.fromkeys(t.agent_id for t in touches))
        by_agent: tuple[tuple[str, str], ...] = ()
        if agent_id is None and len(agents) > 1:
            by_agent = tuple((a, checkpoints.diff(a, path)) for a in agents)
    return FileDiff(path, agent_id, diff, touches, by_agent)


def run_undo(
    journal_path: Path, run_id: str, agent_id: str | None = None, *, force: bool = False
) -> UndoResult:
    with Journal(journal_path) as journal:
        workspace, _status = _run_row(journal, run_id)
        return Checkpoints(journal, run_id, workspace).undo(agent_id, force=force)


def _names(paths: tuple[str, ...] | list[str]) -> str:
    shown = ", ".join(paths[:MAX_LISTED])
    more = len(paths) - MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def _files(n: int) -> str:
    return "1 file" if n == 1 else f"{n} files"


def restored_text(result: UndoResult, who: str) -> str:
    """The result of an undo that went through (``who``: "the run" or an agent's text)."""
    if not result.restored:
        return f"Nothing to undo: the files {who} changed are already as they were before it."
    text = f"Undid {who}: restored {_files(len(result.restored))}: {_names(result.restored)}."
    if result.changed_since:
        text += f" Your later changes to {_names(result.changed_since)} were overwritten."
    if result.shared:
        text += f" Other agents' changes to {_names(list(result.shared))} were undone too."
    return text


def refusal_text(result: UndoResult, who: str, titles: dict[str, str]) -> str:
    """Why an undo changed nothing: the named files and the reason for each."""
    lines = ["Nothing was changed."]
    if result.changed_since:
        lines.append(
            "Changed after the run (your edits, or another run), which undoing would overwrite: "
            f"{_names(result.changed_since)}."
        )
    for path, others in sorted(result.shared.items()):
        names = ", ".join(agent_text(a, titles.get(a, "")) for a in others)
        lines.append(
            f"{path} was also changed by {names}: undoing {who} would take their work back too."
        )
    return "\n".join(lines)
