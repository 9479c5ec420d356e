"""The agent's progress file, ``agent-responses/<agent_id>.md``, owned and written by the engine.

A change to the header (the status above all) rewrites the whole file atomically (temp file +
``os.replace``), so a reader never sees half a header and ``grep '^Status: done'`` is always
right; new log lines under an unchanged header are appended to the file the engine last wrote (the
same inode, the same size: anything else, an agent's edit included, gets a whole rewrite).
Writes are coalesced: a change is written at most :data:`COALESCE_S` after it is made, at most
one write per :data:`COALESCE_S` for a file, and every change made in one go (a note and the
status after it) lands in one write. A terminal status (done, failed, cancelled) is written at
once; ``flush`` writes what is pending (the agent loop does before each model call, the run at
its end), so a failure to write is seen in time.
On ext4 a rename over an existing file also allocates and starts writing the new file's blocks:
one rewrite costs 0.1–0.3 ms of CPU (at 60 agents, a tenth of the engine's CPU per model turn),
an append about a tenth of that; and a busy orchestrator's notes came in bursts of dozens.

Agents' commands can rewrite the workspace, ``agent-responses`` included: the engine opens the
folder relative to the workspace with ``O_NOFOLLOW`` and writes through that descriptor, so a
folder or file replaced by a symlink never sends the engine's writes outside the workspace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["COALESCE_S", "PROGRESS_DIR", "ProgressFile", "UnsafeProgressDir"]

log = logging.getLogger(__name__)

# A change reaches the file at most this long after it is made; a file is rewritten at most once
# in this long (a terminal status and ``flush`` excepted).
COALESCE_S = 0.1
# Written at once: an agent's end must be on disk before anyone hears of it.
_AT_ONCE = frozenset({"done", "failed", "cancelled"})

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_APPEND_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


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
        self.writes = 0  # writes attempted, appends or rewrites (tests and benchmarks count them)
        self._dirty = False  # a change not yet written
        self._due: asyncio.TimerHandle | None = None
        self._written_at = float("-inf")  # time.monotonic() of the last write
        # The file as the engine last wrote it: (device, inode, size), its header and how many
        # log lines; an append is made only to that very file.
        self._on_disk: tuple[int, int, int] | None = None
        self._on_disk_header = ""
        self._on_disk_lines = 0

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
        return self._header() + "".join(line + "\n" for line in self.lines)

    def _header(self) -> str:
        """The header and the blank line under it."""
        return (
            f"# {self.title}\n"
            f"Agent: {self.agent_id}   Parent: {self.parent_id or '-'}   Role: {self.role}\n"
            f"Status: {self.status}\n"
            f"Task: {self.task_line}\n\n"
        )

    @property
    def pending(self) -> bool:
        """A change is waiting for its coalesced write."""
        return self._dirty

    def write(self) -> bool:
        """Write the file now (what was pending goes with it); False (and ``write_error`` set)
        when the workspace refused it.

        A progress file the engine cannot write (a full disk, a folder swapped for a symlink)
        must not stop the agent: the journal holds everything the file would show.
        """
        if self._due is not None:
            self._due.cancel()
            self._due = None
        self._dirty = False
        self._written_at = time.monotonic()
        self.writes += 1
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

    def flush(self) -> bool:
        """Write a pending change now; True when the file on disk is current."""
        if self._dirty:
            return self.write()
        return self.write_error is None

    def _changed(self, *, at_once: bool = False) -> None:
        """Note a change: written at once, or by a timer at most ``COALESCE_S`` from now."""
        self._dirty = True
        if at_once:
            self.write()
            return
        if self._due is not None:
            return  # a write is already due: it takes this change along
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a command, a script): nothing to coalesce with
            self.write()
            return
        delay = max(0.0, self._written_at + COALESCE_S - time.monotonic())
        self._due = loop.call_later(delay, self._write_due)

    def _write_due(self) -> None:
        self._due = None
        if not self._dirty:
            return
        try:
            self.write()
        except Exception:  # on_write_error's listener: a timer has nobody to raise to
            log.exception("writing %s failed", self.relative_path)

    def _open_dir(self, workspace_fd: int) -> int:
        try:
            return os.open(PROGRESS_DIR, _DIR_FLAGS, dir_fd=workspace_fd)
        except FileNotFoundError:
            raise
        except OSError as error:
            raise UnsafeProgressDir(
                error.errno,
                f"{PROGRESS_DIR} in the workspace is not a plain folder (a symlink "
                f"or a file?); {self.relative_path} is not written through it",
            ) from None

    def _write(self) -> None:
        workspace_fd = os.open(self.path.parent.parent, _DIR_FLAGS & ~os.O_NOFOLLOW)
        try:
            try:
                dir_fd = self._open_dir(workspace_fd)
            except FileNotFoundError:  # the first write (or someone removed the folder)
                with contextlib.suppress(FileExistsError):
                    os.mkdir(PROGRESS_DIR, dir_fd=workspace_fd)
                dir_fd = self._open_dir(workspace_fd)
        finally:
            os.close(workspace_fd)
        try:
            header = self._header()
            if not self._append(dir_fd, header):
                self._rewrite(dir_fd, header)
        finally:
            os.close(dir_fd)

    def _append(self, dir_fd: int, header: str) -> bool:
        """Append the new log lines to the file as last written; False when a rewrite is needed
        (a new header, a file someone else changed, replaced or removed)."""
        if (
            self._on_disk is None
            or header != self._on_disk_header
            or len(self.lines) < self._on_disk_lines
        ):
            return False
        try:
            fd = os.open(self.path.name, _APPEND_FLAGS, dir_fd=dir_fd)
        except OSError:  # gone, or a symlink put in its place: the rewrite replaces it
            return False
        try:
            stat = os.fstat(fd)
            if (stat.st_dev, stat.st_ino, stat.st_size) != self._on_disk:
                return False
            data = "".join(line + "\n" for line in self.lines[self._on_disk_lines :]).encode()
            _write_all(fd, data)
        finally:
            os.close(fd)
        self._on_disk = (stat.st_dev, stat.st_ino, stat.st_size + len(data))
        self._on_disk_lines = len(self.lines)
        return True

    def _rewrite(self, dir_fd: int, header: str) -> None:
        self._on_disk = None
        tmp = f".{self.agent_id}.{secrets.token_hex(4)}.tmp"
        data = (header + "".join(line + "\n" for line in self.lines)).encode("utf-8")
        fd = os.open(tmp, _FILE_FLAGS, 0o644, dir_fd=dir_fd)
        try:
            try:
                _write_all(fd, data)
                stat = os.fstat(fd)
            finally:
                os.close(fd)
            # rename replaces a symlink named like the file; it never writes through one
            os.replace(tmp, self.path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
        self._on_disk = (stat.st_dev, stat.st_ino, stat.st_size)
        self._on_disk_header = header
        self._on_disk_lines = len(self.lines)

    def set_status(self, status: str) -> None:
        self.status = status
        self._changed(at_once=status in _AT_ONCE)

    def add(self, kind: str, note: str) -> str:
        if kind not in KINDS:
            raise ValueError(f"unknown progress kind {kind}")
        one_line = " ".join(note.split())[:2000]
        line = f"- {time.strftime('%H:%M:%S')} [{kind}] {one_line}"
        self.lines.append(line)
        self._changed()
        return line

    def tail(self, count: int) -> list[str]:
        return self.lines[-count:] if count > 0 else []


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
