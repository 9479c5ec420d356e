"""The journal against real SQLite files, real second connections and real killed processes."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agentray.errors import JournalError
from agentray.escalation import EscalationKind, model_options, options_to_json
from agentray.journal import (
    SCHEMA_VERSION,
    AgentRow,
    Journal,
    _redact,
    _schema,
    default_journal_path,
)

KEY = "sk-ant-api03-abcdefghijkl"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "j" / "journal.sqlite3"


@pytest.fixture
def journal(db_path: Path):
    j = Journal(db_path)
    yield j
    j.close()


def _new_run(j: Journal, run_id: str = "r1", workspace: str = "/tmp/ws") -> None:
    j.create_run(run_id, goal="do it", workspace=workspace, config={"model": "m"}, pid=os.getpid())


def _new_agent(j: Journal, run_id: str, agent_id: str, **over: object) -> None:
    kw: dict = dict(
        parent_id=None, role="worker", title="T", task="the task", depth=1, depends_on=[],
        mitigates=None, status="queued", model="claude-x",
    )  # fmt: skip
    kw.update(over)
    j.create_agent(run_id, agent_id, **kw)


def _run_child(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


# ------------------------------------------------------------------ location and opening


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG is the Linux convention")
def test_default_path_honours_xdg_data_home(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("AGENTRAY_JOURNAL", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_journal_path() == tmp_path / "xdg" / "agentray" / "journal.sqlite3"
    j = Journal()  # creates the directory
    try:
        assert j.path == tmp_path / "xdg" / "agentray" / "journal.sqlite3"
        assert j.path.is_file()
    finally:
        j.close()


def test_env_var_overrides_default_path(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("AGENTRAY_JOURNAL", str(tmp_path / "elsewhere" / "x.db"))
    assert default_journal_path() == tmp_path / "elsewhere" / "x.db"
    with Journal() as j:
        assert j.path == tmp_path / "elsewhere" / "x.db"
    assert (tmp_path / "elsewhere" / "x.db").is_file()
    assert not (tmp_path / "xdg").exists()


def test_wal_mode_and_schema_version(journal: Journal, db_path: Path) -> None:
    raw = sqlite3.connect(db_path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        raw.close()
    assert journal.schema_version == SCHEMA_VERSION >= 1


def test_migrates_a_hand_made_v0_database(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    raw = sqlite3.connect(db_path)
    raw.execute("CREATE TABLE keepme (x TEXT)")
    raw.execute("INSERT INTO keepme VALUES ('still here')")
    raw.commit()
    raw.close()
    with Journal(db_path) as j:
        assert j.schema_version == SCHEMA_VERSION
        _new_run(j)
        assert j.get_run("r1") is not None
    raw = sqlite3.connect(db_path)
    try:
        assert raw.execute("SELECT x FROM keepme").fetchall() == [("still here",)]
    finally:
        raw.close()


def test_applies_only_missing_migrations(db_path: Path, monkeypatch) -> None:
    with Journal(db_path) as j:
        _new_run(j)
    v2 = ("ALTER TABLE runs ADD COLUMN label TEXT DEFAULT 'new'",)
    monkeypatch.setattr(_schema, "MIGRATIONS", [*_schema.MIGRATIONS, v2])
    with Journal(db_path) as j:
        assert j.schema_version == SCHEMA_VERSION + 1
        assert j.get_run("r1") is not None  # v1 was not re-run (it would fail on CREATE TABLE)
    raw = sqlite3.connect(db_path)
    try:
        assert raw.execute("SELECT label FROM runs").fetchall() == [("new",)]
    finally:
        raw.close()


def test_failed_migration_rolls_back(db_path: Path, monkeypatch) -> None:
    Journal(db_path).close()
    broken = ("CREATE TABLE half_done (x)", "THIS IS NOT SQL")
    monkeypatch.setattr(_schema, "MIGRATIONS", [*_schema.MIGRATIONS, broken])
    with pytest.raises(JournalError, match="migrate"):
        Journal(db_path)
    raw = sqlite3.connect(db_path)
    try:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        names = {r[0] for r in raw.execute("SELECT name FROM sqlite_master")}
        assert "half_done" not in names and "runs" in names
    finally:
        raw.close()


def test_newer_database_is_refused(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    raw = sqlite3.connect(db_path)
    raw.execute("PRAGMA user_version = 99")
    raw.close()
    with pytest.raises(JournalError) as info:
        Journal(db_path)
    message = str(info.value)
    assert "99" in message and "newer" in message and "\n" not in message


def test_garbage_file_is_refused(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"this is not a database, just some text\n" * 200)
    with pytest.raises(JournalError) as info:
        Journal(db_path)
    assert str(db_path) in str(info.value) and "\n" not in str(info.value)


# ------------------------------------------------------------------ runs


def test_run_round_trip(journal: Journal) -> None:
    journal.create_run(
        "20250101-abcd", goal="build it", workspace="/w", config={"a": [1, 2]}, pid=os.getpid()
    )
    run = journal.get_run("20250101-abcd")
    assert run is not None
    assert (run.goal, run.workspace, run.status, run.config, run.pid) == (
        "build it", "/w", "running", {"a": [1, 2]}, os.getpid(),
    )  # fmt: skip
    assert run.ended_at is None and run.stop_requested is False and run.cost_usd == 0.0
    journal.update_run(
        "20250101-abcd", status="succeeded", summary="done", outcome="success", ended_at=123.5,
        cost_usd=1.25, tokens=999, config={"b": True},
    )  # fmt: skip
    run = journal.get_run("20250101-abcd")
    assert run is not None
    assert (run.status, run.summary, run.outcome, run.ended_at, run.cost_usd, run.tokens) == (
        "succeeded", "done", "success", 123.5, 1.25, 999,
    )  # fmt: skip
    assert run.config == {"b": True}
    with pytest.raises(ValueError):
        journal.update_run("20250101-abcd", goal="nope")
    with pytest.raises(ValueError):
        journal.update_run("20250101-abcd", status="exploded")
    with pytest.raises(KeyError):
        journal.update_run("unknown", status="failed")


def test_get_run_by_prefix_and_list_runs(journal: Journal) -> None:
    for rid in ("abc1", "abc2", "xyz9"):
        _new_run(journal, rid)
    run = journal.get_run("xy")
    assert run is not None and run.run_id == "xyz9"
    assert journal.get_run("abc") is None  # ambiguous
    assert journal.get_run("nope") is None
    assert journal.get_run("") is None
    assert journal.get_run("a%") is None  # no LIKE wildcards
    assert [r.run_id for r in journal.list_runs()] == ["xyz9", "abc2", "abc1"]
    assert [r.run_id for r in journal.list_runs(limit=2)] == ["xyz9", "abc2"]
    journal.update_run("abc1", status="failed")
    assert [r.run_id for r in journal.list_runs(status="failed")] == ["abc1"]


def test_stop_request_seen_by_another_connection(db_path: Path) -> None:
    a, b = Journal(db_path), Journal(db_path)
    try:
        _new_run(a, "r1")
        _new_run(a, "r2")
        _new_run(a, "done")
        a.update_run("done", status="succeeded")
        assert b.stop_requested("r1") is False
        assert b.request_stop("r1") is True
        assert a.stop_requested("r1") is True
        assert a.stop_requested("r2") is False
        assert b.request_stop("done") is False
        assert b.request_stop("unknown") is False
        a.clear_stop_request("r1")
        assert b.stop_requested("r1") is False
        assert sorted(b.request_stop_all()) == ["r1", "r2"]
        assert a.stop_requested("r1") and a.stop_requested("r2")
        assert not a.stop_requested("done")
        run = a.get_run("r2")
        assert run is not None and run.stop_requested is True
    finally:
        a.close()
        b.close()


def test_mark_interrupted_runs(journal: Journal, db_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    journal.create_run("gone", goal="g", workspace="/w", config={}, pid=dead.pid)
    _new_run(journal, "alive")  # this process
    _new_run(journal, "reused")
    _new_run(journal, "finished")
    journal.update_run("finished", status="succeeded")
    raw = sqlite3.connect(db_path)  # pretend the pid was recorded for an older process
    raw.execute("UPDATE runs SET pid_create_time = pid_create_time - 3600 WHERE run_id='reused'")
    raw.commit()
    raw.close()
    assert sorted(journal.mark_interrupted_runs()) == ["gone", "reused"]
    statuses = {r.run_id: r.status for r in journal.list_runs()}
    assert statuses == {
        "gone": "interrupted", "alive": "running", "reused": "interrupted", "finished": "succeeded",
    }  # fmt: skip
    gone = journal.get_run("gone")
    assert gone is not None and gone.ended_at is not None
    assert journal.mark_interrupted_runs() == []


# ------------------------------------------------------------------ agents


def test_next_agent_id_per_workspace_and_across_connections(db_path: Path, tmp_path: Path) -> None:
    ws1, ws2 = tmp_path / "ws1", tmp_path / "ws2"
    ws1.mkdir()
    ws2.mkdir()
    a, b = Journal(db_path), Journal(db_path)
    try:
        assert a.next_agent_id(str(ws1)) == "a001"
        assert b.next_agent_id(str(ws1)) == "a002"
        assert a.next_agent_id(str(ws1 / ".")) == "a003"  # same folder, other spelling
        assert b.next_agent_id(str(ws2)) == "a001"  # independent counter
        assert a.next_agent_id(str(ws1)) == "a004"
    finally:
        a.close()
        b.close()
    raw = sqlite3.connect(db_path)
    raw.execute("UPDATE agent_counters SET last = 998 WHERE workspace = ?", (str(ws2),))
    raw.commit()
    raw.close()
    with Journal(db_path) as j:
        assert [j.next_agent_id(str(ws2)) for _ in range(2)] == ["a999", "a1000"]


def test_next_agent_id_unique_across_processes(db_path: Path, tmp_path: Path) -> None:
    code = """
        import sys
        from agentray.journal import Journal
        j = Journal(sys.argv[1])
        print(" ".join(j.next_agent_id(sys.argv[2]) for _ in range(40)))
    """
    Journal(db_path).close()  # schema in place before the race
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), str(db_path), str(tmp_path)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    ids: list[str] = []
    for p in procs:
        out, _ = p.communicate(timeout=30)
        assert p.returncode == 0
        ids.extend(out.split())
    assert len(ids) == 120
    assert sorted(ids) == [f"a{n:03d}" for n in range(1, 121)]


def test_agent_round_trip(journal: Journal) -> None:
    _new_run(journal)
    _new_agent(journal, "r1", "a002", parent_id="a001", depends_on=["a001"], mitigates="a000")
    _new_agent(journal, "r1", "a001")
    agent = journal.get_agent("r1", "a002")
    assert isinstance(agent, AgentRow)
    assert (agent.parent_id, agent.depends_on, agent.mitigates, agent.status, agent.depth) == (
        "a001", ("a001",), "a000", "queued", 1,
    )  # fmt: skip
    assert agent.escalated is False and agent.turns == 0 and agent.started_at is None
    journal.update_agent(
        "r1", "a002", status="done", summary="s", blocker="b", result="r", turns=7,
        mitigated_by="a009", mitigation_count=1, escalated=True, started_at=10.0, ended_at=20.0,
        input_tokens=1, output_tokens=2, cache_creation_tokens=3, cache_read_tokens=4,
        cost_usd=0.5, status_reason="finished",
    )  # fmt: skip
    agent = journal.get_agent("r1", "a002")
    assert agent is not None
    assert (agent.status, agent.summary, agent.blocker, agent.result, agent.turns) == (
        "done", "s", "b", "r", 7,
    )  # fmt: skip
    assert (agent.mitigated_by, agent.mitigation_count, agent.escalated) == ("a009", 1, True)
    assert (agent.started_at, agent.ended_at, agent.status_reason) == (10.0, 20.0, "finished")
    assert (
        agent.input_tokens, agent.output_tokens, agent.cache_creation_tokens,
        agent.cache_read_tokens, agent.cost_usd,
    ) == (1, 2, 3, 4, 0.5)  # fmt: skip
    assert [a.agent_id for a in journal.list_agents("r1")] == ["a002", "a001"]  # creation order
    assert journal.get_agent("r1", "a404") is None
    with pytest.raises(ValueError):
        journal.update_agent("r1", "a001", role="fixer")
    with pytest.raises(KeyError):
        journal.update_agent("r1", "a404", status="done")


def test_agent_needs_an_existing_run(journal: Journal) -> None:
    with pytest.raises(JournalError):
        _new_agent(journal, "no-such-run", "a001")


# ------------------------------------------------------------------ transcripts


def test_transcript_append_and_load(journal: Journal) -> None:
    _new_run(journal)
    msgs = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "text", "text": "héllo"}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "x"}]},
    ]
    assert [journal.append_message("r1", "a001", m) for m in msgs] == [0, 1, 2]
    assert journal.append_message("r1", "a002", {"role": "user", "content": "other"}) == 0
    assert journal.load_transcript("r1", "a001") == msgs
    assert journal.load_transcript("r1", "a003") == []
    with pytest.raises(ValueError):
        journal.append_message("r1", "a001", {"content": "no role"})


def test_replace_transcript_keeps_history(journal: Journal, db_path: Path) -> None:
    _new_run(journal)
    old = [{"role": "user", "content": f"m{i}"} for i in range(4)]
    for m in old:
        journal.append_message("r1", "a001", m)
    new = [{"role": "user", "content": "summary of m0..m3"}]
    journal.replace_transcript("r1", "a001", new, reason="compaction")
    assert journal.load_transcript("r1", "a001") == new
    assert journal.append_message("r1", "a001", {"role": "assistant", "content": "ok"}) == 1
    assert journal.load_transcript("r1", "a001") == [*new, {"role": "assistant", "content": "ok"}]
    assert journal.load_transcript("r1", "a001", generation=0) == old
    journal.replace_transcript("r1", "a001", [], reason="again")
    assert journal.load_transcript("r1", "a001") == []
    raw = sqlite3.connect(db_path)
    try:
        rows = raw.execute(
            "SELECT generation, superseded FROM messages WHERE agent_id='a001' ORDER BY generation"
        ).fetchall()
        reasons = raw.execute("SELECT reason FROM transcript_generations ORDER BY generation")
        assert [r[0] for r in reasons] == ["compaction", "again"]
    finally:
        raw.close()
    assert rows == [(0, 1)] * 4 + [(1, 1)] * 2  # nothing deleted, all superseded


# ------------------------------------------------------------------ tool calls, escalations


def test_tool_calls(journal: Journal) -> None:
    _new_run(journal)
    journal.start_tool_call("r1", "a001", "c1", "read_file", {"path": "x.py"})
    journal.start_tool_call("r1", "a002", "c2", "run_command", {"command": "make"})
    calls = journal.list_tool_calls("r1")
    assert [(c.call_id, c.finished_at, c.result) for c in calls] == [
        ("c1", None, None),
        ("c2", None, None),
    ]
    journal.finish_tool_call("r1", "c1", result={"content": "print(1)"}, is_error=False)
    journal.finish_tool_call("r1", "c2", result={"error": "boom"}, is_error=True)
    (c1,) = journal.list_tool_calls("r1", "a001")
    assert (c1.name, c1.input, c1.result, c1.is_error) == (
        "read_file", {"path": "x.py"}, {"content": "print(1)"}, False,
    )  # fmt: skip
    assert c1.finished_at is not None and c1.finished_at >= c1.started_at
    (c2,) = journal.list_tool_calls("r1", "a002")
    assert c2.is_error is True and c2.result == {"error": "boom"}


def test_escalations(journal: Journal) -> None:
    _new_run(journal, "r1")
    _new_run(journal, "r2")
    e1, e2 = journal.next_escalation_id("r1"), journal.next_escalation_id("r1")
    assert (e1, e2) == ("r1.e1", "r1.e2")
    assert journal.next_escalation_id("r2") == "r2.e1"
    journal.create_escalation(
        "r1", e1, agent_id="a001", kind="question", question="A or B?", context="ctx",
        options=options_to_json(model_options(["A", "B"])), call_id="toolu_1",
    )  # fmt: skip
    journal.create_escalation(
        "r1", e2, agent_id="a002", kind="blocker", question="stuck", context="",
        options=[], call_id=None,
    )  # fmt: skip
    journal.create_escalation(
        "r2", "r2.e1", agent_id="a001", kind="budget", question="more $?", context="",
        options=["yes", "no"], call_id=None,
    )  # fmt: skip
    assert [e.escalation_id for e in journal.pending_escalations()] == ["r1.e1", "r1.e2", "r2.e1"]
    assert [e.escalation_id for e in journal.pending_escalations("r2")] == ["r2.e1"]
    found = journal.find_escalation_by_call("r1", "toolu_1")
    assert found is not None and found.escalation_id == e1 and found.escalation().labels == ("A", "B")
    assert [o.option_id for o in found.options] == ["1", "2"] and found.kind == EscalationKind.QUESTION
    legacy = journal.get_escalation("r2.e1")  # plain labels, as journals before option ids hold them
    assert legacy is not None and [(o.option_id, o.label) for o in legacy.options] == [("1", "yes"), ("2", "no")]
    assert journal.find_escalation_by_call("r2", "toolu_1") is None
    assert journal.answer_escalation(e1, answer="take A", choice="A", answered_by="human") is True
    assert journal.answer_escalation(e1, answer="B!", choice="B", answered_by="policy") is False
    got = journal.get_escalation(e1)
    assert got is not None
    assert (got.answer, got.choice, got.answered_by, got.kind) == (
        "take A",
        "A",
        "human",
        "question",
    )
    assert got.answered_at is not None
    assert [e.escalation_id for e in journal.pending_escalations("r1")] == ["r1.e2"]
    assert [e.escalation_id for e in journal.list_escalations("r1")] == ["r1.e1", "r1.e2"]
    assert journal.get_escalation("r9.e1") is None
    with pytest.raises(ValueError):
        journal.create_escalation(
            "r1", "r1.e9", agent_id="a1", kind="whim", question="?", context="", options=[],
            call_id=None,
        )  # fmt: skip
    with pytest.raises(KeyError):
        journal.next_escalation_id("no-such-run")


# ------------------------------------------------------------------ usage, events


def test_usage_totals(journal: Journal) -> None:
    _new_run(journal, "r1")
    _new_run(journal, "r2")
    assert journal.run_usage("r1") == {
        "input_tokens": 0, "output_tokens": 0, "cache_creation_tokens": 0,
        "cache_read_tokens": 0, "cost_usd": 0.0, "calls": 0,
    }  # fmt: skip
    for agent, n in (("a001", 1), ("a002", 10)):
        journal.add_usage(
            "r1", agent, model="m", input_tokens=n, output_tokens=2 * n,
            cache_creation_tokens=3 * n, cache_read_tokens=4 * n, cost_usd=0.25 * n,
        )  # fmt: skip
    journal.add_usage(
        "r2", "a001", model="m", input_tokens=1000, output_tokens=0, cache_creation_tokens=0,
        cache_read_tokens=0, cost_usd=9.0,
    )  # fmt: skip
    assert journal.run_usage("r1") == {
        "input_tokens": 11, "output_tokens": 22, "cache_creation_tokens": 33,
        "cache_read_tokens": 44, "cost_usd": 2.75, "calls": 2,
    }  # fmt: skip


def test_events(journal: Journal) -> None:
    _new_run(journal)
    journal.add_event("r1", "run_started", {"type": "run_started", "ts": 5.0, "goal": "g"})
    journal.add_event("r1", "agent_status", {"agent_id": "a001", "status": "running"})
    journal.add_event("r1", "notice", {"text": "n"})
    events = journal.list_events("r1")
    assert [e["type"] for e in events] == ["run_started", "agent_status", "notice"]
    assert events[0] == {"type": "run_started", "ts": 5.0, "goal": "g"}
    assert events[1]["agent_id"] == "a001" and isinstance(events[1]["ts"], float)
    assert [e["type"] for e in journal.list_events("r1", limit=2)] == ["agent_status", "notice"]
    assert journal.list_events("other") == []


# ------------------------------------------------------------------ secrets


def test_redact_patterns() -> None:
    assert _redact(f"key={KEY} ok") == "key=[redacted] ok"
    assert _redact("Bearer sk-" + "A1" * 12) == "Bearer [redacted]"
    assert _redact("sk-short and task-force") == "sk-short and task-force"


def test_api_keys_never_reach_the_file(journal: Journal, db_path: Path) -> None:
    marker = "VISIBLE-MARKER-42"
    journal.create_run(
        "r1", goal=f"use {KEY}", workspace="/w", config={"api_key": KEY}, pid=os.getpid()
    )
    _new_agent(journal, "r1", "a001", task=f"call with {KEY}")
    journal.append_message(
        "r1", "a001", {"role": "user", "content": [{"type": "text", "text": f"{marker} {KEY}"}]}
    )
    journal.start_tool_call("r1", "a001", "c1", "run_command", {"command": f"curl -H {KEY}"})
    journal.finish_tool_call("r1", "c1", result={"output": KEY}, is_error=False)
    journal.add_event("r1", "notice", {"text": KEY})
    (msg,) = journal.load_transcript("r1", "a001")
    assert msg["content"][0]["text"] == f"{marker} [redacted]"
    run = journal.get_run("r1")
    assert run is not None and run.config == {"api_key": "[redacted]"}
    raw = b"".join(
        p.read_bytes() for p in db_path.parent.iterdir() if p.name.startswith(db_path.name)
    )
    assert marker.encode() in raw  # the scan does see what was written
    assert KEY.encode() not in raw and b"abcdefghijkl" not in raw


# ------------------------------------------------------------------ durability


@pytest.mark.parametrize("how", ["os._exit(0)", "os.kill(os.getpid(), signal.SIGKILL)"])
def test_writes_survive_a_killed_process(db_path: Path, how: str) -> None:
    code = f"""
        import os, signal, sys
        from agentray.journal import Journal
        j = Journal(sys.argv[1])
        j.create_run("crash", goal="g", workspace="/w", config={{}}, pid=os.getpid())
        j.create_agent("crash", "a001", parent_id=None, role="worker", title="t", task="x",
                       depth=1, depends_on=[], mitigates=None, status="running", model="m")
        for i in range(5):
            j.append_message("crash", "a001", {{"role": "user", "content": f"m{{i}}"}})
        j.update_agent("crash", "a001", turns=5)
        j.add_usage("crash", "a001", model="m", input_tokens=7, output_tokens=1,
                    cache_creation_tokens=0, cache_read_tokens=0, cost_usd=0.1)
        {how}
    """
    proc = _run_child(code, str(db_path))
    assert proc.returncode in (0, -signal.SIGKILL), proc.stderr
    with Journal(db_path) as j:
        run = j.get_run("crash")
        assert run is not None and run.status == "running"
        agent = j.get_agent("crash", "a001")
        assert agent is not None and agent.turns == 5
        assert [m["content"] for m in j.load_transcript("crash", "a001")] == [
            f"m{i}" for i in range(5)
        ]
        assert j.run_usage("crash")["input_tokens"] == 7
        assert j.mark_interrupted_runs() == ["crash"]
