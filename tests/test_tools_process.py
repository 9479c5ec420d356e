"""run_command and ProcessRegistry with real subprocesses."""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import psutil
import pytest

from agentray.errors import ToolError
from agentray.sandbox import Sandbox, detect_sandbox
from agentray.tools import CommandResult, ProcessRegistry, run_command

PY = shlex.quote(sys.executable)


def _dead(pid: int) -> bool:
    """Gone, or a zombie nobody reaped yet (killed either way)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _all_dead(pids: list[int], within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if all(_dead(p) for p in pids):
            return True
        time.sleep(0.02)
    return all(_dead(p) for p in pids)


async def _pids_from_file(path: Path, count: int, within: float = 10.0) -> list[int]:
    """Wait until a command wrote ``count`` pids (one per line) to ``path``."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if path.exists():
            lines = path.read_text().split()
            if len(lines) >= count:
                return [int(x) for x in lines[:count]]
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} never got {count} pids")


# A tree: the shell, two background sleeps, pids written to a file so the test can check them.
def _tree_command(pidfile: Path) -> str:
    f = shlex.quote(str(pidfile))
    return f"sh -c 'sleep 100 & echo $! >> {f}; sleep 100 & echo $! >> {f}; wait'"


@pytest.fixture
def registry() -> ProcessRegistry:
    return ProcessRegistry()


async def test_exit_code_and_combined_output(tmp_path: Path, registry: ProcessRegistry) -> None:
    result = await run_command(
        "echo out; echo err >&2; pwd; exit 3", cwd=tmp_path, registry=registry, owner="a"
    )
    assert isinstance(result, CommandResult)
    assert result.exit_code == 3
    assert result.timed_out is False and result.killed is False
    assert result.output == f"out\nerr\n{tmp_path}\n"
    assert result.to_dict() == {
        "exit_code": 3,
        "timed_out": False,
        "duration_s": round(result.duration_s, 3),
        "output": result.output,
    }
    assert registry.pids() == []


async def test_stdin_is_closed(tmp_path: Path, registry: ProcessRegistry) -> None:
    """The command reads EOF at once. Our own stdin is made an open pipe nobody writes to (as a
    terminal or CI's runner may leave it): a command that inherited it would block in ``read``
    until its timeout."""
    read_end, write_end = os.pipe()
    saved = os.dup(0)
    os.dup2(read_end, 0)
    try:
        result = await run_command(
            "read line; echo rc=$?", cwd=tmp_path, registry=registry, owner="a", timeout_s=5
        )
    finally:
        os.dup2(saved, 0)
        for fd in (saved, read_end, write_end):
            os.close(fd)
    assert result.timed_out is False
    assert result.output == "rc=1\n"  # read saw end of file
    assert result.duration_s < 4


async def test_large_output_is_capped_with_bounded_memory(
    tmp_path: Path, registry: ProcessRegistry
) -> None:
    cmd = f"{PY} -c \"import sys; sys.stdout.write('START' + 'x' * 5_000_000 + 'END')\""
    tracemalloc.start()
    try:
        result = await run_command(
            cmd, cwd=tmp_path, registry=registry, owner="a", max_output=10_000
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.exit_code == 0
    assert result.output.startswith("START") and result.output.endswith("END")
    assert "[truncated 4990008 characters of 5000008; showing head and tail]" in result.output
    assert len(result.output) <= 10_000 + 100
    assert peak < 2_000_000  # 5 MB of output never sits in memory at once


async def test_timeout_kills_the_whole_tree(tmp_path: Path, registry: ProcessRegistry) -> None:
    pidfile = tmp_path / "pids"
    started = time.monotonic()
    result = await run_command(
        _tree_command(pidfile), cwd=tmp_path, registry=registry, owner="a", timeout_s=0.5
    )
    assert time.monotonic() - started < 10
    assert result.timed_out is True and result.exit_code is None and result.killed is True
    assert result.to_dict()["killed"] is True
    pids = [int(x) for x in pidfile.read_text().split()]
    assert len(pids) == 2
    assert _all_dead(pids)
    assert registry.pids() == []


async def test_cancellation_kills_the_tree_and_reraises(
    tmp_path: Path, registry: ProcessRegistry
) -> None:
    pidfile = tmp_path / "pids"
    task = asyncio.create_task(
        run_command(_tree_command(pidfile), cwd=tmp_path, registry=registry, owner="a")
    )
    pids = await _pids_from_file(pidfile, 2)
    assert not any(_dead(p) for p in pids)
    assert len(registry.pids("a")) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _all_dead(pids)
    assert registry.pids() == []


async def test_kill_owner_kills_only_that_owner(tmp_path: Path, registry: ProcessRegistry) -> None:
    file_a, file_b = tmp_path / "a", tmp_path / "b"
    task_a = asyncio.create_task(
        run_command(_tree_command(file_a), cwd=tmp_path, registry=registry, owner="A")
    )
    task_b = asyncio.create_task(
        run_command(_tree_command(file_b), cwd=tmp_path, registry=registry, owner="B")
    )
    pids_a = await _pids_from_file(file_a, 2)
    pids_b = await _pids_from_file(file_b, 2)
    assert len(registry.pids()) == 2

    killed = await registry.kill_owner("A", grace_s=2.0)
    assert killed >= 3  # the two shells and the sleeps (dash may exec the inner sh)
    result_a = await asyncio.wait_for(task_a, 10)
    assert result_a.killed is True and result_a.timed_out is False
    assert result_a.exit_code is not None and result_a.exit_code != 0
    assert _all_dead(pids_a)
    assert not any(_dead(p) for p in pids_b)
    assert not task_b.done()
    assert await registry.kill_owner("A") == 0  # nothing left: safe to repeat

    assert await registry.kill_all(grace_s=2.0) >= 3
    result_b = await asyncio.wait_for(task_b, 10)
    assert result_b.killed is True
    assert _all_dead(pids_b)
    assert registry.pids() == []
    assert await registry.kill_all() == 0


async def test_kill_escapes_sigterm_with_sigkill(tmp_path: Path, registry: ProcessRegistry) -> None:
    pidfile = tmp_path / "pids"
    f = shlex.quote(str(pidfile))
    cmd = f"sh -c 'trap \"\" TERM; echo $$ >> {f}; while :; do sleep 0.05; done'"
    task = asyncio.create_task(run_command(cmd, cwd=tmp_path, registry=registry, owner="x"))
    [stubborn] = await _pids_from_file(pidfile, 1)
    assert await registry.kill_owner("x", grace_s=0.3) >= 1
    result = await asyncio.wait_for(task, 10)
    assert result.killed is True
    assert _all_dead([stubborn])


async def test_background_leftovers_are_stopped(tmp_path: Path, registry: ProcessRegistry) -> None:
    pidfile = tmp_path / "pids"
    f = shlex.quote(str(pidfile))
    started = time.monotonic()
    result = await run_command(
        f"sleep 100 & echo $! > {f}; echo started", cwd=tmp_path, registry=registry, owner="a"
    )
    assert time.monotonic() - started < 10  # does not wait for the background sleep
    assert result.exit_code == 0
    assert result.output.startswith("started\n")
    assert "stopped 1 background process" in result.output
    assert _all_dead([int(pidfile.read_text())])


async def test_env_is_scrubbed(
    tmp_path: Path, registry: ProcessRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-parent")
    monkeypatch.setenv("OPENAI_API_KEY", "openai-parent")
    monkeypatch.setenv("MY_TOKEN", "token-parent")
    monkeypatch.setenv("SOMEVAR", "sk-ant-xxx")
    monkeypatch.setenv("LC_TIME", "C")
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    # not secret by name or value, but not on the allow-list: addresses of agents, buses, displays
    monkeypatch.setenv("UNKNOWN_VAR", "visible")
    monkeypatch.setenv("SSH_AGENT_PID", "1")
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/0")
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/run/user/0/bus")
    result = await run_command("env", cwd=tmp_path, registry=registry, owner="a")
    names = {line.split("=", 1)[0] for line in result.output.splitlines() if "=" in line}
    for hidden in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "MY_TOKEN", "SOMEVAR", "UNKNOWN_VAR",
                   "SSH_AGENT_PID", "DISPLAY", "XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS"):
        assert hidden not in names
    assert "parent" not in result.output and "sk-ant" not in result.output
    # allowed; the proxy because an unconfined command has the network
    assert {"PATH", "LANG", "LC_TIME", "HTTPS_PROXY", "PYTHONUNBUFFERED", "GIT_TERMINAL_PROMPT"} <= names
    assert "AGENTRAY_SANDBOX=none" in result.output.splitlines()
    assert "GIT_TERMINAL_PROMPT=0" in result.output.splitlines()


async def test_explicit_env_is_used_as_given(tmp_path: Path, registry: ProcessRegistry) -> None:
    env = {"PATH": os.environ["PATH"], "ONLY": "this"}
    result = await run_command("env", cwd=tmp_path, registry=registry, owner="a", env=env)
    assert "ONLY=this" in result.output.splitlines()
    assert "HOME=" not in result.output


async def test_runs_in_its_own_session(tmp_path: Path, registry: ProcessRegistry) -> None:
    cmd = f"{PY} -c 'import os; print(os.getpgrp(), os.getsid(0))'"
    result = await run_command(cmd, cwd=tmp_path, registry=registry, owner="a")
    pgid, sid = (int(x) for x in result.output.split())
    assert pgid != os.getpgrp()
    assert sid != os.getsid(0)


async def test_argument_validation(tmp_path: Path, registry: ProcessRegistry) -> None:
    untyped: Any = run_command  # the model can send anything; bypass the static types on purpose

    async def run(command: object = "true", **kw: Any) -> CommandResult:
        cwd = kw.pop("cwd", tmp_path)
        result: CommandResult = await untyped(command, cwd=cwd, registry=registry, owner="a", **kw)
        return result

    cases: list[tuple[dict[str, Any], str]] = [
        ({"timeout_s": 0}, "greater than 0"),
        ({"timeout_s": -1.5}, "greater than 0"),
        ({"timeout_s": "10"}, "number of seconds"),
        ({"timeout_s": True}, "number of seconds"),
        ({"timeout_s": float("nan")}, "greater than 0"),
        ({"max_output": 0}, "positive integer"),
        ({"cwd": tmp_path / "missing"}, "cannot start the command"),
    ]
    for bad, message in cases:
        with pytest.raises(ToolError, match=message):
            await run(**bad)
    with pytest.raises(ToolError, match="command must be a string"):
        await run(["ls"])
    with pytest.raises(ToolError, match="must not be empty"):
        await run("  ")
    # Huge timeouts are clamped, not refused.
    assert (await run("true", timeout_s=1e9)).exit_code == 0
    # the smallest output cap is one character
    tiny = await run("echo hello", max_output=1)
    assert tiny.exit_code == 0 and "[truncated 5 characters of 6;" in tiny.output
    assert registry.pids() == []


async def test_cancelled_while_the_command_is_starting_leaves_no_process(tmp_path: Path) -> None:
    """A stop that lands during the spawn itself: the child already exists but is not tracked yet."""
    marker = "41.7"
    for delay in (0.0, 0.0005, 0.001, 0.002, 0.004, 0.008):
        registry = ProcessRegistry()
        task = asyncio.ensure_future(
            run_command(f"sh -c 'sleep {marker} & sleep {marker}; wait'", cwd=tmp_path, registry=registry, owner="x")
        )
        await asyncio.sleep(delay)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    def sleepers() -> list[psutil.Process]:
        return [
            p for p in psutil.process_iter(["cmdline"])
            if (p.info["cmdline"] or [])[:2] == ["sleep", marker] and not _dead(p.pid)
        ]

    deadline = time.monotonic() + 5  # the shielded cleanups finish in the background
    while sleepers() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert sleepers() == []


async def test_a_kill_batch_that_is_cancelled_releases_its_callers(
    tmp_path: Path, registry: ProcessRegistry
) -> None:
    """The task serving a batch of kills is cancelled mid-grace (the loop shutting down): every
    caller waiting on the batch is cancelled too, none waits forever."""
    from agentray.tools import _process

    pidfile, termed = tmp_path / "pids", tmp_path / "termed"
    f, t = shlex.quote(str(pidfile)), shlex.quote(str(termed))
    # the command's own shell traps SIGTERM (so the kill waits out its grace)
    cmd = f'trap "echo > {t}" TERM; echo $$ >> {f}; while :; do sleep 0.05; done'
    command = asyncio.create_task(run_command(cmd, cwd=tmp_path, registry=registry, owner="x"))
    [stubborn] = await _pids_from_file(pidfile, 1)
    killer = asyncio.create_task(registry.kill_owner("x", grace_s=60.0))
    deadline = time.monotonic() + 10
    while not termed.exists():  # SIGTERM landed: the batch waits out its grace period
        assert time.monotonic() < deadline, "the SIGTERM never reached the command"
        await asyncio.sleep(0.01)
    serving = [t for t in _process._background if "_serve" in t.get_coro().__qualname__]
    assert len(serving) == 1, serving
    serving[0].cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(killer, 5)
    assert await registry.kill_owner("x", grace_s=0.2) >= 1  # a new batch: SIGKILL after 0.2 s
    assert (await asyncio.wait_for(command, 10)).killed is True
    assert _all_dead([stubborn])


@pytest.mark.parametrize("confined", [False, True], ids=["unconfined", "bubblewrap"])
async def test_a_command_that_leaves_nothing_behind_shows_only_its_output(
    tmp_path: Path, registry: ProcessRegistry, confined: bool
) -> None:
    """No background process was stopped, so nothing is added to the output (in bubblewrap too,
    where the sandbox's end takes any leftovers with it)."""
    sandbox = Sandbox.unconfined()
    if confined:
        status = detect_sandbox()
        assert status.available, status.problem  # the suite runs where bubblewrap works
        sandbox = Sandbox.for_workspace(status, tmp_path)
        assert sandbox.own_pid_namespace
    result = await run_command(
        "echo plain", cwd=tmp_path, registry=registry, owner="a", sandbox=sandbox
    )
    assert (result.exit_code, result.output, result.killed) == (0, "plain\n", False)


async def test_a_kill_that_fails_raises_in_every_caller_at_once(
    registry: ProcessRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading the process table fails: every caller of that batch gets the error, none waits."""
    from agentray.tools import _process

    async def unreadable(roots: Any, grace_s: float) -> dict[int, int]:
        raise RuntimeError("the process table could not be read")

    monkeypatch.setattr(_process, "_kill_trees", unreadable)
    sleeper = await asyncio.create_subprocess_exec("sleep", "30", start_new_session=True)
    try:
        registry.track(sleeper.pid, "x")
        callers = [registry.kill_owner("x"), registry.kill_all(), registry.kill_tree(sleeper.pid)]
        results = await asyncio.wait_for(asyncio.gather(*callers, return_exceptions=True), 5)
        assert [str(r) for r in results] == ["the process table could not be read"] * 3
    finally:
        sleeper.kill()
        await sleeper.wait()


async def test_killing_a_tree_that_already_ended_counts_nothing(registry: ProcessRegistry) -> None:
    """A tracked command that exited (and was reaped) before the kill: 0 signalled, not -1, and
    the live tree killed beside it still counts."""
    gone = await asyncio.create_subprocess_exec("true")
    await gone.wait()
    registry.track(gone.pid, "x")
    assert await registry.kill_owner("x", grace_s=0.2) == 0
    alive = await asyncio.create_subprocess_exec("sleep", "30")
    try:
        registry.track(alive.pid, "y")
        registry.track(gone.pid, "y")
        assert await registry.kill_owner("y", grace_s=0.2) == 1
        assert await asyncio.wait_for(alive.wait(), 5) != 0
    finally:
        if alive.returncode is None:
            alive.kill()
            await alive.wait()
