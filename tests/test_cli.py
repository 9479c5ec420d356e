"""The headless CLI as a user (or the contract's scripted client) drives it: real processes,
the real SDK over HTTP to the simulator, the real journal."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pexpect
import psutil
import pytest

from agentray.simulator import Rule, ScriptedPolicy, SimRequest, Simulator, text, tool_use

AGENTRAY = [sys.executable, "-m", "agentray"]
KEY = "sk-ant-cli-test-key-0123456789"
LONG_SLEEP = "31.7"  # a marker: only our test's sleeps sleep exactly this long


# ---------------------------------------------------------------------------- scripted agents
def _results(request: SimRequest, name: str) -> list[dict[str, Any]]:
    return [r.json or {} for r in request.tool_results_named(name) if not r.is_error]


def orchestrator(request: SimRequest) -> list[dict[str, Any]]:
    goal = request.first_user_text
    if "ASK" in goal and not request.tool_results_named("escalate"):
        return [tool_use("escalate", question="Ship it?", context="A *question*.", options=["Yes, ship", "No, hold"])]
    spawns = _results(request, "spawn_agent")
    if not spawns:
        task = "CLI-SLEEPER: run the long command" if "SLEEPY" in goal else "CLI-WRITER: write out.txt"
        return [tool_use("spawn_agent", task=task, title="the worker")]
    if not request.tool_results_named("await_agents"):
        return [tool_use("await_agents", agent_ids=[spawns[0]["agent_id"]])]
    if not request.tool_results_named("run_build"):
        return [tool_use("run_build")]  # an is_error result (no build configured) is fine too
    escalations = _results(request, "escalate")
    outcome = "failure" if escalations and (escalations[0].get("choice") or "").startswith("No") else "success"
    return [tool_use("finish", summary=f"finished with {outcome}", outcome=outcome)]


def writer(request: SimRequest) -> list[dict[str, Any]]:
    if not request.tool_results_named("write_file"):
        return [tool_use("write_file", path="out.txt", content="written by the worker\n")]
    return [tool_use("complete", summary="wrote out.txt")]


def sleeper(request: SimRequest) -> list[dict[str, Any]]:
    commands = request.tool_results_named("run_command")
    if not commands:
        return [
            tool_use("report_progress", note="starting the long command"),
            tool_use("run_command", command=f"sh -c 'sleep {LONG_SLEEP} & sleep {LONG_SLEEP}; wait'", timeout_s=120),
        ]
    if commands[-1].is_error and "interrupted" in commands[-1].text:
        return [text("My command was interrupted; a quick one instead."), tool_use("run_command", command="echo recovered")]
    return [tool_use("complete", summary="ran the command")]


POLICY = ScriptedPolicy(
    [
        Rule(match="You are the orchestrator", turns=[orchestrator] * 40),
        Rule(match="CLI-WRITER", turns=[writer] * 40),
        Rule(match="CLI-SLEEPER", turns=[sleeper] * 40),
    ]
)


@pytest.fixture(scope="module")
def sim() -> Any:
    with Simulator(POLICY, api_keys={KEY}) as simulator:
        yield simulator


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    environment.update(
        AGENTRAY_JOURNAL=str(tmp_path / "journal.sqlite3"),
        ANTHROPIC_API_KEY=KEY,
        XDG_DATA_HOME=str(tmp_path / "data"),
        PYTHONUNBUFFERED="1",
        COLUMNS="200",
    )
    return environment


def agentray(args: list[str], env: dict[str, str], timeout: float = 90, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AGENTRAY, *args], env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout, **kw
    )


def _workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "project"
    ws.mkdir()
    (ws / "keep.txt").write_text("the user's file\n")
    return ws


def _sleepers() -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if cmdline[:2] == ["sleep", LONG_SLEEP]:
            found.append(proc)
    return found


def _wait_for(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


# ---------------------------------------------------------------------------- tests
def test_demo_headless_finishes_a_full_run_offline(tmp_path: Path, env: dict[str, str]) -> None:
    env.pop("ANTHROPIC_API_KEY")  # the demo needs no key
    demo_dir = tmp_path / "demo"
    result = agentray(["demo", "--headless", "--dir", str(demo_dir)], env, timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Traceback" not in result.stderr
    for needle in ("spawned", "blocked", "answered by policy:deny", "resume_agent", "build FAILED", "build passed", "succeeded"):
        assert needle in out, needle
    progress = sorted((demo_dir / "agent-responses").glob("a*.md"))
    assert len(progress) == 5  # orchestrator, three workers, one fixer
    for path in progress:
        assert "\nStatus: done\n" in path.read_text()
    build = subprocess.run([sys.executable, "-m", "unittest", "discover", "-s", "tests", "-t", ".", "-q"],
                           cwd=demo_dir, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    db = sqlite3.connect(env["AGENTRAY_JOURNAL"])
    assert db.execute("select status from runs").fetchall() == [("succeeded",)]
    assert db.execute("select count(*) from escalations where answered_by = 'policy:deny'").fetchone() == (1,)
    # prompt caching pays: the growing conversations are read from the cache far more than written
    read, written = db.execute("select sum(cache_read_tokens), sum(cache_creation_tokens) from usage").fetchone()
    assert read > 3 * written > 0


def test_run_json_lines_follow_the_contract(tmp_path: Path, env: dict[str, str], sim: Simulator) -> None:
    ws = _workspace(tmp_path)
    result = agentray(["run", "write the file", "--dir", str(ws), "--build", "test -f out.txt",
                       "--base-url", sim.base_url, "--model", "sim-model", "--json"], env)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    types = [e["type"] for e in events]
    assert types[0] == "run_started" and types[-1] == "run_finished"
    assert events[-1]["status"] == "succeeded"
    assert types.index("build_finished") < types.index("run_finished")
    spawned = [e for e in events if e["type"] == "agent_spawned"]
    assert [e["role"] for e in spawned] == ["orchestrator", "worker"]
    assert (ws / "out.txt").read_text() == "written by the worker\n"
    assert (ws / "keep.txt").read_text() == "the user's file\n"


@pytest.mark.parametrize(("policy", "code", "answered_by"), [("fail", 1, "policy:fail"), ("deny", 1, "policy:deny")])
def test_escalation_policies(tmp_path: Path, env: dict[str, str], sim: Simulator, policy: str, code: int, answered_by: str) -> None:
    ws = _workspace(tmp_path)
    result = agentray(["run", "ASK first", "--dir", str(ws), "--base-url", sim.base_url, "--model", "sim-model",
                       "--on-escalation", policy], env)
    assert result.returncode == code, result.stdout + result.stderr
    assert f"answered by {answered_by}" in result.stdout
    assert "Ship it?" in result.stdout
    db = sqlite3.connect(env["AGENTRAY_JOURNAL"])
    assert db.execute("select answered_by, choice from escalations").fetchall()[0][0] == answered_by
    if policy == "deny":  # "No, hold" is the denying option; the scripted orchestrator then fails the run
        assert db.execute("select choice from escalations").fetchone() == ("No, hold",)


def _ask_on_a_terminal(tmp_path: Path, env: dict[str, str], sim: Simulator) -> pexpect.spawn:
    """`agentray run` on a pseudo-terminal, stopped at its escalation prompt."""
    ws = _workspace(tmp_path)
    child = pexpect.spawn(
        sys.executable,
        ["-m", "agentray", "run", "ASK first", "--dir", str(ws), "--base-url", sim.base_url, "--model", "sim-model"],
        env=env, encoding="utf-8", timeout=60,
    )
    child.expect("Your answer")
    return child


def test_escalation_asked_on_a_terminal(tmp_path: Path, env: dict[str, str], sim: Simulator) -> None:
    child = _ask_on_a_terminal(tmp_path, env, sim)
    child.sendline("1")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    db = sqlite3.connect(env["AGENTRAY_JOURNAL"])
    assert db.execute("select answered_by, choice from escalations").fetchone() == ("human", "Yes, ship")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "x", "--dir", "/nonexistent/dir"], "no such directory"),
        (["run", "x", "--dir", "/etc/hostname"], "not a directory"),
        (["run", "x", "--max-concurrent", "many"], "not a whole number"),
        (["run", "x", "--budget", "free"], "not a number"),
        (["run", "x", "--build", "no-such-program-xyz --flag"], "cannot start"),
        (["run", "   "], "goal is empty"),
        (["show", "r-none"], "no run"),
        (["resume", "r-none"], "no run"),
        (["stop", "r-none"], "no run"),
        (["frobnicate"], "invalid choice"),
        ([], "no graphical session"),
        (["demo"], "no graphical session"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, env: dict[str, str], args: list[str], needle: str) -> None:
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        env.pop(name, None)
    result = agentray(args, env, cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr


def test_missing_key_says_how_to_set_one(tmp_path: Path, env: dict[str, str]) -> None:
    env.pop("ANTHROPIC_API_KEY")
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    result = agentray(["run", "x", "--dir", str(tmp_path)], env)
    assert result.returncode == 2
    assert "ANTHROPIC_API_KEY" in result.stderr and "agentray key set" in result.stderr


def test_invalid_key_and_unknown_model_exit_2(tmp_path: Path, env: dict[str, str], sim: Simulator) -> None:
    ws = _workspace(tmp_path)
    env["ANTHROPIC_API_KEY"] = "sk-ant-wrong-key-000000000"
    bad_key = agentray(["run", "x", "--dir", str(ws), "--base-url", sim.base_url, "--model", "sim-model"], env)
    assert bad_key.returncode == 2
    assert "rejected (401)" in bad_key.stderr and "sk-ant-wrong" not in bad_key.stderr + bad_key.stdout
    env["ANTHROPIC_API_KEY"] = KEY
    bad_model = agentray(["run", "x", "--dir", str(ws), "--base-url", sim.base_url, "--model", "claude-nope-1"], env)
    assert bad_model.returncode == 2
    assert "unknown model 'claude-nope-1'" in bad_model.stderr


def _start_sleepy_run(ws: Path, env: dict[str, str], sim: Simulator) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*AGENTRAY, "run", "SLEEPY work", "--dir", str(ws), "--base-url", sim.base_url, "--model", "sim-model",
         "--build", "true", "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )


def _run_id(env: dict[str, str]) -> str:
    db = sqlite3.connect(env["AGENTRAY_JOURNAL"])
    assert _wait_for(lambda: db.execute("select count(*) from runs").fetchone()[0] == 1, 20)
    return str(db.execute("select run_id from runs").fetchone()[0])


def test_kill_9_then_resume_finishes_the_run(tmp_path: Path, env: dict[str, str], sim: Simulator) -> None:
    ws = _workspace(tmp_path)
    process = _start_sleepy_run(ws, env, sim)
    try:
        assert _wait_for(lambda: len(_sleepers()) >= 2, 30), "the worker's command never started"
        run_id = _run_id(env)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
    db = sqlite3.connect(env["AGENTRAY_JOURNAL"])
    assert db.execute("select status from runs").fetchone() == ("running",)  # nothing could record the crash
    listing = agentray(["runs"], env)
    assert "interrupted" in listing.stdout
    resumed = agentray(["resume", run_id, "--base-url", sim.base_url, "--json"], env)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr
    assert db.execute("select status from runs").fetchone() == ("succeeded",)
    # the orphaned command trees of the crashed process were killed on resume
    assert _wait_for(lambda: not _sleepers(), 5)
    # the cut tool call went back to the model as interrupted, and the worker recovered
    results = db.execute("select result from tool_calls where name = 'run_command' order by started_at").fetchall()
    assert any("interrupted" in (r[0] or "") for r in results)
    assert any("recovered" in (r[0] or "") for r in results)
    worker = next(p for p in (ws / "agent-responses").glob("a*.md") if "CLI-SLEEPER" in p.read_text())
    assert "\nStatus: done\n" in worker.read_text()


@pytest.mark.parametrize("how", ["one", "all"])
def test_stop_from_another_process_kills_every_tree(tmp_path: Path, env: dict[str, str], sim: Simulator, how: str) -> None:
    ws = _workspace(tmp_path)
    process = _start_sleepy_run(ws, env, sim)
    try:
        assert _wait_for(lambda: len(_sleepers()) >= 2, 30)
        run_id = _run_id(env)
        stop = agentray(["stop", run_id] if how == "one" else ["stop", "--all"], env)
        assert stop.returncode == 0, stop.stderr
        code = process.wait(15)
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 3
    assert not _sleepers()
    db = sqlite3.connect(env["AGENTRAY_JOURNAL"])
    assert db.execute("select status from runs").fetchone() == ("cancelled",)
    statuses = {row[0] for row in db.execute("select status from agents")}
    assert statuses <= {"cancelled", "done"}


def test_ctrl_c_interrupts_and_the_run_stays_resumable(tmp_path: Path, env: dict[str, str], sim: Simulator) -> None:
    ws = _workspace(tmp_path)
    process = _start_sleepy_run(ws, env, sim)
    try:
        assert _wait_for(lambda: len(_sleepers()) >= 2, 30)
        process.send_signal(signal.SIGINT)
        code = process.wait(15)
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 3
    assert not _sleepers()
    db = sqlite3.connect(env["AGENTRAY_JOURNAL"])
    assert db.execute("select status from runs").fetchone() == ("interrupted",)
    shown = agentray(["show", _run_id(env)], env)
    assert shown.returncode == 0 and "interrupted" in shown.stdout and "CLI-SLEEPER" not in shown.stderr


def test_runs_and_show_read_the_journal(tmp_path: Path, env: dict[str, str], sim: Simulator) -> None:
    ws = _workspace(tmp_path)
    assert agentray(["run", "write the file", "--dir", str(ws), "--base-url", sim.base_url, "--model", "sim-model",
                     "--build", "true"], env).returncode == 0
    run_id = _run_id(env)
    listing = agentray(["runs", "--json"], env)
    rows = json.loads(listing.stdout)
    assert rows[0]["run_id"] == run_id and rows[0]["status"] == "succeeded"
    shown = json.loads(agentray(["show", run_id[:6], "--json"], env).stdout)
    assert [a["role"] for a in shown["agents"]] == ["orchestrator", "worker"]
    assert shown["usage"]["calls"] >= 4 and shown["usage"]["cost_usd"] > 0
    assert KEY not in Path(env["AGENTRAY_JOURNAL"]).read_bytes().decode("latin-1")


def test_ctrl_c_at_the_escalation_prompt_exits_at_once(tmp_path: Path, env: dict[str, str], sim: Simulator) -> None:
    child = _ask_on_a_terminal(tmp_path, env, sim)
    child.sendintr()
    child.expect(pexpect.EOF)  # a prompt blocked in input() must not hold the process
    child.close()
    assert child.exitstatus == 3
    db = sqlite3.connect(env["AGENTRAY_JOURNAL"])
    assert db.execute("select status from runs").fetchone() == ("interrupted",)
