"""The engine's side of checkpoints for one run: when to snapshot, and whose each change is.

Snapshots happen before the run (or on resume), after every tool call that can change files,
and at the run's end. Agents work in parallel in one folder, so a file tool *claims* the path it
is about to write: whichever snapshot first sees that change gives it to that agent, and the file
tool's own snapshot takes only that path. A failure here is a warning for the person, never an
agent's error.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from agentray.checkpoints import CHANGING_TOOLS, Checkpoints, git_available
from agentray.journal import Journal

__all__ = ["RunSnapshots"]

log = logging.getLogger(__name__)

_RUN_POINTS = ("base", "resume", "end")


class RunSnapshots:
    def __init__(
        self, journal: Journal, run_id: str, workspace: str, warn: Callable[[str], None]
    ) -> None:
        self.journal = journal
        self.run_id = run_id
        self.checkpoints: Checkpoints | None = (
            Checkpoints(journal, run_id, workspace) if git_available() else None
        )
        self._warn = warn
        self._warned = False
        self._claims: dict[str, tuple[str, str]] = {}  # path -> (agent, call) of a file tool

    def _warn_once(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            self._warn(message)

    def claim(self, agent_id: str, call_id: str | None, path: object) -> None:
        """Before a file tool writes: whichever snapshot sees the change first gives it to this agent."""
        if call_id and isinstance(path, str):
            self._claims[os.path.normpath(path)] = (agent_id, call_id)

    def claim_unsnapshotted_writes(self) -> None:
        """File-tool writes that ended before a crash but never got their snapshot still belong to
        their agent: the resume's snapshot gives them to it (commands' changes it cannot place)."""
        snapped = {s.call_id for s in self.journal.list_snapshots(self.run_id) if s.call_id}
        for call in self.journal.list_tool_calls(self.run_id):
            if (
                call.name in ("write_file", "edit_file")
                and call.finished_at is not None
                and not call.is_error
                and call.call_id not in snapped
            ):
                self.claim(call.agent_id, call.call_id, call.input.get("path"))

    async def take(
        self, agent_id: str | None, call_id: str | None, tool: str, path: str | None = None
    ) -> None:
        """Snapshot after ``tool`` (or at a run point: base, resume, end); ``path``: what a file
        tool wrote, the only path its own snapshot takes."""
        if tool not in CHANGING_TOOLS and tool not in _RUN_POINTS:
            return
        if self.checkpoints is None:
            self._warn_once("git is not installed: this run's changes cannot be reviewed or undone")
            return
        only = os.path.normpath(path) if path and agent_id is not None else None
        try:
            snapshot = await self.checkpoints.take_async(
                agent_id=agent_id, call_id=call_id, tool=tool, claims=self._claims, only=only
            )
        except Exception as error:  # git or the disk failed: the work goes on without this snapshot
            log.warning("run %s: snapshot after %s failed: %s", self.run_id, tool, error)
            self._warn_once(
                f"a snapshot for undo failed ({error}); later changes may not be undoable"
            )
            return
        if snapshot is not None:
            for changed in self.checkpoints.last_paths:
                self._claims.pop(changed, None)
