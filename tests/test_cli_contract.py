"""The headless CLI's rough edges, as a person or a script meets them: help for every command and
flag, an unreachable model, closed and unread pipes, resumed runs, escalation and retry lines,
plurals. Real `agentray` processes, the real SDK over HTTP to the simulator, the real journal."""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentray.cli import build_parser
from agentray.journal import Journal
from agentray.simulator import Fault, Rule, ScriptedPolicy, SimRequest, Simulator, tool_use
from conftest import cli_env

KEY = "sk-ant-cli-contract-0123456789"
AGENTRAY = [sys.executable, "-m", "agentray.cli"]
NOISY_WORKERS = 4
NOISY_TURNS = 8  # each a batch of NOISY_CALLS report_progress calls
NOISY_CALLS = 25
NOTE = "a note long enough to fill a pipe quickly " * 12


# ---------------------------------------------------------------------------- scripted agents
def _ok(request: SimRequest, name: str) -> list[dict[str, Any]]:
    return [r.json or {} for r in request.tool_results_named(name) if not r.is_error]


def _orchestrator(request: SimRequest) -> list[dict[str, Any]]:
    goal = request.first_user_text
    if "ASK" in goal:
        asked = _ok(request, "escalate")
        if not asked:
            return [
                tool_use(
                    "escalate",
                    question="Which articles?",
                    options=["Minimal: a, an, the", "No articles"],
                )
            ]
        return [tool_use("finish", summary=f"picked {asked[0].get('choice')}", outcome="success")]
    if "FAIL-FIRST" in goal and not request.tool_results_named("finish"):
        return [tool_use("finish", summary="first try failed", outcome="failure")]
    spawns = _ok(request, "spawn_agent")
    if not spawns:
        if "NOISY" in goal:
            return [
                tool_use("spawn_agent", task=f"NOISY-WORKER {i}", title=f"noisy {i}")
                for i in range(NOISY_WORKERS)
            ]
        return [tool_use("spawn_agent", task="CONTRACT-WRITER: write out.txt", title="the writer")]
    if not request.tool_results_named("await_agents"):
        return [tool_use("await_agents", agent_ids=[s["agent_id"] for s in spawns])]
    return [tool_use("finish", summary="all done", outcome="success")]


def _writer(request: SimRequest) -> list[dict[str, Any]]:
    if not request.tool_results_named("run_command"):  # a file far larger than a pipe's buffer
        return [tool_use("run_command", command="seq 1 30000 > out.txt")]
    return [tool_use("complete", summary="wrote out.txt")]


def _noisy(request: SimRequest) -> list[dict[str, Any]]:
    done = len(request.tool_results_named("report_progress"))
    if done < NOISY_TURNS * NOISY_CALLS:
        return [
            tool_use("report_progress", note=f"step {done + i}: {NOTE}") for i in range(NOISY_CALLS)
        ]
    return [tool_use("complete", summary="made noise")]


POLICY = ScriptedPolicy(
    [
        Rule(match="You are the orchestrator", turns=[_orchestrator] * 20),
        Rule(match="CONTRACT-WRITER", turns=[_writer] * 20),
        Rule(match="NOISY-WORKER", turns=[_noisy] * (NOISY_TURNS + 4)),
    ]
)


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(POLICY, api_keys={KEY}) as simulator:
        yield simulator


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**cli_env(tmp_path, KEY), "COLUMNS": "200"}


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    path = tmp_path / "project"
    path.mkdir()
    return path


def agentray(
    args: list[str], env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AGENTRAY, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
    )


def _run(
    ws: Path, sim: Simulator, env: dict[str, str], goal: str, *flags: str
) -> subprocess.CompletedProcess[str]:
    return agentray(
        [
            "run",
            goal,
            "--dir",
            str(ws),
            "--base-url",
            sim.base_url,
            "--model",
            "sim-model",
            "--on-escalation",
            "fail",
            *flags,
        ],
        env,
    )


def _statuses(env: dict[str, str]) -> list[tuple[str, str]]:
    db = sqlite3.connect(env["AGENTRAY_JOURNAL"])
    try:
        return [
            (str(r[0]), str(r[1]))
            for r in db.execute("select run_id, status from runs order by started_at")
        ]
    finally:
        db.close()


def _wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _closed_port() -> int:
    """A port nothing listens on (bound, never listening: connecting to it is refused)."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    port = int(holder.getsockname()[1])
    _HOLDERS.append(holder)
    return port


_HOLDERS: list[socket.socket] = []


# ---------------------------------------------------------------------------- 1. help
def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _parsers(child)


def test_every_flag_has_help_and_every_command_a_description_and_an_example() -> None:
    walked = list(_parsers(build_parser()))
    names = {p.prog for p in walked}
    for command in (
        "run",
        "demo",
        "tray",
        "runs",
        "show",
        "resume",
        "stop",
        "diff",
        "undo",
        "doctor",
        "key",
        "key set",
        "key status",
        "key delete",
    ):
        assert f"agentray {command}" in names, command
    for parser in walked:
        assert parser.description, parser.prog
        assert parser.epilog and "Example" in parser.epilog, parser.prog
        assert parser.formatter_class is argparse.RawDescriptionHelpFormatter, parser.prog
        for action in parser._actions:
            assert action.help and action.help != argparse.SUPPRESS, f"{parser.prog}: {action.dest}"
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for pseudo in action._choices_actions:
                    assert pseudo.help, f"{parser.prog} {pseudo.dest}"


def test_help_lists_commands_with_summaries_and_shows_examples(env: dict[str, str]) -> None:
    top = agentray(["--help"], env)
    assert top.returncode == 0 and top.stderr == ""
    listed = dict(re.findall(r"^    (\w+)\s+(\S.*)$", top.stdout, re.MULTILINE))
    assert set(listed) >= {
        "run",
        "demo",
        "tray",
        "runs",
        "show",
        "resume",
        "stop",
        "diff",
        "undo",
        "doctor",
        "key",
    }
    assert all(listed.values())
    resume = agentray(["resume", "--help"], env)
    assert resume.returncode == 0
    for flag in ("--base-url URL", "--on-escalation", "--json", "--allow-network", "--no-sandbox"):
        assert flag in resume.stdout, flag
    assert "Examples:\n  agentray resume r1128-3fa2" in resume.stdout
    runs = agentray(["runs", "--help"], env)
    assert "--limit N" in runs.stdout and "list at most N runs" in runs.stdout
    assert "print the runs as a JSON array" in runs.stdout
    key = agentray(["key", "set", "--help"], env)
    assert key.returncode == 0 and "without echo" in key.stdout and "Examples:" in key.stdout


# ---------------------------------------------------------------------------- 5. unreachable model
def test_an_unreachable_model_exits_2_at_once_and_leaves_nothing(
    tmp_path: Path, env: dict[str, str], ws: Path
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    result = agentray(
        ["run", "write the file", "--dir", str(ws), "--base-url", url, "--model", "sim-model"], env
    )
    assert result.returncode == 2
    assert result.stdout == ""  # no run started, so no agent ever called (and retried) the model
    assert result.stderr == f"agentray: cannot reach the model at {url}: connection refused\n"
    log = tmp_path / "agentray.log"
    assert not log.exists() or "retrying" not in log.read_text()
    assert list(ws.iterdir()) == []  # no agent-responses/
    assert not (tmp_path / "checkpoints").exists()
    assert not Path(env["AGENTRAY_JOURNAL"]).exists() or _statuses(env) == []
    # the same from the environment
    env["ANTHROPIC_BASE_URL"] = url
    again = agentray(["run", "write the file", "--dir", str(ws), "--model", "sim-model"], env)
    assert again.returncode == 2 and again.stderr == result.stderr


def test_resume_checks_the_model_before_touching_the_run(
    env: dict[str, str], ws: Path, sim: Simulator
) -> None:
    failed = _run(ws, sim, env, "FAIL-FIRST", "--json")
    assert failed.returncode == 1, failed.stderr
    [(run_id, status)] = _statuses(env)
    url = f"http://127.0.0.1:{_closed_port()}"
    result = agentray(["resume", run_id, "--base-url", url], env)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"agentray: cannot reach the model at {url}: connection refused\n"
    assert _statuses(env) == [(run_id, status)]


# ---------------------------------------------------------------------------- retries, printed once
def test_model_retries_are_printed_once(env: dict[str, str], ws: Path, sim: Simulator) -> None:
    sim.inject(Fault.overloaded(), times=2)
    result = _run(ws, sim, env, "write the file")
    assert result.returncode == 0, result.stderr
    assert sim.pending_faults == 0
    both = result.stdout + result.stderr
    assert len(re.findall(r"model retry 1 for a\d+ in [\d.]+s: overloaded \(529\)", both)) == 1, (
        both
    )
    assert len(re.findall(r"model retry 2 for a\d+ in", both)) == 1, both
    assert "retry" not in result.stderr
    sim.inject(Fault.overloaded(), times=1)
    as_json = _run(ws, sim, env, "write the file", "--json")
    assert as_json.returncode == 0 and as_json.stderr == ""
    retries = [
        e for e in map(json.loads, as_json.stdout.splitlines()) if e["type"] == "model_retry"
    ]
    assert [e["attempt"] for e in retries] == [1]


# ---------------------------------------------------------------------------- 4. resume lines
def test_resume_prints_agent_lines_like_run(env: dict[str, str], ws: Path, sim: Simulator) -> None:
    first = _run(ws, sim, env, "FAIL-FIRST")
    assert first.returncode == 1
    line = re.compile(
        r"^\d\d:\d\d:\d\d (a\d+) orchestrator +(running|done) +Orchestrator", re.MULTILINE
    )
    assert [m[1] for m in line.findall(first.stdout)] == ["running"]
    [(run_id, _)] = _statuses(env)
    resumed = agentray(
        ["resume", run_id[:8], "--base-url", sim.base_url, "--on-escalation", "fail"], env
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"run {run_id} resumed in {ws}" in resumed.stdout
    found = [m[1] for m in line.findall(resumed.stdout)]
    assert found[0] == "running" and found[-1] == "done", resumed.stdout
    assert not re.search(r"a\d+ {3,}(running|done)", resumed.stdout), resumed.stdout
    assert _statuses(env) == [(run_id, "succeeded")]


# ---------------------------------------------------------------------------- 7. escalation answer
def test_a_picked_option_is_printed_once(env: dict[str, str], ws: Path, sim: Simulator) -> None:
    result = agentray(
        [
            "run",
            "ASK the person",
            "--dir",
            str(ws),
            "--base-url",
            sim.base_url,
            "--model",
            "sim-model",
            "--on-escalation",
            "ask",
        ],
        env,
        stdin="1\n",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    answered = [ln for ln in result.stdout.splitlines() if "answered by the person" in ln]
    assert len(answered) == 1, result.stdout
    assert answered[0].endswith("answered by the person: Minimal: a, an, the"), answered[0]
    assert "[1] Minimal: a, an, the" in result.stderr  # the prompt
    db = sqlite3.connect(env["AGENTRAY_JOURNAL"])
    assert db.execute("select answered_by, choice from escalations").fetchall() == [
        ("human", "Minimal: a, an, the")
    ]


def test_a_typed_answer_is_printed_after_the_policy_choice(
    env: dict[str, str], ws: Path, sim: Simulator
) -> None:
    result = _run(ws, sim, env, "ASK the person", "--on-escalation", "deny")
    answered = [ln for ln in result.stdout.splitlines() if "answered by policy:deny" in ln]
    assert len(answered) == 1 and answered[0].endswith(
        "answered by policy:deny: No articles — Denied by policy "
        "(--on-escalation deny): do not do this; proceed without it, "
        "conservatively."
    ), result.stdout


# ---------------------------------------------------------------------------- 3. closed pipes
def _closed_at_once(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run with a stdout pipe whose reader is gone before anything is written."""
    proc = subprocess.Popen(
        [*AGENTRAY, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    return proc.wait(60), err


def _first_line_then_close(args: list[str], env: dict[str, str]) -> tuple[int, bytes, str]:
    """`agentray ... | head -1`."""
    proc = subprocess.Popen(
        [*AGENTRAY, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    return proc.wait(120), first, err


def test_closed_pipes_end_quietly(env: dict[str, str], ws: Path, sim: Simulator) -> None:
    code, first, err = _first_line_then_close(
        [
            "run",
            "write the file",
            "--dir",
            str(ws),
            "--base-url",
            sim.base_url,
            "--model",
            "sim-model",
            "--json",
        ],
        env,
    )
    assert json.loads(first)["type"] == "run_started"
    assert (code, err) == (0, "")
    [(run_id, status)] = _statuses(env)
    assert status == "succeeded"  # the run went on without its reader
    assert (ws / "out.txt").read_text().startswith("1\n2\n")
    for args in (
        ["show", run_id],
        ["diff", run_id],
        ["diff", run_id, "--stat"],
        ["runs", "--json"],
        ["--help"],
    ):
        assert _closed_at_once(args, env) == (0, ""), args
    # a diff much larger than the pipe's buffer, read up to its first line
    code, first, err = _first_line_then_close(["diff", run_id], env)
    assert (code, err) == (0, ""), err
    assert first.startswith((b"diff --git", b"--- ")), first


# ---------------------------------------------------------------------------- 8. an unread pipe
def test_an_unread_stdout_never_stalls_the_run(
    tmp_path: Path, env: dict[str, str], ws: Path, sim: Simulator
) -> None:
    err_path = tmp_path / "stderr.txt"
    with err_path.open("wb") as err:
        proc = subprocess.Popen(
            [
                *AGENTRAY,
                "run",
                "NOISY work",
                "--dir",
                str(ws),
                "--base-url",
                sim.base_url,
                "--model",
                "sim-model",
                "--on-escalation",
                "fail",
                "--json",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
        try:
            # nobody reads proc.stdout: the pipe fills after 64 KiB; the run must finish anyway
            assert _wait_until(lambda: proc.poll() is not None, 240), (
                "the run stalled on its unread output"
            )
        finally:
            if proc.poll() is None:
                proc.kill()
            assert proc.stdout is not None
            unread = proc.stdout.read()
            proc.stdout.close()
    assert proc.returncode == 0, err_path.read_text()
    assert [s for _, s in _statuses(env)] == ["succeeded"]
    progress = sorted((ws / "agent-responses").glob("a*.md"))
    assert len(progress) == 1 + NOISY_WORKERS
    assert all("\nStatus: done\n" in p.read_text() for p in progress)
    db = sqlite3.connect(env["AGENTRAY_JOURNAL"])
    calls = db.execute("select count(*) from tool_calls where name = 'report_progress'").fetchone()[
        0
    ]
    assert calls == NOISY_WORKERS * NOISY_TURNS * NOISY_CALLS
    # what was written is whole JSON lines; the rest was dropped, and said so once
    assert len(unread) > 32_768  # the pipe took what it could, then nobody read it
    lines = unread.split(b"\n")[:-1]  # whole lines only: the last write may have been cut
    assert all(json.loads(line)["type"] for line in lines)
    written = len(lines)
    [message] = err_path.read_text().splitlines()
    found = re.fullmatch(
        r"agentray: (\d+) events were not written: the output was not being read", message
    )
    assert found, message
    assert written + int(found[1]) >= 3 * calls  # started, progress, finished for each call


# ---------------------------------------------------------------------------- 6. plurals
def test_counts_are_plural_only_when_they_should_be(tmp_path: Path, env: dict[str, str]) -> None:
    journal = Journal(Path(env["AGENTRAY_JOURNAL"]))
    journal.create_run(
        "r1129-0001", goal="one call", workspace=str(tmp_path), config={}, pid=os.getpid()
    )
    journal.add_usage(
        "r1129-0001",
        "a001",
        model="sim-model",
        input_tokens=10,
        output_tokens=1,
        cache_creation_tokens=0,
        cache_read_tokens=0,
        cost_usd=0.001,
    )
    journal.create_run("r1129-0002", goal="old", workspace=str(tmp_path), config={}, pid=1)
    journal.update_run("r1129-0002", status="failed", ended_at=time.time() - 3 * 86400)
    journal.close()
    shown = agentray(["show", "r1129-0001"], env)
    assert "usage:     1 call, 10 in / 1 out" in shown.stdout, shown.stdout
    stop = agentray(["stop", "--all"], env)
    assert stop.stdout == "stop requested for 1 run: r1129-0001; it stops within a second\n", (
        stop.stdout
    )
    pruned = agentray(["runs", "--prune", "1"], env)
    assert pruned.stdout == "forgot 1 run that ended more than 1 day ago: r1129-0002\n", (
        pruned.stdout + pruned.stderr
    )
