"""The journal's connection: location, pragmas, migrations, transactions, error mapping.

One ``_Connection`` (hence one ``Journal``) is used from one thread; several processes may open
the same file at once (WAL).
"""

from __future__ import annotations

import functools
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Concatenate, ParamSpec, Self, TypeVar

import platformdirs
import psutil

from agentray.errors import JournalError
from agentray.journal import _schema

__all__ = ["ENV_VAR", "_Connection", "_guarded", "_proc_create_time", "default_journal_path"]

ENV_VAR = "AGENTRAY_JOURNAL"


def default_journal_path() -> Path:
    """``$AGENTRAY_JOURNAL`` if set, else ``<user data dir>/agentray/journal.sqlite3``."""
    override = os.environ.get(ENV_VAR, "").strip()
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_data_dir("agentray")) / "journal.sqlite3"


_P = ParamSpec("_P")
_R = TypeVar("_R")
_C = TypeVar("_C", bound="_Connection")


def _guarded(
    method: Callable[Concatenate[_C, _P], _R],
) -> Callable[Concatenate[_C, _P], _R]:
    """Turn sqlite3 failures (locked past the timeout, disk full, ...) into JournalError."""

    @functools.wraps(method)
    def wrapper(self: _C, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise _journal_error(self.path, exc) from exc

    return wrapper


def _journal_error(path: Path, exc: sqlite3.Error) -> JournalError:
    full = getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    return JournalError(f"journal {path}: {exc}", disk_full=full)


def _proc_create_time(pid: int | None) -> float | None:
    if not pid or pid <= 0:
        return None
    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError):
        return None


class _Connection:
    """The open database; ``Journal`` adds the data methods."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path: Path = Path(path).expanduser() if path is not None else default_journal_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JournalError(
                f"cannot create the journal directory {self.path.parent}: {exc}"
            ) from exc
        try:
            self._db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open the journal {self.path}: {exc}") from exc
        self._db.row_factory = sqlite3.Row
        try:
            self._db.execute("PRAGMA busy_timeout=10000")
            # The first statement that reads the file: a non-database fails here.
            self._db.execute("PRAGMA journal_mode=WAL").fetchone()
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except JournalError:
            self._db.close()
            raise
        except sqlite3.Error as exc:
            self._db.close()
            raise JournalError(f"cannot open the journal {self.path}: {exc}") from exc

    def _migrate(self) -> None:
        migrations = _schema.MIGRATIONS
        target = len(migrations)
        self._check_not_newer(self._user_version(), target)
        if self._user_version() == target:
            return
        with self._tx():
            # Re-read under the write lock: another process may have migrated meanwhile.
            current = self._user_version()
            self._check_not_newer(current, target)
            for version in range(current, target):
                try:
                    for statement in migrations[version]:
                        self._db.execute(statement)
                except sqlite3.Error as exc:
                    raise JournalError(
                        f"cannot migrate the journal {self.path} to schema version "
                        f"{version + 1}: {exc}"
                    ) from exc
            self._db.execute(f"PRAGMA user_version = {int(target)}")

    def _check_not_newer(self, current: int, target: int) -> None:
        if current > target:
            raise JournalError(
                f"the journal {self.path} has schema version {current}, newer than this "
                f"Agentray supports ({target}); upgrade Agentray or point {ENV_VAR} elsewhere"
            )

    def _user_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken up front so concurrent writers queue instead of deadlock.

        Nested use joins the transaction already open (see ``transaction``)."""
        if self._db.in_transaction:
            yield self._db
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            # Some errors (disk full, ...) already rolled the transaction back.
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Several journal writes that must land together or not at all (a crash in between)."""
        try:
            with self._tx():
                yield
        except sqlite3.Error as exc:
            raise _journal_error(self.path, exc) from exc

    @property
    @_guarded
    def schema_version(self) -> int:
        return self._user_version()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"
