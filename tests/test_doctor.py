"""`agentray doctor` as a user runs it: the real CLI in a subprocess, the real bwrap, and a real
private D-Bus session (its own dbus-daemon) on which the tests own
``org.freedesktop.Notifications`` / ``org.kde.StatusNotifierWatcher`` themselves, with jeepney, so
the doctor's QtDBus code is checked against an independent D-Bus implementation."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agentray.doctor import CHECK_NAMES

AGENTRAY = [sys.executable, "-m", "agentray"]
KEY = "sk-ant-doctor-test-Zq9-SECRETTAIL"
FAIL_KEYRING = "keyring.backends.fail.Keyring"


@dataclass
class Report:
    code: int
    stdout: str
    stderr: str
    elapsed: float

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()

    def line(self, name: str) -> tuple[str, str]:
        """(mark, text) of the check ``name``."""
        for line in self.lines:
            parts = line.split(None, 2)
            if parts and parts[0] == name:
                return parts[1], parts[2] if len(parts) > 2 else ""
        raise AssertionError(f"no {name} line in:\n{self.stdout}")


def doctor(tmp_path: Path, **env_changes: str | None) -> Report:
    """Run `agentray doctor`; a value of None removes the variable. By default: no key, no
    keyring (keyring's fail backend) and whatever session bus and display the tests run under."""
    env = {**os.environ, "PYTHON_KEYRING_BACKEND": FAIL_KEYRING,
           "AGENTRAY_JOURNAL": str(tmp_path / "j.sqlite3")}
    env.pop("ANTHROPIC_API_KEY", None)
    env.pop("AGENTRAY_BWRAP", None)
    for name, value in env_changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    started = time.monotonic()
    done = subprocess.run(
        [*AGENTRAY, "doctor"], env=env, capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL,
    )
    return Report(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def _require(what: str, found: bool) -> None:
    if found:
        return
    if os.environ.get("AGENTRAY_REQUIRE_DESKTOP") == "1":
        pytest.fail(f"scripts/test.sh should provide {what}")
    pytest.skip(f"needs {what}")


# ------------------------------------------------------------------------- sandbox and key
def test_five_lines_in_order_and_exit_0_with_bwrap_and_a_key(tmp_path: Path) -> None:
    bwrap = shutil.which("bwrap")
    assert bwrap, "bubblewrap must be installed for the test suite (scripts/test.sh installs it)"
    report = doctor(tmp_path, ANTHROPIC_API_KEY=KEY)
    assert [line.split()[0] for line in report.lines] == list(CHECK_NAMES), report.stdout
    assert report.code == 0, report.stdout + report.stderr
    assert report.line("sandbox") == ("ok", f"bubblewrap ({bwrap})")
    mark, text = report.line("key")
    assert mark == "ok" and "ANTHROPIC_API_KEY" in text and f"({len(KEY)} chars)" in text
    # the key itself, or any recognisable part of it, is never printed
    for part in (KEY, KEY[7:], "SECRETTAIL", "Zq9"):
        assert part not in report.stdout + report.stderr
    # the fail backend is no usable keyring: a line that says so, but not an essential
    mark, text = report.line("keyring")
    assert mark == "✗" and "no usable OS keyring" in text and "ANTHROPIC_API_KEY" in text
    assert report.stderr == ""
    assert report.elapsed < 10  # the budget is < 1 s; this only catches a hang, not a slow CI


def test_without_bwrap_exit_1_and_the_install_hint(tmp_path: Path) -> None:
    report = doctor(tmp_path, ANTHROPIC_API_KEY=KEY, AGENTRAY_BWRAP="/nonexistent")
    assert report.code == 1, report.stdout
    mark, text = report.line("sandbox")
    assert mark == "✗"
    assert "install bubblewrap" in text and "sudo apt install bubblewrap" in text
    assert "--no-sandbox" in text
    assert report.line("key")[0] == "ok"
    assert len(report.lines) == len(CHECK_NAMES)


def test_without_a_key_exit_1_and_how_to_set_one(tmp_path: Path) -> None:
    report = doctor(tmp_path)
    assert report.code == 1, report.stdout
    mark, text = report.line("key")
    assert mark == "✗" and "no API key" in text
    # no usable keyring here, so the only way is the environment variable
    assert "set ANTHROPIC_API_KEY" in text and "agentray key set" not in text
    assert report.line("sandbox")[0] == "ok"


def test_an_unusable_bwrap_is_not_ok(tmp_path: Path) -> None:
    # a bwrap that exists but cannot make a sandbox (as with user namespaces switched off)
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    report = doctor(tmp_path, ANTHROPIC_API_KEY=KEY, AGENTRAY_BWRAP=str(fake))
    assert report.code == 1
    mark, text = report.line("sandbox")
    assert mark == "✗" and "No permissions to create new namespace" in text and "--no-sandbox" in text


# ------------------------------------------------------------------- a private D-Bus session
BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir={dir}</listen>
  <auth>EXTERNAL</auth>
  <servicedir>{services}</servicedir>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""

# Owns the names given on the command line and answers like a notification server and a
# StatusNotifierWatcher with a registered host would.
FAKE_SERVICE = textwrap.dedent(
    """
    import sys
    from jeepney import HeaderFields, MessageType, new_error, new_method_return
    from jeepney.bus_messages import message_bus
    from jeepney.io.blocking import open_dbus_connection

    conn = open_dbus_connection()
    for name in sys.argv[1:]:
        reply = conn.send_and_get_reply(message_bus.RequestName(name, 4))  # DO_NOT_QUEUE
        assert reply.body[0] == 1, f"could not own {name}: {reply.body}"
    print("ready", flush=True)
    while True:
        msg = conn.receive()
        if msg.header.message_type != MessageType.method_call:
            continue
        member = msg.header.fields.get(HeaderFields.member)
        if member == "GetServerInformation":
            conn.send(new_method_return(msg, "ssss", ("fake-notifier", "agentray-tests", "1.0", "1.2")))
        elif member == "Get" and msg.body[1] == "IsStatusNotifierHostRegistered":
            conn.send(new_method_return(msg, "v", (("b", True),)))
        else:
            conn.send(new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod", "s", ("no",)))
    """
)


@dataclass
class PrivateBus:
    address: str
    services: Path
    root: Path
    processes: list[subprocess.Popen[str]] = field(default_factory=list)

    def own(self, *names: str) -> None:
        """A process on this bus that owns ``names`` (until the test ends)."""
        script = self.root / "fake_service.py"
        script.write_text(FAKE_SERVICE, encoding="utf-8")
        proc = subprocess.Popen(
            [sys.executable, str(script), *names],
            env={**os.environ, "DBUS_SESSION_BUS_ADDRESS": self.address},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.processes.append(proc)
        assert proc.stdout is not None
        ready = proc.stdout.readline()  # printed once every name is owned
        assert ready.strip() == "ready", proc.stderr.read() if proc.stderr else ""

    def activatable(self, name: str, marker: Path) -> None:
        """A .service file: D-Bus would start ``name`` on demand (and touch ``marker`` if so)."""
        (self.services / f"{name}.service").write_text(
            f"[D-BUS Service]\nName={name}\nExec=/usr/bin/touch {marker}\n", encoding="utf-8"
        )
        # the daemon notices new files asynchronously; ReloadConfig rereads them before replying
        from jeepney.bus_messages import message_bus
        from jeepney.io.blocking import open_dbus_connection

        with open_dbus_connection(self.address) as connection:
            reply = connection.send_and_get_reply(message_bus.ReloadConfig(), timeout=10)
            assert reply.header.message_type.name == "method_return", reply.body


@pytest.fixture
def private_bus() -> Iterator[PrivateBus]:
    daemon = shutil.which("dbus-daemon")
    _require("dbus-daemon (the dbus package)", daemon is not None)
    assert daemon is not None
    # a short directory: unix socket paths are limited to ~108 bytes
    root = Path(tempfile.mkdtemp(prefix="agentray-bus-"))
    services = root / "services"
    services.mkdir()
    config = root / "bus.conf"
    config.write_text(BUS_CONFIG.format(dir=root, services=services), encoding="utf-8")
    proc = subprocess.Popen(
        [daemon, f"--config-file={config}", "--nofork", "--print-address=1"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert proc.stdout is not None
    address = proc.stdout.readline().strip()
    assert address.startswith("unix:"), address
    bus = PrivateBus(address, services, root, [proc])
    try:
        yield bus
    finally:
        for process in reversed(bus.processes):
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
        shutil.rmtree(root, ignore_errors=True)


def test_no_notification_server_on_the_bus(tmp_path: Path, private_bus: PrivateBus) -> None:
    report = doctor(tmp_path, ANTHROPIC_API_KEY=KEY, DBUS_SESSION_BUS_ADDRESS=private_bus.address)
    mark, text = report.line("notifications")
    assert mark == "✗" and "no notification server" in text, report.stdout
    assert report.code == 0  # not an essential


def test_a_notification_server_that_owns_the_name(tmp_path: Path, private_bus: PrivateBus) -> None:
    private_bus.own("org.freedesktop.Notifications")
    report = doctor(tmp_path, ANTHROPIC_API_KEY=KEY, DBUS_SESSION_BUS_ADDRESS=private_bus.address)
    mark, text = report.line("notifications")
    assert mark == "ok", report.stdout
    assert "fake-notifier agentray-tests 1.0" in text  # its GetServerInformation answer


def test_an_activatable_notification_server_is_ok_and_not_started(
    tmp_path: Path, private_bus: PrivateBus
) -> None:
    marker = private_bus.root / "started"
    private_bus.activatable("org.freedesktop.Notifications", marker)
    report = doctor(tmp_path, ANTHROPIC_API_KEY=KEY, DBUS_SESSION_BUS_ADDRESS=private_bus.address)
    mark, text = report.line("notifications")
    assert mark == "ok" and "starts on demand" in text, report.stdout
    assert not marker.exists()  # the doctor looked; it did not start anything


def test_no_session_bus_says_so(tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"  # no `bus` socket in it
    runtime.mkdir()
    report = doctor(
        tmp_path, ANTHROPIC_API_KEY=KEY, DBUS_SESSION_BUS_ADDRESS=None, XDG_RUNTIME_DIR=str(runtime)
    )
    mark, text = report.line("notifications")
    assert mark == "✗" and "no D-Bus session bus" in text, report.stdout
    assert report.code == 0 and report.stderr == ""


def test_a_dead_session_bus_address_says_so(tmp_path: Path) -> None:
    report = doctor(
        tmp_path, ANTHROPIC_API_KEY=KEY,
        DBUS_SESSION_BUS_ADDRESS=f"unix:path={tmp_path}/no-such-bus",
    )
    mark, text = report.line("notifications")
    assert mark == "✗" and "cannot connect to the D-Bus session bus" in text, report.stdout
    assert report.code == 0


# ----------------------------------------------------------------------- display and tray host
@pytest.fixture
def fake_x_display() -> Iterator[str]:
    """A listening X11 socket (abstract namespace, as Xorg and Xvfb also use): ``:N``."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    for number in range(4242, 4342):
        try:
            listener.bind(f"\0/tmp/.X11-unix/X{number}")
        except OSError:
            continue
        if os.path.exists(f"/tmp/.X11-unix/X{number}"):
            continue  # a real server's file socket: not ours
        listener.listen(4)
        break
    else:
        pytest.fail("no free X display number between 4242 and 4341")
    try:
        yield f":{number}"
    finally:
        listener.close()


@pytest.fixture
def fake_wayland(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(XDG_RUNTIME_DIR, WAYLAND_DISPLAY) with a listening socket there."""
    runtime = Path(tempfile.mkdtemp(prefix="agentray-rt-"))
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(runtime / "wayland-test"))
    listener.listen(4)
    try:
        yield str(runtime), "wayland-test"
    finally:
        listener.close()
        shutil.rmtree(runtime, ignore_errors=True)


def test_no_display_is_not_essential(tmp_path: Path) -> None:
    report = doctor(tmp_path, ANTHROPIC_API_KEY=KEY, DISPLAY=None, WAYLAND_DISPLAY=None)
    mark, text = report.line("display")
    assert mark == "✗" and "no graphical session" in text and "agentray run" in text
    assert report.code == 0


def test_a_display_that_does_not_answer(tmp_path: Path, fake_x_display: str) -> None:
    unused = ":" + str(int(fake_x_display[1:]) + 1000)
    report = doctor(tmp_path, DISPLAY=unused, WAYLAND_DISPLAY=None)
    mark, text = report.line("display")
    assert mark == "✗" and f"nothing answers at X11 {unused}" in text, report.stdout


def test_x11_without_a_tray_host_warns_of_the_xembed_fallback(
    tmp_path: Path, private_bus: PrivateBus, fake_x_display: str
) -> None:
    report = doctor(
        tmp_path, DISPLAY=fake_x_display, WAYLAND_DISPLAY=None,
        DBUS_SESSION_BUS_ADDRESS=private_bus.address,
    )
    mark, text = report.line("display")
    assert mark == "warn", report.stdout
    assert f"X11 {fake_x_display}" in text and "no StatusNotifier tray host" in text
    assert "XEmbed" in text


def test_x11_with_a_tray_host(tmp_path: Path, private_bus: PrivateBus, fake_x_display: str) -> None:
    private_bus.own("org.kde.StatusNotifierWatcher")
    report = doctor(
        tmp_path, DISPLAY=fake_x_display, WAYLAND_DISPLAY=None,
        DBUS_SESSION_BUS_ADDRESS=private_bus.address,
    )
    mark, text = report.line("display")
    assert mark == "ok", report.stdout
    assert f"X11 {fake_x_display}" in text and "StatusNotifier tray host" in text


def test_wayland_without_a_tray_host(
    tmp_path: Path, private_bus: PrivateBus, fake_wayland: tuple[str, str]
) -> None:
    runtime, wayland = fake_wayland
    report = doctor(
        tmp_path, DISPLAY=None, WAYLAND_DISPLAY=wayland, XDG_RUNTIME_DIR=runtime,
        DBUS_SESSION_BUS_ADDRESS=private_bus.address,
    )
    mark, text = report.line("display")
    assert mark == "warn" and f"Wayland {wayland}" in text, report.stdout
    assert "no tray icon under Wayland" in text


@pytest.mark.x11
def test_the_real_display_under_xvfb(tmp_path: Path) -> None:
    display = os.environ.get("DISPLAY")
    _require("an X server (xvfb-run)", bool(display))
    report = doctor(tmp_path, WAYLAND_DISPLAY=None)
    mark, text = report.line("display")
    assert mark in ("ok", "warn") and f"X11 {display}" in text, report.stdout
