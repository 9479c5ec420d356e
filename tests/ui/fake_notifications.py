"""A private D-Bus session bus (a real ``dbus-daemon``) with a stand-in notification server on it:
it owns ``org.freedesktop.Notifications``, answers GetCapabilities / GetServerInformation /
Notify like a desktop's server, records each Notify, and emits ActionInvoked when told to (as
when the person clicks a notification's button)."""

from __future__ import annotations

import queue
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jeepney import DBusAddress, MessageType, new_error, new_method_return, new_signal
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import open_dbus_connection
from jeepney.low_level import HeaderFields

NAME = "org.freedesktop.Notifications"
PATH = "/org/freedesktop/Notifications"


# A session bus of its own that starts nothing on demand: no service directory of the system's,
# so a notification server installed here (dunst) is never activated behind a test's back.
BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir={dir}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


class PrivateBus:
    """A ``dbus-daemon`` session bus of its own (nothing activatable on it), gone with ``close``."""

    def __init__(self) -> None:
        daemon = shutil.which("dbus-daemon")
        assert daemon, "dbus-daemon is needed (the dbus package; dbus-run-session uses it too)"
        self._folder = tempfile.TemporaryDirectory(prefix="agentray-bus-")
        config = Path(self._folder.name) / "bus.conf"
        config.write_text(BUS_CONFIG.format(dir=self._folder.name), encoding="utf-8")
        self.process = subprocess.Popen(
            [daemon, f"--config-file={config}", "--nofork", "--nopidfile", "--print-address=1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # "failed to set fd limit" when not root, and such
            text=True,
        )
        assert self.process.stdout is not None
        self.address = self.process.stdout.readline().strip()
        assert self.address.startswith("unix:"), self.address

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._folder.cleanup()


@dataclass(frozen=True)
class Notify:
    notification_id: int
    app_name: str
    title: str
    body: str
    actions: list[str]
    hints: dict[str, Any]
    replaces_id: int = 0
    timeout: int = -1


class FakeNotificationServer(threading.Thread):
    def __init__(self, address: str, capabilities: tuple[str, ...] = ("actions", "body")) -> None:
        super().__init__(daemon=True, name="fake-notification-server")
        self.capabilities = list(capabilities)
        self.conn = open_dbus_connection(bus=address)
        reply = self.conn.send_and_get_reply(message_bus.RequestName(NAME))
        assert reply.body[0] == 1, "could not own org.freedesktop.Notifications"
        self.received: list[Notify] = []
        self.closed: list[int] = []  # CloseNotification calls, by id
        self._outbox: queue.Queue[Any] = queue.Queue()
        self._halt = threading.Event()
        self._next_id = 40

    def click(self, notification_id: int, key: str) -> None:
        """The person clicks an action (``default``: the notification's body)."""
        emitter = DBusAddress(PATH, interface=NAME)
        self._outbox.put(new_signal(emitter, "ActionInvoked", "us", (notification_id, key)))

    def run(self) -> None:
        while not self._halt.is_set():
            while not self._outbox.empty():
                self.conn.send(self._outbox.get())
            try:
                message = self.conn.receive(timeout=0.02)
            except TimeoutError:
                continue
            if message.header.message_type != MessageType.method_call:
                continue
            member = message.header.fields.get(HeaderFields.member)
            if member == "GetCapabilities":
                self.conn.send(new_method_return(message, "as", (self.capabilities,)))
            elif member == "GetServerInformation":
                info = ("fake-notifier", "agentray-tests", "1.0", "1.2")
                self.conn.send(new_method_return(message, "ssss", info))
            elif member == "Notify":
                app, replaces, _icon, title, body, actions, hints, timeout = message.body
                if replaces:
                    notification_id = replaces
                else:
                    self._next_id += 1
                    notification_id = self._next_id
                self.received.append(
                    Notify(
                        notification_id, app, title, body, list(actions), hints, replaces, timeout
                    )
                )
                self.conn.send(new_method_return(message, "u", (notification_id,)))
            elif member == "CloseNotification":
                (notification_id,) = message.body
                self.closed.append(notification_id)
                self.conn.send(new_method_return(message))
                emitter = DBusAddress(PATH, interface=NAME)
                self.conn.send(
                    new_signal(emitter, "NotificationClosed", "uu", (notification_id, 3))
                )
            else:
                self.conn.send(new_error(message, "org.freedesktop.DBus.Error.UnknownMethod"))

    def stop(self) -> None:
        """Gone from the bus (as when the desktop's notification daemon quits)."""
        if self._halt.is_set():
            return
        self._halt.set()
        self.join(timeout=5)
        self.conn.close()
