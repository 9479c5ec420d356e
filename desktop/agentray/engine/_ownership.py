"""One owner per run: an OS file lock held for as long as a process drives the run.

A row flag cannot tell a live owner from a dead one; the kernel can: ``flock`` locks die with
their process, so the lock of a crashed owner is simply free, and two ``resume`` started at the
same moment cannot both get it. The lock files sit beside the journal (hidden from commands).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from agentray.errors import RunBusyError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; runs are then not guarded
    fcntl = None  # type: ignore[assignment]

__all__ = ["RunLock", "lock_dir"]


def lock_dir(journal_path: Path) -> Path:
    return journal_path.with_name(journal_path.name + ".locks")


class RunLock:
    def __init__(self, fd: int | None, path: Path) -> None:
        self._fd = fd
        self.path = path

    @classmethod
    def acquire(cls, journal_path: Path, run_id: str) -> RunLock:
        """Take the run's lock, or raise RunBusyError naming the process that holds it."""
        folder = lock_dir(journal_path)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = folder / f"{run_id}.lock"
        if fcntl is None:  # pragma: no cover
            return cls(None, path)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunBusyError(
                f"run {run_id} is being driven by process {owner}; wait for it, or stop it with "
                f"`agentray stop {run_id}`"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(fd, path)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None and fcntl is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
