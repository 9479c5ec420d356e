"""The shadow repository: real ``git`` with its own GIT_DIR in Agentray's data dir and the workspace
as its work tree. The person's ``.git`` (HEAD, refs, index, stash, config, hooks) is never read or
written; their global and system git config, hooks and credential helpers never run."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["GitError", "ShadowRepo", "git_available"]

# Never snapshot: the engine's own files, and heavy tool folders no one reviews line by line.
DEFAULT_EXCLUDES = (
    "/agent-responses/",
    "*.agentray-tmp",
    ".venv/",
    "venv/",
    "node_modules/",
    "__pycache__/",
    "*.pyc",
    ".mypy_cache/",
    ".pytest_cache/",
    ".ruff_cache/",
    ".tox/",
    ".gradle/",
    "target/debug/",
    "target/release/",
)
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


class GitError(RuntimeError):
    """git failed; the message is its first line of stderr."""


def git_available() -> bool:
    return shutil.which("git") is not None


class ShadowRepo:
    def __init__(self, root: Path, workspace: Path) -> None:
        self.workspace = workspace
        key = hashlib.sha256(str(workspace).encode()).hexdigest()[:16]
        self.git_dir = root / f"{key}.git"

    def _env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": str(self.git_dir),  # no ~/.gitconfig
            "GIT_DIR": str(self.git_dir),
            "GIT_WORK_TREE": str(self.workspace),
            "GIT_INDEX_FILE": str(self.git_dir / "index"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": "Agentray",
            "GIT_AUTHOR_EMAIL": "agentray@localhost",
            "GIT_COMMITTER_NAME": "Agentray",
            "GIT_COMMITTER_EMAIL": "agentray@localhost",
            "LC_ALL": "C",
        }

    def run(self, *args: str, input: bytes | None = None, check: bool = True) -> bytes:
        done = subprocess.run(
            [
                "git",
                "-c",
                "core.hooksPath=" + os.devnull,
                "-c",
                "core.autocrlf=false",
                "-c",
                "core.quotepath=false",
                "-c",
                "credential.helper=",
                "-c",
                "gc.auto=0",
                *args,
            ],
            env=self._env(),
            cwd=self.workspace,
            input=input,
            capture_output=True,
        )
        if check and done.returncode != 0:
            message = (done.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[
                0
            ]
            raise GitError(f"git {args[0]}: {message}")
        return done.stdout

    def ensure(self) -> None:
        if (self.git_dir / "HEAD").exists():
            return
        self.git_dir.parent.mkdir(parents=True, exist_ok=True)
        env = {
            k: v
            for k, v in self._env().items()
            if k not in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE")
        }
        done = subprocess.run(
            ["git", "init", "--quiet", "--bare", str(self.git_dir)], env=env, capture_output=True
        )
        if done.returncode != 0:
            raise GitError(f"git init: {done.stderr.decode(errors='replace').strip()}")
        self.run("config", "core.bare", "false")
        info = self.git_dir / "info"
        info.mkdir(exist_ok=True)
        excludes = list(DEFAULT_EXCLUDES)
        project_exclude = self.workspace / ".git" / "info" / "exclude"
        if project_exclude.is_file():  # what the person's repo ignores locally, the shadow does too
            excludes.append(project_exclude.read_text(errors="replace"))
        (info / "exclude").write_text("\n".join(excludes) + "\n")

    def snapshot_tree(self, only: str | None = None) -> str:
        """Stage the whole work tree (what .gitignore ignores left out), or only one path, and
        write it as a tree."""
        for attempt in range(3):
            try:
                self.run("add", "--all", "--", only or ".")
                break
            except GitError:
                # a file vanished between git's listing and its stat (a temp file renamed away)
                if attempt == 2:
                    raise
        return self.run("write-tree").decode().strip()

    def commit(self, tree: str, parent: str | None, message: str) -> str:
        args = ["commit-tree", tree, "-m", message]
        if parent:
            args[2:2] = ["-p", parent]
        return self.run(*args).decode().strip()

    def set_ref(self, name: str, commit: str) -> None:
        self.run("update-ref", name, commit)

    def tree_of(self, commit: str) -> str:
        return self.run("rev-parse", f"{commit}^{{tree}}").decode().strip()

    def changed_paths(self, old: str, new: str) -> list[str]:
        out = self.run("diff-tree", "-r", "--name-only", "--no-renames", "-z", old, new)
        return [p for p in out.decode(errors="surrogateescape").split("\0") if p]

    def blob(self, commit: str, path: str) -> bytes | None:
        """The file's bytes at ``commit``; None when it did not exist there."""
        done = subprocess.run(
            ["git", "cat-file", "blob", f"{commit}:{path}"],
            env=self._env(),
            cwd=self.workspace,
            capture_output=True,
        )
        return done.stdout if done.returncode == 0 else None

    def mode(self, commit: str, path: str) -> int | None:
        out = self.run("ls-tree", "-z", commit, "--", path, check=False).decode(
            errors="surrogateescape"
        )
        if not out:
            return None
        return int(out.split(" ", 1)[0], 8)
