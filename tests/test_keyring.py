"""The real OS keyring: gnome-keyring's Secret Service on a private D-Bus session.

scripts/test.sh runs the suite inside `dbus-run-session` with an unlocked gnome-keyring and sets
AGENTRAY_REQUIRE_DESKTOP=1, so there these tests must run: a missing keyring fails them instead
of skipping.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentray import keys
from agentray.simulator import Simulator

pytestmark = pytest.mark.keyring

SECRET = "sk-ant-keyring-integration-0123456789abcdef"


def _require_secret_service() -> None:
    problem = keys.keyring_problem()
    if problem is None:
        import keyring

        if "SecretService" in type(keyring.get_keyring()).__module__ or sys.platform != "linux":
            return
        problem = f"the keyring backend is {type(keyring.get_keyring()).__module__}, not Secret Service"
    if os.environ.get("AGENTRAY_REQUIRE_DESKTOP") == "1":
        pytest.fail(f"scripts/test.sh should provide gnome-keyring: {problem}")
    pytest.skip(f"no Secret Service here ({problem}); scripts/test.sh provides one")


def _cli(args: list[str], env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentray", *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=90)


def test_key_set_status_use_delete_through_the_secret_service(tmp_path: Path) -> None:
    _require_secret_service()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    env["AGENTRAY_JOURNAL"] = str(tmp_path / "journal.sqlite3")

    stored = _cli(["key", "set"], env, stdin=SECRET + "\n")
    assert stored.returncode == 0, stored.stderr
    status = _cli(["key", "status"], env)
    assert "from the keyring" in status.stdout
    assert SECRET not in status.stdout + status.stderr
    assert keys.resolve_api_key() == (SECRET, "keyring")

    # a run authenticates with the keyring's key, which never reaches a file or the journal
    workspace = tmp_path / "ws"
    workspace.mkdir()
    with Simulator(None, api_keys={SECRET}) as sim:
        run = _cli(["run", "say hello", "--dir", str(workspace), "--base-url", sim.base_url,
                    "--model", "sim-model", "--on-escalation", "fail"], env)
        assert sim.requests, "the simulator saw no request"
        assert all(r.status != 401 for r in sim.requests)
    # the echo model never calls finish: the run ends failed after its nudges, but authenticated
    assert run.returncode == 1, run.stderr
    for path in [Path(env["AGENTRAY_JOURNAL"]), *workspace.rglob("*")]:
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path

    deleted = _cli(["key", "delete"], env)
    assert deleted.returncode == 0 and "removed" in deleted.stdout
    assert keys.resolve_api_key() == (None, None)
    again = _cli(["run", "x", "--dir", str(workspace)], env)
    assert again.returncode == 2 and "no API key" in again.stderr


def test_without_a_usable_keyring_the_key_is_refused_not_written(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    env["HOME"] = str(tmp_path)
    result = _cli(["key", "set"], env, stdin=SECRET + "\n")
    assert result.returncode == 2
    assert "ANTHROPIC_API_KEY" in result.stderr
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
