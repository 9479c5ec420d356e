"""The journal's schema as an ordered list of migrations.

``MIGRATIONS[i]`` takes a database from ``PRAGMA user_version`` *i* to *i + 1*. Each migration is a
tuple of single SQL statements (not a script): ``executescript`` would commit on its own, and a
migration must run inside the one transaction that also bumps ``user_version``. Append new
migrations; never edit a released one.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS", "SCHEMA_VERSION"]

_V1: tuple[str, ...] = (
    """
    CREATE TABLE runs (
        run_id              TEXT PRIMARY KEY,
        goal                TEXT NOT NULL,
        workspace           TEXT NOT NULL,
        status              TEXT NOT NULL,
        config              TEXT NOT NULL DEFAULT '{}',
        pid                 INTEGER,
        pid_create_time     REAL,
        started_at          REAL NOT NULL,
        ended_at            REAL,
        summary             TEXT,
        outcome             TEXT,
        cost_usd            REAL NOT NULL DEFAULT 0,
        tokens              INTEGER NOT NULL DEFAULT 0,
        stop_requested      INTEGER NOT NULL DEFAULT 0,
        escalation_counter  INTEGER NOT NULL DEFAULT 0
    )
    """,
    "CREATE INDEX runs_by_start ON runs (started_at)",
    "CREATE INDEX runs_by_status ON runs (status)",
    """
    CREATE TABLE agents (
        run_id                 TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        agent_id               TEXT NOT NULL,
        parent_id              TEXT,
        role                   TEXT NOT NULL,
        title                  TEXT NOT NULL,
        task                   TEXT NOT NULL,
        depth                  INTEGER NOT NULL,
        depends_on             TEXT NOT NULL DEFAULT '[]',
        mitigates              TEXT,
        status                 TEXT NOT NULL,
        status_reason          TEXT,
        summary                TEXT,
        blocker                TEXT,
        result                 TEXT,
        turns                  INTEGER NOT NULL DEFAULT 0,
        mitigated_by           TEXT,
        mitigation_count       INTEGER NOT NULL DEFAULT 0,
        escalated              INTEGER NOT NULL DEFAULT 0,
        model                  TEXT NOT NULL,
        created_at             REAL NOT NULL,
        started_at             REAL,
        ended_at               REAL,
        input_tokens           INTEGER NOT NULL DEFAULT 0,
        output_tokens          INTEGER NOT NULL DEFAULT 0,
        cache_creation_tokens  INTEGER NOT NULL DEFAULT 0,
        cache_read_tokens      INTEGER NOT NULL DEFAULT 0,
        cost_usd               REAL NOT NULL DEFAULT 0,
        PRIMARY KEY (run_id, agent_id)
    )
    """,
    # One counter per resolved workspace path, so agent ids (and their progress files) never
    # collide across runs in the same folder.
    """
    CREATE TABLE agent_counters (
        workspace  TEXT PRIMARY KEY,
        last       INTEGER NOT NULL
    )
    """,
    # generation 0 is the original transcript; each compaction adds a generation and marks the
    # earlier rows superseded (kept for `agentray show` and post-mortems).
    """
    CREATE TABLE messages (
        run_id      TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        agent_id    TEXT NOT NULL,
        generation  INTEGER NOT NULL,
        seq         INTEGER NOT NULL,
        role        TEXT NOT NULL,
        message     TEXT NOT NULL,
        superseded  INTEGER NOT NULL DEFAULT 0,
        created_at  REAL NOT NULL,
        PRIMARY KEY (run_id, agent_id, generation, seq)
    )
    """,
    """
    CREATE TABLE transcript_generations (
        run_id          TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        agent_id        TEXT NOT NULL,
        generation      INTEGER NOT NULL,
        reason          TEXT NOT NULL,
        replaced_count  INTEGER NOT NULL,
        created_at      REAL NOT NULL,
        PRIMARY KEY (run_id, agent_id, generation)
    )
    """,
    """
    CREATE TABLE tool_calls (
        run_id       TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        call_id      TEXT NOT NULL,
        agent_id     TEXT NOT NULL,
        name         TEXT NOT NULL,
        input        TEXT NOT NULL,
        result       TEXT,
        is_error     INTEGER NOT NULL DEFAULT 0,
        started_at   REAL NOT NULL,
        finished_at  REAL,
        PRIMARY KEY (run_id, call_id)
    )
    """,
    "CREATE INDEX tool_calls_by_agent ON tool_calls (run_id, agent_id, started_at)",
    """
    CREATE TABLE escalations (
        escalation_id  TEXT PRIMARY KEY,
        run_id         TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        agent_id       TEXT NOT NULL,
        kind           TEXT NOT NULL,
        question       TEXT NOT NULL,
        context        TEXT NOT NULL,
        options        TEXT NOT NULL DEFAULT '[]',
        call_id        TEXT,
        created_at     REAL NOT NULL,
        answered_at    REAL,
        answer         TEXT,
        choice         TEXT,
        answered_by    TEXT
    )
    """,
    "CREATE INDEX escalations_by_run ON escalations (run_id, created_at)",
    "CREATE INDEX escalations_pending ON escalations (created_at) WHERE answered_at IS NULL",
    """
    CREATE TABLE usage (
        id                     INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id                 TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        agent_id               TEXT NOT NULL,
        model                  TEXT NOT NULL,
        input_tokens           INTEGER NOT NULL,
        output_tokens          INTEGER NOT NULL,
        cache_creation_tokens  INTEGER NOT NULL,
        cache_read_tokens      INTEGER NOT NULL,
        cost_usd               REAL NOT NULL,
        ts                     REAL NOT NULL
    )
    """,
    "CREATE INDEX usage_by_run ON usage (run_id)",
    """
    CREATE TABLE events (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id  TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        type    TEXT NOT NULL,
        ts      REAL NOT NULL,
        data    TEXT NOT NULL
    )
    """,
    "CREATE INDEX events_by_run ON events (run_id, id)",
)

# Checkpoints: a snapshot of the workspace (a commit of the shadow repository) before the run and
# after each tool call that can change files, attributed to its agent and call.
_V2: tuple[str, ...] = (
    """
    CREATE TABLE snapshots (
        run_id      TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        seq         INTEGER NOT NULL,
        commit_id   TEXT NOT NULL,
        parent_id   TEXT,
        agent_id    TEXT,
        call_id     TEXT,
        tool        TEXT NOT NULL,
        paths       TEXT NOT NULL DEFAULT '[]',
        created_at  REAL NOT NULL,
        PRIMARY KEY (run_id, seq)
    )
    """,
)

MIGRATIONS: list[tuple[str, ...]] = [_V1, _V2]

SCHEMA_VERSION = len(MIGRATIONS)
