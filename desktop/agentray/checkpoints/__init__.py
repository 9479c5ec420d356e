"""Checkpoints, review and undo (PRODUCT.md): every change a run makes to its folder, whoever made
it and however (file tools or shell commands), reviewable and undoable per run and per agent.

A snapshot is a commit of the shadow repository (``_git.ShadowRepo``) recorded in the journal with
its agent and tool call: one before the run, one after each tool call that can change files. The
changes between consecutive snapshots belong to the agent whose call ended the interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path

from agentray.journal import Journal, SnapshotRow

from ._git import GitError, ShadowRepo, git_available

__all__ = [
    "CHANGING_TOOLS",
    "DEFAULT_KEEP_DAYS",
    "Checkpoints",
    "FileChange",
    "GitError",
    "UndoResult",
    "checkpoint_root",
    "git_available",
    "prune_runs",
]

CHANGING_TOOLS = frozenset({"write_file", "edit_file", "run_command", "run_build"})


def checkpoint_root(journal_path: Path) -> Path:
    """Beside the journal, in Agentray's data dir (hidden from agents' commands with it)."""
    return journal_path.with_name("checkpoints")


@dataclass(frozen=True)
class FileChange:
    path: str
    status: str  # added | modified | deleted
    added: int  # lines
    removed: int
    agents: tuple[str, ...]  # who changed it, in order


@dataclass(frozen=True)
class UndoResult:
    restored: tuple[str, ...] = ()
    changed_since: tuple[str, ...] = ()  # changed after the run (the person, another run)
    shared: dict[str, tuple[str, ...]] = field(default_factory=dict)  # path -> other agents

    @property
    def ok(self) -> bool:
        return not self.changed_since and not self.shared


def _text_lines(data: bytes | None) -> list[str] | None:
    if data is None:
        return []
    if b"\0" in data[:8192]:
        return None  # binary
    return data.decode("utf-8", errors="replace").splitlines(keepends=True)


class Checkpoints:
    """One run's snapshots: taken by the engine, read by `agentray diff` / `undo` and the tray.

    Every method blocks (git, files) and may run in any thread: each opens its own connection to
    the journal (SQLite connections belong to the thread that made them)."""

    def __init__(self, journal: Journal | Path, run_id: str, workspace: str | Path) -> None:
        self.journal_path = journal.path if isinstance(journal, Journal) else Path(journal)
        self.run_id = run_id
        self.workspace = Path(workspace)
        self.repo = ShadowRepo(checkpoint_root(self.journal_path), self.workspace)
        self._lock = asyncio.Lock()
        self.last_paths: tuple[str, ...] = ()  # what the latest snapshot saw change

    def snapshots(self) -> list[SnapshotRow]:
        with Journal(self.journal_path) as journal:
            return journal.list_snapshots(self.run_id)

    # ------------------------------------------------------------------ taking
    def take(
        self,
        *,
        agent_id: str | None,
        call_id: str | None,
        tool: str,
        claims: dict[str, tuple[str, str]] | None = None,
        only: str | None = None,
    ) -> SnapshotRow | None:
        """Snapshot the workspace (or, for a file tool, only the path it wrote) now (blocking: call it off the event loop). None when nothing
        changed since the last snapshot (except the run's first, which is always recorded).

        Agents work in parallel, so one interval can hold several agents' changes: a path in
        ``claims`` (path -> agent, call: what a file tool wrote) goes to that agent; the rest to the
        call that ended the interval. One row per agent, all on the same commit."""
        self.repo.ensure()
        snapshots = self.snapshots()
        last = snapshots[-1] if snapshots else None
        tree = self.repo.snapshot_tree(only if last is not None else None)
        if last is not None and self.repo.tree_of(last.commit_id) == tree:
            return None
        message = f"{self.run_id} {tool} {agent_id or '-'} {call_id or '-'}"
        commit = self.repo.commit(tree, last.commit_id if last else None, message)
        self.repo.set_ref(f"refs/agentray/{self.run_id}", commit)
        paths = self.repo.changed_paths(last.commit_id, commit) if last else []
        self.last_paths = tuple(paths)
        owners: dict[tuple[str | None, str | None], list[str]] = {}
        own = (agent_id, call_id)
        for path in paths:  # .get per path: the engine may add claims meanwhile
            owner = (claims or {}).get(path, own)
            owners.setdefault(owner, []).append(path)
            if owner != own and tool in ("run_command", "run_build"):
                # the command may have changed it too: both own it (undo of either is then refused
                # as shared, never silently partial)
                owners.setdefault(own, []).append(path)
        groups = [(own, owners.pop(own, [])), *owners.items()]
        rows = []
        with Journal(self.journal_path) as journal:
            for (agent, call), group in groups:
                if group or (agent, call) == own:
                    rows.append(
                        journal.add_snapshot(
                            self.run_id,
                            commit_id=commit,
                            parent_id=last.commit_id if last else None,
                            agent_id=agent,
                            call_id=call,
                            tool=tool if (agent, call) == own else "claimed",
                            paths=group,
                        )
                    )
        return rows[0]

    async def take_async(
        self,
        *,
        agent_id: str | None,
        call_id: str | None,
        tool: str,
        claims: dict[str, tuple[str, str]] | None = None,
        only: str | None = None,
    ) -> SnapshotRow | None:
        # One at a time per run (they share the shadow index); off the loop (git scans the folder).
        async with self._lock:
            return await asyncio.to_thread(
                # the live claims (not a copy): a file tool may claim a path while git runs
                self.take,
                agent_id=agent_id,
                call_id=call_id,
                tool=tool,
                claims=claims,
                only=only,
            )

    # ------------------------------------------------------------------ reading
    @staticmethod
    def _touches(
        snapshots: list[SnapshotRow], agent_id: str | None
    ) -> dict[str, list[SnapshotRow]]:
        """path -> the snapshots (after the base) that changed it, optionally only this agent's."""
        found: dict[str, list[SnapshotRow]] = {}
        for snap in snapshots[1:]:
            if snap.tool == "undo":
                continue
            if agent_id is not None and snap.agent_id != agent_id:
                continue
            for path in snap.paths:
                found.setdefault(path, []).append(snap)
        return found

    def _span(self, snaps: list[SnapshotRow]) -> tuple[str, str]:
        """(before, after) commits for a file changed by ``snaps``."""
        return snaps[0].parent_id or snaps[0].commit_id, snaps[-1].commit_id

    def changes(self, agent_id: str | None = None) -> list[FileChange]:
        snapshots = self.snapshots()  # one read of the journal for the whole answer
        everyone = self._touches(snapshots, None)
        mine = self._touches(snapshots, agent_id) if agent_id else everyone
        out: list[FileChange] = []
        for path in sorted(mine):
            before, after = self._span(mine[path])
            old, new = self.repo.blob(before, path), self.repo.blob(after, path)
            if old == new:
                continue  # changed and changed back
            status = "added" if old is None else "deleted" if new is None else "modified"
            a, b = _text_lines(old), _text_lines(new)
            added = removed = 0
            if a is not None and b is not None:
                for line in difflib.unified_diff(a, b, n=0):
                    if line.startswith("+") and not line.startswith("+++"):
                        added += 1
                    elif line.startswith("-") and not line.startswith("---"):
                        removed += 1
            agents = tuple(dict.fromkeys(s.agent_id or "-" for s in everyone[path]))
            out.append(FileChange(path, status, added, removed, agents))
        return out

    def diff(self, agent_id: str | None = None, path: str | None = None) -> str:
        touches = self._touches(self.snapshots(), agent_id)
        parts: list[str] = []
        for name in sorted(touches):
            if path is not None and name != path:
                continue
            before, after = self._span(touches[name])
            old, new = self.repo.blob(before, name), self.repo.blob(after, name)
            if old == new:
                continue
            a, b = _text_lines(old), _text_lines(new)
            src = "/dev/null" if old is None else f"a/{name}"
            dst = "/dev/null" if new is None else f"b/{name}"
            if a is None or b is None:
                parts.append(f"--- {src}\n+++ {dst}\nBinary files differ\n")
                continue
            lines = list(difflib.unified_diff(a, b, src, dst))
            parts.append(
                "".join(
                    line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
                    for line in lines
                )
            )
        return "".join(parts)

    # ------------------------------------------------------------------ undo
    def _current(self, path: str) -> bytes | None:
        target = self.workspace / path
        try:
            if target.is_symlink():
                return os.readlink(target).encode(errors="surrogateescape")
            return target.read_bytes() if target.is_file() else None
        except OSError:
            return None

    def undo(self, agent_id: str | None = None, *, force: bool = False) -> UndoResult:
        """Put the files the run (that agent) changed back as they were before it. Nothing changes
        unless every file is as the run left it and no other agent changed it too (or ``force``)."""
        snapshots = self.snapshots()
        if not snapshots:
            return UndoResult()
        last = snapshots[-1].commit_id
        mine = self._touches(snapshots, agent_id)
        everyone = self._touches(snapshots, None)
        changed_since = [p for p in sorted(mine) if self._current(p) != self.repo.blob(last, p)]
        shared: dict[str, tuple[str, ...]] = {}
        if agent_id is not None:
            for path in mine:
                others = tuple(
                    dict.fromkeys(
                        s.agent_id or "-" for s in everyone[path] if s.agent_id != agent_id
                    )
                )
                if others:
                    shared[path] = others
        if (changed_since or shared) and not force:
            return UndoResult((), tuple(changed_since), shared)
        restored: list[str] = []
        for path in sorted(mine):
            before = self._span(mine[path])[0]
            data, mode = self.repo.blob(before, path), self.repo.mode(before, path)
            target = self.workspace / path
            if data == self._current(path):
                continue
            if data is None:
                with contextlib.suppress(FileNotFoundError):
                    target.unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.is_symlink():
                    target.unlink()
                if mode == 0o120000:
                    target.symlink_to(data.decode(errors="surrogateescape"))
                else:
                    target.write_bytes(data)
                    if mode is not None:
                        target.chmod(0o755 if mode & 0o111 else 0o644)
            restored.append(path)
        if restored:
            self.take(agent_id=None, call_id=None, tool="undo")
        return UndoResult(
            tuple(restored), tuple(changed_since) if force else (), shared if force else {}
        )


DEFAULT_KEEP_DAYS = 30


def prune_runs(journal: Journal, days: float, *, now: float | None = None) -> list[str]:
    """Forget runs that ended more than ``days`` ago, with their snapshots, and let git drop the
    commits no run points at any more. Blocking: the tray runs it in the background at start-up,
    never during a run."""
    import time

    cutoff = (time.time() if now is None else now) - days * 86400
    gone = journal.delete_runs_ended_before(cutoff)
    touched: dict[Path, ShadowRepo] = {}
    for run_id, workspace in gone:
        repo = ShadowRepo(checkpoint_root(journal.path), Path(workspace))
        if (repo.git_dir / "HEAD").exists():
            repo.run("update-ref", "-d", f"refs/agentray/{run_id}", check=False)
            touched[repo.git_dir] = repo
    for repo in touched.values():
        with contextlib.suppress(GitError, OSError):
            repo.run("reflog", "expire", "--expire=now", "--all", check=False)
            repo.run("gc", "--quiet", "--prune=now")
    return [run_id for run_id, _ in gone]
