"""The command sandbox, attacked: each hostile command runs as an agent's ``run_command`` through the
real engine, the real SDK and the simulator, under the real ``bwrap``; the attack must fail and the
run must end normally. scripts/test.sh runs this file again as an ordinary (non-root) user.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from agent_scripts import Recorder, complete, orchestrator, policy, recording, result_of, worker
from agentray import events as ev
from agentray.journal import Journal
from agentray.sandbox import SandboxKind, detect_sandbox
from agentray.simulator import SimRequest, Simulator, tool_use
from conftest import API_KEY, SimEngine, SimEngineFactory, make_engine

PY = sys.executable

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="bubblewrap is Linux's sandbox (Seatbelt is tested as text)"
)


@pytest.fixture(autouse=True, scope="module")
def _bwrap_is_here() -> None:
    # Not a skip: the README's test command installs bubblewrap, so its absence is a failure.
    status = detect_sandbox()
    assert status.kind is SandboxKind.BUBBLEWRAP, status.problem


@pytest.fixture
def outside(tmp_path: Path) -> Iterator[Path]:
    """A folder outside /tmp (which the sandbox replaces), as a user's folders are."""
    base = Path("/var/tmp") / f"agentray-test-{os.getuid()}-{secrets.token_hex(4)}"
    base.mkdir(mode=0o700)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def _attack_policy(command: str, rec: Recorder, timeout_s: float | None = None) -> Any:
    call: dict[str, Any] = {"command": command}
    if timeout_s is not None:
        call["timeout_s"] = timeout_s
    return policy(
        orchestrator(
            [tool_use("spawn_agent", task="W-ATTACK runs one command")],
            [tool_use("await_agents")],
            [tool_use("finish", summary="done", outcome="success")],
        ),
        worker("W-ATTACK", [tool_use("run_command", **call)], recording(rec, "after", lambda req: complete())),
    )


async def _attack(se_factory: SimEngineFactory, command: str, **config: Any) -> tuple[dict[str, Any], SimEngine]:
    """Run ``command`` as a worker's run_command; returns its result and the engine (run succeeded)."""
    rec = Recorder()
    se = se_factory(_attack_policy(command, rec, config.pop("timeout_s", None)))
    run_id, outcome = await se.run(timeout=30, **config)
    assert outcome.status == "succeeded", outcome
    started = se.events.of(ev.RunStarted)[-1]
    assert started.sandbox == ("bubblewrap" if config.get("sandbox", True) else "none")
    result = result_of(rec["after"], "run_command")
    assert not result.is_error, result.text
    assert se.journal.get_run(run_id).status == "succeeded"
    return result.json, se


def _with_marker(token: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(token in part for part in proc.info.get("cmdline") or []):
            found.append(proc)
    return found


async def _until(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return bool(predicate())


def _no_sleepers(token: str) -> bool:
    alive = []
    for proc in _with_marker(token):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.NoSuchProcess:
            continue
    return not alive


# ------------------------------------------------------------------------------- secrets


async def test_the_key_and_the_engine_are_out_of_sight(
    sim_engine: SimEngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-api03-LEAKED-KEY")
    monkeypatch.setenv("INNOCENT_LOOKING", "sk-ant-api03-LEAKED-VALUE")
    engine_pid = os.getpid()
    command = (
        "tr '\\0' '\\n' < /proc/$PPID/environ; cat /proc/*/environ | tr '\\0' '\\n'; env; "
        f"test -e /proc/{engine_pid} && echo ENGINE-VISIBLE; "
        "echo PROCS=$(ls /proc | grep -c '^[0-9]')"
    )
    result, _ = await _attack(sim_engine, command)
    output = result["output"]
    assert "LEAKED" not in output and "sk-ant" not in output
    assert "ENGINE-VISIBLE" not in output
    # its own PID namespace: bwrap's init, the shell and its pipeline, nothing of the host
    procs = int(output.rsplit("PROCS=", 1)[1].split()[0])
    assert 1 <= procs <= 10, output
    assert "AGENTRAY_SANDBOX=bubblewrap" in output


async def test_the_session_bus_runtime_dir_and_abstract_sockets_are_unreachable(
    sim_engine: SimEngineFactory, monkeypatch: pytest.MonkeyPatch, outside: Path
) -> None:
    runtime = outside / "run"
    runtime.mkdir(mode=0o700)
    (runtime / "keyring-secret").write_text("hunter2")
    bus = socket.socket(socket.AF_UNIX)
    bus.bind(str(runtime / "bus"))
    bus.listen()
    abstract_name = f"agentray-test-{secrets.token_hex(4)}"
    abstract = socket.socket(socket.AF_UNIX)
    abstract.bind("\0" + abstract_name)
    abstract.listen()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    targets = [str(runtime / "bus"), "@" + abstract_name]
    address = os.environ.get("DBUS_SESSION_BUS_ADDRESS", "")
    for part in address.split(";"):  # the real session bus too, when the tests run on one
        for kind, prefix in (("path", ""), ("abstract", "@")):
            if part.startswith(f"unix:{kind}="):
                targets.append(prefix + part.split("=", 1)[1].split(",")[0])
    probe = (
        "import socket, sys\n"
        "for t in sys.argv[1:]:\n"
        "    s = socket.socket(socket.AF_UNIX)\n"
        "    try:\n"
        "        s.connect('\\0' + t[1:] if t.startswith('@') else t); print('REACHED', t)\n"
        "    except OSError as e:\n"
        "        print('blocked', t, e.errno)\n"
    )
    (outside / "probe.py").write_text(probe)
    try:
        command = f"ls -A {runtime}; cat {runtime}/keyring-secret; {PY} {outside}/probe.py " + " ".join(
            f"'{t}'" for t in targets
        )
        result, _ = await _attack(sim_engine, command)
    finally:
        bus.close()
        abstract.close()
    output = result["output"]
    assert "REACHED" not in output, output
    assert output.count("blocked") == len(targets)
    assert "hunter2" not in output
    assert f"{runtime}/keyring-secret: No such file" in output  # the runtime dir is empty inside


async def test_secret_stores_in_home_are_hidden_even_when_home_is_the_workspace(
    sim_engine: SimEngineFactory, monkeypatch: pytest.MonkeyPatch, outside: Path
) -> None:
    home = outside / "home"
    for name in (".ssh", ".aws", ".config/gh", ".local/share/keyrings"):
        (home / name).mkdir(parents=True)
        (home / name / "secret").write_text("PRIVATE-MATERIAL")
    (home / ".netrc").write_text("machine x login y password PRIVATE-MATERIAL")
    (home / "notes.txt").write_text("ordinary file")
    monkeypatch.setenv("HOME", str(home))
    command = "cat notes.txt; cat .ssh/secret .aws/secret .config/gh/secret .local/share/keyrings/secret .netrc; ls -A .ssh"
    result, _ = await _attack(sim_engine, command, workspace=str(home))
    assert "ordinary file" in result["output"]
    assert "PRIVATE-MATERIAL" not in result["output"]
    # the hidden folders are empty scratch inside the sandbox; the real ones are untouched
    assert (home / ".ssh" / "secret").read_text() == "PRIVATE-MATERIAL"


# ------------------------------------------------------------------------------- writes


async def test_writes_outside_the_workspace_fail_and_the_workspace_is_writable(
    sim_engine: SimEngineFactory, workspace: Path, tmp_path: Path, outside: Path
) -> None:
    token = secrets.token_hex(4)
    home = Path.home()
    command = (
        f"touch {home}/agentray-attack-{token}; echo x >> /etc/agentray-attack-{token}; "
        f"touch ../outside-{token}; touch {outside}/outside-{token}; touch /var/tmp/attack-{token}; "
        "cat /etc/shadow; mount -o remount,rw / 2>&1; "
        "echo made > inside.txt; mkdir -p sub && echo deep > sub/file.txt; echo WROTE"
    )
    result, _ = await _attack(sim_engine, command)
    assert "WROTE" in result["output"]
    assert (workspace / "inside.txt").read_text() == "made\n"
    assert (workspace / "sub" / "file.txt").read_text() == "deep\n"
    for path in (
        home / f"agentray-attack-{token}",
        Path(f"/etc/agentray-attack-{token}"),
        tmp_path / f"outside-{token}",
        outside / f"outside-{token}",
        Path(f"/var/tmp/attack-{token}"),
    ):
        assert not path.exists(), path
    assert "root:" not in result["output"]  # /etc/shadow is hidden even from root
    assert "Read-only file system" in result["output"]


@pytest.mark.parametrize("layout", ["sibling", "parent"])
async def test_the_journal_is_out_of_reach(
    tmp_path: Path, outside: Path, layout: str
) -> None:
    """The journal beside the workspace, or in the workspace's parent folder: hidden either way."""
    journal_dir = outside / "state" if layout == "sibling" else outside
    journal_dir.mkdir(exist_ok=True)
    journal_path = journal_dir / "journal.sqlite3"
    ws = outside / "ws"
    ws.mkdir()
    rec = Recorder()
    evil = (
        f"ls -A {journal_dir}; "
        f"{PY} -c \"import sqlite3; db = sqlite3.connect('{journal_path}'); "
        "db.execute(\\\"update runs set config = '{}'\\\"); db.commit(); print('REWROTE')\" 2>&1 | tail -1"
    )
    with Simulator(_attack_policy(evil, rec)) as sim:
        se = make_engine(sim, journal_path, ws)
        try:
            run_id, outcome = await se.run(timeout=30)
        finally:
            await se.engine.aclose()
    assert outcome.status == "succeeded"
    output = result_of(rec["after"], "run_command").json["output"]
    assert "REWROTE" not in output
    assert "journal.sqlite3" not in output
    db = sqlite3.connect(journal_path)
    (config,) = db.execute("select config from runs where run_id = ?", (run_id,)).fetchone()
    assert '"sandbox": true' in config


# ------------------------------------------------------------------------------- network


async def test_no_network_by_default_not_even_loopback_and_allowed_on_request(
    sim_engine: SimEngineFactory,
) -> None:
    def probe(port: int) -> str:
        return (
            f"{PY} -c \"import socket,sys; s=socket.socket(); s.settimeout(2); "
            "r=s.connect_ex(('127.0.0.1', int(sys.argv[1]))); "
            f"print('CONNECTED' if r == 0 else 'BLOCKED', r)\" {port}; grep -c : /proc/net/dev"
        )

    async def attempt(**config: Any) -> str:
        rec = Recorder()
        se = sim_engine(None)  # a fresh simulator: its port goes into the command
        se.sim.policy = _attack_policy(probe(se.sim.port), rec)
        run_id, outcome = await se.run(timeout=30, **config)
        assert outcome.status == "succeeded"
        started = se.events.of(ev.RunStarted)[-1]
        assert started.allow_network is config.get("allow_network", False)
        assert se.journal.get_run(run_id).config["allow_network"] is config.get("allow_network", False)
        return str(result_of(rec["after"], "run_command").json["output"])

    blocked = await attempt()
    assert "BLOCKED" in blocked and "CONNECTED" not in blocked
    assert blocked.strip().splitlines()[-1] == "1"  # /proc/net/dev lists one interface: lo
    allowed = await attempt(allow_network=True)
    assert "CONNECTED" in allowed


# ------------------------------------------------------------------------------- processes


async def test_killing_its_parent_or_everything_cannot_touch_the_engine(
    sim_engine: SimEngineFactory,
) -> None:
    command = f"kill -9 {os.getpid()} 2>&1; kill -9 $PPID; kill -9 -1; echo survived"
    result, se = await _attack(sim_engine, command)
    # the engine's pid does not exist in the sandbox; $PPID is the sandbox's own init, which
    # ignores signals from inside; -1 reaches only the sandbox's processes
    assert "No such process" in result["output"]
    assert psutil.Process(os.getpid()).is_running()
    assert se.journal.get_run(se.events.of(ev.RunStarted)[-1].run_id).status == "succeeded"


async def test_daemons_die_with_the_command(sim_engine: SimEngineFactory) -> None:
    token = f"{secrets.randbelow(9000) + 1000}"
    command = (
        f"setsid sh -c 'sleep {token}.1 & sleep {token}.2' & "
        f"(sleep {token}.3 &); nohup sleep {token}.4 >/dev/null 2>&1 & "
        f"sh -c 'trap \"\" TERM HUP; exec sleep {token}.5' & echo started"
    )
    result, _ = await _attack(sim_engine, command)
    assert result["exit_code"] == 0 and "started" in result["output"]
    assert await _until(lambda: _no_sleepers(token), 2.0), [p.cmdline() for p in _with_marker(token)]


async def test_a_timeout_ends_every_process_inside(sim_engine: SimEngineFactory) -> None:
    token = f"{secrets.randbelow(9000) + 1000}"
    command = f"setsid sh -c 'trap \"\" TERM; sleep {token}.1' & trap '' TERM; sleep {token}.2"
    result, _ = await _attack(sim_engine, command, timeout_s=1)
    assert result["timed_out"] is True
    assert await _until(lambda: _no_sleepers(token), 2.0)


async def test_stop_all_ends_sandboxed_daemons_that_ignore_sigterm(
    sim_engine: SimEngineFactory, workspace: Path
) -> None:
    token = f"{secrets.randbelow(9000) + 1000}"
    command = (
        f"setsid sh -c 'trap \"\" TERM; sleep {token}.1' & (trap '' TERM; sleep {token}.2 &); "
        f"trap '' TERM; sleep {token}.3"
    )
    se = sim_engine(_attack_policy(command, Recorder()))
    run_id = await se.start()
    assert await _until(lambda: len(_with_marker(token)) >= 3, 10.0)
    stopped_at = time.monotonic()
    assert se.engine.stop_all() == [run_id]
    assert (await se.wait(run_id)).status == "cancelled"
    assert await _until(lambda: _no_sleepers(token), 2.0)
    assert time.monotonic() - stopped_at < 3.0


@pytest.mark.parametrize("moment", ["while bwrap sets up", "while the command runs"])
def test_killing_the_engine_ends_every_sandboxed_process(tmp_path: Path, workspace: Path, moment: str) -> None:
    """kill -9 of the agentray process ends the whole sandbox, even in bwrap's first milliseconds
    (before --die-with-parent is armed: the lifeline pipe covers that)."""
    token = f"{secrets.randbelow(9000) + 1000}"
    command = f"setsid sh -c 'trap \"\" TERM; sleep {token}.1' & trap '' TERM; sleep {token}.2"
    with Simulator(_attack_policy(command, Recorder()), api_keys={API_KEY}) as sim:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
        env.update(ANTHROPIC_API_KEY=API_KEY, AGENTRAY_JOURNAL=str(tmp_path / "journal.sqlite3"))
        cli = subprocess.Popen(
            [PY, "-m", "agentray.cli", "run", "GOAL: attack", "--dir", str(workspace),
             "--base-url", sim.base_url, "--model", "sim-model", "--on-escalation", "fail"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        )
        try:
            ready = (lambda: _with_marker(token)) if moment.startswith("while bwrap") else (
                lambda: [p for p in _with_marker(token) if p.cmdline()[:1] == ["sleep"]][1:]
            )
            deadline = time.monotonic() + 20
            while not ready():
                assert cli.poll() is None and time.monotonic() < deadline, "the command never started"
                time.sleep(0.005)
            # the key is gone from the engine's own environment once read
            environ = Path(f"/proc/{cli.pid}/environ").read_bytes()
            assert API_KEY.encode() not in environ
            cli.send_signal(signal.SIGKILL)
            cli.wait(5)
            deadline = time.monotonic() + 2
            while not _no_sleepers(token) and time.monotonic() < deadline:
                time.sleep(0.02)
            assert _no_sleepers(token), [p.cmdline() for p in _with_marker(token)]
        finally:
            if cli.poll() is None:
                cli.kill()


# ------------------------------------------------------------------------------- engine writes


async def test_progress_writes_never_follow_a_symlink_and_fail_the_agent_until_repaired(
    sim_engine: SimEngineFactory, workspace: Path, outside: Path
) -> None:
    target = outside / "elsewhere"
    target.mkdir()

    def orchestrator_turn(req: SimRequest) -> list[dict[str, Any]]:
        if not req.tool_results_named("spawn_agent"):
            return [tool_use("spawn_agent", task="W-SWAP swaps the progress folder")]
        awaited = [r for r in req.tool_results_named("await_agents") if not r.is_error]
        if not awaited or awaited[-1].json["agents"][0]["status"] != "done":
            return [tool_use("await_agents")]
        return [tool_use("finish", summary="done", outcome="success")]

    def worker_turn(req: SimRequest) -> list[dict[str, Any]]:
        if not req.tool_results_named("run_command"):
            return [tool_use("run_command", command=f"mv agent-responses moved && ln -s {target} agent-responses")]
        if not req.tool_results_named("report_progress"):
            return [tool_use("report_progress", note="written through the link?")]
        return complete("repaired")

    script = policy(orchestrator(*[orchestrator_turn] * 10), worker("W-SWAP", *[worker_turn] * 10))
    se = sim_engine(script)
    run_id, outcome = await se.run(timeout=30)
    assert list(target.iterdir()) == []  # nothing written through the link
    assert outcome.status == "failed" and "progress file" in outcome.summary
    rows = {a.agent_id: a for a in se.journal.list_agents(run_id)}
    assert rows["a002"].status == "failed"
    assert rows["a002"].blocker is not None
    assert "cannot write its progress file agent-responses/a002.md" in rows["a002"].blocker
    assert "not a plain folder" in rows["a002"].blocker
    assert (workspace / "agent-responses").is_symlink()  # the agent's own change, left for review

    # the person repairs the folder; resume retries the agent that failed only because of it
    (workspace / "agent-responses").unlink()
    (workspace / "moved").rename(workspace / "agent-responses")
    await se.engine.resume_run(run_id)
    outcome = await se.wait(run_id, timeout=30)
    assert outcome.status == "succeeded", outcome
    assert "Status: done" in (workspace / "agent-responses" / "a002.md").read_text()
    assert list(target.iterdir()) == []


async def test_unsandboxed_runs_say_so_and_still_scrub_the_environment(
    sim_engine: SimEngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-api03-LEAKED-KEY")
    result, se = await _attack(sim_engine, "env; echo $AGENTRAY_SANDBOX", sandbox=False)
    assert "LEAKED" not in result["output"]
    assert result["output"].strip().endswith("none")
    assert se.events.of(ev.RunStarted)[-1].allow_network is True  # unconfined: it has the network


def test_journal_records_the_choice(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    journal.create_run("r1", goal="g", workspace=str(tmp_path), config={"sandbox": False}, pid=1)
    assert journal.get_run("r1").config["sandbox"] is False
    journal.close()
