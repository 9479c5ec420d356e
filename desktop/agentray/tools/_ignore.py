"""What ``list_files`` and ``search_files`` skip: what git ignores, read the way git reads it.

The rules are the workspace's own: every ``.gitignore`` at or below the workspace root (a deeper
file wins over a shallower one, and within a file the last matching line wins, ``!`` re-includes)
and ``.git/info/exclude`` (weakest). A user's global excludes file and ignore files above the
workspace are not read, so a listing does not depend on whose machine it runs on. The workspace
need not be a git repository: its ``.gitignore`` files count all the same.

Always skipped, ignored or not: ``.git`` (file or folder) and the tool folders in
:data:`SKIP_DIRS`. Symbolic links are never followed (nothing outside the workspace is reached
through them); a listing shows those that do not lead to a folder, a search skips them all.
A folder the caller names explicitly is walked even if it is ignored itself; the rules apply
below it.

Two walkers give the same files: :func:`walk_files` here (pure Python; ``pathspec`` turns the
patterns into regexes, tried on each entry as git does) and ripgrep (``agentray.tools._search``), which gets the same rules
through its flags and, for a sub-folder, through :func:`rebased_rules`.
"""

from __future__ import annotations

import os
import re
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from pathspec import GitIgnoreSpec

__all__ = [
    "GIT_DIR",
    "SKIP_DIRS",
    "IgnoreRules",
    "WalkTimeout",
    "exclude_file",
    "rebased_rules",
    "walk_files",
    "walk_key",
]

GIT_DIR = ".git"
SKIP_DIRS = frozenset(
    {GIT_DIR, "node_modules", "__pycache__", ".venv", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
)
IGNORE_FILE = ".gitignore"
_MAX_RULES_BYTES = 1024 * 1024  # an ignore file bigger than this is not a real one: read its head
_GLOB_SPECIALS = frozenset("\\*?[]{}!")

WalkKey = tuple[tuple[int, str], ...]


class WalkTimeout(Exception):
    """The walk went past its deadline."""


def walk_key(rel: str) -> WalkKey:
    """The order files are shown in: a folder's files (by name) before its sub-folders (by name)."""
    parts = rel.split("/")
    return (*((1, part) for part in parts[:-1]), (0, parts[-1]))


def _read_rules(path: Path | str) -> list[str]:
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_RULES_BYTES)
    except OSError:
        return []
    # surrogateescape: a pattern with bytes that are not UTF-8 still matches the same raw name
    return data.decode("utf-8", "surrogateescape").splitlines()


def exclude_file(root: Path) -> Path | None:
    """The repository's ``info/exclude`` for a workspace at its top (also worktrees, submodules)."""
    dot_git = root / GIT_DIR
    try:
        st = os.lstat(dot_git)
    except OSError:
        return None
    if stat.S_ISDIR(st.st_mode):
        return dot_git / "info" / "exclude"
    if not stat.S_ISREG(st.st_mode):
        return None
    # A worktree or submodule: ".git" is a file "gitdir: <dir>"; a worktree's exclude file is in
    # the common dir its "commondir" file names.
    lines = _read_rules(dot_git)
    if not lines or not lines[0].startswith("gitdir:"):
        return None
    git_dir = root / lines[0][len("gitdir:") :].strip()
    common = _read_rules(git_dir / "commondir")
    if common and common[0].strip():
        git_dir = git_dir / common[0].strip()
    return git_dir / "info" / "exclude"


# How one compiled pattern is tried on an entry (see _rule).
_FULL, _INSIDE, _ANY, _ANY_DIR = range(4)
_DIR_MARK = "ps_d"  # pathspec's name for the group that matches a folder's trailing slash

# The patterns of one ignore file, last first: (regex, how to try it, True to ignore / False
# for a "!" pattern).
Spec = tuple[tuple[re.Pattern[str], int, bool], ...]


def _rule(regex: re.Pattern[str]) -> int:
    """How to try a pathspec regex on a single entry, given the shapes pathspec 1.x compiles to.

    pathspec builds its regexes to be matched (as prefixes) against whole file paths. Here a
    pattern must match the entry itself: git never looks into an ignored folder, so a match on
    a parent is no verdict on the entry (a later ``!`` may have re-included that parent).
    """
    if not regex.pattern.startswith("^"):  # "*" / "**" (".") and "**/" (any folder)
        return _ANY_DIR if _DIR_MARK in regex.groupindex else _ANY
    if _DIR_MARK in regex.groupindex:  # "x", "x/" ...: the entry, a folder with its slash
        return _FULL
    return _INSIDE  # "x/**": whatever is below x, never x itself


def _spec(lines: list[str]) -> Spec | None:
    useful = [line for line in lines if line.strip() and not line.startswith("#")]
    if not useful:
        return None
    compiled = [
        (p.regex, _rule(p.regex), p.include)
        for p in GitIgnoreSpec.from_lines(useful).patterns
        if p.include is not None and isinstance(p.regex, re.Pattern)
    ]
    return tuple(reversed(compiled)) or None


def _verdict(spec: Spec, path: str, is_dir: bool) -> bool | None:
    """The last pattern of ``spec`` that matches ``path`` decides; None when none does."""
    for regex, rule, include in spec:
        if rule == _FULL:
            hit = regex.fullmatch(path + "/" if is_dir else path) is not None
        elif rule == _INSIDE:
            hit = regex.match(path) is not None
        else:
            hit = rule == _ANY or is_dir
        if hit:
            return include
    return None


class IgnoreRules:
    """The rules that apply in one folder: its own ``.gitignore`` and those of its parents."""

    def __init__(self, chain: tuple[tuple[str, Spec], ...], exclude: Spec | None):
        self._chain = chain  # (folder relative to the root, its spec), shallowest first
        self._exclude = exclude

    @classmethod
    def at_root(cls, root: Path) -> IgnoreRules:
        path = exclude_file(root)
        return cls((), _spec(_read_rules(path)) if path is not None else None)

    def enter(self, root: Path | str, rel_dir: str) -> IgnoreRules:
        """The rules inside ``rel_dir`` ("" is the root): these plus its own ``.gitignore``."""
        spec = _spec(_read_rules(os.path.join(root, rel_dir, IGNORE_FILE)))
        if spec is None:
            return self
        return IgnoreRules((*self._chain, (rel_dir, spec)), self._exclude)

    def ignored(self, rel: str, is_dir: bool) -> bool:
        """Whether git ignores ``rel`` (relative to the root), its parent folders aside."""
        for folder, spec in reversed(self._chain):
            sub = rel[len(folder) + 1 :] if folder else rel
            verdict = _verdict(spec, sub, is_dir)
            if verdict is not None:
                return verdict
        if self._exclude is not None:
            verdict = _verdict(self._exclude, rel, is_dir)
            if verdict is not None:
                return verdict
        return False


def _ancestors(root: Path, base: Path) -> list[str]:
    """The folders from the root down to the parent of ``base``, relative to the root."""
    if base == root:
        return []
    parts = base.relative_to(root).parts
    return ["/".join(parts[:i]) for i in range(len(parts))]


def walk_files(
    root: Path, base: Path, deadline: float | None = None, *, links: bool = False
) -> Iterator[str]:
    """Files under the folder ``base``, relative to ``root``, in :func:`walk_key` order.

    Regular files, and with ``links`` the symbolic links that do not lead to a folder (git keeps
    a link as a file: a listing shows it, a search never reads through it). A link is never
    followed into. Unreadable folders are skipped.
    """
    rules = IgnoreRules.at_root(root)
    for rel_dir in _ancestors(root, base):
        rules = rules.enter(root, rel_dir)
    top = str(root)
    start = "" if base == root else base.relative_to(root).as_posix()
    stack: list[tuple[str, IgnoreRules]] = [(start, rules)]
    while stack:
        if deadline is not None and time.monotonic() > deadline:
            raise WalkTimeout
        rel_dir, here = stack.pop()
        try:
            with os.scandir(os.path.join(top, rel_dir) if rel_dir else top) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        if any(entry.name == IGNORE_FILE for entry in entries):
            here = here.enter(top, rel_dir)
        prefix = f"{rel_dir}/" if rel_dir else ""
        subdirs: list[str] = []
        for entry in entries:
            try:
                if entry.is_symlink():
                    if not links or entry.name == GIT_DIR or entry.is_dir():
                        continue
                    if not here.ignored(prefix + entry.name, False):
                        yield prefix + entry.name
                elif entry.is_dir(follow_symlinks=False):
                    if entry.name in SKIP_DIRS or here.ignored(prefix + entry.name, True):
                        continue
                    subdirs.append(prefix + entry.name)
                elif entry.is_file(follow_symlinks=False):
                    if entry.name == GIT_DIR or here.ignored(prefix + entry.name, False):
                        continue
                    yield prefix + entry.name
            except OSError:
                continue
        stack.extend((sub, here) for sub in reversed(subdirs))


def _escape_glob(text: str) -> str:
    return "".join("\\" + c if c in _GLOB_SPECIALS else c for c in text)


def _strip_trailing_spaces(line: str) -> str:
    """Git drops trailing spaces unless the last one is escaped with a backslash."""
    stripped = line.rstrip(" ")
    if stripped != line and stripped.endswith("\\") and not stripped.endswith("\\\\"):
        return stripped + " "
    return stripped


def _rebase(line: str, folder: str) -> str:
    """A line of ``folder/.gitignore`` rewritten to mean the same in an ignore file at the root."""
    if not line.strip() or line.startswith("#"):
        return ""
    negated = line.startswith("!")
    body = _strip_trailing_spaces(line[1:] if negated else line)
    core = body[:-1] if body.endswith("/") else body
    # a slash at the start or in the middle ties the pattern to its own folder; else any depth below
    anchored = "/" in core
    prefix = "/" + _escape_glob(folder)
    rebased = f"{prefix}/{body.lstrip('/')}" if anchored else f"{prefix}/**/{body}"
    return ("!" if negated else "") + rebased


def rebased_rules(root: Path, base: Path) -> list[str]:
    """The rules for walking ``base`` that no ignore file inside it holds, as root-relative lines.

    That is ``info/exclude`` and the ``.gitignore`` files of the folders above ``base``, weakest
    first (ripgrep reads the files inside ``base`` itself and gives them precedence over these).
    """
    path = exclude_file(root)
    lines = _read_rules(path) if path is not None else []
    for rel_dir in _ancestors(root, base):
        own = _read_rules(root / rel_dir / IGNORE_FILE)
        lines.extend(_rebase(line, rel_dir) if rel_dir else line for line in own)
    return [line for line in lines if line.strip() and not line.startswith("#")]
