"""The agent's progress file, ``agent-responses/<agent_id>.md``, owned and written by the engine.

The whole file is rewritten atomically (temp file + ``os.replace``) on every change, so a reader
never sees half a file and ``grep '^Status: done'`` is always right.

Agents' commands can rewrite the workspace, ``agent-responses`` included: the engine opens the
folder relative to the workspace with ``O_NOFOLLOW`` and writes through that descriptor, so a
folder or file replaced by a symlink never sends the engine's writes outside the workspace.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["PROGRESS_DIR", "ProgressFile", "UnsafeProgressDir"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class UnsafeProgressDir(OSError):
    """``agent-responses`` is not a plain folder of the workspace (a symlink, a file)."""


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
        # Why the last write failed (None after a success), and who hears of a new failure.
        self.write_error: str | None = None
        self.on_write_error: Callable[[ProgressFile, str], None] | None = None

    @classmethod
    def reopen(cls, workspace: Path, agent_id: str, **header: str | None) -> ProgressFile:
        """Re-attach to an existing file on resume, keeping its log lines."""
        progress = cls(workspace, agent_id, **header)  # type: ignore[arg-type]
        if progress.path.parent.is_symlink() or progress.path.is_symlink():
            return progress  # never read lines from outside the workspace into it
        try:
            text = progress.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
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

    def write(self) -> bool:
        """Rewrite the file; False (and ``write_error`` set) when the workspace refused it.

        A progress file the engine cannot write (a full disk, a folder swapped for a symlink)
        must not stop the agent: the journal holds everything the file would show.
        """
        try:
            self._write()
        except OSError as error:
            message = error.strerror if isinstance(error, UnsafeProgressDir) else str(error)
            first = self.write_error is None
            self.write_error = message or type(error).__name__
            if first and self.on_write_error is not None:
                self.on_write_error(self, self.write_error)
            return False
        self.write_error = None
        return True

    def _write(self) -> None:
        workspace_fd = os.open(self.path.parent.parent, _DIR_FLAGS & ~os.O_NOFOLLOW)
        try:
            try:
                os.mkdir(PROGRESS_DIR, dir_fd=workspace_fd)
            except FileExistsError:
                pass
            try:
                dir_fd = os.open(PROGRESS_DIR, _DIR_FLAGS, dir_fd=workspace_fd)
            except OSError as error:
                raise UnsafeProgressDir(
                    error.errno,
                    f"{PROGRESS_DIR} in the workspace is not a plain folder (a symlink "
                    f"or a file?); {self.relative_path} is not written through it",
                ) from None
        finally:
            os.close(workspace_fd)
        try:
            tmp = f".{self.agent_id}.{secrets.token_hex(4)}.tmp"
            fd = os.open(tmp, _FILE_FLAGS, 0o644, dir_fd=dir_fd)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(self.render())
                # rename replaces a symlink named like the file; it never writes through one
                os.replace(tmp, self.path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=dir_fd)
                raise
        finally:
            os.close(dir_fd)

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
