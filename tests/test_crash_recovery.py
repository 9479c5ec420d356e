"""Crashes staged for real: `agentray run` in a subprocess against the simulator, kill -9 at a
chosen point, then `agentray resume`; assertions on the workspace, the journal and the exact tool
results the model receives after the crash."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from agentray.simulator import Rule, ScriptedPolicy, SimRequest, Simulator, tool_use
from conftest import cli_env

KEY = "sk-ant-crash-0123456789"
PY = sys.executable


class Script:
    """A policy whose turns are plain functions; every request it saw is kept, in order."""

    def __init__(self, rules: dict[str, Callable[[SimRequest], list[dict[str, Any]]]]) -> None:
        self.rules = rules
        self.policy = ScriptedPolicy([Rule(match=m, turns=[self._wrap(fn)] * 60) for m, fn in rules.items()])
        self.seen: list[SimRequest] = []

    def _wrap(self, fn: Callable[[SimRequest], list[dict[str, Any]]]) -> Callable[[SimRequest], list[dict[str, Any]]]:
        def turn(req: SimRequest) -> list[dict[str, Any]]:
            self.seen.append(req)
            return fn(req)

        return turn

    def requests(self, marker: str) -> list[SimRequest]:
        return [r for r in self.seen if marker in r.first_user_text]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path, KEY)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    return path


def _cli(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PY, "-m", "agentray.cli", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL, text=True,
    )


def _start(sim: Simulator, ws: Path, env: dict[str, str], goal: str = "GOAL: crash me") -> subprocess.Popen[str]:
    return _cli(["run", goal, "--dir", str(ws), "--base-url", sim.base_url, "--model", "sim-model",
                 "--on-escalation", "fail", "--json"], env)


def _resume(run_id: str, sim: Simulator, env: dict[str, str]) -> subprocess.Popen[str]:
    return _cli(["resume", run_id, "--base-url", sim.base_url, "--on-escalation", "fail", "--json"], env)


def _running(token: str) -> bool:
    for proc in psutil.process_iter(["cmdline"]):
        if (proc.info.get("cmdline") or [])[:2] == ["sleep", token]:
            return True
    return False


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _crash(cli: subprocess.Popen[str]) -> str:
    """kill -9 the CLI; returns the run id it printed first."""
    cli.send_signal(signal.SIGKILL)
    out, _ = cli.communicate(timeout=10)
    return str(json.loads(out.splitlines()[0])["run_id"])


def _finish(cli: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    out, err = cli.communicate(timeout=timeout)
    return cli.returncode, out, err


def _results(req: SimRequest) -> dict[str, Any]:
    """The tool results of the request's last user message, by tool name (a list when repeated)."""
    found: dict[str, Any] = {}
    for view in req.all_tool_results:
        found.setdefault(view.tool_name or "?", []).append(view)
    return found


# ------------------------------------------------------------------------------- a worker's turn


def test_finished_calls_keep_their_results_and_only_the_running_one_is_interrupted(
    tmp_path: Path, ws: Path, env: dict[str, str]
) -> None:
    token = f"{os.getpid() % 1000}.{time.monotonic_ns() % 10_000}"

    def orchestrator(req: SimRequest) -> list[dict[str, Any]]:
        if not req.tool_results_named("spawn_agent"):
            return [tool_use("spawn_agent", task="W-TURN does three things")]
        if not [r for r in req.tool_results_named("await_agents") if not r.is_error]:
            return [tool_use("await_agents")]
        return [tool_use("finish", summary="done", outcome="success")]

    def worker(req: SimRequest) -> list[dict[str, Any]]:
        if not req.tool_results_named("write_file"):
            return [
                tool_use("write_file", path="b.txt", content="B\n"),
                tool_use("run_command", command="echo B >> append.log"),
                tool_use("run_command", command=f"sleep {token}"),
            ]
        return [tool_use("complete", summary="after the crash")]

    script = Script({"You are the orchestrator": orchestrator, "W-TURN": worker})
    with Simulator(script.policy, api_keys={KEY}) as sim:
        cli = _start(sim, ws, env)
        _wait(lambda: _running(token), 30, "the third call")
        run_id = _crash(cli)
        assert (ws / "append.log").read_text() == "B\n"
        code, _out, err = _finish(_resume(run_id, sim, env))
        assert code == 0, err
    assert (ws / "append.log").read_text() == "B\n"  # nothing ran twice
    assert (ws / "b.txt").read_text() == "B\n"
    after = script.requests("W-TURN")[-1]
    results = _results(after)
    assert not results["write_file"][0].is_error
    first, second = results["run_command"]
    assert not first.is_error and first.json["exit_code"] == 0  # the journaled result, unchanged
    assert second.is_error and "interrupted" in second.text
    db = sqlite3.connect(env["AGENTRAY_JOURNAL"])
    rows = db.execute(
        "select name, is_error, finished_at is not null from tool_calls where run_id = ? and agent_id = 'a002'"
        " order by started_at", (run_id,)
    ).fetchall()
    assert [r[0] for r in rows[:3]] == ["write_file", "run_command", "run_command"]
    assert all(r[2] for r in rows)  # every call has its end in the journal


# ------------------------------------------------------------------------------- spawns


def test_spawns_keep_their_agents_across_a_crash(tmp_path: Path, ws: Path, env: dict[str, str]) -> None:
    token = f"{os.getpid() % 1000}.{time.monotonic_ns() % 10_000 + 1}"

    def orchestrator(req: SimRequest) -> list[dict[str, Any]]:
        if not req.tool_results_named("spawn_agent"):
            return [
                tool_use("spawn_agent", task="W-ONE works"),
                tool_use("spawn_agent", task="W-TWO works"),
                tool_use("sleep", seconds=600),
            ]
        if not [r for r in req.tool_results_named("await_agents") if not r.is_error]:
            return [tool_use("await_agents")]
        return [tool_use("finish", summary="done", outcome="success")]

    def busy(req: SimRequest) -> list[dict[str, Any]]:
        if not req.tool_results_named("run_command"):
            return [tool_use("run_command", command=f"sleep {token}")]
        return [tool_use("complete", summary="worked")]

    script = Script({"You are the orchestrator": orchestrator, "W-ONE": busy, "W-TWO": busy})
    with Simulator(script.policy, api_keys={KEY}) as sim:
        cli = _start(sim, ws, env)
        _wait(lambda: len(script.requests("W-")) >= 2 and _running(token), 30, "both workers")
        run_id = _crash(cli)
        code, _out, err = _finish(_resume(run_id, sim, env))
        assert code == 0, err
    after = next(r for r in script.requests("You are the orchestrator") if r.tool_results_named("spawn_agent"))
    spawns = after.tool_results_named("spawn_agent")
    assert [s.json["agent_id"] for s in spawns] == ["a002", "a003"]  # the agents that exist
    assert not any(s.is_error for s in spawns)
    db = sqlite3.connect(env["AGENTRAY_JOURNAL"])
    agents = db.execute("select agent_id, status from agents where run_id = ? order by agent_id", (run_id,)).fetchall()
    assert agents == [("a001", "done"), ("a002", "done"), ("a003", "done")]


# ------------------------------------------------------------------------------- one owner


def test_two_resumes_at_once_exactly_one_proceeds(tmp_path: Path, ws: Path, env: dict[str, str]) -> None:
    token = f"{os.getpid() % 1000}.{time.monotonic_ns() % 10_000 + 2}"

    def orchestrator(req: SimRequest) -> list[dict[str, Any]]:
        if not req.tool_results_named("spawn_agent"):
            return [tool_use("spawn_agent", task="W-SLOW appends, then sleeps")]
        if not [r for r in req.tool_results_named("await_agents") if not r.is_error]:
            return [tool_use("await_agents")]
        return [tool_use("finish", summary="done", outcome="success")]

    def worker(req: SimRequest) -> list[dict[str, Any]]:
        commands = req.tool_results_named("run_command")
        if not commands:
            return [tool_use("run_command", command=f"echo once >> append.log; sleep {token}")]
        if len(commands) == 1:  # resumed: its first command was interrupted
            return [tool_use("run_command", command="echo resumed >> resumed.log; sleep 2")]
        return [tool_use("complete", summary="done")]

    script = Script({"You are the orchestrator": orchestrator, "W-SLOW": worker})
    with Simulator(script.policy, api_keys={KEY}) as sim:
        cli = _start(sim, ws, env)
        _wait(lambda: _running(token), 30, "the worker's command")
        run_id = _crash(cli)
        first, second = _resume(run_id, sim, env), _resume(run_id, sim, env)
        outcomes = sorted([_finish(first), _finish(second)], key=lambda o: o[0])
    (ok_code, _, ok_err), (busy_code, busy_out, busy_err) = outcomes
    assert ok_code == 0, ok_err
    assert busy_code == 2 and busy_out == ""
    assert len(busy_err.splitlines()) == 1
    assert f"run {run_id} is being driven by process " in busy_err
    assert (ws / "resumed.log").read_text() == "resumed\n"  # the resumed step ran once
    assert (ws / "append.log").read_text() == "once\n"


def test_stop_all_after_a_crash_says_nothing_is_running(tmp_path: Path, env: dict[str, str]) -> None:
    done = subprocess.run([PY, "-m", "agentray.cli", "stop", "--all"], env=env, capture_output=True, text=True)
    assert done.returncode == 0
    assert done.stdout.startswith("no run is running; nothing to stop")


# ------------------------------------------------------------------------------- randomized

STEPS = 4
WORKERS = 3


def _random_crash_script() -> Script:
    def orchestrator(req: SimRequest) -> list[dict[str, Any]]:
        if not req.tool_results_named("spawn_agent"):
            return [tool_use("spawn_agent", task=f"W-{i} appends its steps") for i in range(WORKERS)]
        awaited = [r for r in req.tool_results_named("await_agents") if not r.is_error]
        if not awaited or any(a["status"] != "done" for a in awaited[-1].json["agents"]):
            return [tool_use("await_agents")]
        return [tool_use("finish", summary="all appended", outcome="success")]

    def worker(req: SimRequest) -> list[dict[str, Any]]:
        name = req.first_user_text.split("W-", 1)[1].split()[0]
        results = req.tool_results_named("run_command")
        done = sum(1 for r in results if not r.is_error and "step-done" in (r.json or {}).get("output", ""))
        if done >= STEPS:
            return [tool_use("complete", summary="appended")]
        line = f"W-{name}-{done}"
        if results and results[-1].is_error:  # interrupted: check before repeating, as a careful model would
            command = f"grep -qx {line} log.txt || echo {line} >> log.txt; echo step-done"
        else:
            command = f"echo {line} >> log.txt; echo step-done"
        return [tool_use("run_command", command=command)]

    return Script({"You are the orchestrator": orchestrator, "W-": worker})


def _journal_run_id(env: dict[str, str]) -> str | None:
    path = Path(env["AGENTRAY_JOURNAL"])
    if not path.exists():
        return None
    db = sqlite3.connect(path)
    try:
        row = db.execute("select run_id from runs").fetchone()
    except sqlite3.OperationalError:
        return None
    finally:
        db.close()
    return str(row[0]) if row else None


def test_random_kills_never_lose_or_repeat_work(tmp_path: Path, env: dict[str, str]) -> None:
    """Several seeds; each kills the CLI at random moments (up to 4 times), resumes, and checks that
    the run finishes with every step done exactly once and no agent spawned twice."""
    import random

    figures = {"kills": 0, "runs": 0, "duplicates": 0}
    for seed in range(6):
        rng = random.Random(seed)
        ws = tmp_path / f"ws{seed}"
        ws.mkdir()
        run_env = {**env, "AGENTRAY_JOURNAL": str(tmp_path / f"journal{seed}.sqlite3")}
        script = _random_crash_script()
        with Simulator(script.policy, api_keys={KEY}, latency_s=0.02) as sim:
            cli = _start(sim, ws, run_env, goal="GOAL: random crashes")
            for _ in range(4):
                try:
                    cli.wait(timeout=rng.uniform(0.3, 1.5))
                    break  # it finished before this kill
                except subprocess.TimeoutExpired:
                    pass
                cli.send_signal(signal.SIGKILL)
                cli.communicate(timeout=10)
                figures["kills"] += 1
                run_id = _journal_run_id(run_env)
                cli = _resume(run_id, sim, run_env) if run_id else _start(sim, ws, run_env, goal="GOAL: random crashes")
            code, _out, err = _finish(cli, timeout=90)
            if code == 2 and "already succeeded" in err:
                code = 0  # the last kill landed after the run had finished
        assert code == 0, (seed, err)
        run_id = _journal_run_id(run_env)
        db = sqlite3.connect(run_env["AGENTRAY_JOURNAL"])
        assert db.execute("select status from runs").fetchall() == [("succeeded",)], seed
        workers = db.execute("select count(*) from agents where role = 'worker'").fetchone()[0]
        assert workers == WORKERS, (seed, workers)  # no spawn repeated
        lines = (ws / "log.txt").read_text().splitlines()
        figures["duplicates"] += len(lines) - len(set(lines))
        for i in range(WORKERS):
            assert [line for line in lines if line.startswith(f"W-{i}-")] == [f"W-{i}-{k}" for k in range(STEPS)], (seed, lines)
        figures["runs"] += 1
    assert figures["duplicates"] == 0 and figures["runs"] == 6
    assert figures["kills"] >= 6  # the kills did land
    print(f"\nrandom crashes: {figures}")


# ------------------------------------------------------------------------------- staged points


def test_a_crash_with_an_escalation_pending_does_not_ask_twice(
    tmp_path: Path, ws: Path, env: dict[str, str]
) -> None:
    import pexpect  # a test dependency (pyproject's test extra): missing it is a failure, not a skip

    def orchestrator(req: SimRequest) -> list[dict[str, Any]]:
        answers = req.tool_results_named("escalate")
        if not answers:
            return [tool_use("escalate", question="Ship it?", context="the crash test", options=["Yes", "No"])]
        return [tool_use("finish", summary=f"answer: {answers[-1].json['choice']}", outcome="success")]

    script = Script({"You are the orchestrator": orchestrator})
    with Simulator(script.policy, api_keys={KEY}) as sim:
        child = pexpect.spawn(
            PY, ["-m", "agentray.cli", "run", "GOAL: ask", "--dir", str(ws), "--base-url", sim.base_url,
                 "--model", "sim-model", "--on-escalation", "ask"],
            env=env, encoding="utf-8", timeout=60,
        )
        child.expect("Your answer")
        os.kill(child.pid, signal.SIGKILL)  # the question is on screen, unanswered
        child.expect(pexpect.EOF)
        run_id = _journal_run_id(env)
        assert run_id is not None
        resumed = subprocess.run(
            [PY, "-m", "agentray.cli", "resume", run_id, "--base-url", sim.base_url, "--on-escalation", "deny"],
            env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
        )
    assert resumed.returncode == 0, resumed.stderr
    db = sqlite3.connect(env["AGENTRAY_JOURNAL"])
    rows = db.execute("select question, answered_by from escalations where run_id = ?", (run_id,)).fetchall()
    assert rows == [("Ship it?", "policy:deny")]  # the same escalation, answered once
    asked = [r for r in script.requests("You are the orchestrator") if not r.tool_results_named("escalate")]
    assert len(asked) == 1  # the model asked once; after the crash it got the answer, not a new turn


def test_a_crash_during_the_build_reports_it_interrupted(tmp_path: Path, ws: Path, env: dict[str, str]) -> None:
    token = f"{os.getpid() % 1000}.{time.monotonic_ns() % 10_000 + 3}"
    build = f"test -e .second && exit 0; touch .second; sleep {token}"

    def orchestrator(req: SimRequest) -> list[dict[str, Any]]:
        builds = req.tool_results_named("run_build")
        if not builds or builds[-1].is_error or not builds[-1].json["passed"]:
            return [tool_use("run_build")]
        return [tool_use("finish", summary="built", outcome="success")]

    script = Script({"You are the orchestrator": orchestrator})
    with Simulator(script.policy, api_keys={KEY}) as sim:
        cli = _cli(["run", "GOAL: build", "--dir", str(ws), "--base-url", sim.base_url, "--model", "sim-model",
                    "--on-escalation", "fail", "--json", "--build", build], env)
        _wait(lambda: _running(token), 30, "the build")
        run_id = _crash(cli)
        code, _out, err = _finish(_resume(run_id, sim, env))
    assert code == 0, err
    last = script.requests("You are the orchestrator")[-1]
    first, second = last.tool_results_named("run_build")
    assert first.is_error and "interrupted" in first.text
    assert not second.is_error and second.json["passed"] is True


def test_a_crash_mid_request_redoes_only_that_turn(tmp_path: Path, ws: Path, env: dict[str, str]) -> None:
    def orchestrator(req: SimRequest) -> list[dict[str, Any]]:
        if not req.tool_results_named("spawn_agent"):
            return [tool_use("spawn_agent", task="W-ONCE appends once")]
        if not [r for r in req.tool_results_named("await_agents") if not r.is_error]:
            return [tool_use("await_agents")]
        return [tool_use("finish", summary="done", outcome="success")]

    def worker(req: SimRequest) -> list[dict[str, Any]]:
        if not req.tool_results_named("run_command"):
            return [tool_use("run_command", command="echo once >> log.txt")]
        return [tool_use("complete", summary="appended")]

    script = Script({"You are the orchestrator": orchestrator, "W-ONCE": worker})
    with Simulator(script.policy, api_keys={KEY}, latency_s=1.0) as sim:
        cli = _start(sim, ws, env)
        # the worker's second request is in flight (1 s of latency): its command already ran
        _wait(lambda: len(script.requests("W-ONCE")) >= 2, 30, "the worker's second request")
        run_id = _crash(cli)
        sim.latency_s = 0.0
        code, _out, err = _finish(_resume(run_id, sim, env))
    assert code == 0, err
    assert (ws / "log.txt").read_text() == "once\n"
    db = sqlite3.connect(env["AGENTRAY_JOURNAL"])
    assert db.execute("select count(*) from agents where role = 'worker'").fetchone() == (1,)


def test_a_crash_between_a_call_and_its_snapshot_is_never_given_to_another_agent(
    tmp_path: Path, ws: Path, env: dict[str, str]
) -> None:
    from agentray.checkpoints import Checkpoints

    token = f"{os.getpid() % 1000}.{time.monotonic_ns() % 10_000 + 4}"

    def orchestrator(req: SimRequest) -> list[dict[str, Any]]:
        if not req.tool_results_named("spawn_agent"):
            return [tool_use("spawn_agent", task="W-MAKER makes a file, then waits"),
                    tool_use("spawn_agent", task="W-OTHER writes its own file")]
        if not [r for r in req.tool_results_named("await_agents") if not r.is_error]:
            return [tool_use("await_agents")]
        return [tool_use("finish", summary="done", outcome="success")]

    def maker(req: SimRequest) -> list[dict[str, Any]]:
        if not req.tool_results_named("run_command"):
            return [tool_use("run_command", command=f"echo made > made.txt; sleep {token}")]
        return [tool_use("complete", summary="made")]

    def other(req: SimRequest) -> list[dict[str, Any]]:
        if not req.tool_results_named("write_file"):
            return [tool_use("write_file", path="other.txt", content="mine\n")]
        return [tool_use("complete", summary="wrote")]

    script = Script({"You are the orchestrator": orchestrator, "W-MAKER": maker, "W-OTHER": other})
    with Simulator(script.policy, api_keys={KEY}) as sim:
        cli = _start(sim, ws, env)
        _wait(lambda: _running(token) and (ws / "made.txt").exists(), 30, "the maker's command")
        run_id = _crash(cli)  # made.txt exists; the call that made it never got its snapshot
        code, _out, err = _finish(_resume(run_id, sim, env))
    assert code == 0, err
    points = Checkpoints(Path(env["AGENTRAY_JOURNAL"]), run_id, ws)
    changes = {c.path: c.agents for c in points.changes()}
    assert changes["made.txt"] == ("-",)  # found by the resume's snapshot: nobody's, not W-OTHER's
    assert changes["other.txt"] == ("a003",)
    assert any(s.tool == "resume" for s in points.snapshots())
