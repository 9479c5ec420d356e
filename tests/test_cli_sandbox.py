"""The sandbox at the CLI: no sandbox means exit 2 and one line; --no-sandbox and --allow-network
are journaled, shown by `show`, and can be changed on `resume`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentray.simulator import Rule, ScriptedPolicy, SimRequest, Simulator, tool_use
from conftest import cli_env

KEY = "sk-ant-cli-sandbox-0123"


def _orchestrator(req: SimRequest) -> list[dict[str, Any]]:
    # the first life of a run fails; a resumed one succeeds
    finishes = req.tool_results_named("finish")
    commands = req.tool_results_named("run_command")
    if not commands:
        return [tool_use("run_command", command="echo sandbox=$AGENTRAY_SANDBOX")]
    if "FAIL-FIRST" in req.first_user_text and not finishes:
        return [tool_use("finish", summary="first try failed", outcome="failure")]
    return [tool_use("finish", summary="done", outcome="success")]


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    policy = ScriptedPolicy([Rule(match="You are the orchestrator", turns=[_orchestrator] * 20)])
    with Simulator(policy, api_keys={KEY}) as simulator:
        yield simulator


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path, KEY)


def agentray(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentray.cli", *args], env=env, capture_output=True, text=True,
        stdin=subprocess.DEVNULL, timeout=90,
    )


def _run(ws: Path, sim: Simulator, env: dict[str, str], *flags: str, goal: str = "GOAL") -> subprocess.CompletedProcess[str]:
    return agentray(
        ["run", goal, "--dir", str(ws), "--base-url", sim.base_url, "--model", "sim-model",
         "--on-escalation", "fail", "--json", *flags],
        env,
    )


def _run_id(result: subprocess.CompletedProcess[str]) -> str:
    first = json.loads(result.stdout.splitlines()[0])
    return str(first["run_id"])


def test_without_a_sandbox_run_exits_2_with_one_line_and_leaves_nothing(
    tmp_path: Path, env: dict[str, str], sim: Simulator
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    env["AGENTRAY_BWRAP"] = str(tmp_path / "no-bwrap-here")
    result = _run(ws, sim, env)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("agentray: ") and "bubblewrap" in lines[0] and "--no-sandbox" in lines[0]
    assert list(ws.iterdir()) == []
    runs = agentray(["runs", "--json"], env)
    assert json.loads(runs.stdout) == []


def test_no_sandbox_runs_unconfined_and_says_so(tmp_path: Path, env: dict[str, str], sim: Simulator) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    env["AGENTRAY_BWRAP"] = str(tmp_path / "no-bwrap-here")
    result = _run(ws, sim, env, "--no-sandbox")
    assert result.returncode == 0, result.stderr
    run_id = _run_id(result)
    events = [json.loads(line) for line in result.stdout.splitlines()]
    started = next(e for e in events if e["type"] == "run_started")
    assert started["sandbox"] == "none" and started["allow_network"] is True
    show = agentray(["show", run_id], env)
    assert "sandbox:   none: commands ran unconfined (--no-sandbox)" in show.stdout.splitlines()
    config = json.loads(agentray(["show", run_id, "--json"], env).stdout)["config"]
    assert config["sandbox"] is False


def test_allow_network_is_journaled_and_changed_on_resume(
    tmp_path: Path, env: dict[str, str], sim: Simulator
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    plain = _run(ws, sim, env, goal="GOAL plain")
    assert plain.returncode == 0, plain.stderr
    assert "sandbox:   on, no network" in agentray(["show", _run_id(plain)], env).stdout.splitlines()

    failed = _run(ws, sim, env, goal="GOAL FAIL-FIRST")
    assert failed.returncode == 1, failed.stderr
    run_id = _run_id(failed)
    started = json.loads(failed.stdout.splitlines()[0])
    assert started["sandbox"] == "bubblewrap" and started["allow_network"] is False
    resumed = agentray(
        ["resume", run_id, "--base-url", sim.base_url, "--on-escalation", "fail", "--json", "--allow-network"], env
    )
    assert resumed.returncode == 0, resumed.stderr
    started = json.loads(resumed.stdout.splitlines()[0])
    assert started["resumed"] is True and started["allow_network"] is True
    show = agentray(["show", run_id], env)
    assert "sandbox:   on, network allowed (--allow-network)" in show.stdout.splitlines()


def test_every_run_flag_set_has_the_sandbox_flags(env: dict[str, str]) -> None:
    for command in ("run", "demo", "resume"):
        help_text = agentray([command, "--help"], env).stdout
        assert "--allow-network" in help_text and "--no-sandbox" in help_text, command
