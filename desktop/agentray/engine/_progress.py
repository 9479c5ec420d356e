"""The agent's progress file, ``agent-responses/<agent_id>.md``, owned and written by the engine.

The whole file is rewritten atomically (temp file + ``os.replace``) on every change, so a reader
never sees half a file and ``grep '^Status: done'`` is always right.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

__all__ = ["PROGRESS_DIR", "ProgressFile"]

PROGRESS_DIR = "agent-responses"
KINDS = ("UPDATE", "BLOCKER", "RESULT")


class ProgressFile:
    def __init__(
        self,
        workspace: Path,
        agent_id: str,
        *,
        title: str,
        parent_id: str | None,
        role: str,
        task: str,
        status: str = "queued",
        lines: list[str] | None = None,
    ) -> None:
        self.path = workspace / PROGRESS_DIR / f"{agent_id}.md"
        self.relative_path = f"{PROGRESS_DIR}/{agent_id}.md"
        self.agent_id = agent_id
        self.title = " ".join(title.split()) or agent_id
        self.parent_id = parent_id
        self.role = role
        first_line = next((line.strip() for line in task.splitlines() if line.strip()), "")
        self.task_line = first_line[:300]
        self.status = status
        self.lines: list[str] = list(lines or [])

    @classmethod
    def reopen(cls, workspace: Path, agent_id: str, **header: str | None) -> ProgressFile:
        """Re-attach to an existing file on resume, keeping its log lines."""
        progress = cls(workspace, agent_id, **header)  # type: ignore[arg-type]
        try:
            text = progress.path.read_text(encoding="utf-8")
        except OSError:
            return progress
        progress.lines = [line for line in text.splitlines() if line.startswith("- ")]
        return progress

    def render(self) -> str:
        header = (
            f"# {self.title}\n"
            f"Agent: {self.agent_id}   Parent: {self.parent_id or '-'}   Role: {self.role}\n"
            f"Status: {self.status}\n"
            f"Task: {self.task_line}\n"
        )
        body = "\n".join(self.lines)
        return header + "\n" + (body + "\n" if body else "")

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.agent_id}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(self.render())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def set_status(self, status: str) -> None:
        self.status = status
        self.write()

    def add(self, kind: str, note: str) -> str:
        if kind not in KINDS:
            raise ValueError(f"unknown progress kind {kind}")
        one_line = " ".join(note.split())[:2000]
        line = f"- {time.strftime('%H:%M:%S')} [{kind}] {one_line}"
        self.lines.append(line)
        self.write()
        return line

    def tail(self, count: int) -> list[str]:
        return self.lines[-count:] if count > 0 else []
