"""The durable SQLite journal of runs, agents, transcripts, tool calls, escalations, usage, events.

Every call commits before it returns (autocommit, or one ``BEGIN IMMEDIATE`` transaction for a
multi-statement change), so a crash or ``kill -9`` loses nothing already written. WAL mode lets
several processes share the file: the running engine, ``agentray stop`` and the tray.
One ``Journal`` object is used from one thread (the asyncio loop's).
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import psutil

from agentray.escalation import EscalationKind
from agentray.journal._connection import (
    ENV_VAR,
    _Connection,
    _guarded,
    _proc_create_time,
    default_journal_path,
)
from agentray.journal._redact import _dumps, _redact
from agentray.journal._rows import (
    AgentRow,
    EscalationRow,
    RunRow,
    SnapshotRow,
    ToolCallRow,
    agent_from_row,
    escalation_from_row,
    run_from_row,
    snapshot_from_row,
    tool_call_from_row,
)

__all__ = ["ENV_VAR", "RUN_STATUSES", "Journal", "default_journal_path"]

RUN_STATUSES = frozenset({"running", "succeeded", "failed", "cancelled", "interrupted"})
ESCALATION_KINDS = frozenset(kind.value for kind in EscalationKind)

_RUN_FIELDS = frozenset(
    {"status", "summary", "outcome", "ended_at", "cost_usd", "tokens", "pid", "config"}
)
_AGENT_FIELDS = frozenset(
    {
        "status", "summary", "blocker", "result", "turns", "mitigated_by", "mitigation_count",
        "escalated", "ended_at", "started_at", "input_tokens", "output_tokens",
        "cache_creation_tokens", "cache_read_tokens", "cost_usd", "status_reason",
    }
)  # fmt: skip
# A pid whose process started more than this away from the recorded time is a reused pid.
_CREATE_TIME_SLACK_S = 1.0


def _text(value: Any) -> Any:
    return _redact(value) if isinstance(value, str) else value


class Journal(_Connection):
    """The journal database; see the module docstring."""

    # ----------------------------------------------------------------- runs

    @_guarded
    def create_run(
        self, run_id: str, *, goal: str, workspace: str, config: dict[str, Any], pid: int
    ) -> None:
        self._db.execute(
            "INSERT INTO runs (run_id, goal, workspace, status, config, pid, pid_create_time,"
            " started_at) VALUES (?, ?, ?, 'running', ?, ?, ?, ?)",
            (
                run_id, _redact(goal), workspace, _dumps(config), pid,
                _proc_create_time(pid), time.time(),
            ),
        )  # fmt: skip

    @_guarded
    def update_run(self, run_id: str, /, **fields: Any) -> None:
        unknown = set(fields) - _RUN_FIELDS
        if unknown:
            raise ValueError(f"update_run: unknown fields {sorted(unknown)}")
        if not fields:
            return
        if "status" in fields and fields["status"] not in RUN_STATUSES:
            raise ValueError(f"update_run: bad status {fields['status']!r}")
        values: dict[str, Any] = {}
        for name, value in fields.items():
            values[name] = _dumps(value) if name == "config" else _text(value)
        if "pid" in fields:
            values["pid_create_time"] = _proc_create_time(fields["pid"])
        self._update("runs", "run_id = ?", (run_id,), values, f"unknown run {run_id!r}")

    def _update(
        self, table: str, where: str, key: tuple[Any, ...], values: dict[str, Any], missing: str
    ) -> None:
        # Column names come from the allow-lists above, never from the caller.
        sets = ", ".join(f"{name} = ?" for name in values)
        cur = self._db.execute(f"UPDATE {table} SET {sets} WHERE {where}", (*values.values(), *key))
        if cur.rowcount == 0:
            raise KeyError(missing)

    @_guarded
    def get_run(self, run_id: str) -> RunRow | None:
        row = self._db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None and run_id:
            rows = self._db.execute(
                "SELECT * FROM runs WHERE substr(run_id, 1, length(?1)) = ?1 LIMIT 2", (run_id,)
            ).fetchall()
            row = rows[0] if len(rows) == 1 else None
        return None if row is None else run_from_row(row)

    @_guarded
    def runs_matching(self, prefix: str, limit: int = 5) -> list[str]:
        """Run ids that start with ``prefix`` (newest first), to say which ones are meant."""
        rows = self._db.execute(
            "SELECT run_id FROM runs WHERE substr(run_id, 1, length(?1)) = ?1"
            " ORDER BY started_at DESC LIMIT ?2",
            (prefix, limit),
        ).fetchall()
        return [str(r[0]) for r in rows]

    @_guarded
    def list_runs(self, limit: int = 50, *, status: str | None = None) -> list[RunRow]:
        if status is None:
            rows = self._db.execute(
                "SELECT * FROM runs ORDER BY started_at DESC, rowid DESC LIMIT ?", (limit,)
            )
        else:
            rows = self._db.execute(
                "SELECT * FROM runs WHERE status = ? ORDER BY started_at DESC, rowid DESC LIMIT ?",
                (status, limit),
            )
        return [run_from_row(r) for r in rows]

    @_guarded
    def request_stop(self, run_id: str) -> bool:
        run = self.get_run(run_id)
        if run is None:
            return False
        cur = self._db.execute(
            "UPDATE runs SET stop_requested = 1 WHERE run_id = ? AND status = 'running'",
            (run.run_id,),
        )
        return cur.rowcount > 0

    @_guarded
    def request_stop_all(self) -> list[str]:
        with self._tx() as db:
            ids = [
                r[0]
                for r in db.execute(
                    "SELECT run_id FROM runs WHERE status = 'running' ORDER BY started_at"
                )
            ]
            db.execute("UPDATE runs SET stop_requested = 1 WHERE status = 'running'")
        return ids

    @_guarded
    def stop_requested(self, run_id: str) -> bool:
        row = self._db.execute(
            "SELECT stop_requested FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        return bool(row and row[0])

    @_guarded
    def clear_stop_request(self, run_id: str) -> None:
        self._db.execute("UPDATE runs SET stop_requested = 0 WHERE run_id = ?", (run_id,))

    @_guarded
    def mark_interrupted_runs(self) -> list[str]:
        """Runs still marked running whose process is gone (or whose pid was reused) become
        ``interrupted``; returns their ids."""
        rows = self._db.execute(
            "SELECT run_id, pid, pid_create_time FROM runs WHERE status = 'running'"
        ).fetchall()
        dead: list[str] = []
        for run_id, pid, recorded in rows:
            alive = bool(pid) and pid > 0 and psutil.pid_exists(pid)
            if alive and recorded is not None:
                actual = _proc_create_time(pid)
                if actual is not None and abs(actual - recorded) > _CREATE_TIME_SLACK_S:
                    alive = False
            if alive:
                continue
            cur = self._db.execute(
                "UPDATE runs SET status = 'interrupted', ended_at = COALESCE(ended_at, ?)"
                " WHERE run_id = ? AND status = 'running'",
                (time.time(), run_id),
            )
            if cur.rowcount:
                dead.append(run_id)
                # the run's end was never recorded: resume may find work the crash left unrecorded
                self.add_event(run_id, "process_died", {"pid": pid})
        return dead

    @_guarded
    def ended_by_crash(self, run_id: str) -> bool:
        """Whether the run's latest life ended with its process dying, not with a recorded end."""
        row = self._db.execute(
            "SELECT type FROM events WHERE run_id = ? AND type IN ('run_finished', 'process_died')"
            " ORDER BY id DESC LIMIT 1",
            (run_id,),
        ).fetchone()
        return row is not None and row[0] == "process_died"

    # ----------------------------------------------------------------- agents

    @_guarded
    def next_agent_id(self, workspace: str) -> str:
        key = str(Path(workspace).expanduser().resolve())
        row = self._db.execute(
            "INSERT INTO agent_counters (workspace, last) VALUES (?, 1)"
            " ON CONFLICT (workspace) DO UPDATE SET last = last + 1 RETURNING last",
            (key,),
        ).fetchone()
        return f"a{int(row[0]):03d}"

    @_guarded
    def create_agent(
        self,
        run_id: str,
        agent_id: str,
        *,
        parent_id: str | None,
        role: str,
        title: str,
        task: str,
        depth: int,
        depends_on: list[str],
        mitigates: str | None,
        status: str,
        model: str,
    ) -> None:
        self._db.execute(
            "INSERT INTO agents (run_id, agent_id, parent_id, role, title, task, depth,"
            " depends_on, mitigates, status, model, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id, agent_id, parent_id, role, _redact(title), _redact(task), depth,
                _dumps(list(depends_on)), mitigates, status, model, time.time(),
            ),
        )  # fmt: skip

    @_guarded
    def update_agent(self, run_id: str, agent_id: str, /, **fields: Any) -> None:
        unknown = set(fields) - _AGENT_FIELDS
        if unknown:
            raise ValueError(f"update_agent: unknown fields {sorted(unknown)}")
        if not fields:
            return
        values = {
            name: int(value) if name == "escalated" else _text(value)
            for name, value in fields.items()
        }
        self._update(
            "agents",
            "run_id = ? AND agent_id = ?",
            (run_id, agent_id),
            values,
            f"unknown agent {agent_id!r} in run {run_id!r}",
        )

    @_guarded
    def get_agent(self, run_id: str, agent_id: str) -> AgentRow | None:
        row = self._db.execute(
            "SELECT * FROM agents WHERE run_id = ? AND agent_id = ?", (run_id, agent_id)
        ).fetchone()
        return None if row is None else agent_from_row(row)

    @_guarded
    def list_agents(self, run_id: str) -> list[AgentRow]:
        rows = self._db.execute(
            "SELECT * FROM agents WHERE run_id = ? ORDER BY created_at, rowid", (run_id,)
        )
        return [agent_from_row(r) for r in rows]

    # ----------------------------------------------------------------- transcripts

    def _generation(self, run_id: str, agent_id: str) -> int:
        row = self._db.execute(
            "SELECT MAX(generation) FROM transcript_generations WHERE run_id = ? AND agent_id = ?",
            (run_id, agent_id),
        ).fetchone()
        return 0 if row[0] is None else int(row[0])

    @staticmethod
    def _check_message(message: dict[str, Any]) -> str:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ValueError("a transcript message is a dict with a 'role'")
        return str(message["role"])

    @_guarded
    def append_message(self, run_id: str, agent_id: str, message: dict[str, Any]) -> int:
        """Add ``message`` at the end of the agent's current transcript; its ``seq``.

        One statement finds the current generation and the next seq and inserts: atomic on its
        own (another process's compaction cannot come in between), and a model turn's journal
        work is a third fewer statements than with the two look-ups made apart."""
        role = self._check_message(message)
        rows = self._db.execute(
            "INSERT INTO messages (run_id, agent_id, generation, seq, role, message, created_at)"
            " SELECT ?1, ?2, current.generation,"
            "  (SELECT COALESCE(MAX(seq) + 1, 0) FROM messages"
            "   WHERE run_id = ?1 AND agent_id = ?2 AND generation = current.generation),"
            "  ?3, ?4, ?5"
            " FROM (SELECT COALESCE(MAX(generation), 0) AS generation FROM transcript_generations"
            "       WHERE run_id = ?1 AND agent_id = ?2) AS current"
            " RETURNING seq",
            (run_id, agent_id, role, _dumps(message), time.time()),
        ).fetchall()  # stepped to the end, so the insert is done (and committed) here
        return int(rows[0][0])

    @_guarded
    def load_transcript(
        self, run_id: str, agent_id: str, *, generation: int | None = None
    ) -> list[dict[str, Any]]:
        """The current transcript (or an earlier, superseded ``generation`` of it)."""
        if generation is None:
            generation = self._generation(run_id, agent_id)
        rows = self._db.execute(
            "SELECT message FROM messages WHERE run_id = ? AND agent_id = ? AND generation = ?"
            " ORDER BY seq",
            (run_id, agent_id, generation),
        )
        return [json.loads(r[0]) for r in rows]

    @_guarded
    def replace_transcript(
        self, run_id: str, agent_id: str, messages: list[dict[str, Any]], *, reason: str
    ) -> None:
        encoded = [(self._check_message(m), _dumps(m)) for m in messages]
        now = time.time()
        with self._tx() as db:
            old = self._generation(run_id, agent_id)
            new = old + 1
            replaced = db.execute(
                "UPDATE messages SET superseded = 1"
                " WHERE run_id = ? AND agent_id = ? AND superseded = 0",
                (run_id, agent_id),
            ).rowcount
            db.execute(
                "INSERT INTO transcript_generations (run_id, agent_id, generation, reason,"
                " replaced_count, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, agent_id, new, _redact(reason), replaced, now),
            )
            db.executemany(
                "INSERT INTO messages (run_id, agent_id, generation, seq, role, message,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (run_id, agent_id, new, seq, role, data, now)
                    for seq, (role, data) in enumerate(encoded)
                ],
            )

    # ----------------------------------------------------------------- tool calls

    @_guarded
    def start_tool_call(
        self, run_id: str, agent_id: str, call_id: str, name: str, input: dict[str, Any]
    ) -> None:
        # A resumed run may execute a call again: the newer attempt replaces the older one.
        self._db.execute(
            "INSERT INTO tool_calls (run_id, call_id, agent_id, name, input, started_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, call_id) DO UPDATE SET"
            " agent_id = excluded.agent_id, name = excluded.name, input = excluded.input,"
            " started_at = excluded.started_at, result = NULL, is_error = 0, finished_at = NULL",
            (run_id, call_id, agent_id, name, _dumps(input), time.time()),
        )

    @_guarded
    def finish_tool_call(
        self, run_id: str, call_id: str, *, result: dict[str, Any], is_error: bool
    ) -> None:
        self._update(
            "tool_calls",
            "run_id = ? AND call_id = ?",
            (run_id, call_id),
            {"result": _dumps(result), "is_error": int(is_error), "finished_at": time.time()},
            f"unknown tool call {call_id!r} in run {run_id!r}",
        )

    @_guarded
    def list_tool_calls(self, run_id: str, agent_id: str | None = None) -> list[ToolCallRow]:
        if agent_id is None:
            rows = self._db.execute(
                "SELECT * FROM tool_calls WHERE run_id = ? ORDER BY started_at, rowid", (run_id,)
            )
        else:
            rows = self._db.execute(
                "SELECT * FROM tool_calls WHERE run_id = ? AND agent_id = ?"
                " ORDER BY started_at, rowid",
                (run_id, agent_id),
            )
        return [tool_call_from_row(r) for r in rows]

    # ----------------------------------------------------------------- escalations

    @_guarded
    def next_escalation_id(self, run_id: str) -> str:
        """``"<run_id>.e1"``, ``"<run_id>.e2"``, ...: unique across runs."""
        row = self._db.execute(
            "UPDATE runs SET escalation_counter = escalation_counter + 1 WHERE run_id = ?"
            " RETURNING escalation_counter",
            (run_id,),
        ).fetchone()
        if row is None:
            raise KeyError(f"unknown run {run_id!r}")
        return f"{run_id}.e{int(row[0])}"

    @_guarded
    def create_escalation(
        self,
        run_id: str,
        escalation_id: str,
        *,
        agent_id: str,
        kind: str,
        question: str,
        context: str,
        options: list[dict[str, Any]],
        call_id: str | None,
    ) -> None:
        if kind not in ESCALATION_KINDS:
            raise ValueError(f"create_escalation: bad kind {kind!r}")
        self._db.execute(
            "INSERT INTO escalations (escalation_id, run_id, agent_id, kind, question, context,"
            " options, call_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                escalation_id, run_id, agent_id, kind, _redact(question), _redact(context),
                _dumps(list(options)), call_id, time.time(),
            ),
        )  # fmt: skip

    @_guarded
    def answer_escalation(
        self, escalation_id: str, *, answer: str, choice: str | None, answered_by: str
    ) -> bool:
        cur = self._db.execute(
            "UPDATE escalations SET answer = ?, choice = ?, answered_by = ?, answered_at = ?"
            " WHERE escalation_id = ? AND answered_at IS NULL",
            (_redact(answer), _text(choice), answered_by, time.time(), escalation_id),
        )
        return cur.rowcount > 0

    @_guarded
    def get_escalation(self, escalation_id: str) -> EscalationRow | None:
        row = self._db.execute(
            "SELECT * FROM escalations WHERE escalation_id = ?", (escalation_id,)
        ).fetchone()
        return None if row is None else escalation_from_row(row)

    @_guarded
    def find_escalation_by_call(self, run_id: str, call_id: str) -> EscalationRow | None:
        row = self._db.execute(
            "SELECT * FROM escalations WHERE run_id = ? AND call_id = ?"
            " ORDER BY created_at DESC, rowid DESC LIMIT 1",
            (run_id, call_id),
        ).fetchone()
        return None if row is None else escalation_from_row(row)

    @_guarded
    def pending_escalations(self, run_id: str | None = None) -> list[EscalationRow]:
        if run_id is None:
            rows = self._db.execute(
                "SELECT * FROM escalations WHERE answered_at IS NULL ORDER BY created_at, rowid"
            )
        else:
            rows = self._db.execute(
                "SELECT * FROM escalations WHERE answered_at IS NULL AND run_id = ?"
                " ORDER BY created_at, rowid",
                (run_id,),
            )
        return [escalation_from_row(r) for r in rows]

    @_guarded
    def list_escalations(self, run_id: str) -> list[EscalationRow]:
        rows = self._db.execute(
            "SELECT * FROM escalations WHERE run_id = ? ORDER BY created_at, rowid", (run_id,)
        )
        return [escalation_from_row(r) for r in rows]

    # ----------------------------------------------------------------- usage

    @_guarded
    def add_usage(
        self,
        run_id: str,
        agent_id: str,
        *,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cache_creation_tokens: int,
        cache_read_tokens: int,
        cost_usd: float,
    ) -> None:
        self._db.execute(
            "INSERT INTO usage (run_id, agent_id, model, input_tokens, output_tokens,"
            " cache_creation_tokens, cache_read_tokens, cost_usd, ts)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id, agent_id, model, int(input_tokens), int(output_tokens),
                int(cache_creation_tokens), int(cache_read_tokens), float(cost_usd), time.time(),
            ),
        )  # fmt: skip

    @_guarded
    def run_usage(self, run_id: str) -> dict[str, Any]:
        row = self._db.execute(
            "SELECT COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0),"
            " COALESCE(SUM(cache_creation_tokens), 0), COALESCE(SUM(cache_read_tokens), 0),"
            " COALESCE(SUM(cost_usd), 0.0), COUNT(*) FROM usage WHERE run_id = ?",
            (run_id,),
        ).fetchone()
        return {
            "input_tokens": int(row[0]),
            "output_tokens": int(row[1]),
            "cache_creation_tokens": int(row[2]),
            "cache_read_tokens": int(row[3]),
            "cost_usd": float(row[4]),
            "calls": int(row[5]),
        }

    # ----------------------------------------------------------------- events

    @_guarded
    def add_event(self, run_id: str, type: str, data: dict[str, Any]) -> None:
        ts = data.get("ts")
        if not isinstance(ts, int | float) or isinstance(ts, bool):
            ts = time.time()
        self._db.execute(
            "INSERT INTO events (run_id, type, ts, data) VALUES (?, ?, ?, ?)",
            (run_id, type, float(ts), _dumps(data)),
        )

    # ----------------------------------------------------------------- snapshots

    @_guarded
    def add_snapshot(
        self,
        run_id: str,
        *,
        commit_id: str,
        parent_id: str | None,
        agent_id: str | None,
        call_id: str | None,
        tool: str,
        paths: list[str],
    ) -> SnapshotRow:
        now = time.time()
        with self._tx() as db:
            seq = int(
                db.execute(
                    "SELECT COALESCE(MAX(seq) + 1, 0) FROM snapshots WHERE run_id = ?", (run_id,)
                ).fetchone()[0]
            )
            db.execute(
                "INSERT INTO snapshots (run_id, seq, commit_id, parent_id, agent_id, call_id, tool,"
                " paths, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    seq,
                    commit_id,
                    parent_id,
                    agent_id,
                    call_id,
                    tool,
                    json.dumps(paths),
                    now,
                ),
            )
        return SnapshotRow(
            run_id, seq, commit_id, parent_id, agent_id, call_id, tool, tuple(paths), now
        )

    @_guarded
    def delete_runs_ended_before(self, cutoff: float) -> list[tuple[str, str]]:
        """Forget runs that ended before ``cutoff`` (everything of theirs goes with them);
        returns their (run_id, workspace). Running runs are never deleted."""
        with self._tx() as db:
            rows = db.execute(
                "SELECT run_id, workspace FROM runs WHERE status != 'running' AND ended_at IS NOT NULL"
                " AND ended_at < ?",
                (cutoff,),
            ).fetchall()
            db.executemany("DELETE FROM runs WHERE run_id = ?", [(r[0],) for r in rows])
        return [(str(r[0]), str(r[1])) for r in rows]

    @_guarded
    def list_snapshots(self, run_id: str) -> list[SnapshotRow]:
        rows = self._db.execute("SELECT * FROM snapshots WHERE run_id = ? ORDER BY seq", (run_id,))
        return [snapshot_from_row(r) for r in rows]

    @_guarded
    def list_events(self, run_id: str, limit: int = 500) -> list[dict[str, Any]]:
        """The run's latest ``limit`` events, oldest first, each ``{"type", "ts", **data}``."""
        rows = self._db.execute(
            "SELECT type, ts, data FROM"
            " (SELECT id, type, ts, data FROM events WHERE run_id = ? ORDER BY id DESC LIMIT ?)"
            " ORDER BY id",
            (run_id, limit),
        ).fetchall()
        events: list[dict[str, Any]] = []
        for type_, ts, data in rows:
            extra = {k: v for k, v in json.loads(data).items() if k not in ("type", "ts")}
            events.append({"type": type_, "ts": ts, **extra})
        return events

    @_guarded
    def list_events_of(self, run_id: str, types: Collection[str]) -> list[dict[str, Any]]:
        """Every event of the run whose type is one of ``types`` (no limit), oldest first, each
        ``{"type", "ts", **data}``: what the timeline rebuilds an agent's states from."""
        wanted = sorted(set(types))
        if not wanted:
            return []
        marks = ", ".join("?" * len(wanted))
        rows = self._db.execute(
            f"SELECT type, ts, data FROM events WHERE run_id = ? AND type IN ({marks}) ORDER BY id",
            (run_id, *wanted),
        ).fetchall()
        return [
            {
                "type": type_,
                "ts": ts,
                **{k: v for k, v in json.loads(data).items() if k not in ("type", "ts")},
            }
            for type_, ts, data in rows
        ]
