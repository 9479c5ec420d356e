"""File tools confined to one workspace directory.

Every path an agent gives is resolved against the workspace root with symlinks followed (also for
the nearest existing parent of a file that does not exist yet) and refused when the real path is
outside the root. Final components are opened with O_NOFOLLOW and writes go through ``os.replace``
(which replaces a symlink rather than following it), so swapping in a symlink after the check
cannot redirect a read or write of the file itself.

Names that are not valid UTF-8 are shown with ``\\xHH`` escapes (and a backslash that is part of a
name as ``\\\\``) and are accepted back in that form; see :mod:`agentray.tools._names`.

``read_file`` streams: it reads up to its window (plus a bounded look-ahead to count the lines),
never the whole of a big file, and its memory is bounded whatever the line lengths.

``list_files`` and ``search_files`` skip what git ignores; a search runs on ripgrep when installed;
see :mod:`agentray.tools._ignore` and :mod:`agentray.tools._search`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import stat
import tempfile
from collections.abc import Callable
from fnmatch import fnmatchcase
from pathlib import Path
from typing import IO, Any, TypeVar

from agentray.errors import ConfinementError, ToolError
from agentray.tools import _search
from agentray.tools._ignore import SKIP_DIRS
from agentray.tools._names import NAME_ESCAPE_NOTE, is_escaped, parse_name, show_name
from agentray.tools._search import ENGINES, Engine

__all__ = ["ENGINE_DIR", "SKIP_DIRS", "Workspace", "finish_in_thread"]

_T = TypeVar("_T")

ENGINE_DIR = "agent-responses"  # the engine writes progress files here; agents may only read

MAX_LINE_CHARS = 2000  # read_file clips longer lines
MAX_EDIT_BYTES = 10 * 1024 * 1024
MAX_SEARCH_BYTES = 5 * 1024 * 1024  # bigger files are skipped by search_files
_SNIFF_BYTES = 8192  # a NUL byte in the first 8 KiB makes a file binary
_READ_CHUNK = 65536
_KEEP_LINE_BYTES = MAX_LINE_CHARS * 4  # enough bytes for MAX_LINE_CHARS characters of UTF-8
_COUNT_AHEAD_BYTES = 4 * 1024 * 1024  # read_file counts the lines after its window this far
_RESULT_OVERHEAD_CHARS = 1000  # room for the other fields of a read_file result
_NEW_FILE_MODE = 0o644


def _check_str(value: object, name: str, *, allow_empty: bool = True) -> str:
    if not isinstance(value, str):
        raise ToolError(f"{name} must be a string")
    if not allow_empty and value == "":
        raise ToolError(f"{name} must not be empty")
    return value


def _check_int(value: object, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ToolError(f"{name} must be an integer")
    if value < minimum:
        raise ToolError(f"{name} must be at least {minimum}")
    return value


def _check_glob(value: object) -> str | None:
    if value is None:
        return None
    return _check_str(value, "glob", allow_empty=False)


def _looks_binary(sample: bytes) -> bool:
    return b"\0" in sample


def _glob_matches(rel: str, glob: str) -> bool:
    """``*.py`` matches by file name; a glob with a slash matches the path ("**/" may be empty)."""
    if "/" not in glob:
        return fnmatchcase(rel.rsplit("/", 1)[-1], glob)
    if fnmatchcase(rel, glob):
        return True
    return glob.startswith("**/") and fnmatchcase(rel, glob[3:])


class _LineReader:
    """The lines of a binary file, read in chunks: bounded memory whatever the line lengths.

    Lines end at b"\\n" (a final line without one counts); a b"\\r" before it is dropped.
    """

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self._buf = b""
        self._pos = 0
        self._in_line = False  # bytes of the current line were already consumed
        self.eof = False

    def _fill(self) -> bool:
        """Make unread bytes available; False at the end of the file."""
        if self._pos < len(self._buf):
            return True
        if self.eof:
            return False
        chunk = self._f.read(_READ_CHUNK)
        if not chunk:
            self.eof = True
            return False
        self._buf, self._pos = chunk, 0
        return True

    def skip(self, n: int) -> int:
        """Skip ``n`` lines; return how many there were (fewer at the end of the file)."""
        done = 0
        while done < n:
            if not self._fill():
                if self._in_line:
                    done += 1
                    self._in_line = False
                return done
            buf, pos = self._buf, self._pos
            count = buf.count(b"\n", pos)
            if count >= n - done:
                for _ in range(n - done):
                    pos = buf.index(b"\n", pos) + 1
                self._pos = pos
                self._in_line = False
                return n
            done += count
            self._pos = len(buf)
            self._in_line = buf[-1:] != b"\n"
        return done

    def line(self, keep: int, scan_limit: int | None = None) -> tuple[bytes, int, bool] | None:
        """The next line: (its first ``keep`` bytes, its length in bytes, whether its end was seen).

        With ``scan_limit``, gives up looking for the end after that many bytes. None at the end.
        """
        parts: list[bytes] = []
        kept = length = 0
        last = b""
        while True:
            if not self._fill():
                self._in_line = False
                if length == 0 and not parts:
                    return None
                break
            buf, pos = self._buf, self._pos
            newline = buf.find(b"\n", pos)
            end = len(buf) if newline < 0 else newline
            if kept < keep and end > pos:
                piece = buf[pos : min(end, pos + keep - kept)]
                parts.append(piece)
                kept += len(piece)
            if end > pos:
                length += end - pos
                last = buf[end - 1 : end]
            if newline >= 0:
                self._pos = newline + 1
                self._in_line = False
                break
            self._pos = end
            self._in_line = True
            if scan_limit is not None and length >= scan_limit:
                return b"".join(parts), length, False
        data = b"".join(parts)
        if last == b"\r":
            length -= 1
            if len(data) > length:
                data = data[:length]
        return data, length, True

    def count_rest(self, budget: int) -> tuple[int, bool]:
        """Count the lines left, reading at most about ``budget`` bytes: (count, reached the end)."""
        count = scanned = 0
        while True:
            if self._pos >= len(self._buf) and scanned >= budget:
                return count, False
            if not self._fill():
                if self._in_line:
                    count += 1
                    self._in_line = False
                return count, True
            buf, pos = self._buf, self._pos
            count += buf.count(b"\n", pos)
            scanned += len(buf) - pos
            self._pos = len(buf)
            self._in_line = buf[-1:] != b"\n"


def _read_head(f: IO[bytes], size: int) -> bytes:
    parts: list[bytes] = []
    got = 0
    while got < size:
        chunk = f.read(size - got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _render_line(data: bytes, length: int, complete: bool) -> tuple[str, bool, bool]:
    """A line as shown: (text, clipped, held bytes that are not UTF-8)."""
    if b"\0" in data:
        return (f"[binary data, {length} bytes]" if complete else "[binary data]"), False, False
    cut = len(data) < length or not complete
    text = data.decode("utf-8", errors="replace")
    bad = False
    if "\ufffd" in text:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            # a character split by the clipping is not the file's fault
            bad = not (
                cut and exc.start >= len(data) - 3 and exc.reason == "unexpected end of data"
            )
    if cut or len(text) > MAX_LINE_CHARS:
        size = f"{length} bytes in all" if complete else f"more than {length} bytes"
        return text[:MAX_LINE_CHARS] + f" …[line clipped; {size}]", True, bad
    return text, False, bad


async def finish_in_thread(fn: Callable[..., _T], *args: Any) -> _T:
    """Run a blocking file tool in a worker thread, off the event loop.

    If the caller is cancelled meanwhile, the thread's work (a write, say) is let land before the
    cancellation goes on, so a cancelled call never leaves a write behind it that happens later.
    """
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done():
            await asyncio.wait([task])
        if not task.cancelled():
            task.exception()  # retrieved: the cancellation is what the caller hears
        raise


class Workspace:
    """The directory an agent works in; every file tool goes through :meth:`resolve`."""

    def __init__(self, root: str | Path, *, engine: Engine = "auto") -> None:
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}")
        if not isinstance(root, str | Path):
            raise ToolError("workspace root must be a path")
        path = Path(root).expanduser()
        if not path.exists():
            raise ToolError(f"workspace does not exist: {root}")
        if not path.is_dir():
            raise ToolError(f"workspace is not a directory: {root}")
        self.root: Path = path.resolve()
        self.engine: Engine = engine  # how search_files runs; "auto": ripgrep when installed
        self.last_engine = ""  # which one served the last list or search (for tests and benches)

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    # ----------------------------------------------------------------------------- paths

    def resolve(self, path: str, *, for_write: bool = False) -> Path:
        """The real absolute path for ``path`` (relative to the root), or ConfinementError.

        ``path`` is in the shown form: ``\\xHH`` escapes and doubled backslashes are decoded first
        (:func:`parse_name`), and every check below applies to the name they decode to.
        """
        _check_str(path, "path")
        if path.strip() == "":
            raise ConfinementError("path must not be empty; use '.' for the workspace root")
        if "\0" in path:
            raise ConfinementError("path must not contain NUL bytes")
        given = path  # messages quote the path as the model gave it
        try:
            path = parse_name(path)
        except ValueError as exc:
            raise ConfinementError(f"path {given!r} refused: {exc}") from None
        if path.startswith("~"):
            raise ConfinementError(
                f"path {given!r} starts with '~'; paths are relative to the workspace and '~' is not expanded"
            )
        if os.path.isabs(path):
            raise ConfinementError(
                f"absolute path {given!r} refused; give a path relative to the workspace root"
            )
        try:
            # realpath follows every existing symlink (dangling ones too) and resolves the rest lexically.
            real = Path(os.path.realpath(self.root / path))
        except (OSError, ValueError) as exc:
            raise ConfinementError(f"cannot resolve path {given!r}: {exc}") from None
        if real != self.root and not real.is_relative_to(self.root):
            raise ConfinementError(f"path {given!r} leads outside the workspace; refused")
        if for_write:
            parts = real.relative_to(self.root).parts
            if parts and parts[0].casefold() == ENGINE_DIR:
                raise ConfinementError(
                    f"{ENGINE_DIR}/ belongs to the engine; agents may read it but not write there"
                )
        return real

    def _rel(self, real: Path) -> str:
        """The shown form of a real path inside the workspace (see :func:`show_name`)."""
        rel = real.relative_to(self.root).as_posix()
        return show_name(rel) if rel else "."

    def _inside(self, real: Path) -> bool:
        return real == self.root or real.is_relative_to(self.root)

    def _open_regular(self, real: Path, shown: str) -> tuple[int, os.stat_result]:
        """Open an existing regular file for reading without following a final symlink."""
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(real, flags)
        except FileNotFoundError:
            raise ToolError(f"no such file: {shown}") from None
        except IsADirectoryError:
            raise ToolError(f"{shown} is a directory; use list_files") from None
        except OSError as exc:
            raise ToolError(f"cannot open {shown}: {exc.strerror or exc}") from None
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            os.close(fd)
            raise ToolError(f"{shown} is a directory; use list_files")
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise ToolError(f"{shown} is not a regular file")
        return fd, st

    # ----------------------------------------------------------------------------- tools

    def read_file(
        self, path: str, offset: int = 0, limit: int = 2000, *, max_chars: int | None = None
    ) -> dict[str, Any]:
        """Lines ``[offset, offset + limit)`` (0-based offset), numbered from 1 like ``cat -n``.

        Streams: reads up to the window and then counts at most a few MiB more lines, so a huge
        file costs about as much as a small one (``total_lines`` is None when the end was not
        reached). ``max_chars`` bounds the result's JSON size: it stops at a whole line before and
        says where to go on (``next_offset``). A file with a NUL byte in its first 8 KiB is
        binary: a ToolError that gives its size.
        """
        _check_str(path, "path")
        _check_int(offset, "offset", minimum=0)
        _check_int(limit, "limit", minimum=1)
        if max_chars is not None:
            _check_int(max_chars, "max_chars", minimum=1)
        real = self.resolve(path)
        shown = self._rel(real)
        fd, st = self._open_regular(real, shown)
        budget = None if max_chars is None else max_chars - _RESULT_OVERHEAD_CHARS
        out: list[str] = []
        used = 0
        clipped_any = bad_utf8 = over_budget = False
        total: int | None = None
        with os.fdopen(fd, "rb", buffering=0) as f:
            head = _read_head(f, _SNIFF_BYTES)
            if _looks_binary(head):
                raise ToolError(
                    f"{shown} is a binary file, {st.st_size} bytes (a NUL byte in its first "
                    f"{_SNIFF_BYTES} bytes); read_file only shows text"
                )
            f.seek(0)
            lines = _LineReader(f)
            consumed = lines.skip(offset)  # lines read so far (shown or not)
            at_end = consumed < offset
            mid_line = False  # a line so long that its end was not looked for: stop there
            while not at_end and len(out) < limit:
                got = lines.line(_KEEP_LINE_BYTES, _COUNT_AHEAD_BYTES)
                if got is None:
                    at_end = True
                    break
                consumed += 1
                mid_line = not got[2]
                text, clipped, bad = _render_line(*got)
                row = f"{consumed:5d}\t{text}"
                cost = len(json.dumps(row, ensure_ascii=False))
                if budget is not None and out and used + cost > budget:
                    over_budget = True  # read but not shown: counted below with the rest
                    break
                out.append(row)
                used += cost
                clipped_any |= clipped
                bad_utf8 |= bad
                if mid_line:
                    break
            if at_end:
                total = consumed
            elif not mid_line:
                rest, reached_end = lines.count_rest(_COUNT_AHEAD_BYTES)
                if reached_end:
                    total = consumed + rest
        if offset > 0 and total is not None and offset >= total:
            raise ToolError(f"offset {offset} is past the end of {shown}, which has {total} lines")
        returned = len(out)
        truncated = total is None or offset + returned < total
        result: dict[str, Any] = {
            "path": shown,
            "content": "\n".join(out),
            "total_lines": total,
            "offset": offset,
            "lines_returned": returned,
            "truncated": truncated,
            "size_bytes": st.st_size,
        }
        notes: list[str] = []
        if truncated:
            result["next_offset"] = offset + returned
        if over_budget:
            notes.append(
                f"stopped after {returned} lines to fit the tool output; "
                f"read on with offset={offset + returned}"
            )
        if mid_line and not over_budget:
            notes.append(
                f"line {consumed} is longer than {_COUNT_AHEAD_BYTES} bytes: reading stopped "
                "there without looking for its end"
            )
        if total is None:
            notes.append(
                f"large file ({st.st_size} bytes): only read up to line {offset + returned} and "
                "a few MiB beyond, so the total line count is unknown"
            )
        if clipped_any:
            notes.append(f"lines longer than {MAX_LINE_CHARS} characters are clipped")
        if bad_utf8:
            notes.append("bytes that are not valid UTF-8 are shown as \ufffd")
        if is_escaped(shown):
            notes.append(NAME_ESCAPE_NOTE)
        if notes:
            result["note"] = "; ".join(notes)
        return result

    def write_file(self, path: str, content: str) -> dict[str, Any]:
        """Write ``content`` (UTF-8) atomically, creating parent directories."""
        _check_str(path, "path")
        _check_str(content, "content")
        real = self.resolve(path, for_write=True)
        shown = self._rel(real)
        data = content.encode("utf-8", errors="surrogatepass")
        created = self._atomic_write(real, shown, data)
        return {"path": shown, "bytes_written": len(data), "created": created}

    def _atomic_write(self, real: Path, shown: str, data: bytes) -> bool:
        """Replace ``real`` by a file holding ``data``; return True when it did not exist before."""
        try:
            st: os.stat_result | None = os.lstat(real)
        except FileNotFoundError:
            st = None
        except NotADirectoryError:
            raise ToolError(f"cannot create {shown}: a parent path is a file") from None
        except OSError as exc:
            raise ToolError(f"cannot write {shown}: {exc.strerror or exc}") from None
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise ToolError(f"{shown} is a directory; give a file path")
        parent = real.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise ToolError(f"cannot create {shown}: a parent path is a file") from None
        except OSError as exc:
            raise ToolError(
                f"cannot create the folder for {shown}: {exc.strerror or exc}"
            ) from None
        # mkdir may have raced with a symlink swap; check the real parent once more.
        if not self._inside(Path(os.path.realpath(parent))):
            raise ConfinementError(f"path {shown!r} leads outside the workspace; refused")
        mode = stat.S_IMODE(st.st_mode) if st is not None else _NEW_FILE_MODE
        try:
            fd, tmp = tempfile.mkstemp(
                dir=parent, prefix=f".{real.name[:64]}.", suffix=".agentray-tmp"
            )
        except OSError as exc:
            raise ToolError(f"cannot write {shown}: {exc.strerror or exc}") from None
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, real)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise ToolError(f"cannot write {shown}: {exc.strerror or exc}") from None
        return st is None

    def edit_file(
        self, path: str, old_string: str, new_string: str, replace_all: bool = False
    ) -> dict[str, Any]:
        """Replace ``old_string`` by ``new_string``; it must be unique unless ``replace_all``."""
        _check_str(path, "path")
        _check_str(old_string, "old_string", allow_empty=False)
        _check_str(new_string, "new_string")
        if not isinstance(replace_all, bool):
            raise ToolError("replace_all must be a boolean")
        if old_string == new_string:
            raise ToolError("old_string and new_string are identical; nothing to change")
        real = self.resolve(path, for_write=True)
        shown = self._rel(real)
        fd, st = self._open_regular(real, shown)
        with os.fdopen(fd, "rb") as f:
            if st.st_size > MAX_EDIT_BYTES:
                raise ToolError(
                    f"{shown} is too large to edit ({st.st_size} bytes, edit_file takes up to "
                    f"{MAX_EDIT_BYTES}); use write_file"
                )
            data = f.read()
        if _looks_binary(data[:_SNIFF_BYTES]):
            raise ToolError(f"{shown} is a binary file; edit_file only changes text")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ToolError(f"{shown} is not UTF-8 text; rewrite it with write_file") from None
        count = text.count(old_string)
        if count == 0:
            raise ToolError(
                f"old_string not found in {shown}; read the file and copy the exact text, "
                "whitespace and indentation included"
            )
        if count > 1 and not replace_all:
            raise ToolError(
                f"old_string occurs {count} times in {shown}; include more surrounding text to make "
                "it unique, or set replace_all to true"
            )
        new_text = text.replace(old_string, new_string)
        self._atomic_write(real, shown, new_text.encode("utf-8", errors="surrogatepass"))
        return {"path": shown, "replacements": count}

    def _base_dir(self, path: str) -> Path:
        base = self.resolve(path)
        if not base.exists():
            raise ToolError(f"no such file or directory: {self._rel(base)}")
        return base

    def list_files(
        self, path: str = ".", glob: str | None = None, limit: int = 500
    ) -> dict[str, Any]:
        """Files under ``path`` (recursively) that git does not ignore, as sorted paths relative to
        the workspace root; the first ``limit`` of them, ``truncated`` and a note when cut.

        Names are in the shown form (:func:`show_name`); ``glob`` matches that form.
        """
        _check_str(path, "path")
        pattern = _check_glob(glob)
        _check_int(limit, "limit", minimum=1)
        base = self._base_dir(path)
        self.last_engine = "python"  # listing never needs ripgrep; see _search.list_files
        return _search.list_files(self.root, base, pattern, limit, _glob_matches)

    def search_files(
        self, pattern: str, path: str = ".", glob: str | None = None, limit: int = 200
    ) -> dict[str, Any]:
        """Lines matching the regular expression ``pattern`` in text files under ``path`` that git
        does not ignore; the first ``limit`` of them, ``truncated`` and a note when cut.

        Binary files (a NUL byte in the first 8 KiB) that match and files over MAX_SEARCH_BYTES
        are skipped and counted in ``skipped``; bytes that are not UTF-8 are shown as U+FFFD.
        """
        _check_str(pattern, "pattern", allow_empty=False)
        _check_str(path, "path")
        file_glob = _check_glob(glob)
        _check_int(limit, "limit", minimum=1)
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise ToolError(f"bad regular expression {pattern!r}: {exc}") from None
        base = self._base_dir(path)
        result, self.last_engine = _search.search_files(
            self.root, base, regex, file_glob, limit, MAX_SEARCH_BYTES, _glob_matches, self.engine
        )
        return result
