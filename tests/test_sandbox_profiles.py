"""The sandbox's parts as text and data: the bwrap command line, the Seatbelt profile (macOS, which
cannot run here), the command environment, the journal's hiding and the detection of bwrap."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from agentray.sandbox import (
    NO_SANDBOX_HINT,
    Sandbox,
    SandboxKind,
    SandboxPolicy,
    SandboxStatus,
    bwrap_argv,
    default_hidden_paths,
    detect_sandbox,
    journal_paths,
    seatbelt_argv,
    seatbelt_profile,
)
from agentray.tools import command_env


def _policy(tmp_path: Path, **kw: object) -> SandboxPolicy:
    ws = tmp_path / "ws"
    ws.mkdir(exist_ok=True)
    return SandboxPolicy(workspace=ws, **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- bubblewrap


def test_bwrap_argv_namespaces_and_mount_order(tmp_path: Path) -> None:
    ws = Path("/var/tmp") / f"agentray-argv-{os.getpid()}"
    (ws / ".ssh").mkdir(parents=True, exist_ok=True)
    hidden_out = Path("/etc/ssh")
    try:
        policy = SandboxPolicy(workspace=ws, hidden=(hidden_out, ws / ".ssh", ws))
        argv = bwrap_argv("/usr/bin/bwrap", policy, "make test")
    finally:
        (ws / ".ssh").rmdir()
        ws.rmdir()
    assert argv[0] == "/usr/bin/bwrap"
    for flag in ("--unshare-all", "--die-with-parent", "--new-session"):
        assert flag in argv
    assert "--share-net" not in argv
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    assert argv[-4:] == ["--", "/bin/sh", "-c", "make test"]
    joined = " ".join(argv)
    root_ro = joined.index("--ro-bind / /")
    tmp = joined.index("--tmpfs /tmp")
    hide_out = joined.index(f"--tmpfs {hidden_out}")
    bind_ws = joined.index(f"--bind {ws} {ws}")
    hide_in = joined.index(f"--tmpfs {ws / '.ssh'}")
    # later mounts cover earlier ones: read-only root, private /tmp, hidden, workspace, hidden inside it
    assert root_ro < tmp < hide_out < bind_ws < hide_in
    assert f"--tmpfs {ws} " not in joined + " "  # the workspace itself is never hidden
    assert argv[argv.index("--chdir") + 1] == str(ws)


def test_bwrap_argv_network_and_tmp_rules(tmp_path: Path) -> None:
    under_tmp = tmp_path / "venv"
    under_tmp.mkdir()
    policy = _policy(
        tmp_path,
        allow_network=True,
        hidden=(tmp_path / "journal-dir",),  # under /tmp: the private /tmp hides it already
        visible_under_tmp=(under_tmp, Path("/usr")),
    )
    (tmp_path / "journal-dir").mkdir()
    argv = bwrap_argv("bwrap", policy, "true")
    joined = " ".join(argv)
    assert "--share-net" in argv
    assert f"--ro-bind {under_tmp} {under_tmp}" in joined  # an interpreter under /tmp stays visible
    assert "--ro-bind /usr /usr" not in joined  # only what the private /tmp would hide
    assert str(tmp_path / "journal-dir") not in joined


def test_a_file_is_hidden_behind_dev_null(tmp_path: Path) -> None:
    secret = Path("/var/tmp") / f"agentray-netrc-{os.getpid()}"
    secret.write_text("machine x password y")
    try:
        argv = bwrap_argv("bwrap", _policy(tmp_path, hidden=(secret,)), "true")
    finally:
        secret.unlink()
    assert f"--ro-bind /dev/null {secret}" in " ".join(argv)


def test_default_hidden_paths_resolve_symlinks_and_skip_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    real_ssh = tmp_path / "vault" / "ssh"
    real_ssh.mkdir(parents=True)
    home.mkdir()
    (home / ".ssh").symlink_to(real_ssh)
    (home / ".aws").mkdir()
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    (tmp_path / "data" / "agentray").mkdir(parents=True)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    (tmp_path / "run").mkdir()
    hidden = default_hidden_paths(home)
    assert real_ssh in hidden and home / ".ssh" not in hidden
    assert home / ".aws" in hidden
    assert home / ".gnupg" not in hidden  # missing: nothing to hide, nothing to mount over
    assert tmp_path / "data" / "agentray" in hidden
    assert tmp_path / "run" in hidden


@pytest.mark.parametrize(
    ("where", "expect_folder"),
    [("state/agentray", True), ("ws/.agentray", False)],
)
def test_journal_paths_hide_its_folder_unless_that_is_too_broad(
    tmp_path: Path, where: str, expect_folder: bool
) -> None:
    ws = tmp_path / "ws"
    journal = tmp_path / where / "journal.sqlite3"
    paths = journal_paths(journal, ws)
    if expect_folder:
        assert paths == [journal.parent]
    else:  # inside the workspace: only its files, the workspace stays whole
        assert journal in paths and journal.with_name("journal.sqlite3-wal") in paths
        assert journal.parent not in paths


def test_a_journal_in_home_hides_only_its_files() -> None:
    journal = Path.home() / "journal.sqlite3"
    assert journal_paths(journal, Path("/srv/project")) == [
        journal.with_name(journal.name + s) for s in ("", "-wal", "-shm", "-journal", ".locks")
    ] + [journal.with_name("checkpoints")]


# ------------------------------------------------------------------------------- seatbelt


def test_seatbelt_profile_confines_writes_hides_secrets_and_network(tmp_path: Path) -> None:
    hidden = Path("/Users/me/.ssh")
    policy = _policy(tmp_path, hidden=(hidden,), scratch=(Path("/Users/me/Library/Caches"),))
    profile = seatbelt_profile(policy)
    lines = profile.splitlines()
    assert lines[0] == "(version 1)"
    assert profile.index("(deny file-write*)") < profile.index("(allow file-write*")
    start = profile.index("(allow file-write*")
    allow_write = profile[start:profile.index("\n)\n", start)]
    assert f'(subpath "{policy.workspace}")' in allow_write
    assert '(subpath "/Users/me/Library/Caches")' in allow_write
    assert "/Users/me/.ssh" not in allow_write
    deny_read = profile[profile.index("(deny file-read* file-write*"):]
    assert '(subpath "/Users/me/.ssh")' in deny_read
    assert "(deny network*)" in lines
    assert "(deny signal (target others))" in lines
    assert profile.count("(") == profile.count(")")


def test_seatbelt_profile_allows_network_on_request_and_quotes_paths(tmp_path: Path) -> None:
    odd = tmp_path / 'we"ird\\name'
    odd.mkdir()
    policy = SandboxPolicy(workspace=odd, allow_network=True)
    profile = seatbelt_profile(policy)
    assert "(deny network*)" not in profile
    assert '(subpath "' + str(odd).replace("\\", "\\\\").replace('"', '\\"') + '")' in profile
    argv = seatbelt_argv(policy, "make")
    assert argv[:2] == ["/usr/bin/sandbox-exec", "-p"] and argv[2] == profile
    assert argv[3:] == ["/bin/sh", "-c", "make"]


# ------------------------------------------------------------------------------- environment


def test_command_env_is_an_allow_list() -> None:
    base = {
        "PATH": "/usr/bin", "HOME": "/home/me", "LANG": "C.UTF-8", "LC_ALL": "C",
        "SSH_AUTH_SOCK": "/run/user/1/ssh", "DBUS_SESSION_BUS_ADDRESS": "unix:path=/run/user/1/bus",
        "DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0", "XDG_RUNTIME_DIR": "/run/user/1",
        "ANTHROPIC_API_KEY": "sk-ant-x", "GH_TOKEN": "ghp_x", "HTTPS_PROXY": "http://proxy:3128",
        "VIRTUAL_ENV": "/home/me/.venv", "PYTHONPATH": "sk-ant-sneaky", "RANDOM_THING": "1",
    }
    sandboxed = command_env(base, allow_network=False, sandbox="bubblewrap")
    assert set(sandboxed) == {
        "PATH", "HOME", "LANG", "LC_ALL", "VIRTUAL_ENV", "TMPDIR", "PYTHONUNBUFFERED",
        "PYTHONDONTWRITEBYTECODE", "GIT_TERMINAL_PROMPT", "AGENTRAY_SANDBOX",
    }
    assert sandboxed["TMPDIR"] == "/tmp" and sandboxed["AGENTRAY_SANDBOX"] == "bubblewrap"
    networked = command_env(base, allow_network=True, sandbox="bubblewrap")
    assert networked["HTTPS_PROXY"] == "http://proxy:3128"
    assert command_env({"HOME": "/h"}, sandbox="none")["PATH"] == os.defpath


# ------------------------------------------------------------------------------- detection


def test_no_bwrap_means_no_sandbox_with_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTRAY_BWRAP", "/nonexistent/bwrap")
    status = detect_sandbox()
    assert status.kind is SandboxKind.NONE and not status.available
    assert status.problem == NO_SANDBOX_HINT
    assert "apt install bubblewrap" in NO_SANDBOX_HINT and "--no-sandbox" in NO_SANDBOX_HINT
    with pytest.raises(RuntimeError):
        Sandbox.for_workspace(status, "/tmp")


def test_a_bwrap_that_cannot_build_namespaces_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("AGENTRAY_BWRAP", str(fake))
    status = detect_sandbox()
    assert not status.available
    assert status.problem is not None
    assert "setting up uid map: Permission denied" in status.problem
    assert "user namespaces" in status.problem and "--no-sandbox" in status.problem


def test_unconfined_sandbox_runs_the_plain_shell() -> None:
    box = Sandbox.unconfined()
    assert box.argv("ls") == ["/bin/sh", "-c", "ls"]
    assert not box.confined and not box.own_pid_namespace
    assert "unconfined" in box.describe()
    status = SandboxStatus(SandboxKind.BUBBLEWRAP, "/usr/bin/bwrap", None)
    assert status.describe() == "bubblewrap (/usr/bin/bwrap)"
