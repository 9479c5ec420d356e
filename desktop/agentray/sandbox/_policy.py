"""What one run's commands may touch."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ._paths import default_hidden_paths, is_within

__all__ = ["SandboxPolicy", "journal_paths"]


def journal_paths(journal: Path, workspace: Path) -> list[Path]:
    """The journal's folder, or only its files when the folder is too broad to hide."""
    journal = journal.expanduser().resolve()
    folder = journal.parent
    broad = folder in (Path("/"), Path.home()) or is_within(Path.home(), folder)
    if broad or is_within(folder, workspace):
        suffixes = ("", "-wal", "-shm", "-journal", ".locks")  # .locks: the runs' owner locks
        return [journal.with_name(journal.name + suffix) for suffix in suffixes] + [
            journal.with_name("checkpoints")  # the shadow repositories of undo
        ]
    return [folder]


def _interpreter_dirs() -> list[Path]:
    """Where this Python and the PATH live: kept visible when they sit under the private /tmp."""
    dirs = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parent}
    dirs |= {Path(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p.startswith("/tmp/")}
    return sorted(d.resolve() for d in dirs if d.is_absolute())


@dataclass(frozen=True)
class SandboxPolicy:
    workspace: Path
    allow_network: bool = False
    hidden: tuple[Path, ...] = ()
    # empty, writable and thrown away: caches that build tools insist on writing (~/.cache)
    scratch: tuple[Path, ...] = ()
    visible_under_tmp: tuple[Path, ...] = field(default_factory=tuple)

    @classmethod
    def for_workspace(
        cls,
        workspace: str | Path,
        *,
        allow_network: bool = False,
        journal: Path | None = None,
        extra_hidden: Iterable[Path] = (),
    ) -> SandboxPolicy:
        ws = Path(workspace).resolve()
        extra = list(extra_hidden) + (journal_paths(journal, ws) if journal else [])
        return cls(
            workspace=ws,
            allow_network=allow_network,
            hidden=tuple(default_hidden_paths(extra=extra)),
            scratch=(Path.home() / ".cache",),
            visible_under_tmp=tuple(_interpreter_dirs()),
        )
