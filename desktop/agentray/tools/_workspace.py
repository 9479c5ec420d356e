"""File tools confined to one workspace directory.

Every path an agent gives is resolved against the workspace root with symlinks followed (also for
the nearest existing parent of a file that does not exist yet) and refused when the real path is
outside the root. Final components are opened with O_NOFOLLOW and writes go through ``os.replace``
(which replaces a symlink rather than following it), so swapping in a symlink after the check
cannot redirect a read or write of the file itself.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from fnmatch import fnmatchcase
from pathlib import Path
from typing import IO, Any

from agentray.errors import ConfinementError, ToolError

__all__ = ["ENGINE_DIR", "SKIP_DIRS", "Workspace"]

ENGINE_DIR = "agent-responses"  # the engine writes progress files here; agents may only read
SKIP_DIRS = frozenset(
    {".git", "node_modules", "__pycache__", ".venv", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
)

MAX_LINE_CHARS = 2000  # read_file clips longer lines
MAX_MATCH_CHARS = 300  # search_files clips the text of a matching line
MAX_EDIT_BYTES = 10 * 1024 * 1024
MAX_SEARCH_BYTES = 5 * 1024 * 1024  # bigger files are skipped by search_files
_SNIFF_BYTES = 8192
_READ_CHUNK = 65536
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


def _iter_lines(f: IO[str]) -> Iterator[tuple[str, bool]]:
    """Yield (line without its newline, clipped) with bounded memory, even for huge lines."""
    while True:
        piece = f.readline(_READ_CHUNK)
        if not piece:
            return
        if piece.endswith("\n") or len(piece) < _READ_CHUNK:
            yield piece.rstrip("\r\n"), False
            continue
        # A line longer than one chunk: keep its start, skip the rest of it.
        while True:
            rest = f.readline(_READ_CHUNK)
            if not rest or rest.endswith("\n") or len(rest) < _READ_CHUNK:
                break
        yield piece, True


def _glob_matches(rel: str, glob: str) -> bool:
    """``*.py`` matches by file name; a glob with a slash matches the path ("**/" may be empty)."""
    if "/" not in glob:
        return fnmatchcase(rel.rsplit("/", 1)[-1], glob)
    if fnmatchcase(rel, glob):
        return True
    return glob.startswith("**/") and fnmatchcase(rel, glob[3:])


class Workspace:
    """The directory an agent works in; every file tool goes through :meth:`resolve`."""

    def __init__(self, root: str | Path) -> None:
        if not isinstance(root, str | Path):
            raise ToolError("workspace root must be a path")
        path = Path(root).expanduser()
        if not path.exists():
            raise ToolError(f"workspace does not exist: {root}")
        if not path.is_dir():
            raise ToolError(f"workspace is not a directory: {root}")
        self.root: Path = path.resolve()

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    # ----------------------------------------------------------------------------- paths

    def resolve(self, path: str, *, for_write: bool = False) -> Path:
        """The real absolute path for ``path`` (relative to the root), or ConfinementError."""
        _check_str(path, "path")
        if path.strip() == "":
            raise ConfinementError("path must not be empty; use '.' for the workspace root")
        if "\0" in path:
            raise ConfinementError("path must not contain NUL bytes")
        if path.startswith("~"):
            raise ConfinementError(
                f"path {path!r} starts with '~'; paths are relative to the workspace and '~' is not expanded"
            )
        if os.path.isabs(path):
            raise ConfinementError(
                f"absolute path {path!r} refused; give a path relative to the workspace root"
            )
        try:
            # realpath follows every existing symlink (dangling ones too) and resolves the rest lexically.
            real = Path(os.path.realpath(self.root / path))
        except (OSError, ValueError) as exc:
            raise ConfinementError(f"cannot resolve path {path!r}: {exc}") from None
        if real != self.root and not real.is_relative_to(self.root):
            raise ConfinementError(f"path {path!r} leads outside the workspace; refused")
        if for_write:
            parts = real.relative_to(self.root).parts
            if parts and parts[0].casefold() == ENGINE_DIR:
                raise ConfinementError(
                    f"{ENGINE_DIR}/ belongs to the engine; agents may read it but not write there"
                )
        return real

    def _rel(self, real: Path) -> str:
        rel = real.relative_to(self.root).as_posix()
        return rel if rel else "."

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

    def read_file(self, path: str, offset: int = 0, limit: int = 2000) -> dict[str, Any]:
        """Lines ``[offset, offset + limit)`` (0-based offset), numbered from 1 like ``cat -n``."""
        _check_str(path, "path")
        _check_int(offset, "offset", minimum=0)
        _check_int(limit, "limit", minimum=1)
        real = self.resolve(path)
        shown = self._rel(real)
        fd, _ = self._open_regular(real, shown)
        with os.fdopen(fd, "rb") as raw:
            if _looks_binary(raw.read(_SNIFF_BYTES)):
                raise ToolError(f"{shown} is a binary file; read_file only shows text")
            raw.seek(0)
            out: list[str] = []
            total = 0
            with io.TextIOWrapper(raw, encoding="utf-8", errors="replace") as f:
                for number, (line, clipped) in enumerate(_iter_lines(f), start=1):
                    total = number
                    if offset < number <= offset + limit:
                        if clipped or len(line) > MAX_LINE_CHARS:
                            line = line[:MAX_LINE_CHARS] + " …[line clipped]"
                        out.append(f"{number:5d}\t{line}")
        if offset > 0 and offset >= total:
            raise ToolError(f"offset {offset} is past the end of {shown}, which has {total} lines")
        return {
            "path": shown,
            "content": "\n".join(out),
            "total_lines": total,
            "offset": offset,
            "lines_returned": len(out),
            "truncated": offset + len(out) < total,
        }

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
            fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{real.name}.", suffix=".tmp")
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
                    f"{shown} is too large to edit ({st.st_size} bytes); use write_file"
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

    def _walk(self, base: Path) -> Iterator[Path]:
        """Files under ``base`` in sorted order, skipping tool/VCS folders; symlinked dirs not entered."""
        if not base.is_dir():
            yield base
            return
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
            for name in sorted(filenames):
                yield Path(dirpath, name)

    def _base_dir(self, path: str) -> Path:
        base = self.resolve(path)
        if not base.exists():
            raise ToolError(f"no such file or directory: {path}")
        return base

    def list_files(
        self, path: str = ".", glob: str | None = None, limit: int = 500
    ) -> dict[str, Any]:
        """Files under ``path`` (recursively), as sorted paths relative to the workspace root."""
        _check_str(path, "path")
        pattern = _check_glob(glob)
        _check_int(limit, "limit", minimum=1)
        base = self._base_dir(path)
        base_is_dir = base.is_dir()
        files: list[str] = []
        for file in self._walk(base):
            rel_base = file.relative_to(base).as_posix() if base_is_dir else file.name
            if pattern is not None and not _glob_matches(rel_base, pattern):
                continue
            files.append(file.relative_to(self.root).as_posix())
            if len(files) > limit:
                break
        files.sort()
        return {"files": files[:limit], "truncated": len(files) > limit}

    def search_files(
        self, pattern: str, path: str = ".", glob: str | None = None, limit: int = 200
    ) -> dict[str, Any]:
        """Lines matching the regular expression ``pattern`` in text files under ``path``."""
        _check_str(pattern, "pattern", allow_empty=False)
        _check_str(path, "path")
        file_glob = _check_glob(glob)
        _check_int(limit, "limit", minimum=1)
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise ToolError(f"bad regular expression {pattern!r}: {exc}") from None
        base = self._base_dir(path)
        base_is_dir = base.is_dir()
        matches: list[dict[str, Any]] = []
        truncated = False
        for file in self._walk(base):
            rel_base = file.relative_to(base).as_posix() if base_is_dir else file.name
            if file_glob is not None and not _glob_matches(rel_base, file_glob):
                continue
            # A symlink inside may point outside: never read through it.
            real = Path(os.path.realpath(file))
            if not self._inside(real):
                continue
            for line_no, text in self._grep(real, regex):
                if len(matches) >= limit:
                    truncated = True
                    break
                matches.append(
                    {"path": file.relative_to(self.root).as_posix(), "line": line_no, "text": text}
                )
            if truncated:
                break
        return {"matches": matches, "truncated": truncated}

    def _grep(self, file: Path, regex: re.Pattern[str]) -> Iterator[tuple[int, str]]:
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(file, flags)
        except OSError:
            return  # vanished, unreadable, or swapped for a symlink since it was vetted
        with os.fdopen(fd, "rb") as raw:
            st = os.fstat(raw.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_SEARCH_BYTES:
                return
            if _looks_binary(raw.read(_SNIFF_BYTES)):
                return
            raw.seek(0)
            with io.TextIOWrapper(raw, encoding="utf-8", errors="replace") as f:
                for number, (line, _clipped) in enumerate(_iter_lines(f), start=1):
                    if regex.search(line):
                        yield number, line[:MAX_MATCH_CHARS]
