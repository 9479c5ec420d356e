"""Desktop notifications with actions, straight through the freedesktop notification service
(``org.freedesktop.Notifications`` on the session bus), for Linux and the BSDs.

``QSystemTrayIcon.showMessage`` cannot carry actions: through the StatusNotifierItem path Qt sends
one fixed "default" action, and its X11 balloon has none. So where a notification server is on
the session bus and says it supports "actions", Agentray sends ``Notify`` itself with its own
action keys ("Answer", "Review", "Show", …; the "default" one is what a click on the body does)
and listens for ``ActionInvoked``. Elsewhere (macOS, Windows, no server) the Notifier falls back to
``showMessage`` and a click there does the default action.

What the server says it can do (``GetCapabilities``) shapes each notification. Without "actions"
it is not used at all. A persistent one (an escalation) goes with urgency critical, no expiry and
the ``resident`` hint: it stays after "Answer" until Agentray closes it, once the question is
answered. Servers with "persistence" keep it in their list too; the hints are sent to the others
as well (dunst 1.9 honours ``resident`` without announcing "persistence", and the specification
has servers ignore hints they do not know). Where the server renders "body-markup", the body is
escaped so a question's ``<`` or ``&`` shows as typed.

Why jeepney and not QtDBus: ``Notify`` takes ``replaces_id`` as a D-Bus uint32, and PySide6
cannot marshal a Python int as anything but int32/int64 (there is no QVariant to convert), so
servers built on GDBus reject the call. jeepney is pure Python, already installed on Linux with
``keyring`` (its Secret Service backend), and its asyncio router runs on the qasync loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import sys
from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import QObject, Signal

from agentray.doctor import NOTIFICATIONS_NAME, session_bus_address

__all__ = ["NOTIFICATIONS_PATH", "DesktopNotifications", "supported_here"]

log = logging.getLogger(__name__)

NOTIFICATIONS_PATH = "/org/freedesktop/Notifications"
CALL_TIMEOUT_S = 2.0
URGENCY = {"info": 1, "warning": 1, "critical": 2}  # low 0, normal 1, critical 2


def supported_here() -> bool:
    """A freedesktop desktop (not macOS or Windows) with jeepney importable."""
    if sys.platform in ("darwin", "win32"):
        return False
    try:
        import jeepney  # noqa: F401
    except ImportError:
        return False
    return True


class DesktopNotifications(QObject):
    """One connection to the session bus's notification server; ``start`` before use."""

    action_invoked = Signal(int, str)  # notification id, action key ("default" for a click)
    closed = Signal(int, int)  # notification id, reason (1 expired, 2 dismissed, 3 closed)

    def __init__(self, address: str | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.address = address
        self.server: str = ""  # "name vendor version" of the server, once connected
        self.capabilities: tuple[str, ...] = ()
        self._conn: Any = None
        self._router: Any = None
        self._filter: Any = None
        self._listener: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return self._router is not None and "actions" in self.capabilities

    def hints(self, level: str, *, persistent: bool) -> dict[str, tuple[str, Any]]:
        """The hints a notification goes with on this server (see the module's doc)."""
        hints: dict[str, tuple[str, Any]] = {
            "urgency": ("y", 2 if persistent else URGENCY.get(level, 1)),
        }
        if persistent:
            hints["resident"] = ("b", True)
        return hints

    def body_text(self, body: str) -> str:
        """The body as the server shows it: escaped where it renders markup."""
        return html.escape(body, quote=False) if "body-markup" in self.capabilities else body

    async def _call(
        self, method: str, signature: str | None = None, body: tuple[Any, ...] = ()
    ) -> tuple[Any, ...]:
        from jeepney import DBusAddress, MessageType, new_method_call

        server = DBusAddress(
            NOTIFICATIONS_PATH, bus_name=NOTIFICATIONS_NAME, interface=NOTIFICATIONS_NAME
        )
        message = new_method_call(server, method, signature, body)
        async with asyncio.timeout(CALL_TIMEOUT_S):  # not wait_for: it can swallow a cancel (3.11)
            reply = await self._router.send_and_get_reply(message)
        if reply.header.message_type == MessageType.error:
            raise RuntimeError(f"{method}: {reply.body[0] if reply.body else 'D-Bus error'}")
        return tuple(reply.body)

    async def start(self) -> bool:
        """Connect and ask the server what it can do; False (and nothing held) when there is no
        session bus, no server, or a server without actions."""
        if self._router is not None:
            return self.ready
        address = self.address or session_bus_address()
        if address is None or not supported_here():
            return False
        from jeepney import MatchRule
        from jeepney.bus_messages import message_bus
        from jeepney.io.asyncio import DBusRouter, open_dbus_connection

        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                self._conn = await open_dbus_connection(address)
            self._router = DBusRouter(self._conn)
            self.capabilities = tuple((await self._call("GetCapabilities"))[0])
            info = await self._call("GetServerInformation")
            self.server = " ".join(str(part) for part in info[:3] if part)
            rule = MatchRule(type="signal", interface=NOTIFICATIONS_NAME, path=NOTIFICATIONS_PATH)
            async with asyncio.timeout(CALL_TIMEOUT_S):
                await self._router.send_and_get_reply(message_bus.AddMatch(rule))
            queue: asyncio.Queue[Any] = asyncio.Queue(256)
            self._filter = self._router.filter(rule, queue=queue)
            self._listener = asyncio.ensure_future(self._listen(queue))
        except Exception as error:  # no server, a bus that does not answer, a refused call
            log.info("desktop notifications with actions are not available: %s", error)
            await self.aclose()
            return False
        if "actions" not in self.capabilities:
            log.info("the notification server (%s) shows no actions", self.server or "unknown")
            await self.aclose()
            return False
        return True

    async def _listen(self, queue: asyncio.Queue[Any]) -> None:
        while True:
            message = await queue.get()
            member = message.header.fields.get(_member_field())
            try:
                if member == "ActionInvoked":
                    notification_id, key = message.body
                    self.action_invoked.emit(int(notification_id), str(key))
                elif member == "NotificationClosed":
                    notification_id, reason = message.body
                    self.closed.emit(int(notification_id), int(reason))
            except (ValueError, TypeError):  # a malformed signal from some server: ignore it
                continue

    async def notify(
        self,
        title: str,
        body: str,
        *,
        actions: Sequence[tuple[str, str]],
        level: str = "info",
        persistent: bool = False,
        replaces_id: int = 0,
        timeout_ms: int | None = None,
        app_name: str = "Agentray",
    ) -> int:
        """Show a notification (or replace ``replaces_id``); its id. ``actions`` are (key, label),
        "default" for a click. ``persistent``: it stays until acted on (an escalation)."""
        if self._router is None:
            raise RuntimeError("not connected to the notification server")
        flat = [part for key, label in actions for part in (key, label)]
        if timeout_ms is None:
            timeout_ms = 0 if persistent else -1  # 0: never expires; -1: the server's default
        (notification_id,) = await self._call(
            "Notify",
            "susssasa{sv}i",
            (
                app_name,
                replaces_id,
                "",
                title,
                self.body_text(body),
                flat,
                self.hints(level, persistent=persistent),
                timeout_ms,
            ),
        )
        return int(notification_id)

    async def close(self, notification_id: int) -> None:
        """Take a notification off the screen (and out of the server's list of open ones)."""
        if self._router is None:
            return
        await self._call("CloseNotification", "u", (notification_id,))

    async def aclose(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listener
        if self._filter is not None:
            with contextlib.suppress(Exception):
                self._filter.close()
            self._filter = None
        router, self._router = self._router, None
        if router is not None:
            with contextlib.suppress(Exception):
                await router.__aexit__(None, None, None)
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


def _member_field() -> Any:
    from jeepney.low_level import HeaderFields

    return HeaderFields.member
